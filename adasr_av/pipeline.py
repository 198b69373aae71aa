"""The live pipeline: capture, encoders and reasoner, each on its own thread, joined by bounded queues.

    source ──[audio queue]──▶ streaming ASR ──┐
      └────[frame queue]──▶ OCR / captioner ──┴─[chunk queue]──▶ merge ──▶ reasoner ──▶ events

The capture thread reads one time-ordered stream of records (audio chunks and video frames, as
`media.sources` opens them) and hands each to the encoders that take its kind. Each encoder runs on
its own thread; their chunks are merged into one stream in order of arrival (`t_emit`; on a tie the
encoder listed first): a chunk is passed on once every other encoder has read past its time, so
that no earlier chunk can still come (`_merged`).

Every hand-over blocks when the next stage is full, so nothing is dropped: when the reasoner falls
behind, chunks wait in order in the chunk queue (the ASR meanwhile coalesces audio into fewer,
longer steps), and each chunk event says how many chunks were still waiting behind it
(`queued`) beside its lag in stream seconds (`lag_s`).

How a run ends:
- the source ends, or reaches `max_seconds` of stream time: the reasoner deliberates and answers;
- `stop()` (Ctrl-C, the Stop button): the source ends now; what was captured still goes through
  and is answered;
- `cancel()` (a closed page, a reader that stopped reading): every stage stops at its next step
  and nothing is deliberated or answered;
- a stage raises: the run is cancelled the same way, and that error is raised where the events are
  read. No stage deliberates after a failure.

The models (`PipelineModels.lock`) are held from `start()` until the last stage thread has ended:
the last thread out releases them, so a slow or stuck stage (a reasoner deliberating on a big
model, a source waiting on the network) can never find them handed to the next run. Reading the
events to their end (or to an error) waits for every stage thread, which each check the cancel
flag between steps, so when the iteration is over the models are free.

Memory stays flat however long the stream: the run keeps the latest `RECENT_CHUNKS` chunks and
`RECENT_EVENTS` events (for live views), counts, the summary, and a compact bounded `Timeline`
for the figure. Whoever needs everything writes it as it comes (`on_chunk`, the events iterator).

`PipelineModels` holds what is slow to load (the encoders' models, the reasoner) so that a batch
worker or the demo loads it once and runs many streams, one at a time.
"""

from __future__ import annotations

import heapq
import inspect
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from adasr_av.encoders.contract import Encoder
from adasr_av.encoders.streaming_asr import ASRStats
from adasr_av.media.audio import seconds_to_samples
from adasr_av.reasoner.session import StreamingReasoner
from adasr_av.sinks import Timeline
from adasr_av.types import AudioChunk, Event, Record, TextChunk, VideoFrame, record_time

_END = object()  # closes a queue
RECENT_CHUNKS = 256  # text chunks a run keeps for live views (about 10 minutes of speech)
RECENT_EVENTS = 512  # events a run keeps for live views (a chunk and its unit are two)
POLL_S = 0.1  # how often a waiting stage looks at the cancel flag


@dataclass
class PipelineModels:
    """The loaded stages a run needs: the encoders (in the order that breaks ties between their
    chunks) and the reasoner; not thread-safe: one run at a time (`lock`)."""

    reasoner: StreamingReasoner
    encoders: Sequence[Encoder]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.encoders = tuple(self.encoders)
        if not self.encoders:
            raise ValueError("a pipeline needs at least one encoder")

    @property
    def reads_frames(self) -> bool:
        return any(encoder.takes == "video" for encoder in self.encoders)


@dataclass(frozen=True)
class Failure:
    """An exception raised in a stage, carried to the reader of the events."""

    stage: str
    error: BaseException


class _Cancelled(Exception):
    """Raised inside a stage waiting on its queue once the run is cancelled: it unwinds the stage
    (the ASR's final flush and the reasoner's deliberation included) without counting as a failure."""


class PipelineRun:
    """One stream through the pipeline. Iterate over it for the events as they happen.

    `recent_chunks` and `recent_events` are bounded views of the latest (see `snapshot`);
    `n_chunks` counts the committed text chunks, `summary` is the answer's summary event,
    `timeline` the figure's record, `t_end` where the audio ended, `reached_limit` whether it
    ended at `max_seconds`.
    """

    def __init__(
        self,
        models: PipelineModels,
        records: Iterable[Record],
        question: str = "",
        reference: str | None = None,
        queue_size: int = 64,
        on_chunk: Callable[[TextChunk], None] | None = None,
        max_seconds: float | None = None,
    ):
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.models, self.records = models, records
        self.question, self.reference = question, reference
        self.on_chunk, self.max_seconds = on_chunk, max_seconds
        encoders = models.encoders
        self.input_queues = [queue.Queue(queue_size) for _ in encoders]  # records, one queue an encoder
        self.chunk_queue: queue.Queue = queue.Queue(queue_size)  # (encoder index, chunk or _END)
        self.event_queue: queue.Queue = queue.Queue()  # a chunk's few events; the reader drains them
        self.encoder_stats = {encoder.source: encoder.new_stats() for encoder in encoders}
        # stream time each encoder has read up to: none of its later chunks can be earlier
        self._read_up_to = [float("-inf")] * len(encoders)
        self._waiting = 0  # chunks handed on by the encoders and not yet fed to the reasoner
        self._waiting_lock = threading.Lock()
        self.recent_chunks: deque[TextChunk] = deque(maxlen=RECENT_CHUNKS)
        self.recent_events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.timeline = Timeline()
        self.n_chunks = 0
        self.summary: Event | None = None
        self.t_end: float | None = None
        self.reached_limit = False
        self.interrupted = False
        self.failure: Failure | None = None
        self._heard = False  # a chunk with text was committed
        self._view_lock = threading.Lock()  # the views are read from other threads (the demo's page)
        self._stopping = threading.Event()
        self._cancelled = threading.Event()
        stages = [("capture", self._capture, ())]
        stages += [("encoder", self._encode, (i,)) for i in range(len(encoders))]
        stages += [("reasoner", self._reason, ())]
        self._threads = [
            threading.Thread(
                target=self._guard, args=(stage, work, *args), name=f"pipeline-{stage}", daemon=True
            )
            for stage, work, args in stages
        ]
        self._alive = 0  # stage threads not ended yet; the last one out releases the models
        self._alive_lock = threading.Lock()
        self._started = False

    def start(self) -> PipelineRun:
        """Take the models (waiting while another run holds them) and start the stage threads."""
        if not self._started:
            self._started = True
            self.models.lock.acquire()
            self._alive = len(self._threads)
            for n, thread in enumerate(self._threads):
                try:
                    thread.start()
                except BaseException:
                    self.cancel()
                    for _ in self._threads[n:]:
                        self._thread_ended()
                    raise
        return self

    def stop(self) -> None:
        """End the source now; what was captured still goes through, then the answer comes."""
        self._stopping.set()
        if self._closes_itself():
            self.records.close()  # a live source (microphone, pushed audio) may be waiting for its next block

    def cancel(self) -> None:
        """Abandon the run: every stage stops at its next step; nothing is deliberated or answered."""
        self._cancelled.set()
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def threads_alive(self) -> int:
        """Stage threads that have not ended (the models are held until this is 0)."""
        return self._alive

    def __iter__(self) -> Iterator[Event]:
        """Events as they happen; a stage's exception is raised here once every stage has ended.

        Leaving the loop early (break, a closed generator) cancels the run: nobody reads an answer."""
        self.start()
        finished = False
        try:
            while (item := self._next_item()) is not _END:
                if isinstance(item, Failure):
                    break
                self._record(item)
                yield item
            finished = self.failure is None
        finally:
            if not finished:
                self.cancel()
            self.join()
        if self.failure is not None:
            raise self.failure.error

    def run(self) -> list[Event]:
        """Every event of the stream, once it has ended (for short streams: the list grows with it)."""
        return list(self)

    def join(self) -> None:
        """Wait for every stage thread to end (no timeout: a timeout would let the next run in while
        a stage may still use the models; each stage checks the cancel flag between steps)."""
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def snapshot(self) -> tuple[list[TextChunk], list[Event]]:
        """The latest chunks and events, consistent with each other, from any thread."""
        with self._view_lock:
            return list(self.recent_chunks), list(self.recent_events)

    def _next_item(self):
        """The next event, failure or end marker; Ctrl-C closes the stream (twice: aborts)."""
        while True:
            try:
                return self.event_queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                if self.stopping:
                    raise
                self.interrupted = True
                self.stop()

    def _record(self, event: Event) -> None:
        with self._view_lock:
            self.recent_events.append(event)
            self.timeline.add_event(event)
            if event.type == "summary":
                self.summary = event

    def _record_chunk(self, chunk: TextChunk) -> None:
        with self._view_lock:
            self.recent_chunks.append(chunk)
            self.timeline.add_chunk(chunk)
            self.n_chunks += 1
            self._heard = self._heard or bool(chunk.text.strip())

    def _closes_itself(self) -> bool:
        """A live source object whose `close()` ends its iteration after what it already holds."""
        return callable(getattr(self.records, "close", None)) and not inspect.isgenerator(self.records)

    # --- stages ------------------------------------------------------------------------------

    def _guard(self, stage: str, work: Callable[..., None], *args) -> None:
        try:
            work(*args)
        except _Cancelled:
            pass
        except BaseException as err:  # noqa: BLE001 - carried to the reader, not swallowed
            self._fail(stage, err)
        finally:
            self._thread_ended()

    def _fail(self, stage: str, err: BaseException) -> None:
        """The first failure is the run's: recorded before the cancel flag, so whoever sees the
        flag also sees why."""
        with self._alive_lock:
            first = self.failure is None
            if first:
                self.failure = Failure(stage, err)
        self.cancel()
        if first:
            self.event_queue.put(self.failure)

    def _thread_ended(self) -> None:
        with self._alive_lock:
            self._alive -= 1
            last = self._alive == 0
        if last:
            self.event_queue.put(_END)  # the reader may be waiting on a run that was cancelled
            self.models.lock.release()

    def _capture(self) -> None:
        # a live source that `stop()` closed still yields what it had received; a file just stops
        live = self._closes_itself()
        iterator = iter(self.records)
        takers = {
            kind: [q for q, e in zip(self.input_queues, self.models.encoders, strict=True) if e.takes == kind]
            for kind in ("audio", "video")
        }
        try:
            for record in iterator:
                record = self._within_limit(record)
                if record is None or self.cancelled:
                    break
                for q in takers["audio" if isinstance(record, AudioChunk) else "video"]:
                    self._put(q, record)
                self.t_end = max(self.t_end or 0.0, record_time(record))
                if self.reached_limit:
                    self.stop()  # as if the user had stopped it: a live source takes no more
                    break
                if self.stopping and not live:
                    break
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()
        for q in self.input_queues:  # only when the source ended well: a failure ends nothing
            self._put(q, _END)

    @property
    def stats(self) -> ASRStats:
        """The speech encoder's stats (empty when the run has none)."""
        return self.encoder_stats.get("asr") or ASRStats()

    def _within_limit(self, record: Record) -> Record | None:
        """The record cut at `max_seconds` (None once past it); reaching it ends the stream."""
        if self.max_seconds is None or record_time(record) < self.max_seconds:
            return record
        self.reached_limit = True
        if isinstance(record, VideoFrame) or record.t_start >= self.max_seconds:
            return None
        n = seconds_to_samples(self.max_seconds - record.t_start)
        return replace(record, samples=record.samples[:n], t_end=self.max_seconds)

    def _encode(self, index: int) -> None:
        encoder = self.models.encoders[index]
        chunks = encoder(self._encoder_input(index), self.encoder_stats[encoder.source])
        for chunk in chunks:
            self._put(self.chunk_queue, (index, chunk))
            with self._waiting_lock:
                self._waiting += 1
        self._read_up_to[index] = float("inf")
        self._put(self.chunk_queue, (index, _END))

    def _encoder_input(self, index: int) -> Iterator[Record]:
        """The encoder's records; each one taken says how far it has read (see `_merged`)."""
        for record in self._drain(self.input_queues[index]):
            self._read_up_to[index] = record_time(record)
            yield record

    def _merged(self) -> Iterator[TextChunk]:
        """The encoders' chunks in order of `t_emit` (ties: the encoder listed first).

        A chunk is released once every other encoder has read past its time (or up to it, for an
        encoder listed after it): an encoder's chunks come in order of `t_emit` and none is earlier
        than the last record it took. The read-up-to marks are looked at before the queue is
        emptied: an encoder hands on its chunks before it takes the next record, so a mark seen
        covers every chunk it had made by then, and those are all in the queue."""
        n = len(self.models.encoders)
        pending: list[tuple[float, int, int, TextChunk]] = []
        marks, ended, order = list(self._read_up_to), 0, 0
        while ended < n or pending:
            if pending and self._releasable(pending[0][0], pending[0][1], marks):
                yield heapq.heappop(pending)[3]
                continue
            marks = list(self._read_up_to)
            # one encoder: one chunk at a time, so that the queue's bound is the bound on waiting
            for index, item in self._take_available(1 if n == 1 else None):
                if item is _END:
                    ended += 1
                else:
                    heapq.heappush(pending, (item.t_emit, index, order, item))
                    order += 1

    @staticmethod
    def _releasable(t_emit: float, index: int, marks: list[float]) -> bool:
        return all(
            mark > t_emit if other < index else mark >= t_emit
            for other, mark in enumerate(marks)
            if other != index
        )

    def _take_available(self, limit: int | None = None) -> list[tuple[int, object]]:
        """What the chunk queue holds now (at most `limit` items), waiting up to POLL_S for the first."""
        self._check_cancelled()
        try:
            items = [self.chunk_queue.get(timeout=POLL_S)]
        except queue.Empty:
            return []
        while limit is None or len(items) < limit:
            try:
                items.append(self.chunk_queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _reason(self) -> None:
        reasoner = self.models.reasoner
        reasoner.start(self.question, self.reference)
        for chunk in self._merged():
            with self._waiting_lock:
                self._waiting -= 1
            self._record_chunk(chunk)
            if self.on_chunk:
                self.on_chunk(chunk)
            n = len(reasoner.events)
            reasoner.feed(chunk)
            waiting = max(self._waiting, 0)  # the chunks that came while this one was read
            for event in reasoner.events[n:]:
                if event.type == "chunk":
                    event.info["queued"] = waiting
                self.event_queue.put(event)
        if not self._heard:
            return  # nothing was said: no answer to give
        self._check_cancelled()
        for event in reasoner.finish(self.t_end):
            self.event_queue.put(event)

    # --- queues ------------------------------------------------------------------------------

    def _put(self, q: queue.Queue, item) -> None:
        """Wait for room: nothing is dropped; a cancelled run (or a failed stage) unwinds the stage."""
        while True:
            self._check_cancelled()
            try:
                q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def _drain(self, q: queue.Queue) -> Iterator:
        """Items until the end marker; a cancelled run unwinds the stage (its upstream may never end),
        so nothing after a failure is flushed, deliberated or answered."""
        while True:
            self._check_cancelled()
            try:
                item = q.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item

    def _check_cancelled(self) -> None:
        if self.cancelled:
            raise _Cancelled
