"""The statistics of the research tables: intervals checked against published values and against
their definitions on data built so the answer is known."""

import numpy as np
import pytest

from adasr_av.stats import (
    NO_DIFFERENCE,
    bootstrap_interval,
    bootstrap_ratio_interval,
    mcnemar_p,
    mean_and_spread,
    paired_bootstrap,
    percentile,
    verdict,
    wilson_interval,
)


def test_percentile_interpolates_linearly():
    assert percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    assert percentile([5.0], 90) == 5.0


def test_wilson_interval_matches_published_values():
    """Wilson 95 % intervals as tabulated by Newcombe (1998, Table I): 81/263 -> 0.2553-0.3662,
    15/148 -> 0.0624-0.1605, 0/20 -> 0-0.1611, 1/29 -> 0.0061-0.1718."""
    for (k, n), (low, high) in {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }.items():
        got = wilson_interval(k, n)
        assert got == pytest.approx((low, high), abs=6e-5), (k, n)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_exact_mcnemar_is_the_two_sided_binomial_tail():
    assert mcnemar_p(1, 9) == pytest.approx(2 * 11 / 1024)  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert mcnemar_p(9, 1) == mcnemar_p(1, 9)
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32) and mcnemar_p(3, 3) == 1.0 and mcnemar_p(0, 0) == 1.0


def test_bootstrap_interval_covers_the_mean_at_the_normal_width():
    """For 400 draws of a unit normal the mean's 95 % interval is about +-1.96 / 20 = +-0.098."""
    values = np.random.default_rng(1).normal(size=400)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / 20, rel=0.15)
    assert bootstrap_interval([2.0] * 10) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_paired_bootstrap_sees_a_difference_that_pairing_reveals():
    """B is A plus 0.1 on every story, with a story-to-story spread ten times larger: unpaired the
    difference drowns; paired it is exact, so the interval is [0.1, 0.1] and B wins."""
    a = np.random.default_rng(2).normal(scale=1.0, size=(1, 200))
    result = paired_bootstrap(a, a + 0.1, names=("GRPO", "HRPO"))
    assert result.difference == pytest.approx(-0.1)
    assert result.interval == pytest.approx((-0.1, -0.1))
    assert result.verdict == "HRPO better" and result.p < 0.01 and result.n == 200


def test_paired_bootstrap_averages_seeds_and_says_when_nothing_is_resolved():
    """Three seeds against three, right/wrong per story, one story apart in 150: no verdict."""
    rng = np.random.default_rng(3)
    a = (rng.random((3, 150)) < 0.45).astype(float)
    b = a.copy()
    b[0, np.flatnonzero(b[0] == 0)[0]] = 1.0  # one story more right, on one seed
    result = paired_bootstrap(b, a, names=("HRPO", "GRPO"))
    assert result.difference == pytest.approx(1 / 3 / 150)
    assert result.verdict == NO_DIFFERENCE and result.p > 0.05
    assert "seeds 3 and 3" in result.test
    same = paired_bootstrap(a, a)
    assert same.p == 1.0 and same.verdict == NO_DIFFERENCE
    with pytest.raises(ValueError):
        paired_bootstrap(a, a[:, :100])


def test_paired_bootstrap_p_value_matches_mcnemar_on_a_clear_split():
    """30 stories right only by A, 5 only by B, 165 alike: both tests reject at 0.01."""
    a = np.array([1.0] * 30 + [0.0] * 5 + [1.0] * 80 + [0.0] * 85)
    b = np.array([0.0] * 30 + [1.0] * 5 + [1.0] * 80 + [0.0] * 85)
    result = paired_bootstrap([a], [b])
    assert result.difference == pytest.approx(25 / 200)
    assert result.p < 0.01 and mcnemar_p(30, 5) < 0.01 and result.verdict == "A better"


def test_a_few_stories_one_way_are_no_verdict():
    """Five of 500 stories 0.01 s less overflow, the rest equal: the percentile interval lies below
    zero (almost every resample holds one of the five) but five signs are no evidence (p about
    0.06). results.py printed "HRPO better" on such a row with p 0.493."""
    hrpo, grpo = np.zeros((1, 500)), np.zeros((1, 500))
    hrpo[0, :5] = -0.01
    result = paired_bootstrap(hrpo, grpo, ("HRPO", "GRPO"), higher_is_better=False)
    assert result.interval[1] < 0 and result.p > 0.05
    assert result.verdict == NO_DIFFERENCE


def test_verdict_names_a_winner_only_outside_zero():
    assert verdict("HRPO", "GRPO", (0.01, 0.05)) == "HRPO better"
    assert verdict("HRPO", "GRPO", (-0.05, -0.01)) == "GRPO better"
    assert verdict("HRPO", "GRPO", (-0.01, 0.05)) == NO_DIFFERENCE
    assert verdict("HRPO", "GRPO", (0.0, 0.05)) == NO_DIFFERENCE


def test_mean_and_spread_over_seeds():
    assert mean_and_spread([0.4, 0.5, 0.6]) == pytest.approx((0.5, 0.1))
    assert mean_and_spread([0.4]) == (0.4, 0.0)


def test_bootstrap_ratio_resamples_stories_not_chunks():
    """Half the stories skip all of their 10 chunks, half none: the pooled rate is 0.5 and, with
    40 stories as the draws, its interval is as wide as a rate over 40 draws (about +-0.16), far
    wider than a rate over the 400 chunks would claim (+-0.05)."""
    skips, chunks = [10.0, 0.0] * 20, [10.0] * 40
    low, high = bootstrap_ratio_interval(skips, chunks)
    assert low < 0.5 < high and 0.25 < high - low < 0.40
    with pytest.raises(ValueError):
        bootstrap_ratio_interval([0.0], [0.0])


def test_a_cost_is_won_by_the_smaller_value():
    """Latency and overflow are costs: HRPO 0.5 s faster on every story wins the latency verdict
    (the first version called the slower method better)."""
    grpo = np.random.default_rng(4).uniform(1.0, 3.0, size=(1, 100))
    result = paired_bootstrap(grpo - 0.5, grpo, names=("HRPO", "GRPO"), higher_is_better=False)
    assert result.interval == pytest.approx((-0.5, -0.5))
    assert result.verdict == "HRPO better"
    assert verdict("HRPO", "GRPO", (0.1, 0.3), higher_is_better=False) == "GRPO better"
    assert verdict("HRPO", "GRPO", (-0.1, 0.3), higher_is_better=False) == NO_DIFFERENCE
