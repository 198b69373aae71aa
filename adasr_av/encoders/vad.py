"""Voice activity on a stream: Silero VAD (the ONNX model shipped inside faster-whisper), one
32 ms window at a time, its recurrent state carried across calls.

`StreamingVAD.push(samples)` returns a speech probability per whole window (the same numbers as
faster-whisper's whole-file pass over the same samples); `SpeechGate` turns them into speech and
pause with hysteresis, as Silero's own `get_speech_timestamps` does: speech starts at a window
above `threshold`, and ends once windows below `threshold - 0.15` have lasted `min_silence_s`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adasr_av.errors import AdasrError
from adasr_av.media.audio import SAMPLE_RATE, samples_to_seconds

WINDOW_SAMPLES = 512  # Silero's window at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # the tail of the previous window that Silero v5/v6 sees before each window
WINDOW_S = WINDOW_SAMPLES / SAMPLE_RATE


@dataclass(frozen=True)
class VADOptions:
    threshold: float = 0.5  # a window this likely to be speech starts (or continues) speech
    min_silence_s: float = 0.5  # this long below `threshold - 0.15` ends speech: a pause
    speech_pad_s: float = 0.3  # audio kept before speech starts, so its first sound is not clipped

    def __post_init__(self):
        if not 0 < self.threshold < 1:
            raise AdasrError(f"vad.threshold must be between 0 and 1, got {self.threshold}")
        if self.min_silence_s <= 0:
            raise AdasrError(f"vad.min_silence_s must be positive, got {self.min_silence_s}")
        if self.speech_pad_s < 0:
            raise AdasrError(f"vad.speech_pad_s must be at least 0, got {self.speech_pad_s}")


def _silero_session():
    """The ONNX session of faster-whisper's Silero model (loaded once per process)."""
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


class StreamingVAD:
    """Silero speech probabilities for a stream fed in pieces of any length."""

    def __init__(self):
        self.session = _silero_session()
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)
        self.windows = 0  # windows scored so far; window k covers [k, k + 1) * WINDOW_S

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Speech probabilities of the whole windows completed by `samples` (16 kHz float32)."""
        samples = np.concatenate([self._rest, np.asarray(samples, dtype=np.float32)])
        whole = len(samples) // WINDOW_SAMPLES * WINDOW_SAMPLES
        self._rest = samples[whole:]
        if not whole:
            return np.zeros(0, dtype=np.float32)
        windows = samples[:whole].reshape(-1, WINDOW_SAMPLES)
        contexts = np.concatenate([self._context[None], windows[:-1, -CONTEXT_SAMPLES:]])
        self._context = windows[-1, -CONTEXT_SAMPLES:].copy()
        out, self._h, self._c = self.session.run(
            None, {"input": np.concatenate([contexts, windows], axis=1), "h": self._h, "c": self._c}
        )
        self.windows += len(windows)
        return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class Transition:
    """Speech started (`speech=True`) or a pause began (`speech=False`) at stream time `t`."""

    speech: bool
    t: float


class SpeechGate:
    """Speech or pause, from window probabilities: a small state machine with hysteresis."""

    def __init__(self, options: VADOptions = VADOptions(), t0: float = 0.0):
        self.options = options
        self.speaking = False
        self.t0 = t0  # stream time of window 0
        self._windows = 0
        self._quiet_since: int | None = None  # first window of the current run below the low mark

    def update(self, probabilities: np.ndarray) -> list[Transition]:
        """Feed the next windows' probabilities; returns the transitions they complete.

        A pause is reported once it has lasted `min_silence_s`, at the time it began (the end of
        the last speech window), so the caller learns of it `min_silence_s` late."""
        low = self.options.threshold - 0.15
        transitions = []
        for p in probabilities:
            k = self._windows
            self._windows += 1
            if not self.speaking:
                if p >= self.options.threshold:
                    self.speaking, self._quiet_since = True, None
                    transitions.append(Transition(True, self._time(k)))
                continue
            if p >= self.options.threshold:
                self._quiet_since = None
            elif p < low and self._quiet_since is None:
                self._quiet_since = k
            if self._quiet_since is not None and self._time(k + 1) - self._time(self._quiet_since) >= (
                self.options.min_silence_s - 1e-9
            ):
                self.speaking = False
                transitions.append(Transition(False, self._time(self._quiet_since)))
                self._quiet_since = None
        return transitions

    def _time(self, window: int) -> float:
        return self.t0 + samples_to_seconds(window * WINDOW_SAMPLES)
