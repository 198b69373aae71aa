"""Hierarchical group-relative advantages, as pure functions over one group of G rollouts.

Each reward kind x (global g, streaming s, deep d) is normalised within the group,
`Â_x = (r_x - mean r_x) / (std r_x + eps)` (population std), and a model-written token t gets
`A_t = (1 - lam) * Â_g + lam * Â_phase(t)`: lam = 0 is plain GRPO. Granularity says where the phase
term applies: `stage` (every token of the phase), `unit` (streaming tokens use the normalised
reward of their own unit, compared across the group at the same chunk), `boundary` (only the
tokens that close a unit or the deep span; other tokens get Â_g).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Granularity = Literal["stage", "unit", "boundary"]
GRANULARITIES: tuple[Granularity, ...] = ("stage", "unit", "boundary")
TokenPhase = Literal["env", "stream", "deep"]  # env tokens get no advantage


def group_normalise(rewards: Sequence[float], eps: float = 1e-6) -> list[float]:
    """(r - mean) / (std + eps) over one group; a group with equal rewards gives exact zeros (the
    float error of its mean would otherwise rank equal rollouts by 1e-11)."""
    n = len(rewards)
    if n == 0:
        return []
    if max(rewards) == min(rewards):
        return [0.0] * n
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n)
    return [(r - mean) / (std + eps) for r in rewards]


@dataclass(frozen=True)
class TokenLabels:
    """Per-token labels of one rollout's sequence."""

    phase: Sequence[TokenPhase]
    unit: Sequence[int | None]  # the chunk a streaming token's unit follows
    boundary: Sequence[bool]  # closes a unit (think_end, skip) or the deep span (reason_end, answer_end)


def token_advantages(
    labels: Sequence[TokenLabels],
    global_rewards: Sequence[float],
    stream_rewards: Sequence[float],
    deep_rewards: Sequence[float],
    lam: float,
    granularity: Granularity = "stage",
    unit_rewards: Sequence[dict[int, float]] | None = None,
    eps: float = 1e-6,
) -> list[list[float]]:
    """Advantage of every token of every rollout in one group (0.0 for environment tokens).

    `unit_rewards[r][u]` is rollout r's reward for its unit after chunk u (granularity "unit").
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r} (use {', '.join(GRANULARITIES)})")
    a_g = group_normalise(global_rewards, eps)
    a_s = group_normalise(stream_rewards, eps)
    a_d = group_normalise(deep_rewards, eps)
    a_unit = _normalise_units(unit_rewards, len(labels), eps) if granularity == "unit" else None
    out = []
    for r, tokens in enumerate(labels):
        row = []
        for phase, unit, boundary in zip(tokens.phase, tokens.unit, tokens.boundary, strict=True):
            if phase == "env":
                row.append(0.0)
                continue
            if phase == "deep":
                a_phase = a_d[r]
            elif a_unit is not None and unit is not None:
                a_phase = a_unit[r].get(unit, a_s[r])
            else:
                a_phase = a_s[r]
            if granularity == "boundary" and not boundary:
                a_phase = a_g[r]
            row.append((1.0 - lam) * a_g[r] + lam * a_phase)
        out.append(row)
    return out


def _normalise_units(
    unit_rewards: Sequence[dict[int, float]] | None, group_size: int, eps: float
) -> list[dict[int, float]]:
    """Normalise each chunk's unit rewards across the rollouts that wrote a unit for it."""
    if unit_rewards is None or len(unit_rewards) != group_size:
        raise ValueError("granularity 'unit' needs one dict of unit rewards per rollout")
    out: list[dict[int, float]] = [{} for _ in range(group_size)]
    for u in sorted({u for rewards in unit_rewards for u in rewards}):
        rows = [r for r in range(group_size) if u in unit_rewards[r]]
        for r, a in zip(rows, group_normalise([unit_rewards[r][u] for r in rows], eps), strict=True):
            out[r][u] = a
    return out


def carries_signal(advantages: Sequence[Sequence[float]]) -> bool:
    """Whether any token of a group has a non-zero advantage. A group where none has teaches nothing;
    which rewards that takes depends on lam: only the global one for lam = 0 (GRPO), only the phase
    ones for lam = 1, and any of them in between."""
    return any(a != 0.0 for row in advantages for a in row)
