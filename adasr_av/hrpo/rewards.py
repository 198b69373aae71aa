"""Rewards: plain functions `fn(rollouts, records) -> list[float]`, one value per rollout, like TRL's
reward functions, so a user can add their own. `records` are the dataset records (with `answer`).

The time rewards are in stream seconds. They are gated on correctness so that a fast wrong rollout
never outranks a correct one: a correct rollout's time reward lies in (-1, 0], shrinking with its
cost `c` as `-c / (1 + c)`; a wrong rollout's is -1, the floor. The phase rewards and the per-unit
reward follow the same rule, so no advantage of a fast wrong rollout beats a correct one's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adasr_av.reasoner.answer import answers_match

RewardFn = Callable[[Sequence["ScoredRollout"], Sequence[dict]], list[float]]


@dataclass(frozen=True)
class ScoredRollout:
    """What rewards read of one rollout."""

    answer: str | None
    violations: tuple[str, ...]  # protocol violations of the whole sequence
    stream_valid: bool  # every unit closed by the model itself with <|think_end|> or <|skip|>
    deep_valid: bool  # the deep span and the answer closed by the model, the answer boxed
    overflow_s: float  # streaming work that delayed the next chunk, stream seconds
    answer_latency_s: float
    unit_overflow_s: dict[int, float] = field(default_factory=dict)  # per chunk index (timing.py)
    unit_valid: dict[int, bool] = field(default_factory=dict)  # per chunk index: closed by the model
    stream_tokens: int = 0  # written in units
    deep_tokens: int = 0  # written after the stream ended (deep reasoning and answer)


def format_reward(rollouts: Sequence[ScoredRollout], records: Sequence[dict]) -> list[float]:
    """1 for a sequence that follows the protocol and needed no runtime closing, else 0."""
    return [float(not r.violations and r.stream_valid and r.deep_valid) for r in rollouts]


def accuracy_reward(rollouts: Sequence[ScoredRollout], records: Sequence[dict]) -> list[float]:
    return [
        float(answers_match(r.answer, str(rec["answer"]))) for r, rec in zip(rollouts, records, strict=True)
    ]


def _gated(cost: float, correct: bool) -> float:
    return -cost / (1.0 + cost) if correct else -1.0


def adaptive_time_reward(alpha: float = 1.0, beta: float = 1.0, tau: float = 5.0) -> RewardFn:
    """`-c / (1 + c)` with `c = (alpha * overflow + beta * answer latency) / tau` for a correct
    rollout, -1 for a wrong one."""

    def time_reward(rollouts: Sequence[ScoredRollout], records: Sequence[dict]) -> list[float]:
        correct = accuracy_reward(rollouts, records)
        costs = [(alpha * r.overflow_s + beta * r.answer_latency_s) / tau for r in rollouts]
        return [_gated(c, bool(ok)) for c, ok in zip(costs, correct, strict=True)]

    time_reward.__name__ = "adaptive_time_reward"
    return time_reward


def _phase_reward(
    valid: Callable[[ScoredRollout], bool] | None, cost: Callable[[ScoredRollout], float] | None
) -> RewardFn:
    """A phase's reward: its own format (unless `valid` is None), the accuracy credit, and its
    time cost gated on accuracy (unless `cost` is None): the reward-set ablations drop parts."""

    def reward(rollouts: Sequence[ScoredRollout], records: Sequence[dict]) -> list[float]:
        correct = accuracy_reward(rollouts, records)
        return [
            _credit(valid(r) if valid else None, ok, cost(r) if cost else None)
            for r, ok in zip(rollouts, correct, strict=True)
        ]

    return reward


def _credit(valid: bool | None, correct: float, cost: float | None) -> float:
    """Format point (None: not rewarded) + accuracy + gated time cost (None: not rewarded)."""
    return float(bool(valid)) + correct + (_gated(cost, bool(correct)) if cost is not None else 0.0)


def stream_reward(
    alpha: float = 1.0, tau: float = 5.0, with_format: bool = True, with_time: bool = True
) -> RewardFn:
    """What the streaming phase controls: its own format, the overflow it caused, and credit for a
    correct answer (the states it kept are what the answer is computed from)."""
    return _phase_reward(
        (lambda r: r.stream_valid) if with_format else None,
        (lambda r: alpha * r.overflow_s / tau) if with_time else None,
    )


def deep_reward(
    beta: float = 1.0, tau: float = 5.0, with_format: bool = True, with_time: bool = True
) -> RewardFn:
    """What the deep phase controls: the answer, its own format, and the answer latency."""
    return _phase_reward(
        (lambda r: r.deep_valid) if with_format else None,
        (lambda r: beta * r.answer_latency_s / tau) if with_time else None,
    )


def unit_rewards(
    rollouts: Sequence[ScoredRollout],
    records: Sequence[dict],
    alpha: float = 1.0,
    tau: float = 5.0,
    with_format: bool = True,
    with_time: bool = True,
) -> list[dict[int, float]]:
    """Per-unit streaming reward for the per-unit granularity, by chunk index: the stream reward's
    parts for one unit: its own format (closed by the model itself), the accuracy credit, and its
    own overflow's cost gated on correctness. The last unit overflows nothing (no next arrival)."""
    correct = accuracy_reward(rollouts, records)
    out = []
    for r, ok in zip(rollouts, correct, strict=True):
        units = sorted(r.unit_overflow_s.keys() | r.unit_valid.keys())
        out.append(
            {
                u: _credit(
                    r.unit_valid.get(u, r.stream_valid) if with_format else None,
                    ok,
                    alpha * r.unit_overflow_s.get(u, 0.0) / tau if with_time else None,
                )
                for u in units
            }
        )
    return out


def total(fns: Sequence[RewardFn], rollouts: Sequence[ScoredRollout], records: Sequence[dict]) -> list[float]:
    """The global reward: the sum of the reward functions."""
    columns = [fn(rollouts, records) for fn in fns]
    return [sum(values) for values in zip(*columns, strict=True)]
