"""Speech synthesis for the training data: text -> 16 kHz mono float32, via eSpeak NG from PyPI.

eSpeak is robotic but small, fast (~100x real time) and needs no model download or system package,
which is what synthetic stories for ASR-then-reason training need. `PIPER_VOICE` is a neural voice
(Piper, `adasr_av/data/piper.py`) that sounds much closer to a person, at ~6x real time, for
benchmarks and tests of what Whisper hears. `write_audio` is re-exported so that callers building
a dataset import one module.
"""

from __future__ import annotations

import numpy as np

from adasr_av.data import espeak, piper
from adasr_av.data.audio_file import write_audio
from adasr_av.data.resample import resample
from adasr_av.errors import AdasrError
from adasr_av.media.audio import SAMPLE_RATE

__all__ = ["PIPER_VOICE", "VOICES", "synthesize", "write_audio"]

# English voices that load from the bundled data and sound clearly apart (accent, pitch, timbre).
VOICES = (
    "en-us",  # US English, the default male voice (F0 ~100 Hz)
    "en-us+f3",  # US English, female variant (F0 ~210 Hz)
    "en+m7",  # British English, darker male variant
    "en-gb-scotland+f4",  # Scottish English, lower female variant
)
PIPER_VOICE = piper.JOE  # Piper's en_US-joe-medium: a US English male voice


def synthesize(
    text: str, voice: str = "en-us", words_per_minute: int = 160, pitch: int | None = None
) -> np.ndarray:
    """Speak `text`; returns float32 mono samples at 16 kHz in [-1, 1].

    `words_per_minute` is eSpeak's nominal rate (80..450): its real rate runs faster on short words.
    `pitch` is eSpeak's 0..100 scale (None: the voice's own, 50). An unknown voice raises AdasrError.
    A voice named "piper:..." is Piper's (`PIPER_VOICE`): 80..300 words per minute, no pitch.
    """
    if voice.startswith(piper.PREFIX):
        if pitch is not None:
            raise AdasrError(f"pitch {pitch}: the Piper voice {voice!r} has no pitch setting")
        return piper.speak(text, voice, words_per_minute)
    native = espeak.speak(text, voice, words_per_minute, pitch)
    return np.clip(resample(native, espeak.native_rate(), SAMPLE_RATE), -1.0, 1.0)
