"""RTSP streams (cameras, encoders, media servers) via PyAV, reconnecting when the stream drops.

Stream time never goes back and never stalls: after an outage the next record is stamped
(stream time reached before it) + (wall-clock length of the outage), and the hole is reported as a
StreamGap, so downstream latency accounting stays in real seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import av
import av.container
import av.stream

from adasr_av.errors import AdasrError
from adasr_av.media.audio import CHUNK_SECONDS, audio_chunks, seconds_to_samples
from adasr_av.media.file import decoded, describe, sampled_frames
from adasr_av.media.sources import redact
from adasr_av.types import AudioChunk, VideoFrame

log = logging.getLogger(__name__)

Record = TypeVar("Record")


@dataclass(frozen=True)
class StreamGap:
    """Stream time [t_start, t_end) with no media: the source was lost for that long on the wall clock."""

    t_start: float
    t_end: float
    reason: str


@dataclass(frozen=True)
class Reconnect:
    """How to open the URL and how hard to try again: timeouts in seconds, backoff doubling per failure."""

    open_timeout: float = 5.0
    read_timeout: float = 5.0
    max_retries: int = 5  # consecutive failed attempts before giving up
    backoff: float = 0.5
    max_backoff: float = 8.0
    end_on_eof: bool = False  # True: the server ending the stream ends it here (a recording, not live)

    def delay(self, failures: int) -> float:
        return min(self.backoff * 2 ** (failures - 1), self.max_backoff)


def read_rtsp_audio(
    url: str,
    open_timeout: float = 5.0,
    read_timeout: float = 5.0,
    max_retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    on_gap: Callable[[StreamGap], None] | None = None,
    chunk_seconds: float = CHUNK_SECONDS,
    end_on_eof: bool = False,
) -> Iterator[AudioChunk]:
    """The first audio stream of `url` as 16 kHz mono AudioChunks, reconnecting after failures.

    A live stream has no end, so a read error or an end of stream means reconnect; after
    `max_retries` consecutive failed attempts an AdasrError names the URL. `end_on_eof=True` takes an
    end of stream as the end instead (a server replaying a recording). Close the iterator to stop.
    """
    chunk_samples = seconds_to_samples(chunk_seconds)

    def session(connection: Connection, t_start: float) -> Iterator[AudioChunk]:
        stream = _first(connection.container.streams.audio, url, "audio")
        return audio_chunks(connection.frames(stream), chunk_samples, t_start)

    settings = Reconnect(open_timeout, read_timeout, max_retries, backoff, max_backoff, end_on_eof)
    return reconnecting(url, session, lambda chunk: chunk.t_end, settings, on_gap)


def read_rtsp_frames(
    url: str,
    fps: float,
    open_timeout: float = 5.0,
    read_timeout: float = 5.0,
    max_retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    on_gap: Callable[[StreamGap], None] | None = None,
    end_on_eof: bool = False,
) -> Iterator[VideoFrame]:
    """The first video stream of `url` as RGB VideoFrames at `fps`; reconnects like read_rtsp_audio."""
    if fps <= 0:
        raise AdasrError(f"RTSP {redact(url)}: fps must be > 0, got {fps}")

    def session(connection: Connection, t_start: float) -> Iterator[VideoFrame]:
        stream = _first(connection.container.streams.video, url, "video")
        stream.thread_type = "AUTO"
        return sampled_frames(_session_times(connection.frames(stream), t_start), fps, t_start)

    settings = Reconnect(open_timeout, read_timeout, max_retries, backoff, max_backoff, end_on_eof)
    return reconnecting(url, session, lambda frame: frame.t + 1.0 / fps, settings, on_gap)


class Connection:
    """One open connection: its decoded frames, and how it ended (read error or end of stream).

    `frames` ends normally when the connection fails, noting why in `lost`, so a session still
    flushes what it holds (the last partial chunk); `last_data` is when a frame last arrived.
    """

    def __init__(self, container: av.container.InputContainer):
        self.container = container
        self.lost: str | None = None
        self.last_data: float | None = None

    def frames(self, stream: av.stream.Stream) -> Iterator[av.frame.Frame]:
        try:
            for frame in decoded(self.container, stream):
                self.last_data = time.monotonic()
                yield frame
        except av.error.ExitError:  # PyAV's read timeout interrupts FFmpeg with AVERROR_EXIT
            self.lost = "no data within the read timeout"
        except av.FFmpegError as err:
            self.lost = describe(err)


Session = Callable[[Connection, float], Iterator[Record]]


def reconnecting(
    url: str,
    session: Session,
    end_of: Callable[[Record], float],
    settings: Reconnect,
    on_gap: Callable[[StreamGap], None] | None = None,
) -> Iterator[Record]:
    """Records from `session(connection, t_start)` over successive connections to `url`.

    A session decodes one connection from stream time t_start; `end_of` gives the stream time a
    record reaches. An outage lasts from the last frame received to the next successful open, and
    moves stream time on by that much. Attempts that fail or deliver nothing count as failures; a
    record resets the count.
    """
    label = redact(url)
    reached, failures, lost_at, lost_why = 0.0, 0, None, ""
    while True:
        container, why = _open(url, settings)
        if container is not None:
            opened_at = time.monotonic()
            with container:
                if lost_at is not None:
                    gap = StreamGap(reached, reached + opened_at - lost_at, lost_why)
                    log.warning("RTSP %s: reconnected after a %.2f s gap", label, gap.t_end - gap.t_start)
                    if on_gap is not None:
                        on_gap(gap)
                    reached = gap.t_end
                connection = Connection(container)
                for record in session(connection, reached):
                    failures = 0
                    reached = end_of(record)
                    yield record
            if connection.lost is None and settings.end_on_eof:
                return
            why = lost_why = connection.lost or "the server ended the stream"
            lost_at = connection.last_data or opened_at
            log.warning("RTSP %s: stream lost (%s), reconnecting", label, why)
        failures += 1
        if failures > settings.max_retries:
            raise AdasrError(f"RTSP {label}: {why} ({failures} attempts)")
        time.sleep(settings.delay(failures))


def _open(url: str, settings: Reconnect) -> tuple[av.container.InputContainer | None, str]:
    """The opened stream, or None and why not."""
    started = time.monotonic()
    try:
        timeout = (settings.open_timeout, settings.read_timeout)
        return av.open(url, options={"rtsp_transport": "tcp"}, timeout=timeout), ""
    except av.FFmpegError as err:
        # PyAV's timeout interrupts FFmpeg, whose RTSP handshake then reports "invalid data"
        if isinstance(err, av.error.ExitError) or time.monotonic() - started >= settings.open_timeout:
            return None, f"no answer within {settings.open_timeout:g} s"
        return None, describe(err)


def _session_times(frames: Iterator[av.VideoFrame], t_start: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """Frame times from t_start: a new connection's timestamps start anywhere. Frames without a
    timestamp are timed by their arrival."""
    first_pts = first_wall = None
    for frame in frames:
        now = time.monotonic()
        first_wall = now if first_wall is None else first_wall
        if frame.time is None:
            yield t_start + now - first_wall, frame
            continue
        first_pts = frame.time if first_pts is None else first_pts
        yield t_start + max(0.0, frame.time - first_pts), frame


def _first(streams, url: str, kind: str):
    if not streams:
        raise AdasrError(f"RTSP {redact(url)}: no {kind} stream")
    return streams[0]
