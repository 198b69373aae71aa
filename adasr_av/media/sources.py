"""The one place that knows what a source is: a media file, `mic`, or an `rtsp://` URL.

`run`, `batch` and the demo ask it what kind a source is, which files are media, where a file's
sidecar is and how a URL is written without its password; `open_audio` is the one door to audio,
`open_records` to audio and video frames together.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adasr_av.errors import AdasrError
from adasr_av.types import AudioChunk, Record, record_time

log = logging.getLogger(__name__)

SourceKind = Literal["file", "mic", "rtsp"]
MIC = "mic"
LIVE_SCHEMES = ("rtsp://", "rtsps://")
# What a folder or a glob takes, and what the demo's upload accepts
MEDIA_SUFFIXES = (
    ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff",
    ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
)  # fmt: skip


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url, flags=re.IGNORECASE)


def source_kind(source: str) -> SourceKind:
    """What `source` names; a URL of another scheme is an AdasrError (its password redacted)."""
    if source == MIC:
        return "mic"
    if source.lower().startswith(LIVE_SCHEMES):
        return "rtsp"
    if "://" in source:
        raise AdasrError(f"source {redact(source)}: unsupported URL scheme (use a file, mic or rtsp://)")
    return "file"


def is_media_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MEDIA_SUFFIXES


def unsupported_type(name: str) -> str | None:
    """Why a file of this name is not taken (its suffix), or None when it is."""
    if is_media_file(name):
        return None
    suffix = Path(name).suffix.lower()
    taken = " ".join(MEDIA_SUFFIXES)
    return f"{name}: unsupported file type {suffix or '(no extension)'}; use audio or video ({taken})"


def sidecar_of(source: str):
    """The story record beside a media file (`sidecar.read_sidecar`); None for live sources."""
    from adasr_av.media.sidecar import read_sidecar

    return read_sidecar(source) if source_kind(source) == "file" else None


def open_audio(source: str, realtime: bool = False) -> Iterable[AudioChunk]:
    """16 kHz mono chunks from `source`; live sources (mic, RTSP) are real time by nature."""
    kind = source_kind(source)
    if kind == "mic":
        from adasr_av.media.microphone import microphone

        return microphone()
    if kind == "rtsp":
        from adasr_av.media.rtsp import read_rtsp_audio

        return read_rtsp_audio(source)  # it reports each gap, naming the URL without its password
    from adasr_av.media.file import read_audio

    return read_audio(source, realtime=realtime)


def until_interrupted(records: Iterable[AudioChunk]) -> Iterator[AudioChunk]:
    """End the stream cleanly on Ctrl-C, so that what follows still flushes and answers."""
    iterator = iter(records)
    try:
        yield from iterator
    except KeyboardInterrupt:
        log.warning("interrupted: closing the stream")
    finally:
        close = getattr(records, "close", None) or getattr(iterator, "close", None)
        if close:
            close()


class EndTracker:
    """Passes audio chunks through and remembers where the stream ended: the reasoner's T, which
    for a live source is known only when it stops."""

    def __init__(self, records: Iterable[AudioChunk]):
        self.records = records
        self.t_end: float | None = None  # end of the latest chunk; None before the first

    def __iter__(self) -> Iterator[AudioChunk]:
        for chunk in self.records:
            self.t_end = chunk.t_end
            yield chunk


@dataclass(frozen=True)
class Streams:
    """What a media file holds: how many audio and video streams (cover art is no video), its
    container format (FFmpeg's comma-separated names) and its length (None: not stated)."""

    audio: int
    video: int
    format: str = ""
    duration_s: float | None = None


def probe(source: str) -> Streams | None:
    """A file's streams, read once (a bad file fails here, naming it); None for live sources."""
    if source_kind(source) != "file":
        return None
    from adasr_av.media.file import media_streams

    return Streams(*media_streams(source))


UPLOAD_FORMATS = frozenset(
    {"wav", "mp3", "flac", "ogg", "matroska", "webm", "mov", "mp4", "m4a", "avi", "aac", "aiff"}
)  # containers a page upload may be: audio and video files, not images, playlists or devices


def check_upload(path: str | Path, max_seconds: float) -> Streams:
    """An uploaded file checked by what it holds, not by its name, before anything else reads it:
    a container on the allow-list, at least one audio or video stream, at most `max_seconds`
    long; any failure is one line naming the file."""
    streams = probe(str(path))
    formats = set(streams.format.split(","))
    if not formats & UPLOAD_FORMATS:
        raise AdasrError(f"{path}: a {streams.format} file is not taken (audio or video files only)")
    if not (streams.audio or streams.video):
        raise AdasrError(f"{path}: no audio or video stream")
    if streams.duration_s is not None and streams.duration_s > max_seconds:
        raise AdasrError(f"{path}: {streams.duration_s:.0f} s long; at most {max_seconds:g} s is taken")
    return streams


def reads_frames(source: str, video: str, streams: Streams | None = None) -> bool:
    """Whether a run under `--video video` reads `source`'s frames: never with off or from the
    microphone; auto reads a file's video stream and takes only speech from a live input (a camera's
    picture is read when ocr or caption asks); `streams` is the file's `probe` when the caller has it."""
    kind = source_kind(source)
    if video == "off" or kind == "mic":
        return False
    if kind == "rtsp":
        return video != "auto"
    return (streams or probe(source)).video > 0


def open_records(
    source: str, fps: float | None = None, realtime: bool = False, streams: Streams | None = None
) -> Iterator[Record]:
    """Audio chunks and, with `fps`, video frames at that rate, as one stream in time order.

    A file is read twice over, once per stream, and the two merged by time (a record's time is when
    it is complete); `realtime` paces the merged stream; `streams` is the file's `probe` when the
    caller has it. A file without the streams asked for is an AdasrError naming it; a file without
    audio gives its frames alone. An RTSP URL with `fps` is read over two connections, audio and
    video, and their records are taken as they arrive. The microphone gives audio.
    """
    import heapq

    from adasr_av.media.pacing import paced

    kind = source_kind(source)
    if fps is None or kind == "mic":
        return iter(open_audio(source, realtime=realtime))
    if kind == "rtsp":
        from adasr_av.media.rtsp import read_rtsp_frames

        frames = read_rtsp_frames(source, fps)
        return as_they_arrive([open_audio(source), frames])
    from adasr_av.media.file import read_audio, read_video_frames

    streams = streams or probe(source)
    readers = []
    if streams.audio:
        readers.append(read_audio(source))
    if streams.video:
        readers.append(read_video_frames(source, fps))
    if not readers:
        raise AdasrError(f"media file {source}: no audio or video stream")
    merged = heapq.merge(*readers, key=record_time)
    return paced(merged, record_time) if realtime else merged


def as_they_arrive(readers: list[Iterable[Record]]) -> Iterator[Record]:
    """Live readers' records in the order they arrive, one thread a reader; the first failure is
    raised here; closing this iterator closes the readers."""
    import queue
    import threading

    arrived: queue.Queue = queue.Queue(maxsize=256)
    done = object()
    stop = threading.Event()

    def drain(reader: Iterable[Record]) -> None:
        try:
            for record in reader:
                if stop.is_set():
                    break
                arrived.put(record)
        except BaseException as err:  # noqa: BLE001 - carried to the consumer, raised there
            arrived.put(err)
        finally:
            close = getattr(reader, "close", None)
            if close:
                close()
            arrived.put(done)

    threads = [threading.Thread(target=drain, args=(r,), daemon=True) for r in readers]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = arrived.get()
            if item is done:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
