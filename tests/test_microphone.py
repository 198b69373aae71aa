"""Microphone source: device blocks -> 16 kHz chunks on real audio, the stream class on a stand-in
PortAudio stream, and the error this machine really gives (it has no audio input)."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import types

import numpy as np
import pytest

from adasr_av.errors import AdasrError
from adasr_av.media import microphone as mic_module
from adasr_av.media.audio import SAMPLE_RATE
from adasr_av.media.microphone import Microphone, chunks_from_blocks, microphone

SWEEP = (200.0, 4000.0)  # Hz, linear over the signal


def sweep(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    f0, f1 = SWEEP
    return (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))).astype(np.float32)


def uneven_blocks(signal: np.ndarray, channels: int, seed: int = 0) -> list[np.ndarray]:
    """[n, channels] blocks of varying size, as PortAudio delivers with blocksize=0."""
    rng, blocks, at = np.random.default_rng(seed), [], 0
    while at < len(signal):
        size = int(rng.integers(1, 2000))
        blocks.append(np.repeat(signal[at : at + size, None], channels, axis=1))
        at += size
    return blocks


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize(("rate", "channels"), [(44100, 1), (48000, 2)])
def test_device_blocks_become_16k_chunks(rate, channels):
    seconds = 3.0
    chunks = list(chunks_from_blocks(uneven_blocks(sweep(rate, seconds), channels), rate, chunk_seconds=0.1))
    samples = np.concatenate([c.samples for c in chunks])
    assert samples.dtype == np.float32
    assert abs(len(samples) - seconds * SAMPLE_RATE) <= 1
    assert all(len(c.samples) == 1600 for c in chunks[:-1])
    assert chunks[0].t_start == 0.0 and chunks[-1].t_end == pytest.approx(seconds, abs=1e-4)
    assert all(a.t_end == b.t_start for a, b in itertools.pairwise(chunks))
    f0, f1 = SWEEP
    for t in (0.25, 0.75, 1.5, 2.25, 2.75):  # the sweep's frequency at t, from a 0.1 s window around it
        window = samples[int((t - 0.05) * SAMPLE_RATE) : int((t + 0.05) * SAMPLE_RATE)]
        assert peak_hz(window) == pytest.approx(f0 + (f1 - f0) * t / seconds, abs=30)
    assert np.sqrt(np.mean(samples[SAMPLE_RATE:-SAMPLE_RATE] ** 2)) == pytest.approx(
        0.5 / np.sqrt(2), rel=0.05
    )


def test_tones_above_8khz_are_filtered_not_aliased():
    rate = 48000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 12000 * t)).astype(np.float32)  # would alias to 4 kHz
    samples = np.concatenate([c.samples for c in chunks_from_blocks([tone[:, None]], rate)])
    assert np.sqrt(np.mean(samples[1000:-1000] ** 2)) < 0.01


def test_microphone_without_an_input_device_fails_in_one_line():
    """This machine has no audio input (nor, maybe, PortAudio): the real error path."""
    with pytest.raises(AdasrError, match="^microphone: ") as caught:
        microphone()
    assert "\n" not in str(caught.value)


def test_missing_sounddevice_or_portaudio_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails, as without PortAudio
    with pytest.raises(AdasrError, match="^microphone: audio input unavailable"):
        microphone()


class _Status:
    def __init__(self, input_overflow: bool):
        self.input_overflow = input_overflow


class _FakeStream:
    """A stand-in for sounddevice.InputStream: a thread calls the callback like PortAudio does."""

    def __init__(
        self, blocks, overflow_at, *, device, samplerate, channels, dtype, callback, finished_callback
    ):
        self.blocks, self.overflow_at = blocks, overflow_at
        self.callback, self.finished_callback = callback, finished_callback
        self.stopped, self.delivered = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        for i, block in enumerate(self.blocks):
            if self.stopped.is_set():
                return
            self.callback(block, len(block), None, _Status(i in self.overflow_at))
        self.delivered.set()

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped.set()
        self.thread.join()
        self.finished_callback()

    def close(self):
        pass


def fake_sounddevice(monkeypatch, blocks=(), overflow_at=(), rate=48000) -> types.SimpleNamespace:
    def make_stream(**kwargs):
        fake.stream = _FakeStream(list(blocks), set(overflow_at), **kwargs)
        return fake.stream

    fake = types.SimpleNamespace(
        PortAudioError=type("PortAudioError", (Exception,), {}),
        query_devices=lambda device, kind: {"name": "fake mic", "default_samplerate": float(rate)},
        InputStream=make_stream,
    )
    monkeypatch.setattr(mic_module, "_sounddevice", lambda: fake)
    return fake


def test_microphone_counts_overflows_and_stops_on_close(monkeypatch, caplog):
    rate = 48000
    blocks = uneven_blocks(sweep(rate, 1.0), 1)
    fake = fake_sounddevice(monkeypatch, blocks, overflow_at=(3, 7), rate=rate)
    received = []
    with caplog.at_level(logging.WARNING), Microphone(chunk_seconds=0.1) as mic:
        assert mic.sample_rate == rate
        for chunk in mic:
            received.append(chunk)
            if len(received) == 5:
                assert fake.stream.delivered.wait(timeout=5)
                mic.close()  # what was received before closing still comes out
    assert fake.stream.stopped.is_set()
    assert mic.overflows == 2
    assert sum("input overflow" in r.getMessage() for r in caplog.records) == 2
    assert len(received) == 10 and received[-1].t_end == pytest.approx(1.0)
    assert list(mic) == []  # a closed microphone stays finished


def test_close_from_another_thread_ends_a_waiting_iteration(monkeypatch):
    fake_sounddevice(monkeypatch)  # a device that never delivers a block
    mic = microphone()
    threading.Timer(0.2, mic.close).start()
    finished = []
    reader = threading.Thread(target=lambda: finished.append(list(mic)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert finished == [[]]


def test_device_query_error_names_the_device(monkeypatch):
    fake = fake_sounddevice(monkeypatch)

    def no_device(device, kind):
        raise fake.PortAudioError("Error querying device 7")

    fake.query_devices = no_device
    with pytest.raises(
        AdasrError, match=r"^microphone: no usable input device 7 \(Error querying device 7\)$"
    ):
        microphone(device=7)
