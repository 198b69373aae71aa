"""Which sampled frames are worth reading: a cheap change test before any OCR or captioning.

A slide, a whiteboard or a static camera shows the same picture for many frames; reading each
would cost an OCR pass (about a second at 720p on one core) for nothing. Each frame is reduced
to a small grey thumbnail (block means of 20 x 20 pixels at 720p); a frame in which no block
differs from the last kept frame's by more than `threshold` (grey levels, 0-255) is a
near-duplicate and is dropped. The largest block, not the mean: one new short line of text moves
a few blocks by tens of levels and the mean over the frame by about one, as much as noise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from adasr_av.errors import AdasrError, first_line
from adasr_av.types import VideoFrame

log = logging.getLogger(__name__)
T = TypeVar("T")

THUMBNAIL = (36, 64)  # rows, columns: enough to see a new line of text, cheap to compare


@dataclass(frozen=True)
class FrameChangeOptions:
    threshold: float = 8.0  # grey levels a thumbnail block must move by for the frame to count as new

    def __post_init__(self):
        if not 0 <= self.threshold <= 255:
            raise AdasrError(f"video.change_threshold must be within 0..255, got {self.threshold}")


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A float grey thumbnail of an RGB frame: block means over a THUMBNAIL grid."""
    grey = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    rows, cols = THUMBNAIL
    h, w = grey.shape
    if h < rows or w < cols:  # tiny frames: compare them whole
        return grey
    grey = grey[: h - h % rows, : w - w % cols]
    return grey.reshape(rows, grey.shape[0] // rows, cols, grey.shape[1] // cols).mean(axis=(1, 3))


def frame_change(a: np.ndarray, b: np.ndarray) -> float:
    """Largest block difference of two thumbnails (inf when their shapes differ: a new picture)."""
    return float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")


def changed_frames(
    frames: Iterable[VideoFrame], options: FrameChangeOptions = FrameChangeOptions()
) -> Iterator[tuple[VideoFrame, bool]]:
    """Each frame with whether it changed from the last changed one (the first frame always has)."""
    last = None
    for frame in frames:
        small = thumbnail(frame.image)
        changed = last is None or frame_change(small, last) > options.threshold
        if changed:
            last = small
        yield frame, changed


@dataclass
class FrameStats:
    """What a frame encoder did with a stream: for `run`'s summary line and the benchmarks."""

    frames: int = 0  # sampled frames seen
    reads: int = 0  # frames read (OCR or captioned)
    read_s: float = 0.0  # compute spent reading them
    busy: int = 0  # changed frames dropped because a read was still running (computation-aware)
    bad: int = 0  # frames the reader failed on, skipped with a warning


def read_when_free(
    frames: Iterable[VideoFrame],
    read: Callable[[np.ndarray], T],
    change: FrameChangeOptions,
    computation_aware: bool,
    stats: FrameStats,
) -> Iterator[tuple[VideoFrame, T | None, float]]:
    """Each frame with what `read` made of it and the stream time that result is ready.

    A changed frame is read (the result is ready its compute after the frame on a
    computation-aware clock, at once otherwise); an unchanged one comes with None. A changed frame
    that arrives while an earlier read still runs on that clock is never read nor yielded; a frame
    the reader fails on is skipped with a warning naming its time, and the stream goes on.
    """
    busy_until = float("-inf")
    for frame, changed in changed_frames(frames, change):
        stats.frames += 1
        if not changed:
            yield frame, None, frame.t
            continue
        if computation_aware and frame.t < busy_until:
            stats.busy += 1
            continue
        started = time.perf_counter()
        try:
            result = read(frame.image)
        except Exception as err:  # noqa: BLE001 - one bad frame must not end the stream
            stats.bad += 1
            log.warning("frame at %.2fs skipped: %s", frame.t, first_line(err))
            continue
        spent = time.perf_counter() - started
        stats.reads, stats.read_s = stats.reads + 1, stats.read_s + spent
        ready = frame.t + spent if computation_aware else frame.t
        busy_until = ready
        yield frame, result, ready
