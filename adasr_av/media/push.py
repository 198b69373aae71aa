"""Audio handed over block by block by someone else (the demo's browser microphone), as an
iterator of 16 kHz mono AudioChunks: `push` blocks as they come, `close` when the recording stops.

Blocks may be float (-1..1) or integer PCM, mono or [n, channels], at any rate (fixed by the first
block). Stream time counts the samples pushed, as for the local microphone.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import numpy as np

from adasr_av.errors import AdasrError
from adasr_av.media.microphone import chunks_from_blocks
from adasr_av.types import AudioChunk

_END = None


class PushedAudio:
    def __init__(self, chunk_seconds: float = 0.1):
        self.chunk_seconds = chunk_seconds
        self.sample_rate: int | None = None
        self._blocks: queue.Queue = queue.Queue()
        self._closed = False

    def push(self, block: np.ndarray, sample_rate: int) -> None:
        if self._closed:
            raise AdasrError("audio stream already closed")
        if self.sample_rate is None:
            self.sample_rate = int(sample_rate)
        elif int(sample_rate) != self.sample_rate:
            raise AdasrError(f"audio changed rate mid-stream: {sample_rate} Hz after {self.sample_rate} Hz")
        self._blocks.put(as_float(np.asarray(block)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._blocks.put(_END)

    def __iter__(self) -> Iterator[AudioChunk]:
        first = self._blocks.get()
        if first is _END:
            return iter(())
        return chunks_from_blocks(self._rest(first), self.sample_rate, self.chunk_seconds)

    def _rest(self, first: np.ndarray) -> Iterator[np.ndarray]:
        yield first
        while (block := self._blocks.get()) is not _END:
            yield block


def as_float(block: np.ndarray) -> np.ndarray:
    """PCM samples as float32 in -1..1 (integer formats are scaled by their full range)."""
    if np.issubdtype(block.dtype, np.integer):
        return block.astype(np.float32) / float(np.iinfo(block.dtype).max + 1)
    return block.astype(np.float32, copy=False)
