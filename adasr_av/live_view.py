"""The terminal view of a live run (rich): the committed transcript, thoughts and skips as they
happen, how far the reasoner lags, context compactions, and the answer with its latency. Redrawn
on every event; on a terminal that is not a TTY the plain timeline lines are printed instead. What
it keeps is bounded (the latest chunks and units), so an hour-long stream costs no more."""

from __future__ import annotations

from collections import deque

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from adasr_av.sinks import describe_compaction, format_event
from adasr_av.types import Event

TRANSCRIPT_SHOWN = 12  # latest committed chunks in the transcript panel


class LiveView:
    def __init__(self, title: str, question: str, console: Console | None = None, units_shown: int = 8):
        self.console = console or Console()
        self.title, self.question = title, question
        self.transcript: deque[str] = deque(maxlen=TRANSCRIPT_SHOWN)
        self.compacted = ""  # the latest context compaction, in words
        self.units: deque[Event] = deque(maxlen=units_shown)
        self.status = "listening…"
        self.answer: Event | None = None
        self.summary: Event | None = None
        self.live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self.live = Live(self.render(), console=self.console, refresh_per_second=8)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)
        if self.summary is not None:
            self.console.print(format_event(self.summary), highlight=False, soft_wrap=True, markup=False)

    def update(self, event: Event, stopping: bool = False) -> None:
        if self.live is None and event.type != "summary":
            self.console.print(format_event(event), highlight=False, soft_wrap=True, markup=False)
        if event.type == "chunk" and event.tokens:
            source = event.info.get("source", "asr")
            self.transcript.append(event.text if source == "asr" else f"[{source}: {event.text}]")
            lag = event.info.get("lag_s", 0.0)
            queued = event.info.get("queued", 0)
            self.status = f"stream {event.t_avail:.1f}s | lag {lag:.2f}s | {queued} chunk(s) waiting"
        elif event.type in ("think", "skip"):
            self.units.append(event)
        elif event.type == "context":
            self.compacted = f"context compacted at {event.t_done:.1f}s: {describe_compaction(event.info)}"
        elif event.type == "deep":
            self.status = "stream ended: deliberating"
        elif event.type == "answer":
            self.answer = event
        elif event.type == "summary":
            self.summary = event
        if stopping and event.type not in ("deep", "answer", "summary"):
            self.status += " | stopping: finishing what was heard"
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Group:
        transcript = Text(" ".join(self.transcript) or "…")
        units = Text()
        for e in self.units:
            label = "skip " if e.type == "skip" else "think"
            units.append(f"{e.chunk_index:>3} {label} ", style="bold" if e.type == "think" else "dim")
            units.append((e.text or "") + "\n", style="" if e.type == "think" else "dim")
        parts = [
            Panel(transcript, title=f"{self.title} | question: {self.question or '(in the stream)'}"),
            Panel(units or Text("…"), title="thoughts and skips"),
            Text(self.status, style="cyan"),
        ]
        if self.compacted:
            parts.append(Text(self.compacted, style="dim"))
        if self.summary is not None:
            info = self.summary.info
            verdict = (
                ""
                if "correct" not in info
                else f" (correct: {info['correct']}, reference {info['reference']})"
            )
            parts.append(
                Panel(
                    Text(
                        f"{info['answer']}{verdict}\n{info['answer_latency_s']:.2f} s after the stream ended"
                    ),
                    title="answer",
                    border_style="green",
                )
            )
        return Group(*parts)
