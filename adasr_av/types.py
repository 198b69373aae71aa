"""Records passed between pipeline stages. All times are stream seconds from the stream's start."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

EventType = Literal["chunk", "context", "think", "skip", "deep", "answer", "summary"]
ChunkSource = Literal["asr", "ocr", "caption", "text"]


@dataclass(frozen=True)
class AudioChunk:
    """16 kHz mono float32 samples covering [t_start, t_end)."""

    samples: np.ndarray
    t_start: float
    t_end: float


@dataclass(frozen=True)
class VideoFrame:
    """One RGB frame (uint8 [h, w, 3]) shown at stream time t."""

    image: np.ndarray
    t: float


Record = AudioChunk | VideoFrame  # what a source yields, in time order


def record_time(record: Record) -> float:
    """When a record is complete on the stream's clock: an audio chunk's end, a frame's moment."""
    return record.t_end if isinstance(record, AudioChunk) else record.t


@dataclass(frozen=True)
class Word:
    """One recognised word spoken over [t_start, t_end] and committed at t_commit (stream time);
    `text` keeps its leading space."""

    text: str
    t_start: float
    t_end: float
    probability: float = 1.0
    t_commit: float | None = None


@dataclass(frozen=True)
class TextChunk:
    """Text covering media span [t_start, t_end], committed by the encoder at t_emit >= t_end.

    `words` carries word timings when the encoder has them (ASR)."""

    text: str
    t_start: float
    t_end: float
    t_emit: float
    source: ChunkSource = "text"
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Event:
    """What the reasoner reports; one JSON object per line when serialised.

    t_avail: when its input was available; t_begin/t_done: when work on it began and ended.
    `info` holds type-specific fields (summary figures, flags such as `capped`).
    """

    type: EventType
    text: str
    chunk_index: int | None
    tokens: int
    t_avail: float
    t_begin: float
    t_done: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        info = record.pop("info")
        for key in ("t_avail", "t_begin", "t_done"):
            record[key] = round(record[key], 4)
        return record | info

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Event:
        """The inverse of `to_dict` (an events JSONL line back into an Event)."""
        names = ("type", "text", "chunk_index", "tokens", "t_avail", "t_begin", "t_done")
        return cls(*(record[n] for n in names), {k: v for k, v in record.items() if k not in names})
