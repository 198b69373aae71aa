"""What the streaming ASR can be told, and what each of its steps costs.

Two commit policies share these options: `vad` (the default: Silero VAD bounds each buffer to an
utterance, words are committed by LocalAgreement while it lasts and all at once at its pause) and
`rolling` (whisper_streaming's policy: one buffer re-decoded whole every step, cut at committed
sentences once it is long; kept as the baseline, `StreamingASROptions.rolling()`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from adasr_av.encoders.vad import VADOptions
from adasr_av.encoders.whisper_backends import Decoding, Encoded, WhisperBackend
from adasr_av.errors import AdasrError
from adasr_av.types import Word

POLICIES = ("vad", "rolling")


@dataclass(frozen=True)
class StreamingASROptions:
    policy: str = "vad"
    min_step_seconds: float = 1.0  # new audio gathered before each decode of an unfinished buffer
    # rolling: Whisper guesses wildly on a shorter buffer, and the first two guesses agree, since the
    # second buffer holds the first; at 2 s tiny.en heard "A baker makes forty" as "make a make 40".
    first_step_seconds: float = 3.0
    trim_seconds: float = 10.0  # beyond this, cut the buffer at a committed sentence or word
    max_buffer_seconds: float = 30.0  # Whisper's window: the buffer never grows past it
    # Encoder window: the buffer, then silence up to this. tiny.en on a window of 3 s or less looped
    # on whole sentences ("There are 18 passengers on the green bus." four times) in 5 to 7 of 39
    # story sentences; decoded one by one, 73 story sentences had WER 0.68 at 5 s, 0.27 at 10 s.
    min_window_seconds: float = 10.0
    context_seconds: float = 8.0  # vad: audio of the utterances before, decoded as context
    prompt_chars: int = 200  # committed text before the buffer, given to Whisper as its prompt
    # A silence this long between words ends a chunk: the VAD's pause, so a chunk ends where the
    # speaker paused even when Whisper wrote no full stop there.
    pause_seconds: float = 0.5
    max_chunk_seconds: float = 10.0  # a chunk never spans more than this
    max_gap_seconds: float = 2.0  # a longer hole in the input (a reconnect) restarts the buffer
    # A decode step that raises loses the speech it held (logged, counted in ASRStats) and the
    # stream goes on; this many failed steps in a row (a broken model) end it with the error.
    max_failed_steps: int = 3
    computation_aware: bool = True
    # gates against invented text (Whisper's own defaults): a decode that is probably not speech,
    # or whose text compresses like a loop, is heard as nothing
    no_speech_threshold: float = 0.6  # ... with an average log-prob below `logprob_threshold`
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    tokens_per_second: float = 8.0  # new tokens a decode may write per second of unconfirmed audio
    vad: VADOptions = field(default_factory=VADOptions)

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise AdasrError(f"ASR policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.min_step_seconds <= 0:
            raise AdasrError("--step must be positive")
        if not 0 < self.trim_seconds <= self.max_buffer_seconds <= 30:
            raise AdasrError("trim_seconds must be positive and at most max_buffer_seconds (at most 30)")
        if self.min_window_seconds < 0 or self.prompt_chars < 0:
            raise AdasrError("min_window_seconds and prompt_chars must be at least 0")
        if self.max_failed_steps < 1:
            raise AdasrError(f"max_failed_steps must be at least 1, got {self.max_failed_steps}")

    @classmethod
    def rolling(cls, **changes) -> StreamingASROptions:
        """The rolling-buffer baseline as it ran before the VAD policy (whisper_streaming's)."""
        return replace(cls(policy="rolling", trim_seconds=15.0, min_window_seconds=10.0), **changes)


@dataclass
class ASRCosts:
    """Where the compute of a stream went, in seconds, and how much audio the encoder saw."""

    vad_s: float = 0.0
    encode_s: float = 0.0
    decode_s: float = 0.0
    align_s: float = 0.0
    encodes: int = 0
    encoded_audio_s: float = 0.0  # buffer audio given to the encoder, summed over encodes
    decoded_tokens: int = 0
    gated: int = 0  # decodes heard as nothing by a gate (no speech, or a loop)

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


class Metered:
    """A backend whose encode, decode and align calls add their time to `costs`."""

    def __init__(self, backend: WhisperBackend, costs: ASRCosts):
        self.backend, self.costs = backend, costs

    def encode(self, audio: np.ndarray, min_window_s: float) -> Encoded:
        t0 = time.perf_counter()
        encoded = self.backend.encode(audio, min_window_s)
        self.costs.encode_s += time.perf_counter() - t0
        self.costs.encodes += 1
        self.costs.encoded_audio_s += encoded.seconds
        return encoded

    def decode(self, encoded: Encoded, prompt: str, prefix: str, max_new_tokens: int) -> Decoding:
        t0 = time.perf_counter()
        decoding = self.backend.decode(encoded, prompt, prefix, max_new_tokens)
        self.costs.decode_s += time.perf_counter() - t0
        self.costs.decoded_tokens += sum(len(t) for t in decoding.tokens[decoding.prefix_words :])
        return decoding

    def align(self, encoded: Encoded, decoding: Decoding) -> list[Word]:
        t0 = time.perf_counter()
        words = self.backend.align(encoded, decoding)
        self.costs.align_s += time.perf_counter() - t0
        return words
