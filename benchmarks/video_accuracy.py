"""How often the reasoner answers synthetic video clips right: slideshows and mixed clips.

The clips are made by `adasr-av synth --mode video` on a seed no model was trained or chosen on
(default 5150, split `test`), one folder per kind, and read back by the live encoders (the real
streaming Whisper on the speech, the real OCR on the frames at 1 fps); this scores a model on the
chunks they delivered. Make the sets first (about 10 s a clip on one core; resumable):

    for kind in slideshow mixed; do adasr-av synth --mode video --n 100 --seed 5150 --splits test \
        --clips $kind --out data/video-bench-$kind; done
    python benchmarks/video_accuracy.py [--model FOLDER] [--limit N]

Prints each kind's accuracy with its 95 % Wilson interval and the issue's targets (slideshows
0.90, mixed clips 0.85). Last line: RESULT slideshow=.. slideshow_n=.. mixed=.. mixed_n=..
"""

from __future__ import annotations

import argparse
from itertools import islice
from pathlib import Path

from adasr_av.data.dataset import read_dataset
from adasr_av.evaluation import evaluate
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.stats import wilson_interval
from adasr_av.timing import PAPER_PROFILE, CostModelClock

KINDS = {"slideshow": 0.90, "mixed": 0.85}  # the targets of the video issue


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="reasoner folder (default: the bundled model)")
    parser.add_argument(
        "--data", default="data/video-bench-{kind}/test.jsonl", help="{kind} is each clip kind"
    )
    parser.add_argument("--limit", type=int, help="at most this many clips of each kind")
    args = parser.parse_args()
    model, tokenizer = load_reasoner_model(args.model or str(default_model()))
    figures = {}
    for kind, target in KINDS.items():
        path = Path(args.data.format(kind=kind))
        if not path.is_file():
            raise SystemExit(f"{path}: no such dataset (make it with the synth command in this file's doc)")
        stories = [s for s in islice(read_dataset(path), args.limit) if s.record.get("clip") == kind]
        results = evaluate(model, tokenizer, stories, clock=CostModelClock(PAPER_PROFILE), progress=False)
        right, n = sum(r.correct for r in results), len(results)
        low, high = wilson_interval(right, n)
        met = "met" if low >= target else ("not met" if high < target else "not resolved")
        print(f"{kind:<9} {right / n:.3f} [{low:.3f}, {high:.3f}] n={n}  target {target:.2f}: {met}")
        figures[kind] = (right / n, n)
    print("RESULT " + " ".join(f"{k}={a:.3f} {k}_n={n}" for k, (a, n) in figures.items()))


if __name__ == "__main__":
    main()
