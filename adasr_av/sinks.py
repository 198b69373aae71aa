"""Where events go: a readable live timeline on the terminal, JSON lines and transcripts written as
they come, and a compact bounded record for the timeline figure. Nothing here keeps a whole stream
in memory: a one-hour live run costs what a one-minute one does."""

from __future__ import annotations

import contextlib
import json
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

from adasr_av.errors import AdasrError
from adasr_av.types import Event, TextChunk

_WIDTH = 88


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_event(event: Event) -> str:
    """One timeline line: stream time the work finished, what it was, and its text."""
    t = f"{event.t_done:8.2f}s"
    i = "" if event.chunk_index is None else str(event.chunk_index)
    span = f"[{event.t_begin:.2f}-{event.t_done:.2f}s, {event.tokens} tok]"
    flags = " (capped)" if event.info.get("capped") else ""
    if "malformed" in event.info:
        flags += f" (closed by {event.info['malformed']})"
    if event.type == "chunk":
        waited = event.t_begin - event.t_avail
        lag = f"  (waited {waited:.2f}s)" if waited > 0.005 else ""
        source = event.info.get("source", "asr")
        tag = f"[{source}] " if source != "asr" else ""  # speech is the default: only others are named
        return f"{event.t_avail:8.2f}s  chunk {i:<4} {tag}{_clip(event.text, _WIDTH - len(tag))}{lag}"
    if event.type == "think":
        return f"{t}  think {i:<4} {_clip(event.text, _WIDTH - 30)} {span}{flags}"
    if event.type == "skip":
        return f"{t}  skip  {i:<4} {span}{flags}"
    if event.type == "context":
        return f"{t}  context    compacted {describe_compaction(event.info)} {span}"
    if event.type == "deep":
        return f"{t}  deep       {_clip(event.text, _WIDTH - 30)} {span}{flags}"
    if event.type == "answer":
        return f"{t}  answer     {event.info.get('answer')!s:<20} {span}{flags}"
    if event.type != "summary":  # a kind this printer does not know yet: its type and text
        return f"{t}  {event.type:<10} {_clip(event.text, _WIDTH - 30)} {span}"
    return _format_summary(event)


def describe_compaction(info: dict) -> str:
    """What a context compaction did, from its event's info (tolerant of missing keys)."""
    before, after = info.get("tokens_before", "?"), info.get("tokens_after", "?")
    return f"{before} -> {after} tokens, {info.get('chunks_dropped', '?')} chunks dropped"


def _format_summary(event: Event) -> str:
    info = event.info
    verdict = "" if "correct" not in info else f"  correct={info['correct']} (reference {info['reference']})"
    clock = info["clock"] + (f":{info['cost_profile']}" if info.get("cost_profile") else "")
    lines = [
        f"answer: {info['answer']}{verdict}",
        f"answer latency {info['answer_latency_s']:.2f}s after the stream ended at {event.t_avail:.2f}s"
        f" | max lag {info['max_lag_s']:.2f}s | overflow {info['overflow_s']:.2f}s"
        f" | stream tokens {info['stream_tokens']} | deep tokens {info['deep_tokens']}"
        f" | skips {info['skips']} | clock {clock} | {info['mode']}",
    ]
    if info.get("compactions"):
        cut = " (read-then-think: the deep phase did not see them)" if info.get("truncated") else ""
        lines.append(
            f"context compacted {info['compactions']} times, {info['chunks_dropped']} chunks dropped{cut}"
        )
    if info.get("violations"):
        lines.append(f"protocol violations: {'; '.join(info['violations'][:5])}")
    return "\n".join(lines)


def print_event(event: Event, out: TextIO | None = None) -> None:
    print(format_event(event), file=out or sys.stdout, flush=True)


class AppendingFile:
    """A text file written record by record and flushed each time, so a cut-off run keeps what it did."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._named():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def append(self, text: str) -> None:
        with self._named():
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        with self._named():
            self._file.close()  # closes the descriptor even when the last flush fails

    def discard(self) -> None:
        """Close and remove the file: what a run that failed leaves of it is no output."""
        with contextlib.suppress(AdasrError):
            self.close()
        self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _named(self):
        """A failed write (a full disk, a vanished folder) is one line naming the file."""
        try:
            yield
        except OSError as err:
            raise AdasrError(f"{self.path}: cannot write ({(err.strerror or str(err)).lower()})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventWriter(AppendingFile):
    """Events as JSON lines."""

    def write(self, event: Event) -> None:
        self.append(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")


# --- transcripts -----------------------------------------------------------------------------------

TRANSCRIPT_FORMATS = ("jsonl", "srt", "vtt", "txt")


def chunk_record(chunk: TextChunk) -> dict:
    """A text chunk as one JSON object: text, times, source and its words."""
    words = [
        {
            "text": w.text.strip(),
            "t_start": round(w.t_start, 3),
            "t_end": round(w.t_end, 3),
            "probability": round(w.probability, 4),
            "t_commit": None if w.t_commit is None else round(w.t_commit, 3),
        }
        for w in chunk.words
    ]
    return {
        "text": chunk.text,
        "t_start": round(chunk.t_start, 3),
        "t_end": round(chunk.t_end, 3),
        "t_emit": round(chunk.t_emit, 3),
        "source": chunk.source,
        "words": words,
    }


def _timestamp(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


class TranscriptWriter(AppendingFile):
    """Text chunks as JSON lines, SRT or WebVTT cues, or plain lines."""

    def __init__(self, path: str | Path, format: str = "jsonl"):
        if format not in TRANSCRIPT_FORMATS:
            raise ValueError(f"unknown transcript format {format!r}")
        super().__init__(path)
        self.format, self.count = format, 0
        if format == "vtt":
            self.append("WEBVTT\n\n")

    def write(self, chunk: TextChunk) -> None:
        self.count += 1
        if self.format == "jsonl":
            line = json.dumps(chunk_record(chunk), ensure_ascii=False) + "\n"
        elif self.format == "txt":
            line = chunk.text + "\n"
        else:
            sep = "," if self.format == "srt" else "."
            span = f"{_timestamp(chunk.t_start, sep)} --> {_timestamp(chunk.t_end, sep)}"
            line = (f"{self.count}\n" if self.format == "srt" else "") + f"{span}\n{chunk.text}\n\n"
        self.append(line)


class TranscriptsBySource:
    """Each encoder's chunks in a transcript of its own (speech in one SRT, screen text in another):
    `paths` by chunk source; a source with no path is not written."""

    def __init__(self, paths: dict[str, str | Path | None], format: str = "srt"):
        self.writers = {source: TranscriptWriter(path, format) for source, path in paths.items() if path}

    def write(self, chunk: TextChunk) -> None:
        if chunk.source in self.writers:
            self.writers[chunk.source].write(chunk)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()

    def discard(self) -> None:
        for writer in self.writers.values():
            writer.discard()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def format_chunk(chunk: TextChunk) -> str:
    """One live transcript line: the media span, when it was committed, and the text."""
    return f"[{chunk.t_start:7.2f} -> {chunk.t_end:7.2f}s, committed {chunk.t_emit:7.2f}s]  {chunk.text}"


# --- the timeline figure's record ------------------------------------------------------------------

TIMELINE_MAX_SPANS = 20_000  # events (and chunk spans) kept for the figure: hours of speech


class Timeline:
    """What the timeline figure draws, kept compactly and bounded: each event's type, token count
    and times, each chunk's media span, and the summary; no text and no words.

    Why a record rather than reading back the events file: `--plot` does not need `--out`, and the
    demo draws its figure with no file at all. Why compact: a chunk's words and a thought's text are
    most of an event's size and the figure draws none of them (a span here is a small tuple). Why
    bounded: beyond `max_spans` the oldest spans are dropped, so an endless stream stays flat; its
    figure then shows the latest part and `title` says so.
    """

    def __init__(self, max_spans: int = TIMELINE_MAX_SPANS):
        self._events: deque[tuple[str, int, int | None, float, float, float]] = deque(maxlen=max_spans)
        self._chunks: deque[tuple[float, float, float]] = deque(maxlen=max_spans)
        self.summary: Event | None = None
        self.dropped = 0  # events no longer kept

    def add_event(self, event: Event) -> None:
        if event.type == "summary":
            self.summary = event
            return
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(
            (event.type, event.tokens, event.chunk_index, event.t_avail, event.t_begin, event.t_done)
        )

    def add_chunk(self, chunk: TextChunk) -> None:
        self._chunks.append((chunk.t_start, chunk.t_end, chunk.t_emit))

    def events(self) -> list[Event]:
        """The kept events as text-less Events (what `plots.timeline_figure` takes)."""
        kept = [Event(kind, "", index, tokens, *times) for kind, tokens, index, *times in self._events]
        return kept + ([self.summary] if self.summary is not None else [])

    def chunks(self) -> list[TextChunk]:
        return [TextChunk("", t_start, t_end, t_emit) for t_start, t_end, t_emit in self._chunks]

    def title(self, title: str) -> str:
        if not self.dropped:
            return title
        return f"{title} (the latest {len(self._events)} events; {self.dropped} earlier ones not kept)"

    def save(self, path: str | Path, title: str = "") -> Path:
        """The figure written to `path` (PNG, SVG or PDF by suffix)."""
        from adasr_av.plots import save_timeline

        return save_timeline(path, self.events(), self.chunks(), self.title(title))

    def figure(self, title: str = ""):
        from adasr_av.plots import timeline_figure

        return timeline_figure(self.events(), self.chunks(), self.title(title))
