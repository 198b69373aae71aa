"""One door for every audio source the CLI names: a media file, `mic`, or an `rtsp://` URL."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from adasr_av.errors import AdasrError
from adasr_av.types import AudioChunk

log = logging.getLogger(__name__)


def open_audio(source: str, realtime: bool = False) -> Iterable[AudioChunk]:
    """16 kHz mono chunks from `source`; live sources (mic, RTSP) are real time by nature."""
    if source == "mic":
        from adasr_av.media.microphone import microphone

        return microphone()
    if source.startswith(("rtsp://", "rtsps://")):
        from adasr_av.media.rtsp import read_rtsp_audio

        return read_rtsp_audio(source, on_gap=lambda gap: log.warning("%s: %s", source, gap))
    if "://" in source:
        raise AdasrError(f"source {source}: unsupported URL scheme (use a file, mic or rtsp://)")
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
