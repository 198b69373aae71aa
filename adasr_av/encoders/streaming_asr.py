"""Streaming Whisper: audio in stream time to committed words to sentence `TextChunk`s.

`transcribe_stream` runs a commit policy (`online_asr.OnlineASR`, the default VAD policy, or
`rolling_asr.RollingASR`, the rolling-buffer baseline) over an iterator of `AudioChunk`s:

- a decode runs when the policy says one is due (a pause ended an utterance, or enough new audio
  came); audio that arrives while a step runs waits for the next step (coalescing), so a slow model
  falls behind by at most one step instead of building a backlog;
- computation-aware (default): a step started when its last audio arrived and took the measured
  compute time, so `t_emit` = arrival + compute; computation-unaware: stream time stops while
  the model runs and `t_emit` is when the last audio of the step arrived;
- a step whose decode raises loses the speech the policy held (from its oldest uncommitted audio to
  the audio taken): a warning names the span, `ASRStats` counts it, and the stream goes on;
  `max_failed_steps` failures in a row (a broken model) end it with the error.

`ChunkGrouper` makes the reasoner's chunks: a chunk ends at a committed word that ends a sentence,
at a pause of `pause_seconds` between words (or after the last word, once the VAD has heard that
much silence: the chunk goes out then, without waiting for the next word), or at
`max_chunk_seconds`. `ASRStats` holds running aggregates in fixed memory.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from adasr_av.encoders.asr_options import POLICIES, ASRCosts, StreamingASROptions
from adasr_av.encoders.local_agreement import ends_sentence
from adasr_av.encoders.online_asr import OnlineASR
from adasr_av.encoders.rolling_asr import RollingASR
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.errors import first_line
from adasr_av.types import AudioChunk, TextChunk, Word

__all__ = ["POLICIES", "ASRStats", "ChunkGrouper", "StreamingASROptions", "make_policy", "transcribe_stream"]

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = StreamingASROptions()
LAG_BIN_S = 0.01  # width of a `LagHistogram` bin: its quantiles are within half of it (5 ms)
LAG_RANGE_S = 60.0  # lags past this share the histogram's last bin


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
    costs: ASRCosts = field(default_factory=ASRCosts)  # where the compute went
    failed_steps: int = 0  # steps whose decode raised: their speech was lost
    lost_s: float = 0.0  # stream seconds of speech those steps held

    @property
    def real_time_factor(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


def make_policy(backend: WhisperBackend, options: StreamingASROptions, costs: ASRCosts):
    """The commit policy `options.policy` names."""
    return (OnlineASR if options.policy == "vad" else RollingASR)(backend, options, costs)


class ChunkGrouper:
    """Groups committed words into chunks at sentence ends, pauses, or a maximum duration."""

    def __init__(self, options: StreamingASROptions = DEFAULT_OPTIONS):
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
            if ends_sentence(word.text):
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
    options: StreamingASROptions = DEFAULT_OPTIONS,
    stats: ASRStats | None = None,
) -> Iterator[TextChunk]:
    """Text chunks committed while `audio` streams in, then the flushed tail (see module doc)."""
    stats = stats if stats is not None else ASRStats()
    asr, grouper = make_policy(backend, options, stats.costs), ChunkGrouper(options)
    busy_until, arrived_at, failed_in_a_row = 0.0, 0.0, 0

    def commit(words: list[Word], t_commit: float) -> list[TextChunk]:
        return grouper.add([replace(w, t_commit=t_commit) for w in words], t_commit)

    def guarded(run) -> list[Word]:
        """`run()`'s words; if it raises, the speech the policy held is lost and reported, and the
        error is raised only once `max_failed_steps` steps in a row have failed."""
        nonlocal failed_in_a_row
        encodes = stats.costs.encodes
        try:
            words = run()
        except Exception as err:
            failed_in_a_row += 1
            if failed_in_a_row >= options.max_failed_steps:
                raise
            start, end = asr.drop() or (arrived_at, arrived_at)
            stats.failed_steps += 1
            stats.lost_s += end - start
            log.warning(
                "ASR step failed (%s: %s): speech from %.2f s to %.2f s lost (%.2f s); going on",
                type(err).__name__, first_line(err), start, end, end - start,
            )  # fmt: skip
            log.debug("the failed ASR step", exc_info=True)
            return []
        if stats.costs.encodes > encodes:  # the model worked: the failures were not in a row
            failed_in_a_row = 0
        return words

    def step(run, t_arrival: float, t_oldest: float) -> list[TextChunk]:
        """Run `run` (a decode step, or the end of the stream) as a step on the stream clock."""
        nonlocal busy_until
        t0 = time.perf_counter()
        words = guarded(run)
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
        if stats.audio_s and chunk.t_start - arrived_at > options.max_gap_seconds:
            # a hole in the input (a reconnect): what came before is finished, as at the end
            t_gap = max(arrived_at, busy_until)
            yield from step(asr.finish, t_gap, oldest_waiting if oldest_waiting is not None else t_gap)
            yield from grouper.flush(busy_until)
            asr.restart(chunk.t_start)
            oldest_waiting = None
        stats.audio_s += chunk.t_end - chunk.t_start
        arrived_at = max(arrived_at, chunk.t_end)
        if oldest_waiting is None:
            oldest_waiting = chunk.t_end
        t0 = time.perf_counter()
        asr.insert_audio(chunk)
        stats.compute_s += time.perf_counter() - t0  # the VAD's share
        if asr.ready() and chunk.t_end >= busy_until:
            yield from step(asr.process_iter, chunk.t_end, oldest_waiting)
            oldest_waiting = None
        if grouper.words and asr.quiet() and chunk.t_end - grouper.words[-1].t_end >= options.pause_seconds:
            yield from grouper.flush(max(chunk.t_end, busy_until))  # the pause is heard: the chunk is out
    t_last = max(arrived_at, busy_until)
    yield from step(asr.finish, t_last, oldest_waiting if oldest_waiting is not None else t_last)
    yield from grouper.flush(busy_until)
