"""Mono audio through FFmpeg's resampler (PyAV): rate, sample format and encoder frame size in one pass."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

_FORMATS = {np.dtype(np.int16): "s16", np.dtype(np.float32): "flt"}


def resample_frames(
    samples: np.ndarray, rate: int, to_rate: int, to_format: str = "flt", frame_size: int | None = None
) -> Iterator[av.AudioFrame]:
    """Mono int16 or float32 `samples` at `rate` -> mono frames at `to_rate`, with running pts.

    `frame_size` cuts the output into the fixed-size frames an encoder such as AAC insists on; the
    resampler is flushed, so no tail is lost.
    """
    samples = np.ascontiguousarray(samples)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format=_FORMATS[samples.dtype], layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    resampler = av.AudioResampler(format=to_format, layout="mono", rate=to_rate, frame_size=frame_size)
    position = 0
    for out in [*resampler.resample(frame), *resampler.resample(None)]:
        out.pts = position
        out.time_base = Fraction(1, to_rate)
        position += out.samples
        yield out


def resample(samples: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """Mono int16 or float32 `samples` at `rate` -> float32 at `to_rate` (int16 scaled to [-1, 1))."""
    if samples.size == 0:
        return np.zeros(0, dtype=np.float32)
    frames = [f.to_ndarray().reshape(-1) for f in resample_frames(samples, rate, to_rate)]
    return np.concatenate(frames).astype(np.float32, copy=False)
