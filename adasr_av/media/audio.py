"""Audio constants with their units: every source delivers 16 kHz mono float32 in [-1, 1]."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000  # Hz: what Whisper models take
CHUNK_SECONDS = 0.1  # length of the AudioChunks sources yield (a live source may yield shorter ones)
CHUNK_SAMPLES = int(SAMPLE_RATE * CHUNK_SECONDS)


def seconds_to_samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def samples_to_seconds(n_samples: int) -> float:
    return n_samples / SAMPLE_RATE


def as_mono_float32(samples: np.ndarray) -> np.ndarray:
    """[n] or [n, channels] (or [channels, n] planar) audio of any numeric type -> float32 [n]."""
    array = np.asarray(samples)
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    array = array.astype(np.float32, copy=False)
    if array.ndim == 2:
        channel_axis = 0 if array.shape[0] < array.shape[1] else 1
        array = array.mean(axis=channel_axis)
    return np.ascontiguousarray(array)
