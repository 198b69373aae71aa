"""The statistics every reported figure carries: 95 % intervals and paired tests between methods.

Accuracy and rates get Wilson intervals; means of latency and tokens a percentile bootstrap over
stories; two methods on the same stories a paired bootstrap over stories (any number of seeds
each: the stories are resampled, the seeds averaged) with a sign-flip p-value, or the exact
McNemar test for two single runs, and a verdict that names a winner only when the interval of the
difference excludes zero and the test's p is below 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959964
BOOTSTRAP_RESAMPLES = 2000
NO_DIFFERENCE = "no difference resolved"


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a rate (95 % by default): unlike the normal approximation it
    stays inside [0, 1] and is honest at 0 or n successes and for small n."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: P(at least as uneven a split of b + c discordant pairs)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolating linearly between order statistics (numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=float), q))


def _resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    """Story indices drawn with replacement, one row per resample; fixed by the seed."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_interval(
    values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of the mean of `values` (stories resampled)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap of no values")
    means = x[_resamples(x.size, resamples, seed)].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ratio_interval(
    numerators: Sequence[float],
    denominators: Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of sum(numerators) / sum(denominators), one pair per
    story (a rate pooled over the chunks of stories: the stories, not the chunks, are the draws)."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if num.shape != den.shape or num.size == 0 or den.sum() == 0:
        raise ValueError("bootstrap of a ratio needs pairs with a positive denominator")
    index = _resamples(num.size, resamples, seed)
    sums = den[index].sum(axis=1)
    ratios = num[index].sum(axis=1)[sums > 0] / sums[sums > 0]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """Method A minus method B on the same stories: the difference of means, its 95 % interval,
    a two-sided p-value, and the verdict the interval supports."""

    a: str
    b: str
    n: int
    difference: float
    interval: tuple[float, float]
    p: float
    test: str
    higher_is_better: bool = True

    @property
    def verdict(self) -> str:
        return verdict(self.a, self.b, self.interval, self.higher_is_better, self.p)


def verdict(
    a: str, b: str, interval: tuple[float, float], higher_is_better: bool = True, p: float | None = None
) -> str:
    """'A better' or 'B better' only when the interval of A - B excludes zero and the paired test
    agrees (p < 0.05); for a cost such as latency or overflow (higher_is_better False) the smaller
    value wins. The test is asked too because a percentile interval excludes zero as soon as a few
    stories differ all one way (5 of 500 by 0.01 s: p 0.06), which is no evidence of a difference."""
    low, high = interval
    if p is not None and p >= 0.05:
        return NO_DIFFERENCE
    if low > 0:
        return f"{a if higher_is_better else b} better"
    if high < 0:
        return f"{b if higher_is_better else a} better"
    return NO_DIFFERENCE


def paired_bootstrap(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    names: tuple[str, str] = ("A", "B"),
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    higher_is_better: bool = True,
) -> PairedDifference:
    """A and B as [seed][story] arrays over the same stories (any number of seeds each): the
    difference of the seed-averaged means, with the stories resampled together for both (the
    pairing) for a 95 % percentile interval, and a two-sided p-value from a sign-flip permutation
    test on the per-story differences (for one run each of right/wrong this is McNemar's test,
    sampled; a bootstrap p-value would call a single discordant story significant)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or x.shape[1] == 0:
        raise ValueError(
            f"paired bootstrap needs [seed][story] arrays on the same stories: {x.shape}, {y.shape}"
        )
    per_story = x.mean(axis=0) - y.mean(axis=0)
    diffs = per_story[_resamples(per_story.size, resamples, seed)].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    signs = np.random.default_rng(seed + 1).choice((-1.0, 1.0), size=(resamples, per_story.size))
    flipped = np.abs((signs * per_story).mean(axis=1))
    observed = abs(per_story.mean())
    p = (1 + np.count_nonzero(flipped >= observed - 1e-12)) / (1 + resamples)
    return PairedDifference(
        a=names[0],
        b=names[1],
        n=per_story.size,
        difference=float(per_story.mean()),
        interval=(float(low), float(high)),
        p=float(p),
        test=f"paired bootstrap over stories ({resamples} resamples; seeds {x.shape[0]} and {y.shape[0]})",
        higher_is_better=higher_is_better,
    )


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """The mean over seeds and their sample standard deviation (0 for one seed)."""
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0
