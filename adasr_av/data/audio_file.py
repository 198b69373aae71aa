"""Writing synthesised audio to media files (PyAV), the container and codec chosen by the suffix.

Files appear atomically: a reader (or a crashed run) never sees a half-written one.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import av
import numpy as np

from adasr_av.atomic import atomic_path
from adasr_av.data.resample import resample_frames
from adasr_av.errors import AdasrError
from adasr_av.media.audio import SAMPLE_RATE

# suffix -> (FFmpeg muxer, audio encoders in order of preference; the first PyAV can use wins)
CONTAINERS = {
    ".wav": ("wav", ("pcm_s16le",)),
    ".mp3": ("mp3", ("libmp3lame", "mp3")),
    ".ogg": ("ogg", ("libopus", "libvorbis", "opus", "vorbis")),
    ".mp4": ("mp4", ("aac",)),
    ".m4a": ("ipod", ("aac",)),  # FFmpeg's muxer for .m4a: MP4 with the iTunes brand
}
VIDEO_SUFFIXES = (".mp4",)
VIDEO_CODECS = ("libx264", "h264", "mpeg4")
VIDEO_SIZE = 64  # pixels, square: the black track exists only so the file holds video
VIDEO_FPS = 10
_SAMPLE_FORMATS = ("flt", "fltp", "s16", "s16p")  # what the encoder gets, when it takes one of these


def write_audio(
    path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, video: bool = False
) -> Path:
    """Write mono float `samples` to `path` (.wav, .mp3, .ogg, .mp4, .m4a); returns the path.

    `video=True` (only .mp4) adds a small black video track as long as the audio, for tests and
    demos that need an mp4 holding both. The audio is resampled when the codec lacks `sample_rate`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise AdasrError(f"cannot write {path}: unsupported suffix (use one of {', '.join(CONTAINERS)})")
    if video and suffix not in VIDEO_SUFFIXES:
        raise AdasrError(f"cannot write {path}: a video track needs one of {', '.join(VIDEO_SUFFIXES)}")
    if not path.parent.is_dir():
        raise AdasrError(f"cannot write {path}: folder {path.parent} does not exist")
    samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    if samples.ndim != 1:
        raise AdasrError(f"cannot write {path}: samples must be mono, shape [n], not {samples.shape}")
    if samples.size == 0:
        raise AdasrError(f"cannot write {path}: no samples (an empty MP3 or Ogg file is unreadable)")
    muxer, codecs = CONTAINERS[suffix]
    with atomic_path(path) as part, av.open(str(part), "w", format=muxer) as container:
        # Every stream is added before the first packet: the muxer writes its header then.
        audio = _add_audio_stream(container, _encoder(codecs, path), sample_rate)
        black = _add_video_stream(container, _encoder(VIDEO_CODECS, path)) if video else None
        _encode_audio(container, audio, samples, sample_rate)
        if black is not None:
            _encode_black_video(container, black, len(samples) / sample_rate)
    return path


def _encoder(names: tuple[str, ...], path: Path) -> av.Codec:
    """The first non-experimental encoder of `names` that this PyAV build has."""
    for name in names:
        with contextlib.suppress(av.codec.codec.UnknownCodecError):
            codec = av.Codec(name, "w")
            if not codec.experimental:
                return codec
    raise AdasrError(f"cannot write {path}: PyAV's FFmpeg has none of the encoders {', '.join(names)}")


def _encoder_rate(codec: av.Codec, rate: int) -> int:
    """`rate` if the codec takes it, else the nearest supported rate above it (else the highest)."""
    rates = codec.audio_rates
    if not rates or rate in rates:
        return rate
    return min((r for r in rates if r >= rate), default=max(rates))


def _add_audio_stream(container, codec: av.Codec, rate: int):
    stream = container.add_stream(codec.name, rate=_encoder_rate(codec, rate), layout="mono")
    formats = [f.name for f in codec.audio_formats or ()]
    stream.format = next((f for f in _SAMPLE_FORMATS if f in formats), formats[0] if formats else "s16")
    stream.codec_context.open()  # sets frame_size, which fixed-frame encoders (AAC, MP3, Opus) need
    return stream


def _add_video_stream(container, codec: av.Codec):
    stream = container.add_stream(codec.name, rate=VIDEO_FPS)
    stream.width = stream.height = VIDEO_SIZE
    stream.pix_fmt = "yuv420p"
    return stream


def _encode_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    frame_size = stream.codec_context.frame_size or None
    for frame in resample_frames(samples, rate, stream.rate, stream.format.name, frame_size):
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _encode_black_video(container, stream, seconds: float) -> None:
    black = np.zeros((VIDEO_SIZE, VIDEO_SIZE, 3), dtype=np.uint8)
    for index in range(max(1, math.ceil(seconds * VIDEO_FPS))):
        frame = av.VideoFrame.from_ndarray(black, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
