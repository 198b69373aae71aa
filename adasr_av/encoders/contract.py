"""What an encoder is, and how several encoders' chunks become the one stream the reasoner reads.

An encoder is a callable from the stream records it takes (`takes`: audio chunks or video
frames) to the `TextChunk`s it commits, each stamped with its `source` and in order of `t_emit`.
The streaming ASR is one (`ASREncoder`), the OCR encoder another (`ocr.OCREncoder`). The chunks of
all of them are merged by arrival: `t_emit`, and on a tie the encoder listed first.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

from adasr_av.encoders.asr_options import StreamingASROptions
from adasr_av.encoders.streaming_asr import ASRStats, transcribe_stream
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.types import AudioChunk, ChunkSource, TextChunk

Takes = Literal["audio", "video"]


class Encoder(Protocol):
    """`new_stats()` makes the record of one stream's work (ASRStats, FrameStats), which the
    encoder fills as it goes; the run keeps it, so one loaded encoder serves many streams."""

    source: ChunkSource
    takes: Takes

    def new_stats(self) -> Any: ...

    def __call__(self, records: Iterable, stats: Any = None) -> Iterator[TextChunk]: ...


class ASREncoder:
    """The streaming ASR as an encoder: audio chunks in, sentence chunks out (`streaming_asr`)."""

    source = "asr"
    takes = "audio"

    def __init__(self, backend: WhisperBackend, options: StreamingASROptions | None = None):
        self.backend, self.options = backend, options or StreamingASROptions()

    def new_stats(self) -> ASRStats:
        return ASRStats()

    def __call__(self, records: Iterable[AudioChunk], stats: ASRStats | None = None) -> Iterator[TextChunk]:
        return transcribe_stream(records, self.backend, self.options, stats)


def merge_by_arrival(streams: Sequence[Iterable[TextChunk]]) -> Iterator[TextChunk]:
    """Chunks of several encoders, each stream already in `t_emit` order, as one stream in order of
    `t_emit`; equal times keep the order of `streams` (stable), then each stream's own order."""
    return heapq.merge(*streams, key=lambda chunk: chunk.t_emit)
