"""Group rollouts: G sampled streaming rollouts of one story, advanced together in one batched
session (`StreamingReasoner(group_size=G)`), and what rewards, advantages and the loss read of each.

The environment injects every chunk at its arrival time on each rollout's own cost-model clock, so
overflow and answer latency are in stream seconds. Every token of a rollout's sequence gets a label:
`env` for what the environment (or the runtime, closing a capped span) wrote, which the loss masks
out, `stream` with its unit index for units, and `deep` for the deep reasoning and the answer.

An EOS the model samples inside a span is not kept: the runtime writes the span's closing token in
its place, and that is what the later tokens saw. The choice was the model's, so that position is
labelled with its phase and scored for the EOS (`model_targets`): the format penalty it earned
reaches the token that earned it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from adasr_av.data.dataset import StreamedStory
from adasr_av.evaluation import RUNTIME_CLOSED, StoryResult, story_result
from adasr_av.hrpo.advantages import TokenLabels, TokenPhase
from adasr_av.hrpo.rewards import ScoredRollout
from adasr_av.reasoner.protocol import ProtocolIds
from adasr_av.reasoner.session import (
    Rollout,
    Segment,
    StreamingReasoner,
    reason_over_stream,
    reason_over_streams,
)
from adasr_av.timing import overflow_by_chunk
from adasr_av.types import Event


@dataclass(frozen=True)
class SampledRollout:
    """One rollout of a group: its token sequence with labels, its scores and its figures."""

    tokens: list[int]
    labels: TokenLabels
    scored: ScoredRollout
    result: StoryResult
    events: list[Event]
    segments: tuple[Segment, ...] = (Segment(0),)
    sampled: dict[int, int] = field(default_factory=dict)  # position -> the EOS the runtime replaced

    def model_views(self, advantages: list[float]) -> list[tuple[list[int], list[bool], list[float]]]:
        """(ids, loss mask, advantages) of each sequence the model saw while writing this rollout:
        the whole rollout, or one per context segment once a compaction restarted the context with
        its kept text (environment tokens there, masked out), so that log-probabilities are
        recomputed on exactly the context each token was sampled in."""
        ends = [s.start for s in self.segments[1:]] + [len(self.tokens)]
        views = []
        for segment, end in zip(self.segments, ends, strict=True):
            n = len(segment.prefix)
            mask = [p != "env" for p in self.labels.phase[segment.start : end]]
            views.append(
                (
                    [*segment.prefix, *self.tokens[segment.start : end]],
                    [False] * n + mask,
                    [0.0] * n + advantages[segment.start : end],
                )
            )
        return views

    def model_targets(self) -> list[list[int]]:
        """The token each position of each of `model_views` is scored for: the view's own, except
        where the model sampled EOS and the runtime wrote the span's closing token in its place."""
        ends = [s.start for s in self.segments[1:]] + [len(self.tokens)]
        return [
            [*segment.prefix, *(self.sampled.get(i, self.tokens[i]) for i in range(segment.start, end))]
            for segment, end in zip(self.segments, ends, strict=True)
        ]


def sample_group(reasoner: StreamingReasoner, story: StreamedStory) -> list[SampledRollout]:
    """Run the story through `reasoner`'s group of rollouts (sampling set in its options)."""
    for _ in reason_over_stream(reasoner, story.chunks, story.question, story.answer, story.t_stream_end):
        pass
    return [sampled_rollout(row, reasoner.ids, story) for row in reasoner.rollouts]


def sample_groups(
    reasoner: StreamingReasoner, stories: Sequence[StreamedStory]
) -> list[list[SampledRollout]]:
    """Every story's group of `reasoner.group_size` rollouts, all decoded together as the rows of
    one session (a step's groups cost one batched forward per token, not one each)."""
    g = reasoner.group_size
    rows = [story for story in stories for _ in range(g)]
    reason_over_streams(reasoner, [(s.chunks, s.question, s.answer, s.t_stream_end) for s in rows])
    sampled = [sampled_rollout(row, reasoner.ids, s) for row, s in zip(reasoner.rollouts, rows, strict=True)]
    return [sampled[k * g : (k + 1) * g] for k in range(len(stories))]


def sampled_rollout(row: Rollout, ids: ProtocolIds, story: StreamedStory) -> SampledRollout:
    result = story_result(story.id, row.events, story.informative)
    return SampledRollout(
        list(row.sequence),
        token_labels(row, ids),
        scored_rollout(row.events, result),
        result,
        row.events,
        tuple(row.segments),
        eos_replaced(row),
    )


def eos_replaced(row: Rollout) -> dict[int, int]:
    """Position of each closing token the runtime wrote where the model had sampled EOS (the span's
    event says `eos`), with the EOS id the model chose there (a model may declare several in its
    generation_config); a span closed at its token cap was not the model's choice and is not here."""
    units = {
        e.chunk_index: e.info["eos_id"]
        for e in row.events
        if e.type in ("think", "skip") and e.info.get("eos")
    }
    phases = {
        e.type: e.info["eos_id"] for e in row.events if e.type in ("deep", "answer") and e.info.get("eos")
    }
    replaced = {}
    for span in row.spans:
        if span.role != "runtime":
            continue
        chosen = units.get(span.unit) if span.phase == "stream" else phases.get(span.phase)
        if chosen is not None:
            replaced[span.start] = chosen
    return replaced


def token_labels(row: Rollout, ids: ProtocolIds) -> TokenLabels:
    """Per-token phase, unit and boundary flags of one rollout's sequence; a closing token the
    runtime wrote in place of a sampled EOS is the model's (the EOS is what it is scored for)."""
    boundaries = {ids.think_end, ids.skip, ids.reason_end, ids.answer_end}
    replaced = eos_replaced(row)
    phase: list[TokenPhase] = []
    unit: list[int | None] = []
    boundary: list[bool] = []
    for span in row.spans:
        n = span.end - span.start
        if span.role != "model" and span.start not in replaced:
            kind: TokenPhase = "env"
        else:
            kind = "stream" if span.phase == "stream" else "deep"
        phase += [kind] * n
        unit += [span.unit if kind == "stream" else None] * n
        boundary += [kind != "env" and t in boundaries for t in row.sequence[span.start : span.end]]
    return TokenLabels(phase, unit, boundary)


def scored_rollout(events: list[Event], result: StoryResult) -> ScoredRollout:
    """What the reward functions read, from the rollout's events."""

    def closed_by_model(e: Event) -> bool:
        return not any(e.info.get(flag) for flag in RUNTIME_CLOSED) and "malformed" not in e.info

    units = {e.chunk_index: closed_by_model(e) for e in events if e.type in ("think", "skip")}
    final = [e for e in events if e.type in ("deep", "answer")]
    return ScoredRollout(
        answer=result.answer,
        violations=result.violations,
        stream_valid=all(units.values()),
        deep_valid=all(closed_by_model(e) for e in final) and result.answer is not None,
        overflow_s=result.overflow_s,
        answer_latency_s=result.answer_latency_s,
        unit_overflow_s=overflow_by_chunk(events),
        unit_valid=units,
        stream_tokens=result.stream_tokens,
        deep_tokens=result.deep_tokens,
    )
