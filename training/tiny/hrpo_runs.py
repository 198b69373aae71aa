"""The HRPO runs of the tiny results: the main pair (GRPO, HRPO) and the paper's ablations, each one
`adasr-av train hrpo --config training/tiny/hrpo.toml` with a few keys overridden.

    python training/tiny/hrpo_runs.py [--jobs 2] [--only hrpo,grpo]

Finished runs (runs/tiny-<name>/final) are skipped and interrupted ones resume, so rerunning after
a stop only does what is missing. With --jobs N, N runs go side by side, one CPU thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "training/tiny/hrpo.toml"

# name -> overrides of hrpo.toml (whose defaults are the HRPO run: lambda 0.5, stage, all rewards)
RUNS: dict[str, dict[str, object]] = {
    "hrpo": {},
    "grpo": {"hrpo.lam": 0.0},
    "lam-0.3": {"hrpo.lam": 0.3},
    "lam-0.7": {"hrpo.lam": 0.7},
    "lam-1": {"hrpo.lam": 1.0},
    "unit": {"hrpo.granularity": "unit"},
    "boundary": {"hrpo.granularity": "boundary"},
    "acc": {"hrpo.rewards": ["accuracy"]},
    "acc-format": {"hrpo.rewards": ["format", "accuracy"]},
    "lr-1e-4": {"train.lr": 1e-4},
    # the main pair trained twice as long; their first 40 steps are the runs above (constant learning
    # rate, prompt order and sampling seeds fixed by (seed, step)), so they resume from those runs
    "hrpo-80": {"train.max_steps": 80},
    "grpo-80": {"hrpo.lam": 0.0, "train.max_steps": 80},
}
LONGER = {"hrpo-80": "hrpo", "grpo-80": "grpo"}  # run -> the shorter run it continues


def output(name: str) -> Path:
    return ROOT / "runs" / f"tiny-{name}"


def command(name: str, adasr: str) -> list[str]:
    cmd = [adasr, "train", "hrpo", "--config", CONFIG, "--no-progress"]
    for key, value in {**RUNS[name], "train.output": f"runs/tiny-{name}"}.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def train(name: str, adasr: str) -> int:
    if (output(name) / "final" / "config.json").is_file():
        print(f"{name}: done already")
        return 0
    shorter = output(LONGER[name]) if name in LONGER else None
    if shorter and not output(name).exists() and (shorter / "checkpoints").is_dir():
        shutil.copytree(shorter / "checkpoints", output(name) / "checkpoints")
        shutil.copy(shorter / "log.jsonl", output(name) / "log.jsonl")
    output(name).mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with (output(name) / "train.log").open("a") as log:
        code = subprocess.call(command(name, adasr), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"{name}: {'finished' if code == 0 else f'failed (exit {code}, see {output(name)}/train.log)'}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, one thread each")
    parser.add_argument("--only", help="comma-separated run names (default: all)")
    parser.add_argument("--adasr", default=str(ROOT / ".venv" / "bin" / "adasr-av"))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        sys.exit(f"hrpo_runs: unknown run {unknown[0]!r} (known: {', '.join(RUNS)})")
    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(lambda n: train(n, args.adasr), names))
    sys.exit(max(codes, default=0))


if __name__ == "__main__":
    main()
