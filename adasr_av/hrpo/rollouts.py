"""Group rollouts: G sampled streaming rollouts of one story, advanced together in one batched
session (`StreamingReasoner(group_size=G)`), and what rewards, advantages and the loss read of each.

The environment injects every chunk at its arrival time on each rollout's own cost-model clock, so
overflow and answer latency are in stream seconds. Every token of a rollout's sequence gets a label:
`env` for what the environment (or the runtime, closing a capped span) wrote, which the loss masks
out, `stream` with its unit index for units, and `deep` for the deep reasoning and the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from adasr_av.data.dataset import StreamedStory
from adasr_av.evaluation import RUNTIME_CLOSED, StoryResult, story_result
from adasr_av.hrpo.advantages import TokenLabels, TokenPhase
from adasr_av.hrpo.rewards import ScoredRollout
from adasr_av.reasoner.protocol import ProtocolIds
from adasr_av.reasoner.session import Rollout, Segment, StreamingReasoner, reason_over_stream
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


def sample_group(reasoner: StreamingReasoner, story: StreamedStory) -> list[SampledRollout]:
    """Run the story through `reasoner`'s group of rollouts (sampling set in its options)."""
    for _ in reason_over_stream(reasoner, story.chunks, story.question, story.answer, story.t_stream_end):
        pass
    return [sampled_rollout(row, reasoner.ids, story) for row in reasoner.rollouts]


def sampled_rollout(row: Rollout, ids: ProtocolIds, story: StreamedStory) -> SampledRollout:
    result = story_result(story.id, row.events, story.informative)
    return SampledRollout(
        list(row.sequence),
        token_labels(row, ids),
        scored_rollout(row.events, result),
        result,
        row.events,
        tuple(row.segments),
    )


def token_labels(row: Rollout, ids: ProtocolIds) -> TokenLabels:
    """Per-token phase, unit and boundary flags of one rollout's sequence."""
    boundaries = {ids.think_end, ids.skip, ids.reason_end, ids.answer_end}
    phase: list[TokenPhase] = []
    unit: list[int | None] = []
    boundary: list[bool] = []
    for span in row.spans:
        n = span.end - span.start
        if span.role != "model":
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

    units = [e for e in events if e.type in ("think", "skip")]
    final = [e for e in events if e.type in ("deep", "answer")]
    return ScoredRollout(
        answer=result.answer,
        violations=result.violations,
        stream_valid=all(closed_by_model(e) for e in units),
        deep_valid=all(closed_by_model(e) for e in final) and result.answer is not None,
        overflow_s=result.overflow_s,
        answer_latency_s=result.answer_latency_s,
        unit_overflow_s=unit_overflow(events),
        stream_tokens=result.stream_tokens,
        deep_tokens=result.deep_tokens,
    )


def unit_overflow(events: list[Event]) -> dict[int, float]:
    """Per chunk index: how far its streaming work (prefill and unit) ran past the next arrival."""
    done: dict[int, float] = {}
    for e in events:
        if e.type in ("chunk", "think", "skip") and e.chunk_index is not None:
            done[e.chunk_index] = max(done.get(e.chunk_index, 0.0), e.t_done)
    arrivals = [(e.chunk_index, e.t_avail) for e in events if e.type == "chunk" and e.tokens]
    return {i: max(0.0, done[i] - nxt) for (i, _), (_, nxt) in pairwise(arrivals)}
