"""Audio constants with their units, and the one path from decoded frames to 16 kHz mono chunks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import av
import numpy as np

from adasr_av.types import AudioChunk

SAMPLE_RATE = 16_000  # Hz: what Whisper models take
CHUNK_SECONDS = 0.1  # length of the AudioChunks sources yield (a live source may yield shorter ones)
CHUNK_SAMPLES = int(SAMPLE_RATE * CHUNK_SECONDS)


def seconds_to_samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def samples_to_seconds(n_samples: int) -> float:
    return n_samples / SAMPLE_RATE


def to_16k_mono() -> av.AudioResampler:
    """A resampler from any rate, layout and sample format to 16 kHz mono float32 (packed).

    rematrix_maxval=1 scales the downmix so it stays in [-1, 1]: FFmpeg's default stereo -> mono
    adds the channels at -3 dB each, which makes identical full-scale channels clip at 1.41.
    """
    return av.AudioResampler(
        format="flt", layout="mono", rate=SAMPLE_RATE, options={"rematrix_maxval": "1.0"}
    )


class Chunker:
    """Cuts a stream of 16 kHz samples into AudioChunks of `chunk_samples` (the last may be shorter).

    Times count samples from `t_start` instead of reading packet timestamps, so chunks are contiguous
    (one chunk's t_end is the next one's t_start, exactly) whatever the container's timestamps do.
    """

    def __init__(self, chunk_samples: int = CHUNK_SAMPLES, t_start: float = 0.0):
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        self.chunk_samples = chunk_samples
        self.t_start = t_start
        self._emitted = 0  # samples already handed out in chunks
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    @property
    def t_end(self) -> float:
        """Stream time at the end of every sample pushed so far."""
        return self._time(self._emitted + self._n_pending)

    def push(self, samples: np.ndarray) -> list[AudioChunk]:
        """Add samples; returns the chunks they complete."""
        if len(samples):
            self._pending.append(samples)
            self._n_pending += len(samples)
        if self._n_pending < self.chunk_samples:
            return []
        buffer = np.concatenate(self._pending)
        n_full = len(buffer) // self.chunk_samples * self.chunk_samples
        chunks = [
            self._chunk(buffer[i : i + self.chunk_samples]) for i in range(0, n_full, self.chunk_samples)
        ]
        rest = buffer[n_full:]
        self._pending, self._n_pending = ([rest] if len(rest) else []), len(rest)
        return chunks

    def flush(self) -> list[AudioChunk]:
        """The shorter last chunk, if any samples are left."""
        if not self._n_pending:
            return []
        chunk = self._chunk(np.concatenate(self._pending))
        self._pending, self._n_pending = [], 0
        return [chunk]

    def _chunk(self, samples: np.ndarray) -> AudioChunk:
        start = self._time(self._emitted)
        self._emitted += len(samples)
        return AudioChunk(np.ascontiguousarray(samples, dtype=np.float32), start, self._time(self._emitted))

    def _time(self, n_samples: int) -> float:
        return self.t_start + samples_to_seconds(n_samples)


def audio_chunks(
    frames: Iterable[av.AudioFrame],
    chunk_samples: int = CHUNK_SAMPLES,
    t_start: float = 0.0,
    skip_samples: int = 0,
) -> Iterator[AudioChunk]:
    """Decoded frames (any rate and layout) -> 16 kHz mono float32 AudioChunks from `t_start`.

    The one decode -> resample -> chunk path that files, RTSP and the microphone share. The first
    `skip_samples` output samples are dropped (a seek lands before the wanted time); the resampler is
    flushed at the end so the stream is not cut short by the samples its filter still holds.
    """
    resampler = to_16k_mono()
    chunker = Chunker(chunk_samples, t_start)
    to_skip = skip_samples

    def take(resampled: list[av.AudioFrame]) -> list[AudioChunk]:
        nonlocal to_skip
        if not resampled:
            return []
        samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in resampled])
        if to_skip:
            dropped = min(to_skip, len(samples))
            samples, to_skip = samples[dropped:], to_skip - dropped
        return chunker.push(samples)

    for frame in frames:
        yield from take(resampler.resample(frame))
    yield from take(resampler.resample(None))
    yield from chunker.flush()
