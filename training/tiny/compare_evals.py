"""Two `adasr-av eval --out` reports on the same stories, compared pairwise.

    python training/tiny/compare_evals.py BEFORE.json AFTER.json [--also BEFORE2 AFTER2 ...]

`--also` pools more pairs of reports (other datasets, the same two models) into one comparison;
a story is then keyed by its pair as well as its id, since ids repeat across datasets.

Prints each accuracy on the stories both reports hold, with its Wilson 95 % interval, the
discordant pairs (right only before, right only after) and the exact McNemar p-value (two-sided
binomial test on the discordant pairs). Stories only one report holds are counted and left out.

Last line: RESULT n=.. before=.. after=.. only_before=.. only_after=.. p=..
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adasr_av.stats import mcnemar_p, wilson_interval


def correct_by_story(path: Path, pair: int = 0) -> dict[tuple[int, str], bool]:
    return {(pair, s["id"]): bool(s["correct"]) for s in json.loads(path.read_text())["stories"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument(
        "--also", nargs=2, type=Path, action="append", default=[], metavar=("BEFORE", "AFTER")
    )
    args = parser.parse_args()
    before, after = correct_by_story(args.before), correct_by_story(args.after)
    for pair, (more_before, more_after) in enumerate(args.also, start=1):
        before |= correct_by_story(more_before, pair)
        after |= correct_by_story(more_after, pair)
    common = sorted(before.keys() & after.keys())
    left_out = len(before.keys() ^ after.keys())
    n = len(common)
    right_before, right_after = sum(before[i] for i in common), sum(after[i] for i in common)
    only_before = sum(before[i] and not after[i] for i in common)
    only_after = sum(after[i] and not before[i] for i in common)
    p = mcnemar_p(only_before, only_after)
    for name, right in (("before", right_before), ("after", right_after)):
        low, high = wilson_interval(right, n)
        print(f"{name}: {right}/{n} = {right / n:.3f} [{low:.3f}, {high:.3f}]")
    print(f"stories in one report only: {left_out}; right only before {only_before}, only after {only_after}")
    verdict = (
        "no difference resolved"
        if p >= 0.05
        else ("after better" if only_after > only_before else "before better")
    )
    print(f"exact McNemar p = {p:.3f}: {verdict}")
    print(f"RESULT n={n} before={right_before / n:.3f} after={right_after / n:.3f} "
          f"only_before={only_before} only_after={only_after} p={p:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
