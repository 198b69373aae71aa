"""The RL runs of the tiny research tables (issue 17): GRPO and HRPO from the bundled default, in two
regimes, with seeds; each run is `adasr-av train hrpo --config training/tiny/hrpo.toml` with a few
keys overridden. A run is named REGIME-VARIANT-sSEED and lives in runs/tiny17-<name>.

    python training/tiny/hrpo_runs.py --plan valid     # seed 0 of every variant (the choices)
    python training/tiny/hrpo_runs.py --plan seeds --variant hrpo --grpo-variant grpo  # 3 seeds each
    python training/tiny/hrpo_runs.py --only paper-hrpo-s0,bite-grpo-s1

Regimes: `paper` (150 words per minute, the paper's cost profile, tau 1 s) and `bite` (240 words
per minute and the slow-decode profile training/tiny/cost-slow.json, tau 10 s), where thinking on
every chunk falls behind the stream. Variants: `hrpo` (lambda 0.5, stage credit), `grpo`
(lambda 0), `lam-1`, `unit` (per-unit credit), and their 20-step halves (`hrpo-20`, `grpo-20`)
that the 40-step runs continue (constant learning rate; prompt order and sampling seeds are fixed
by (seed, step)), so the step count is chosen on validation without training twice.

Finished runs (final/) are skipped and interrupted ones resume, so rerunning after a stop only
does what is missing. With --jobs N, N runs go side by side, one CPU thread each.
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
SEEDS = (0, 1, 2)

REGIMES: dict[str, dict[str, object]] = {
    "paper": {},
    "bite": {
        "data.train": "data/tiny-fast/train.jsonl",
        "rollout.cost_profile": "training/tiny/cost-slow.json",
        "hrpo.tau": 10.0,
    },
}
# variant -> overrides of hrpo.toml (whose defaults are HRPO: lambda 0.5, stage credit, all rewards)
VARIANTS: dict[str, dict[str, object]] = {
    "hrpo": {},
    "grpo": {"hrpo.lam": 0.0},
    "lam-1": {"hrpo.lam": 1.0},
    "unit": {"hrpo.granularity": "unit"},
    "hrpo-20": {"train.max_steps": 20},
    "grpo-20": {"hrpo.lam": 0.0, "train.max_steps": 20},
}
CONTINUES = {"hrpo": "hrpo-20", "grpo": "grpo-20"}  # variant -> the shorter run it resumes from
PLANS = {
    "valid": ["paper-hrpo-20-s0", "paper-hrpo-s0", "paper-grpo-20-s0", "paper-grpo-s0"]
    + ["paper-lam-1-s0", "paper-unit-s0"],
}


def parse(name: str) -> tuple[str, str, int]:
    """REGIME-VARIANT-sSEED -> (regime, variant, seed); one line naming what is unknown."""
    regime, _, rest = name.partition("-")
    variant, _, seed = rest.rpartition("-s")
    if regime not in REGIMES or variant not in VARIANTS or not seed.isdigit():
        raise SystemExit(
            f"hrpo_runs: unknown run {name!r} (REGIME-VARIANT-sSEED; regimes {', '.join(REGIMES)}; "
            f"variants {', '.join(VARIANTS)})"
        )
    return regime, variant, int(seed)


def output(name: str) -> Path:
    return ROOT / "runs" / f"tiny17-{name}"


def command(name: str, adasr: str) -> list[str]:
    regime, variant, seed = parse(name)
    overrides = {**REGIMES[regime], **VARIANTS[variant], "train.seed": seed}
    cmd = [adasr, "train", "hrpo", "--config", CONFIG, "--no-progress"]
    for key, value in {**overrides, "train.output": str(output(name).relative_to(ROOT))}.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def train(name: str, adasr: str) -> int:
    if (output(name) / "final" / "config.json").is_file():
        print(f"{name}: done already")
        return 0
    regime, variant, seed = parse(name)
    if variant in CONTINUES and not output(name).exists():
        shorter = output(f"{regime}-{CONTINUES[variant]}-s{seed}")
        if (shorter / "checkpoints").is_dir():
            shutil.copytree(shorter / "checkpoints", output(name) / "checkpoints")
            shutil.copy(shorter / "log.jsonl", output(name) / "log.jsonl")
    output(name).mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with (output(name) / "train.log").open("a") as log:
        code = subprocess.call(command(name, adasr), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(
        f"{name}: {'finished' if code == 0 else f'failed (exit {code}, see {output(name)}/train.log)'}",
        flush=True,
    )
    return code


def seed_runs(hrpo: str, grpo: str) -> list[str]:
    """The GRPO and HRPO variants chosen on validation, every seed, both regimes."""
    return [f"{regime}-{v}-s{seed}" for regime in REGIMES for seed in SEEDS for v in (grpo, hrpo)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", choices=[*PLANS, "seeds"], help="a named set of runs")
    parser.add_argument("--variant", default="hrpo", help="--plan seeds: the HRPO variant chosen on valid")
    parser.add_argument("--grpo-variant", default="grpo", help="--plan seeds: the GRPO variant chosen")
    parser.add_argument("--only", help="comma-separated run names")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, one thread each")
    parser.add_argument("--adasr", default=str(ROOT / ".venv" / "bin" / "adasr-av"))
    args = parser.parse_args()
    if args.plan == "seeds":
        names = seed_runs(args.variant, args.grpo_variant)
    elif args.plan:
        names = PLANS[args.plan]
    elif args.only:
        names = args.only.split(",")
    else:
        parser.error("give --plan or --only")
    for name in names:
        parse(name)
    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(lambda n: train(n, args.adasr), names))
    sys.exit(max(codes, default=0))


if __name__ == "__main__":
    main()
