"""Streaming Whisper: a rolling audio buffer re-transcribed as audio arrives, LocalAgreement-2
commits, and committed words grouped into `TextChunk`s.

`OnlineASR` has whisper_streaming's three verbs (`insert_audio`, `process_iter`, `finish`);
`transcribe_stream` runs it over an iterator of `AudioChunk`s in stream time:

- a Whisper step runs once `min_step_seconds` of new audio is in, on everything that arrived;
  audio that arrives while a step runs waits for the next step (coalescing), so a slow model
  falls behind by at most one step instead of building a backlog;
- computation-aware (default): a step started when its last audio arrived and took the measured
  compute time, so `t_emit` = arrival + compute; computation-unaware: stream time stops while
  the model runs and `t_emit` is when the last audio of the step arrived.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from adasr_av.encoders.local_agreement import HypothesisBuffer
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.media.audio import SAMPLE_RATE, samples_to_seconds, seconds_to_samples
from adasr_av.types import AudioChunk, TextChunk, Word

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


@dataclass(frozen=True)
class StreamingASROptions:
    min_step_seconds: float = 1.0  # new audio gathered before each Whisper step
    first_step_seconds: float = 2.0  # Whisper guesses wildly on a shorter buffer, and both guesses agree
    trim_seconds: float = 15.0  # beyond this, cut the buffer at a committed sentence or segment end
    max_buffer_seconds: float = 30.0  # Whisper's window: the buffer never grows past it
    prompt_chars: int = 200  # committed text before the buffer, given to Whisper as its prompt
    pause_seconds: float = 0.8  # a silence this long between words ends a chunk
    max_chunk_seconds: float = 10.0  # a chunk never spans more than this
    max_gap_seconds: float = 2.0  # a longer hole in the input (a reconnect) restarts the buffer
    computation_aware: bool = True


@dataclass
class ASRStats:
    """Filled in while a stream is transcribed: how far the ASR fell behind, and its cost."""

    steps: int = 0
    compute_s: float = 0.0
    audio_s: float = 0.0
    max_lag_s: float = 0.0  # longest wait between audio arriving and a step that includes it ending
    lags_s: list[float] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


class OnlineASR:
    """A rolling buffer of audio, re-transcribed on every step; commits what two steps agree on."""

    def __init__(self, backend: WhisperBackend, options: StreamingASROptions = StreamingASROptions()):
        self.backend, self.options = backend, options
        self.audio = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0  # stream time of audio[0]
        self.hypothesis = HypothesisBuffer()
        self.committed: list[Word] = []
        self.unprocessed_s = 0.0
        self._started = False

    @property
    def buffer_end(self) -> float:
        return self.buffer_start + samples_to_seconds(len(self.audio))

    def insert_audio(self, chunk: AudioChunk) -> list[Word]:
        """Append a chunk; a long hole before it (a reconnect) flushes and restarts the buffer,
        a short one is filled with silence. Returns words that a restart committed."""
        flushed: list[Word] = []
        if not self._started:
            self.buffer_start, self._started = chunk.t_start, True
        gap = chunk.t_start - self.buffer_end
        if gap > self.options.max_gap_seconds:
            flushed = self.finish()
            self.audio, self.buffer_start = np.zeros(0, dtype=np.float32), chunk.t_start
            self.hypothesis.forget_before(chunk.t_start)
        elif gap > 1 / SAMPLE_RATE:
            self.audio = np.concatenate([self.audio, np.zeros(seconds_to_samples(gap), dtype=np.float32)])
        self.audio = np.concatenate([self.audio, chunk.samples])
        self.unprocessed_s += chunk.t_end - chunk.t_start
        return flushed

    def process_iter(self) -> list[Word]:
        """Transcribe the buffer; return the newly committed words (stream time)."""
        transcript = self.backend.transcribe(self.audio, self._prompt())
        offset = self.buffer_start
        words = [Word(w.text, w.t_start + offset, w.t_end + offset, w.probability) for w in transcript.words]
        new = self.hypothesis.insert(words)
        self.committed += new
        self.unprocessed_s = 0.0
        self._trim([end + offset for end in transcript.segment_ends])
        return new

    def finish(self) -> list[Word]:
        """The stream ended: commit the words heard but not yet agreed on."""
        tail = self.hypothesis.pending()
        self.hypothesis.previous = []
        if tail:
            self.hypothesis.committed += tail
            self.hypothesis.last_committed_end = tail[-1].t_end
        self.committed += tail
        return tail

    def _prompt(self) -> str:
        before = [w.text for w in self.committed if w.t_end <= self.buffer_start]
        return "".join(before)[-self.options.prompt_chars :].strip()

    def _trim(self, segment_ends: list[float]) -> None:
        """Keep the buffer short: cut at the last committed sentence or segment end once it is
        longer than `trim_seconds`, and at the last committed word if it would pass the maximum."""
        if not self.hypothesis.committed:
            if self.buffer_end - self.buffer_start > self.options.max_buffer_seconds:
                self._cut(self.buffer_end - self.options.max_buffer_seconds)
            return
        last = self.hypothesis.last_committed_end
        if self.buffer_end - self.buffer_start > self.options.trim_seconds:
            sentence_ends = [
                w.t_end for w in self.hypothesis.committed if _SENTENCE_END.search(w.text.strip())
            ]
            cuts = [t for t in (*segment_ends, *sentence_ends) if self.buffer_start < t <= last]
            if cuts:
                self._cut(max(cuts))
        if (
            self.buffer_end - self.buffer_start
            > self.options.max_buffer_seconds - self.options.min_step_seconds
        ):
            self._cut(
                max(last, self.buffer_end - self.options.max_buffer_seconds + self.options.min_step_seconds)
            )

    def _cut(self, t: float) -> None:
        drop = min(len(self.audio), seconds_to_samples(t - self.buffer_start))
        self.audio = self.audio[drop:]
        self.buffer_start += samples_to_seconds(drop)
        self.hypothesis.forget_before(self.buffer_start)


class ChunkGrouper:
    """Groups committed words into chunks at sentence ends, pauses, or a maximum duration."""

    def __init__(self, options: StreamingASROptions = StreamingASROptions()):
        self.options = options
        self.words: list[Word] = []

    def add(self, words: list[Word], t_commit: float) -> list[TextChunk]:
        chunks = []
        for word in words:
            if self.words and (
                word.t_start - self.words[-1].t_end >= self.options.pause_seconds
                or word.t_end - self.words[0].t_start > self.options.max_chunk_seconds
            ):
                chunks.append(self._emit(t_commit))
            self.words.append(word)
            if _SENTENCE_END.search(word.text.strip()):
                chunks.append(self._emit(t_commit))
        return chunks

    def flush(self, t_commit: float) -> list[TextChunk]:
        return [self._emit(t_commit)] if self.words else []

    def _emit(self, t_commit: float) -> TextChunk:
        words, self.words = tuple(self.words), []
        text = "".join(w.text for w in words).strip()
        return TextChunk(
            text, words[0].t_start, words[-1].t_end, max(t_commit, words[-1].t_end), "asr", words
        )


def transcribe_stream(
    audio: Iterable[AudioChunk],
    backend: WhisperBackend,
    options: StreamingASROptions = StreamingASROptions(),
    stats: ASRStats | None = None,
) -> Iterator[TextChunk]:
    """Text chunks committed while `audio` streams in, then the flushed tail (see module doc)."""
    stats = stats if stats is not None else ASRStats()
    asr, grouper = OnlineASR(backend, options), ChunkGrouper(options)
    busy_until, arrived_at = 0.0, 0.0

    def commit(words: list[Word], t_commit: float) -> list[TextChunk]:
        return grouper.add([replace(w, t_commit=t_commit) for w in words], t_commit)

    def step(t_arrival: float, t_oldest: float) -> list[TextChunk]:
        nonlocal busy_until
        t0 = time.perf_counter()
        words = asr.process_iter()
        compute = time.perf_counter() - t0
        t_commit = t_arrival + compute if options.computation_aware else t_arrival
        busy_until = t_commit
        stats.steps += 1
        stats.compute_s += compute
        stats.lags_s.append(t_commit - t_arrival)
        stats.max_lag_s = max(stats.max_lag_s, t_commit - t_oldest)
        return commit(words, t_commit)

    oldest_waiting: float | None = None  # arrival of the oldest audio no step has included yet
    for chunk in audio:
        stats.audio_s += chunk.t_end - chunk.t_start
        arrived_at = max(arrived_at, chunk.t_end)
        if oldest_waiting is None:
            oldest_waiting = chunk.t_end
        flushed = asr.insert_audio(chunk)
        if flushed:
            t_flush = max(arrived_at, busy_until)
            yield from commit(flushed, t_flush)
            yield from grouper.flush(t_flush)
        ready = max(options.min_step_seconds, options.first_step_seconds if stats.steps == 0 else 0.0)
        if asr.unprocessed_s >= ready and chunk.t_end >= busy_until:
            yield from step(chunk.t_end, oldest_waiting)
            oldest_waiting = None
    if asr.unprocessed_s > 0:
        t_last = max(arrived_at, busy_until)
        yield from step(t_last, oldest_waiting if oldest_waiting is not None else t_last)
    t_end = max(arrived_at, busy_until)
    yield from commit(asr.finish(), t_end)
    yield from grouper.flush(t_end)
