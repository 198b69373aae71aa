"""Live microphone audio (sounddevice) as 16 kHz mono AudioChunks, stamped by samples received.

The PortAudio callback runs on an audio thread that must never wait, so it only enqueues a copy of
each block; resampling and chunking happen in the consumer's thread (`chunks_from_blocks`, which
the tests drive without a device). Stream time counts samples, not wall time: a consumer that falls
behind sees late chunks, never squeezed ones.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterable, Iterator
from types import ModuleType

import av
import numpy as np

from adasr_av.errors import AdasrError, first_line
from adasr_av.media.audio import audio_chunks, seconds_to_samples
from adasr_av.types import AudioChunk

log = logging.getLogger(__name__)

_END = None  # queued by close() and by PortAudio when the stream stops: the consumer finishes


def chunks_from_blocks(
    blocks: Iterable[np.ndarray], sample_rate: int, chunk_seconds: float = 0.1
) -> Iterator[AudioChunk]:
    """Float blocks of device audio ([n] or [n, channels], at `sample_rate`) -> 16 kHz mono AudioChunks.

    Stream time starts at 0 and advances by the samples received; the resampler keeps its state
    between blocks, so block boundaries leave no clicks, and is flushed when the blocks end.
    """
    return audio_chunks(_as_frames(blocks, sample_rate), seconds_to_samples(chunk_seconds))


def _as_frames(blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[av.AudioFrame]:
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        mono = np.ascontiguousarray(block.mean(axis=1) if block.ndim == 2 else block)
        if not len(mono):
            continue
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        yield frame


class Microphone:
    """An input device as an iterator of AudioChunks; `close()` (or leaving a `with`) stops it.

    Opens and starts the device at its native default rate when made, so a missing device fails at
    once; blocks wait in the queue until iterated. `channels` > 1 are averaged. `overflows` counts
    the blocks PortAudio flagged as input overflow (the device dropped samples: the system did not
    keep up); each is also logged as a warning.
    """

    def __init__(self, device: int | str | None = None, chunk_seconds: float = 0.1, channels: int = 1):
        sd = _sounddevice()
        where = "default input device" if device is None else f"input device {device!r}"
        try:
            info = sd.query_devices(device, kind="input")
        except (sd.PortAudioError, ValueError) as err:
            raise AdasrError(f"microphone: no usable {where} ({first_line(err)})") from None
        self.device_name: str = info["name"]
        self.sample_rate = int(info["default_samplerate"])
        self.chunk_seconds = chunk_seconds
        self.overflows = 0
        self._blocks: queue.Queue[tuple[np.ndarray, bool] | None] = queue.Queue()
        self._closed = False
        try:
            self._stream = sd.InputStream(
                device=device,
                samplerate=self.sample_rate,
                channels=channels,
                dtype="float32",
                callback=self._callback,
                finished_callback=lambda: self._blocks.put(_END),
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as err:
            raise AdasrError(f"microphone: cannot open the {where} ({first_line(err)})") from None

    def _callback(self, indata: np.ndarray, frames: int, time, status) -> None:
        self._blocks.put((indata.copy(), bool(status.input_overflow)))

    def _received(self) -> Iterator[np.ndarray]:
        while (item := self._blocks.get()) is not _END:
            block, overflowed = item
            if overflowed:
                self.overflows += 1
                log.warning(
                    "microphone %s: input overflow, samples lost (%d so far)",
                    self.device_name,
                    self.overflows,
                )
            yield block
        self._blocks.put(_END)  # left for any later iteration: a closed microphone stays finished

    def __iter__(self) -> Iterator[AudioChunk]:
        return chunks_from_blocks(self._received(), self.sample_rate, self.chunk_seconds)

    def close(self) -> None:
        """Stop recording; iteration ends after the audio already received. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stream.stop()
        self._stream.close()
        self._blocks.put(_END)

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def microphone(device: int | str | None = None, chunk_seconds: float = 0.1, channels: int = 1) -> Microphone:
    """The default (or chosen) input device as an iterable of 16 kHz mono AudioChunks; see Microphone."""
    return Microphone(device, chunk_seconds, channels)


def _sounddevice() -> ModuleType:
    """sounddevice raises OSError at import when the PortAudio library itself is missing."""
    try:
        import sounddevice
    except (OSError, ImportError) as err:
        raise AdasrError(f"microphone: audio input unavailable ({first_line(err)})") from None
    return sounddevice
