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

State stays bounded however long the stream: `OnlineASR` keeps the words of its buffer (at most
`max_buffer_seconds` of audio) and the last `prompt_chars` of the text before it; the words it
commits go out as `TextChunk`s, which are the transcript. `ASRStats` holds running aggregates.
"""

from __future__ import annotations

import math
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
LAG_BIN_S = 0.01  # width of a `LagHistogram` bin: its quantiles are within half of it (5 ms)
LAG_RANGE_S = 60.0  # lags past this share the histogram's last bin


@dataclass(frozen=True)
class StreamingASROptions:
    min_step_seconds: float = 1.0  # new audio gathered before each Whisper step
    # Whisper guesses wildly on a shorter buffer, and the first two guesses agree, since the second
    # buffer holds the first; LocalAgreement then commits the guess. At 2 s (and 3 s for the second)
    # tiny.en heard the test story's opening "A baker makes forty" as "make a make 40" both times.
    first_step_seconds: float = 3.0
    trim_seconds: float = 15.0  # beyond this, cut the buffer at a committed sentence or segment end
    max_buffer_seconds: float = 30.0  # Whisper's window: the buffer never grows past it
    prompt_chars: int = 200  # committed text before the buffer, given to Whisper as its prompt
    pause_seconds: float = 0.8  # a silence this long between words ends a chunk
    max_chunk_seconds: float = 10.0  # a chunk never spans more than this
    max_gap_seconds: float = 2.0  # a longer hole in the input (a reconnect) restarts the buffer
    computation_aware: bool = True


@dataclass
class LagHistogram:
    """Count, mean, max and quantiles of lags in fixed memory, so that an hour-long stream costs
    what a minute does: a histogram of `LAG_BIN_S`-wide bins from 0 to `LAG_RANGE_S` (lags past it
    share the last bin), not a list of every lag.

    `quantile(q)` is numpy's default (linear) quantile with each order statistic read as its bin's
    midpoint, clamped to the smallest and largest lag seen: within `LAG_BIN_S / 2` of
    `numpy.quantile(lags, q)` for lags below `LAG_RANGE_S`. Count, mean, min and max (q = 0 and 1)
    are exact.
    """

    counts: np.ndarray = field(
        default_factory=lambda: np.zeros(round(LAG_RANGE_S / LAG_BIN_S), dtype=np.int64), repr=False
    )
    count: int = 0
    total_s: float = 0.0
    min_s: float = math.inf
    max_s: float = 0.0

    def add(self, lag_s: float) -> None:
        self.counts[min(max(int(lag_s / LAG_BIN_S), 0), len(self.counts) - 1)] += 1
        self.count += 1
        self.total_s += lag_s
        self.min_s, self.max_s = min(self.min_s, lag_s), max(self.max_s, lag_s)

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The lag below which a fraction `q` (0 to 1) of the lags lie; 0 when there are none."""
        if not self.count:
            return 0.0
        rank = q * (self.count - 1)
        lo, hi = self._order_statistic(math.floor(rank)), self._order_statistic(math.ceil(rank))
        return lo + (hi - lo) * (rank - math.floor(rank))

    def _order_statistic(self, k: int) -> float:
        """The k-th smallest lag (from 0), as its bin's midpoint clamped to the lags seen."""
        if k in (0, self.count - 1):
            return self.min_s if k == 0 else self.max_s
        i = int(np.searchsorted(np.cumsum(self.counts), k, side="right"))
        return min(max((i + 0.5) * LAG_BIN_S, self.min_s), self.max_s)


@dataclass
class ASRStats:
    """Filled in while a stream is transcribed: how far the ASR fell behind, and its cost."""

    steps: int = 0
    compute_s: float = 0.0
    audio_s: float = 0.0
    max_lag_s: float = 0.0  # longest wait between audio arriving and a step that includes it ending
    # per step: its text's emit time minus the arrival of its last audio (its compute, when aware)
    lags_s: LagHistogram = field(default_factory=LagHistogram)

    @property
    def real_time_factor(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


class OnlineASR:
    """A rolling buffer of audio, re-transcribed on every step; commits what two steps agree on."""

    def __init__(self, backend: WhisperBackend, options: StreamingASROptions = StreamingASROptions()):
        self.backend, self.options = backend, options
        self.audio = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0  # stream time of audio[0]
        self.hypothesis = HypothesisBuffer()  # also holds the committed words still in the buffer
        self.text_before = ""  # the last `prompt_chars` of committed text that has left the buffer
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
            self._forget_before(chunk.t_start)
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
        self.unprocessed_s = 0.0
        self._trim([end + offset for end in transcript.segment_ends])
        return new

    def finish(self) -> list[Word]:
        """The stream ended: commit the words heard but not yet agreed on."""
        return self.hypothesis.flush()

    def _prompt(self) -> str:
        """The last `prompt_chars` of committed text before the buffer: the text that left it, then
        any committed word still in the buffer that ends at its very start (a zero-length word)."""
        edge = "".join(w.text for w in self.hypothesis.committed if w.t_end <= self.buffer_start)
        return _last_chars(self.text_before + edge, self.options.prompt_chars).strip()

    def _forget_before(self, t: float) -> None:
        """Committed words before `t` leave the buffer; of their text, only what a prompt needs stays."""
        gone = "".join(w.text for w in self.hypothesis.forget_before(t))
        self.text_before = _last_chars(self.text_before + gone, self.options.prompt_chars)

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
        self._forget_before(self.buffer_start)


def _last_chars(text: str, n: int) -> str:
    return text[max(len(text) - n, 0) :]  # not text[-n:], which is all of it when n is 0


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
        stats.lags_s.add(t_commit - t_arrival)
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
