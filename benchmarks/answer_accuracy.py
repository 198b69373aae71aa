"""The answer-accuracy targets of issue 14 (point 7), on the bundled default or any model: each
target's accuracy with its Wilson 95 % interval and sample size, on sets made for this benchmark
by fixed seeds (1414) that no model, recipe or choice has read. The paper cost profile, greedy.

    python benchmarks/answer_accuracy.py [--model M] [--limit N] [--sets text,espeak,...]

The sets (a missing one is named and skipped):

    adasr-av synth --mode text --n 300 --seed 1414 --splits test,ood --out data/acc-text
    adasr-av synth --mode speech --n 100 --seed 1414 --splits test --out data/acc-espeak \\
        --voices en-us,en-us+f3,en+m7,en-gb-x-rp --workers 1
    adasr-av synth --mode speech --n 100 --seed 1414 --splits test --out data/acc-piper \\
        --voices piper:joe --workers 1
    python training/tiny/free_stories.py --out data/free                       # text halves
    python training/tiny/free_stories.py --out data/free-speech --voices en-us,piper:joe --halves report

Last line: RESULT text=.. espeak=.. piper=.. free_text=.. free_spoken=.. ood=.. (accuracies)
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path

from adasr_av.data.dataset import read_dataset
from adasr_av.evaluation import evaluate
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.stats import wilson_interval
from adasr_av.timing import PAPER_PROFILE, CostModelClock

ROOT = Path(__file__).resolve().parents[1]
# key -> (what, dataset, target, minimum n the issue asks for)
TARGETS = {
    "text": ("text, fresh seed", "data/acc-text/test.jsonl", 0.95, 300),
    "espeak": ("speech, eSpeak voices, bundled Whisper", "data/acc-espeak/test.jsonl", 0.85, 100),
    "piper": ("speech, neural voice (Piper joe)", "data/acc-piper/test.jsonl", 0.90, 100),
    "free_text": ("free wording, reported half, text", "data/free/report.jsonl", 0.85, 30),
    "free_spoken": ("free wording, reported half, spoken", "data/free-speech/report.jsonl", 0.80, 60),
    "ood": ("out of distribution (held-out domain)", "data/acc-text/ood.jsonl", 0.80, 300),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model folder or bundled name (default: the default)")
    parser.add_argument("--limit", type=int, default=0, help="stories per set (0: all)")
    parser.add_argument("--sets", default=",".join(TARGETS), help="comma-separated targets (default: all)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args()
    if unknown := set(args.sets.split(",")) - set(TARGETS):
        parser.error(f"unknown set {sorted(unknown)[0]!r} (known: {', '.join(TARGETS)})")
    name = args.model or str(default_model())
    model, tokenizer = load_reasoner_model(name)
    clock = CostModelClock(PAPER_PROFILE)
    print(f"model {name}; paper cost profile; greedy")
    print("| target | n | accuracy [95 %] | target | met |")
    print("|---|---|---|---|---|")
    figures = {}
    for key, (what, data, target, wanted) in TARGETS.items():
        if key not in args.sets.split(","):
            continue
        path = ROOT / data
        if not path.is_file():
            print(f"skipping {what}: {data} not made (see this script's docstring)", file=sys.stderr)
            continue
        stories = list(islice(read_dataset(path), args.limit or None))
        results = evaluate(model, tokenizer, stories, clock=clock, progress=args.progress)
        right, n = sum(r.correct for r in results), len(results)
        low, high = wilson_interval(right, n)
        met = "yes" if low >= target else ("no" if high < target else "not resolved")
        short = f" (fewer than the {wanted} asked for)" if n < wanted else ""
        print(f"| {what} | {n}{short} | {right / n:.3f} [{low:.3f}, {high:.3f}] | {target:.2f} | {met} |")
        figures[key] = f"{right / n:.3f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
