"""Teacher styles: a streamed story's gold turned into the protocol sequence a model imitates.

- `uniform` thinks on every chunk (a distractor gets "no change") and recaps every state before
  the answer: what plain supervised imitation of a careful reasoner gives.
- `adaptive` skips distractor chunks and keeps the deep phase to the one computation the answer
  needs.
- read-then-think (mode) puts every state update after the stream ends.
"""

from __future__ import annotations

from typing import Literal

from adasr_av.data.dataset import StreamedStory
from adasr_av.reasoner.protocol import (
    Mode,
    chunk_span,
    deep_span,
    question_span,
    skip_unit,
    stream_end_span,
    thought_unit,
)

Style = Literal["uniform", "adaptive"]
STYLES: tuple[Style, ...] = ("uniform", "adaptive")
NO_CHANGE = "no change"
SpanRole = Literal["env", "model"]


def unit(informative: bool, thought: str, style: Style) -> str:
    """The gold unit after one chunk."""
    if informative and thought:
        return thought_unit(thought)
    return skip_unit() if style == "adaptive" else thought_unit(NO_CHANGE)


def deep_reasoning(story: StreamedStory, style: Style, mode: Mode = "streaming") -> str:
    record = story.record
    if mode == "read-then-think":
        updates = [t for t, i in zip(story.thoughts or (), story.informative or (), strict=True) if i and t]
        return ". ".join([*updates, record["final"]])
    if style == "uniform":
        return f"{record['recap']}. {record['final']}"
    return record["final"]


def gold_spans(
    story: StreamedStory, style: Style, mode: Mode = "streaming", instruction: str | None = None
) -> list[tuple[SpanRole, str]]:
    """The whole gold sequence as (writer, text) spans, in the order the session produces them."""
    if story.thoughts is None or story.informative is None:
        raise ValueError(f"story {story.id} has no gold thoughts")
    prompt = question_span(story.question, *([instruction] if instruction is not None else []))
    spans: list[tuple[SpanRole, str]] = [("env", prompt)]
    for chunk, informative, thought in zip(story.chunks, story.informative, story.thoughts, strict=True):
        spans.append(("env", chunk_span(chunk.text, source=chunk.source)))
        if mode == "streaming":
            spans.append(("model", unit(informative, thought, style)))
    spans.append(("env", stream_end_span()))
    spans.append(("model", deep_span(deep_reasoning(story, style, mode), story.answer or "")))
    return spans
