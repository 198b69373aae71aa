"""Reward functions: format, accuracy and the gated time rewards in stream seconds."""

from __future__ import annotations

import itertools

import pytest

from adasr_av.hrpo.rewards import (
    ScoredRollout,
    accuracy_reward,
    adaptive_time_reward,
    deep_reward,
    format_reward,
    stream_reward,
    total,
    unit_rewards,
)

RECORDS = [{"answer": "42"}] * 4


def _rollout(answer="42", violations=(), stream_valid=True, deep_valid=True, overflow=0.0, latency=1.0):
    return ScoredRollout(
        answer, tuple(violations), stream_valid, deep_valid, overflow, latency, {0: overflow}
    )


def test_format_and_accuracy():
    group = [
        _rollout(),
        _rollout("41"),
        _rollout(violations=["missing <|answer_end|>"]),
        _rollout(deep_valid=False),
    ]
    assert format_reward(group, RECORDS) == [1.0, 1.0, 0.0, 0.0]
    assert accuracy_reward(group, RECORDS) == [1.0, 0.0, 1.0, 1.0]
    assert accuracy_reward([_rollout("42.0"), _rollout(None)], RECORDS[:2]) == [1.0, 0.0]


def test_time_reward_by_hand():
    fn = adaptive_time_reward(alpha=1.0, beta=2.0, tau=4.0)
    group = [_rollout(latency=2.0), _rollout(overflow=4.0, latency=0.0), _rollout("7", latency=0.0)]
    # costs: (0 + 2*2)/4 = 1 -> -0.5; (4 + 0)/4 = 1 -> -0.5; wrong -> -1
    assert fn(group, RECORDS[:3]) == pytest.approx([-0.5, -0.5, -1.0])


def test_a_fast_wrong_rollout_never_outranks_a_correct_one():
    fns = [format_reward, accuracy_reward, adaptive_time_reward(1.0, 1.0, 1.0)]
    latencies = [0.0, 0.1, 1.0, 10.0, 1000.0]
    for fast, slow, fmt_wrong, fmt_right in itertools.product(
        latencies, latencies, (True, False), (True, False)
    ):
        wrong = _rollout("0", latency=fast, deep_valid=fmt_wrong)
        right = _rollout("42", latency=slow, overflow=slow, deep_valid=fmt_right)
        g_wrong, g_right = total(fns, [wrong, right], RECORDS[:2])
        assert g_right > g_wrong, (fast, slow, fmt_wrong, fmt_right)


def test_phase_rewards_see_their_own_part():
    s, d = stream_reward(alpha=1.0, tau=1.0), deep_reward(beta=1.0, tau=1.0)
    overflowing = _rollout(overflow=1.0, latency=0.0)
    late = _rollout(overflow=0.0, latency=1.0)
    assert s([overflowing, late], RECORDS[:2]) == pytest.approx([1.5, 2.0])
    assert d([overflowing, late], RECORDS[:2]) == pytest.approx([2.0, 1.5])
    assert s([_rollout(stream_valid=False)], RECORDS[:1]) == pytest.approx([1.0 - 0.0])
    assert unit_rewards([overflowing], alpha=2.0, tau=4.0) == [{0: -0.5}]
