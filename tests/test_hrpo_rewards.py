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


def test_unit_rewards_are_gated_like_the_stream_reward():
    """Per unit: its own format, the accuracy credit and its overflow's cost gated on correctness, so
    a wrong rollout's units all sit below a correct one's, however late the correct one was."""
    slow = ScoredRollout(
        "42", (), False, True, 30.0, 9.0, {0: 20.0, 1: 10.0, 2: 0.0}, {0: True, 1: False, 2: True}
    )
    fast_wrong = ScoredRollout(
        "0", (), True, True, 0.0, 0.0, {0: 0.0, 1: 0.0, 2: 0.0}, {0: True, 1: True, 2: True}
    )
    right, wrong = unit_rewards([slow, fast_wrong], RECORDS[:2], alpha=1.0, tau=5.0)
    # costs 20/5 = 4 -> -4/5 and 10/5 = 2 -> -2/3; unit 1 was closed by the runtime: no format point
    assert right == pytest.approx({0: 1 + 1 - 4 / 5, 1: 0 + 1 - 2 / 3, 2: 1 + 1 - 0.0})
    assert wrong == pytest.approx({0: 1 + 0 - 1.0, 1: 1 + 0 - 1.0, 2: 1 + 0 - 1.0})
    assert min(right.values()) > max(wrong.values())
    # the reward-set ablations drop the same parts as the stage-level stream reward
    assert unit_rewards([slow], RECORDS[:1], 1.0, 5.0, with_format=False, with_time=False) == [
        {0: 1, 1: 1, 2: 1}
    ]
    assert unit_rewards([_rollout(overflow=1.0)], RECORDS[:1], alpha=2.0, tau=4.0) == [
        {0: pytest.approx(2 - 1 / 3)}
    ]
