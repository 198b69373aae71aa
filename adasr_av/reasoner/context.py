"""The context policy: what a streaming session keeps when its context would outgrow its budget.

A session's context is the prompt (instruction and question) followed by one piece per chunk: the
chunk span and the unit the model wrote after it. When prefilling the next chunk would cross the
token budget (room for that chunk's unit, the deep phase and the answer is kept outside it), the
session *compacts*: it keeps the prompt and the most recent
pieces that fit a retain budget (a fraction of the budget, so that compaction is amortised: the
next one comes only after the freed room has filled again), and rebuilds its cache from exactly
that text. Positions restart from 0, so RoPE and learned-position models alike stay in range.

Recency alone loses the state of a stream whose informative sentences lie minutes apart: the
pieces between them are skips of small talk. A thought restates the state it tracks (the
streaming protocol's thoughts do: "Tom: 10 + 5 = 15; Tom = 15"), so the latest `keep_thoughts`
pieces whose unit is a thought are kept however old they are, with the chunk they answer.
`keep_thoughts=0` is the plain recency policy.

A model may also reason well over fewer skipped chunks than its positions hold: the bundled tiny
models were trained on stories with at most three distractors, and after about eight skipped
chunks in a row they lose the state they track. `skip_window` bounds that: when the context holds
more skipped pieces than the window, the session compacts too, keeping half the window of them.
Skipped chunks are what the model itself judged to carry nothing, so they are the first to go. A
model's config may declare its window under `streaming_skip_window`.
"""

from __future__ import annotations

from dataclasses import dataclass

SKIP_WINDOW_CONFIG_KEY = "streaming_skip_window"
MIN_PIECE_TOKENS = 16  # a budget must hold the prompt plus a chunk and a unit of at least this size


@dataclass(frozen=True)
class Piece:
    """`context[start:end]` of one session row: the prompt (`chunk_index` None) or one chunk span
    with its unit; `thinks` when that unit is a thought (a state-carrying unit)."""

    start: int
    end: int
    chunk_index: int | None = None
    thinks: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ContextPolicy:
    """The token budget of a session's context and what a compaction keeps.

    `budget`: tokens the prompt, chunk spans and units may occupy once a chunk is prefilled (room
    for its unit, the deep phase and the answer is kept outside it); `retain`: the fraction of
    the budget a compaction keeps; `keep_thoughts`: the latest thought pieces kept however old;
    `skip_window`: the most skipped pieces the context may hold (None: no limit).
    """

    budget: int
    retain: float = 0.5
    keep_thoughts: int = 1
    skip_window: int | None = None

    def __post_init__(self) -> None:
        # retain, keep_thoughts and skip_window are the user's options, checked (with their flag
        # names) by ReasonerOptions; the budget is derived from the model here and checked here
        if self.budget < 1:
            raise ValueError(f"context budget must be positive, got {self.budget}")

    def needs_compaction(self, pieces: list[Piece], incoming: int) -> bool:
        """Whether prefilling `incoming` more tokens (the next chunk span) after `pieces` crosses
        the budget, or the pieces hold more skipped chunks than the window."""
        if sum(p.size for p in pieces) + incoming > self.budget:
            return True
        return self.skip_window is not None and _skips(pieces) > self.skip_window

    def kept(self, pieces: list[Piece], incoming: int) -> list[Piece]:
        """The pieces a compaction keeps, in order: the prompt, the pinned thoughts and the most
        recent pieces within the retain budget; never more than leaves room for `incoming`."""
        prompt, stream = pieces[0], pieces[1:]
        room = self.budget - incoming - prompt.size
        pinned = {i for i, p in enumerate(stream) if p.thinks}
        pinned = set(sorted(pinned)[-self.keep_thoughts :]) if self.keep_thoughts else set()
        chosen: set[int] = set()
        for i in sorted(pinned, reverse=True):  # the newest pinned thought first
            if stream[i].size <= room:
                chosen.add(i)
                room -= stream[i].size
        target = int(self.retain * self.budget) - prompt.size - sum(stream[i].size for i in chosen)
        skips_left = self.skip_window // 2 if self.skip_window is not None else len(stream)
        for i in range(len(stream) - 1, -1, -1):
            if i in chosen:
                continue
            if stream[i].size > min(target, room) or (not stream[i].thinks and skips_left == 0):
                break
            chosen.add(i)
            target -= stream[i].size
            room -= stream[i].size
            skips_left -= not stream[i].thinks
        return [prompt, *(stream[i] for i in sorted(chosen))]


def _skips(pieces: list[Piece]) -> int:
    return sum(p.chunk_index is not None and not p.thinks for p in pieces)
