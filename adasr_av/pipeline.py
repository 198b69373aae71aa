"""The live pipeline: capture, encoder and reasoner, each on its own thread, joined by bounded queues.

    audio source ──[audio queue]──▶ streaming ASR ──[chunk queue]──▶ reasoner ──▶ events

Every hand-over blocks when the next stage is full, so nothing is dropped: when the reasoner falls
behind, chunks wait in order in the chunk queue (the ASR meanwhile coalesces audio into fewer,
longer steps), and each chunk event says how many chunks were still waiting behind it
(`queued`) beside its lag in stream seconds (`lag_s`). `stop()` (Ctrl-C, the Stop button) ends
the source: the audio captured so far is transcribed, and the reasoner still deliberates and
answers. A failure in any stage ends the run with that error, raised where the events are read.

`PipelineModels` holds what is slow to load (Whisper, the reasoner) so that a batch worker or the
demo loads it once and runs many streams, one at a time.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from adasr_av.encoders.streaming_asr import ASRStats, StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.reasoner.session import StreamingReasoner
from adasr_av.types import AudioChunk, Event, TextChunk

_END = object()  # closes a queue


@dataclass
class PipelineModels:
    """The loaded stages a run needs; not thread-safe: one run at a time."""

    asr: WhisperBackend
    reasoner: StreamingReasoner
    asr_options: StreamingASROptions = field(default_factory=StreamingASROptions)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Failure:
    """An exception raised in a stage, carried to the reader of the events."""

    stage: str
    error: BaseException


class PipelineRun:
    """One stream through the pipeline. Iterate over it for the events as they happen; `chunks`
    holds the committed text chunks (for transcripts), `t_end` where the audio ended."""

    def __init__(
        self,
        models: PipelineModels,
        audio: Iterable[AudioChunk],
        question: str = "",
        reference: str | None = None,
        queue_size: int = 64,
        on_chunk: Callable[[TextChunk], None] | None = None,
    ):
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.models, self.audio = models, audio
        self.question, self.reference = question, reference
        self.on_chunk = on_chunk
        self.audio_queue: queue.Queue = queue.Queue(queue_size)
        self.chunk_queue: queue.Queue = queue.Queue(queue_size)
        self.event_queue: queue.Queue = queue.Queue()  # events are small; the reader drains them
        self.stats = ASRStats()
        self.chunks: list[TextChunk] = []
        self.events: list[Event] = []
        self.t_end: float | None = None
        self._stopping = threading.Event()
        self._failed = threading.Event()
        self._threads = [
            threading.Thread(target=self._guard, args=("capture", self._capture), daemon=True),
            threading.Thread(target=self._guard, args=("encoder", self._encode), daemon=True),
            threading.Thread(target=self._guard, args=("reasoner", self._reason), daemon=True),
        ]
        self._started = False
        self.interrupted = False

    def start(self) -> PipelineRun:
        if not self._started:
            self._started = True
            self.models.lock.acquire()
            for thread in self._threads:
                thread.start()
        return self

    def stop(self) -> None:
        """End the source now; what was captured still goes through, then the answer comes."""
        self._stopping.set()
        if self._closes_itself():
            self.audio.close()  # a live source (microphone, pushed audio) may be waiting for its next block

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def __iter__(self) -> Iterator[Event]:
        """Events as they happen; a stage's exception is raised here once the run has ended."""
        self.start()
        try:
            while True:
                try:
                    item = self.event_queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                except KeyboardInterrupt:  # Ctrl-C: close the stream and still answer; twice: abort
                    if self.stopping:
                        raise
                    self.interrupted = True
                    self.stop()
                    continue
                if item is _END:
                    break
                if isinstance(item, Failure):
                    self._stopping.set()
                    self._drain_until_end()
                    raise item.error
                self.events.append(item)
                yield item
        finally:
            self._stopping.set()
            for thread in self._threads:
                thread.join(timeout=30)
            if self.models.lock.locked():
                self.models.lock.release()

    def run(self) -> list[Event]:
        """Every event of the stream, once it has ended."""
        return list(self)

    def _closes_itself(self) -> bool:
        """A live source object whose `close()` ends its iteration after what it already holds."""
        return callable(getattr(self.audio, "close", None)) and not inspect.isgenerator(self.audio)

    # --- stages ------------------------------------------------------------------------------

    def _guard(self, stage: str, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as err:  # noqa: BLE001 - carried to the reader, not swallowed
            self._failed.set()
            self._stopping.set()
            self.event_queue.put(Failure(stage, err))

    def _capture(self) -> None:
        # a live source that `stop()` closed still yields what it had received; a file just stops
        live = self._closes_itself()
        iterator = iter(self.audio)
        try:
            for chunk in iterator:
                self._put(self.audio_queue, chunk)
                self.t_end = chunk.t_end
                if self.stopping and not (live and not self._failed.is_set()):
                    break
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()
            self._put(self.audio_queue, _END)

    def _encode(self) -> None:
        for chunk in transcribe_stream(
            self._drain(self.audio_queue), self.models.asr, self.models.asr_options, self.stats
        ):
            self._put(self.chunk_queue, chunk)
        self._put(self.chunk_queue, _END)

    def _reason(self) -> None:
        reasoner = self.models.reasoner
        reasoner.start(self.question, self.reference)
        fed = 0
        for chunk in self._drain(self.chunk_queue):
            self.chunks.append(chunk)
            if self.on_chunk:
                self.on_chunk(chunk)
            n = len(reasoner.events)
            reasoner.feed(chunk)
            fed += 1
            for event in reasoner.events[n:]:
                if event.type == "chunk":
                    event.info["queued"] = self.chunk_queue.qsize()
                self.event_queue.put(event)
        if fed == 0 or not any(c.text.strip() for c in self.chunks):
            self.event_queue.put(_END)  # nothing was said: no answer to give
            return
        for event in reasoner.finish(self.t_end):
            self.event_queue.put(event)
        self.event_queue.put(_END)

    # --- queues ------------------------------------------------------------------------------

    def _put(self, q: queue.Queue, item) -> None:
        """Wait for room: nothing is dropped, unless a stage failed and the run is over."""
        while not self._failed.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drain(self, q: queue.Queue) -> Iterator:
        """Items until the end marker; gives up once a stage failed (its upstream may never end)."""
        while not self._failed.is_set():
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item

    def _drain_until_end(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)
