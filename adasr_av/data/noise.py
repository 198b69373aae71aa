"""Audio that holds no words, for testing that the ASR invents none: white noise, babble, tones.

Levels are set against `SPEECH_RMS`, the level of the project's synthesised speech, so "0 dB SNR"
means noise as loud as the speech would be. Babble is many talkers at once, each eSpeak sentence
reversed in time: it sounds like a crowd (voice pitch, formants and syllable rhythm are kept) but
holds no word an ASR could rightly write. Tones are a melody of notes with harmonics and a decay,
which is what trips speech detectors on music. Everything is drawn from a seed.
"""

from __future__ import annotations

import numpy as np

from adasr_av.data.tts import synthesize
from adasr_av.media.audio import SAMPLE_RATE, seconds_to_samples

SPEECH_RMS = 0.1  # about the RMS of eSpeak speech at the voices' default amplitude (measured 0.08-0.12)
BABBLE_SENTENCES = (
    "The market opens early and the stalls fill with fruit and bread.",
    "She counted the coins twice before she paid for the tickets.",
    "A long train crossed the bridge while the children waved.",
    "After the rain the garden smelled of wet earth and roses.",
    "He carried three heavy boxes up the stairs to the attic.",
    "The teacher wrote a short list of numbers on the board.",
    "Every evening the baker sweeps the floor and locks the door.",
    "They walked along the river until the lights came on.",
)
BABBLE_VOICES = ("en-us", "en-us+f3", "en+m7", "en-gb-x-rp")
SCALE_HZ = (261.6, 293.7, 329.6, 392.0, 440.0, 523.3)  # C major pentatonic and the octave


def at_level(samples: np.ndarray, rms: float) -> np.ndarray:
    """`samples` scaled to the given RMS (silence stays silence)."""
    now = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
    return (samples * (rms / now)).astype(np.float32) if now > 0 else samples.astype(np.float32)


def at_snr(noise: np.ndarray, snr_db: float, speech_rms: float = SPEECH_RMS) -> np.ndarray:
    """`noise` at `snr_db` below a speech level of `speech_rms` (0 dB: as loud as the speech)."""
    return at_level(noise, speech_rms * 10 ** (-snr_db / 20))


def white_noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Gaussian white noise at unit RMS; use `at_snr` for a level."""
    return np.random.default_rng(seed).standard_normal(seconds_to_samples(seconds)).astype(np.float32)


def babble(seconds: float, talkers: int = 8, seed: int = 0) -> np.ndarray:
    """`talkers` reversed eSpeak sentences at once, each starting at a random offset and looping,
    normalised to unit RMS."""
    rng = np.random.default_rng(seed)
    n = seconds_to_samples(seconds)
    mix = np.zeros(n, dtype=np.float64)
    for i in range(talkers):
        sentence = BABBLE_SENTENCES[int(rng.integers(len(BABBLE_SENTENCES)))]
        voice = BABBLE_VOICES[i % len(BABBLE_VOICES)]
        talker = synthesize(sentence, voice, int(rng.integers(140, 200)))[::-1]
        loop = np.resize(talker, n + len(talker))
        start = int(rng.integers(len(talker)))
        mix += loop[start : start + n]
    return at_level(mix.astype(np.float32), 1.0)


def tones(seconds: float, seed: int = 0, note_s: float = 0.4) -> np.ndarray:
    """A melody: notes from a pentatonic scale, each with three harmonics and an exponential
    decay, now and then a two-note chord; unit RMS."""
    rng = np.random.default_rng(seed)
    n, per_note = seconds_to_samples(seconds), seconds_to_samples(note_s)
    t = np.arange(per_note) / SAMPLE_RATE
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / (note_s / 3))
    out = np.zeros(n + per_note, dtype=np.float64)
    for start in range(0, n, per_note):
        pitches = rng.choice(SCALE_HZ, size=1 + int(rng.random() < 0.3), replace=False)
        note = sum(np.sin(2 * np.pi * f * k * t) / k for f in pitches for k in (1, 2, 3))
        out[start : start + per_note] += envelope * note
    return at_level(out[:n].astype(np.float32), 1.0)
