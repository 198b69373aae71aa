"""Hierarchical advantages on groups computed by hand."""

from __future__ import annotations

import math

import pytest

from adasr_av.hrpo.advantages import TokenLabels, group_normalise, token_advantages

# rollout tokens: env, two streaming tokens of unit 0 (the second closes it), two deep tokens (the
# second closes the deep span)
LABELS = TokenLabels(
    phase=("env", "stream", "stream", "deep", "deep"),
    unit=(None, 0, 0, None, None),
    boundary=(False, False, True, False, True),
)
GLOBAL = [1.0, 0.0, 1.0, 0.0]  # normalised: +1, -1, +1, -1
STREAM = [2.0, 2.0, 2.0, 2.0]  # no variance: 0
DEEP = [0.0, 0.0, 3.0, 1.0]  # mean 1, std sqrt(1.5)
D0 = -1 / math.sqrt(1.5)


def test_group_normalise_by_hand():
    assert group_normalise([1.0, 0.0, 1.0, 0.0]) == pytest.approx([1, -1, 1, -1], abs=1e-5)
    assert group_normalise([0.0, 0.0, 3.0, 1.0]) == pytest.approx([D0, D0, 2 / math.sqrt(1.5), 0], abs=1e-5)
    assert group_normalise([5.0, 5.0]) == [0.0, 0.0]
    assert group_normalise([0.1] * 3) == [0.0] * 3  # exactly: a mean off by float error ranks nothing
    assert group_normalise([]) == []


def test_lambda_zero_is_grpo():
    out = token_advantages([LABELS] * 4, GLOBAL, STREAM, DEEP, lam=0.0)
    assert out[0] == pytest.approx([0, 1, 1, 1, 1], abs=1e-5)
    assert out[1] == pytest.approx([0, -1, -1, -1, -1], abs=1e-5)


def test_stage_mixes_global_and_phase():
    out = token_advantages([LABELS] * 4, GLOBAL, STREAM, DEEP, lam=0.5)
    assert out[0] == pytest.approx([0, 0.5, 0.5, 0.5 + 0.5 * D0, 0.5 + 0.5 * D0], abs=1e-5)
    out = token_advantages([LABELS] * 4, GLOBAL, STREAM, DEEP, lam=1.0)
    assert out[2] == pytest.approx([0, 0, 0, 2 / math.sqrt(1.5), 2 / math.sqrt(1.5)], abs=1e-5)


def test_boundary_puts_the_phase_term_on_closing_tokens_only():
    out = token_advantages([LABELS] * 4, GLOBAL, STREAM, DEEP, lam=0.5, granularity="boundary")
    assert out[0] == pytest.approx([0, 1, 0.5, 1, 0.5 + 0.5 * D0], abs=1e-5)


def test_unit_granularity_compares_units_at_the_same_chunk():
    units = [{0: 1.0}, {0: 0.0}, {0: 1.0}, {0: 0.0}]  # normalised +1, -1, +1, -1
    out = token_advantages(
        [LABELS] * 4, GLOBAL, STREAM, DEEP, lam=0.5, granularity="unit", unit_rewards=units
    )
    assert out[1] == pytest.approx([0, -1, -1, -0.5 + 0.5 * D0, -0.5 + 0.5 * D0], abs=1e-5)
    with pytest.raises(ValueError, match="unit rewards"):
        token_advantages([LABELS] * 4, GLOBAL, STREAM, DEEP, lam=0.5, granularity="unit")


def test_bad_lambda_and_granularity():
    with pytest.raises(ValueError, match="lambda"):
        token_advantages([LABELS], [0.0], [0.0], [0.0], lam=1.5)
    with pytest.raises(ValueError, match="granularity"):
        token_advantages([LABELS], [0.0], [0.0], [0.0], lam=0.5, granularity="token")
