"""Where events go: a readable live timeline on the terminal and JSON lines on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from adasr_av.types import Event

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
        return f"{event.t_avail:8.2f}s  chunk {i:<4} {_clip(event.text, _WIDTH)}{lag}"
    if event.type == "think":
        return f"{t}  think {i:<4} {_clip(event.text, _WIDTH - 30)} {span}{flags}"
    if event.type == "skip":
        return f"{t}  skip  {i:<4} {span}{flags}"
    if event.type == "deep":
        return f"{t}  deep       {_clip(event.text, _WIDTH - 30)} {span}{flags}"
    if event.type == "answer":
        return f"{t}  answer     {event.info.get('answer')!s:<20} {span}{flags}"
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
    if info.get("violations"):
        lines.append(f"protocol violations: {'; '.join(info['violations'][:5])}")
    return "\n".join(lines)


def print_event(event: Event, out: TextIO | None = None) -> None:
    print(format_event(event), file=out or sys.stdout, flush=True)


class EventWriter:
    """Appends events as JSON lines, flushed one by one so a cut-off run keeps what it did."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def write(self, event: Event) -> None:
        self._file.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
