"""Media files (any container and codec FFmpeg decodes, via PyAV) as audio chunks or video frames.

A file cut short while it is read (another program truncating or rewriting it) gives what was
decoded up to the cut, then one AdasrError naming the file and where its audio or video ended,
whatever the format: FFmpeg itself ends some formats at the cut as if they were whole (WAV, MP3)
and fails others (MP4), so the reader compares the file's size with its size when opened.

Also home of the container-level decode steps the RTSP reader shares: `decoded`, `sampled_frames`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import av
import av.container
import av.stream

from adasr_av.errors import AdasrError
from adasr_av.media.audio import CHUNK_SECONDS, audio_chunks, seconds_to_samples
from adasr_av.media.pacing import paced
from adasr_av.types import AudioChunk, VideoFrame

_TICK_EPSILON = 1e-6  # seconds: a frame stamped within this of an output tick counts as on time


def read_audio(
    path: str | Path,
    stream_index: int | None = None,
    realtime: bool = False,
    start_at: float = 0.0,
    chunk_seconds: float = CHUNK_SECONDS,
) -> Iterator[AudioChunk]:
    """16 kHz mono float32 chunks of `chunk_seconds` (the last one shorter) from a media file.

    `stream_index` counts audio streams only (0 = the first, like FFmpeg's `-map 0:a:0`); None takes
    the first. Times are media seconds: from 0, or from `start_at` (seeks, then drops the samples
    before it). `realtime=True` hands each chunk out when its end is reached on the wall clock.
    The file is opened now, so a bad path fails here rather than at the first chunk.
    """
    if start_at < 0:
        raise AdasrError(f"media file {path}: start_at must be >= 0 seconds, got {start_at}")
    whole = _Whole(path)  # its size before FFmpeg reads any of it
    container = open_media(path)
    stream = _choose(container, container.streams.audio, stream_index, path, "audio")
    chunks = _file_audio(container, stream, whole, start_at, seconds_to_samples(chunk_seconds))
    return paced(chunks, lambda chunk: chunk.t_end, start=start_at) if realtime else chunks


def read_video_frames(
    path: str | Path,
    fps: float,
    stream_index: int | None = None,
    start_at: float = 0.0,
    realtime: bool = False,
) -> Iterator[VideoFrame]:
    """RGB frames (uint8 [h, w, 3]) at `fps`, stamped start_at + k / fps: each is the latest frame on
    screen at that moment. `stream_index` counts video streams only; None takes the first."""
    if fps <= 0:
        raise AdasrError(f"media file {path}: fps must be > 0, got {fps}")
    if start_at < 0:
        raise AdasrError(f"media file {path}: start_at must be >= 0 seconds, got {start_at}")
    whole = _Whole(path)
    container = open_media(path)
    stream = _choose(container, container.streams.video, stream_index, path, "video")
    stream.thread_type = "AUTO"
    frames = _file_frames(container, stream, whole, fps, start_at)
    return paced(frames, lambda frame: frame.t, start=start_at) if realtime else frames


def media_streams(path: str | Path) -> tuple[int, int, str, float | None]:
    """How many audio and video streams a media file has (cover art is no video), its container
    format (FFmpeg's names, "mov,mp4,m4a,...") and duration in seconds (None when unknown); a stream
    in a codec this FFmpeg cannot decode is an error naming the file, before anything is read."""
    with open_media(path) as container:
        video = [
            s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)
        ]
        for kind, streams in (("audio", container.streams.audio), ("video", video)):
            if any(s.codec_context is None for s in streams):
                raise AdasrError(f"media file {path}: its {kind} is in a codec FFmpeg cannot decode here")
        duration = container.duration / av.time_base if container.duration is not None else None
        return len(container.streams.audio), len(video), container.format.name, duration


def open_media(path: str | Path) -> av.container.InputContainer:
    """Open a media file for decoding; every failure is one AdasrError line naming the file."""
    path = Path(path)
    if not path.exists():
        raise AdasrError(f"media file {path}: no such file")
    if path.is_dir():
        raise AdasrError(f"media file {path}: is a folder, not a file")
    try:
        return av.open(str(path), metadata_errors="replace")  # a tag not in UTF-8 is no reason to fail
    except av.FFmpegError as err:
        raise AdasrError(f"media file {path}: FFmpeg cannot read it ({describe(err)})") from None


class _Whole:
    """A file's size before it was opened and how far it has been decoded: `check` tells at the end
    whether it was cut short while read."""

    def __init__(self, path):
        self.path, self.size, self.reached_s = path, _size(path), 0.0

    def check(self, kind: str) -> None:
        """Raise if the file shrank since it was opened; a file removed meanwhile was read whole.
        (FFmpeg may have held the rest already; the error is raised all the same: the file was cut.)"""
        now = _size(self.path)
        if self.size is not None and now is not None and now < self.size:
            raise AdasrError(
                f"media file {self.path}: cut short while it was read ({self.size} bytes when opened, "
                f"{now} now): its {kind} ends at {self.reached_s:.2f} s"
            ) from None


def _size(path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def describe(err: av.FFmpegError | ValueError) -> str:
    """FFmpeg's reason without PyAV's errno prefix and repeated file name."""
    return (getattr(err, "strerror", None) or str(err)).strip().rstrip(".").lower()


def decoded(container: av.container.InputContainer, stream: av.stream.Stream) -> Iterator[av.frame.Frame]:
    """Every frame of one stream, decoder flushed at the end (demux yields a final empty packet)."""
    for packet in container.demux(stream):
        yield from packet.decode()


def sampled_frames(
    frames: Iterable[tuple[float, av.VideoFrame]], fps: float, t_start: float
) -> Iterator[VideoFrame]:
    """(time, frame) pairs at the source's rate -> VideoFrames at ticks t_start + k / fps.

    Each tick shows the latest frame stamped at or before it; ticks before the first frame are
    skipped; the last frame is held for one source frame interval. A frame is converted to RGB only
    when some tick shows it, so a low `fps` skips the conversion of the frames in between.
    """
    k, latest, image, last_t, interval = 0, None, None, None, 1.0 / fps
    for t, frame in frames:
        while t_start + k / fps < t - _TICK_EPSILON:
            if latest is not None:
                image = image if image is not None else latest.to_ndarray(format="rgb24")
                yield VideoFrame(image, t_start + k / fps)
            k += 1
        if last_t is not None and t > last_t:
            interval = t - last_t
        latest, image, last_t = frame, None, t
    if latest is None:
        return
    while t_start + k / fps < last_t + interval - _TICK_EPSILON:
        image = image if image is not None else latest.to_ndarray(format="rgb24")
        yield VideoFrame(image, t_start + k / fps)
        k += 1


def _choose(
    container: av.container.InputContainer,
    streams: Sequence[av.stream.Stream],
    index: int | None,
    path,
    kind: str,
) -> av.stream.Stream:
    if not streams:
        container.close()
        raise AdasrError(f"media file {path}: no {kind} stream")
    if index is None:
        return streams[0]
    if not 0 <= index < len(streams):
        container.close()
        raise AdasrError(
            f"media file {path}: no {kind} stream {index} (it has {len(streams)}, counted from 0)"
        )
    return streams[index]


def _media_time(frame: av.frame.Frame, stream: av.stream.Stream) -> float | None:
    """Seconds from the stream's start (containers may start their timestamps anywhere)."""
    if frame.pts is None:
        return None
    return float((frame.pts - (stream.start_time or 0)) * stream.time_base)


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, start_at: float) -> None:
    """Jump to the keyframe at or before `start_at`; a file that cannot seek is decoded from its start."""
    if start_at <= 0:
        return
    try:
        container.seek(int(start_at / stream.time_base) + (stream.start_time or 0), stream=stream)
    except av.FFmpegError:
        container.seek(0)


def _file_audio(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    whole: _Whole,
    start_at: float,
    chunk_samples: int,
) -> Iterator[AudioChunk]:
    path = whole.path
    with container:
        try:
            _seek(container, stream, start_at)
            frames = decoded(container, stream)
            first = next(frames, None)
            if first is not None:
                first_t = _media_time(first, stream)
                first_t = start_at if first_t is None else first_t
                skip = max(0, seconds_to_samples(start_at - first_t))
                start = max(start_at, first_t)
                for chunk in audio_chunks(itertools.chain([first], frames), chunk_samples, start, skip):
                    whole.reached_s = chunk.t_end
                    yield chunk
        except (av.FFmpegError, ValueError) as err:  # ValueError: a frame whose format is not the first's
            whole.check("audio")
            raise AdasrError(f"media file {path}: cannot decode its audio ({describe(err)})") from None
    whole.check("audio")


def _file_frames(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    whole: _Whole,
    fps: float,
    start_at: float,
) -> Iterator[VideoFrame]:
    def timed() -> Iterator[tuple[float, av.VideoFrame]]:
        rate = stream.average_rate or stream.guessed_rate or fps
        for n, frame in enumerate(decoded(container, stream)):
            t = _media_time(frame, stream)
            whole.reached_s = t = n / float(rate) if t is None else t
            yield t, frame

    path = whole.path
    with container:
        try:
            _seek(container, stream, start_at)
            yield from sampled_frames(timed(), fps, start_at)
        except av.FFmpegError as err:
            whole.check("video")
            raise AdasrError(f"media file {path}: cannot decode its video ({describe(err)})") from None
    whole.check("video")
