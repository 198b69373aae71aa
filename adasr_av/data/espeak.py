"""ctypes binding to the libespeak-ng that the `espeakng-loader` wheel ships: speech without apt.

libespeak-ng is one process-global synthesiser (one voice, one set of parameters, one output
callback), so every call takes one lock and the library is initialised once, on first use.
"""

from __future__ import annotations

import ctypes
import threading
from functools import cache
from pathlib import Path

import espeakng_loader
import numpy as np

from adasr_av.errors import AdasrError

# Values from espeak-ng/speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns when the text is spoken; samples go to the callback
INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit() inside our process
BUFFER_MS = 200  # length of the sample buffers handed to the callback
POS_CHARACTER = 1
CHARS_UTF8 = 1
RATE, PITCH = 1, 3  # espeak_PARAMETER
WPM_RANGE = (80, 450)  # espeakRATE_MINIMUM .. espeakRATE_MAXIMUM
PITCH_RANGE = (0, 100)
DEFAULT_PITCH = 50
RANDOM_SEED = 1  # for the noise of breathy variants (+f3...): without it their output varies per process
EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_lock = threading.Lock()
_chunks: list[np.ndarray] = []


@_SynthCallback
def _collect(wav, n_samples: int, _events) -> int:
    """Called by espeak_Synth for each buffer; copies it out because espeak reuses the memory."""
    if n_samples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
    return 0  # 0 = go on synthesising


class _Library:
    """The loaded, initialised library and its native sample rate."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size in bytes, terminator included
            ctypes.c_uint,  # position
            ctypes.c_int,  # position_type
            ctypes.c_uint,  # end_position (0 = none)
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique_identifier out
            ctypes.c_void_p,  # user_data
        ]
        for name in ("espeak_SetVoiceByName", "espeak_SetParameter", "espeak_Synth", "espeak_Synchronize"):
            getattr(lib, name).restype = ctypes.c_int
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, data, INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise AdasrError(f"eSpeak NG failed to initialise with the data in {data.decode()}")
        lib.espeak_SetSynthCallback(_collect)
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_ng_SetRandSeed(RANDOM_SEED)
        self.lib = lib
        self.sample_rate = rate

    def call(self, name: str, *args) -> None:
        status = getattr(self.lib, name)(*args)
        if status != EE_OK:
            raise AdasrError(f"eSpeak NG: {name} failed with status {status}")


_library: _Library | None = None


def _loaded() -> _Library:
    """The library, initialised on first use; call with `_lock` held."""
    global _library
    if _library is None:
        _library = _Library()
    return _library


def native_rate() -> int:
    """Samples per second that espeak produces (22050 for the bundled voices)."""
    with _lock:
        return _loaded().sample_rate


@cache
def _voice_files() -> tuple[frozenset[str], frozenset[str]]:
    """Lower-cased language voice names and variant names found in the bundled data."""
    data = Path(espeakng_loader.get_data_path())
    languages = frozenset(p.name.lower() for p in (data / "lang").rglob("*") if p.is_file())
    variants = frozenset(p.name.lower() for p in (data / "voices" / "!v").iterdir() if p.is_file())
    return languages, variants


def check_voice(voice: str) -> None:
    """Raise unless `voice` is `language[+variant]` from the bundled data.

    espeak itself accepts a variant name as a whole voice (and then speaks silence) and ignores an
    unknown variant, so the names are checked against the data files first.
    """
    languages, variants = _voice_files()
    language, _, variant = voice.lower().partition("+")
    if language not in languages:
        english = sorted(name for name in languages if name.split("-")[0] == "en")
        others = len(languages) - len(english)
        raise AdasrError(
            f"unknown eSpeak NG voice {voice!r}: no language {language!r} (English ones: "
            f"{', '.join(english)}; {others} others; optionally +variant)"
        )
    if "+" in voice and variant not in variants:
        raise AdasrError(
            f"unknown eSpeak NG voice {voice!r}: no variant {variant!r} "
            f"(variants: {', '.join(sorted(variants))})"
        )


def speak(text: str, voice: str, words_per_minute: int, pitch: int | None) -> np.ndarray:
    """Synthesise `text`; returns int16 mono samples at `native_rate()`.

    Not bit-exact across calls: espeak keeps waveform state (seemingly its pitch-flutter phase) in
    statics that neither espeak_ng_SetRandSeed, srand nor re-initialising resets, so a repeat
    differs slightly in phase and by a few samples in length.
    A fresh process making the same calls in the same order gets the same samples (the random
    generator is seeded once, at initialisation; seeding it again does not undo the drift).
    """
    check_voice(voice)
    if not WPM_RANGE[0] <= words_per_minute <= WPM_RANGE[1]:
        raise AdasrError(f"words_per_minute {words_per_minute} is outside eSpeak NG's range {WPM_RANGE}")
    if pitch is not None and not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise AdasrError(f"pitch {pitch} is outside eSpeak NG's range {PITCH_RANGE}")
    encoded = text.encode("utf-8") + b"\0"
    with _lock:
        library = _loaded()
        # Every setting is applied on every call: the previous caller's voice and parameters persist.
        library.call("espeak_SetVoiceByName", voice.encode())
        library.call("espeak_SetParameter", RATE, words_per_minute, 0)
        library.call("espeak_SetParameter", PITCH, DEFAULT_PITCH if pitch is None else pitch, 0)
        _chunks.clear()
        try:
            library.call("espeak_Synth", encoded, len(encoded), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            library.call("espeak_Synchronize")
            return np.concatenate(_chunks) if _chunks else np.zeros(0, dtype=np.int16)
        finally:
            _chunks.clear()
