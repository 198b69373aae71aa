"""The research tables of the tiny reasoners (issue 17), every figure with its 95 % interval and
every comparison paired on the same stories, the choices made on validation only.

    python training/tiny/results.py --stage valid [--jobs 2]  # after hrpo_runs.py --plan valid
    python training/tiny/results.py --stage test [--jobs 2]   # after --plan seeds and build_rtt.sh

`--stage valid` evaluates seed 0 of every RL variant (training/tiny/hrpo_runs.py) on the
validation stories (the valid split's first 300 and the free-wording "choose" half, pooled) and
chooses by a rule fixed before any of them was evaluated: HRPO's variant (lambda, credit
granularity, steps) and GRPO's step count are those with the highest pooled accuracy, a tie going
to the shorter run and then to the default (lambda 0.5, stage credit). It writes the choice to
training/tiny/choices.json; the seeds are then trained for the chosen variants only.

`--stage test` reads the choice and evaluates, once per model, the 500 test stories of each regime
(`paper`: 150 words per minute and the paper's cost profile; `bite`: 240 words per minute and the
slow-decode profile, where thinking on every chunk falls behind the stream): the read-then-think
baseline, the supervised bundled default (SFT, where the RL starts), GRPO and HRPO, 3 seeds each.
Accuracy and rates get Wilson intervals (one run) or a bootstrap over stories (seeds averaged per
story); latency and tokens a bootstrap over stories; HRPO against GRPO, and each against SFT, a
paired bootstrap over stories with a sign-flip p-value. A method is called better only when the
interval of the difference excludes zero; otherwise the line says "no difference resolved".

Each evaluation is cached in runs/results-cache (per-story results, keyed by the weights, data,
limit, mode and profile), so a rerun evaluates only what changed, and its per-story results are
committed in training/tiny/evals/ (gzip JSON named by model, mode, data, profile and limit): a
later checkout without the runs prints the same tables from them without reading the test split
again, and evaluates only the models it has (a retrained read-then-think baseline, say). Missing
models with no record are skipped and named. The tables go into training/tiny/RESULTS.md between
this script's markers.
Last line: RESULT ... (accuracy of each method and regime, and the verdicts)
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from adasr_av.data.dataset import read_dataset
from adasr_av.errors import AdasrError
from adasr_av.evaluation import StoryResult, evaluate, save_evaluation, summarise
from adasr_av.reasoner.loading import load_reasoner_model, resolve_source
from adasr_av.reasoner.session import ReasonerOptions
from adasr_av.stats import (
    PairedDifference,
    bootstrap_interval,
    bootstrap_ratio_interval,
    mean_and_spread,
    paired_bootstrap,
    wilson_interval,
)
from adasr_av.timing import CostModelClock, load_cost_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = ROOT / "runs" / "results-cache"
RECORDS = HERE / "evals"  # committed per-story results, for runs no longer on disk
CHOICES = HERE / "choices.json"
RESULTS = HERE / "RESULTS.md"
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Regime:
    label: str
    valid: str
    test: str
    cost: str


REGIMES = {
    "paper": Regime("150 wpm, paper profile", "data/tiny/valid.jsonl", "data/tiny/test.jsonl", "paper"),
    "bite": Regime(
        "240 wpm, slow-decode profile (training/tiny/cost-slow.json: 0.12 s a decoded token)",
        "data/tiny-fast/valid.jsonl",
        "data/tiny-fast/test.jsonl",
        "training/tiny/cost-slow.json",
    ),
}
FREE_CHOOSE = "data/free/choose.jsonl"  # python training/tiny/free_stories.py --out data/free
SFT = "runs/tiny-robust-adaptive/final"  # the bundled default, byte for byte; where the RL starts
RTT = "runs/tiny17-rtt-low/final"  # bash training/tiny/build_rtt.sh
HRPO_VARIANTS = ("hrpo-20", "hrpo", "lam-1", "unit")  # in tie-break order: shorter, then the default
GRPO_VARIANTS = ("grpo-20", "grpo")
DESCRIBED = {
    "hrpo-20": "HRPO, lambda 0.5, stage credit, 20 steps",
    "hrpo": "HRPO, lambda 0.5, stage credit, 40 steps",
    "lam-1": "HRPO, lambda 1, stage credit, 40 steps",
    "unit": "HRPO, lambda 0.5, per-unit credit, 40 steps",
    "grpo-20": "GRPO (lambda 0), 20 steps",
    "grpo": "GRPO (lambda 0), 40 steps",
}


def run(regime: str, variant: str, seed: int) -> str:
    return f"runs/tiny17-{regime}-{variant}-s{seed}/final"


# --- evaluations, cached ----------------------------------------------------------------------------

Job = tuple[str, str, str, str, int]  # (model, mode, data, cost profile, limit)
BATCH = 16  # stories decoded together; each is scored as alone (the cost-model clock)


def _cost_model(cost: str):
    """A built-in profile by name, or a calibrate JSON by its path from the repository root."""
    return load_cost_model(cost if cost == "paper" else ROOT / cost)


@functools.cache
def _skipped(what: str, hint: str) -> None:
    print(f"skipping {what}: {hint}", file=sys.stderr)


def _cache_path(job: Job) -> Path | None:
    """The cache file of a job, or None when its model or data is missing (named on stderr)."""
    model, mode, data, cost, limit = job
    try:
        source = Path(resolve_source(model))
    except AdasrError:
        source = None
    if source is None or not (source / "config.json").is_file():
        return _skipped(model, "not trained yet (see training/tiny/hrpo_runs.py)")
    if not (ROOT / data).is_file():
        return _skipped(data, "not made yet (see this script's docstring)")
    weights = sorted(source.glob("*.safetensors"))
    stamp = [str(source.resolve()), [(w.name, w.stat().st_size, w.stat().st_mtime) for w in weights]]
    stamp += [
        data,
        (ROOT / data).stat().st_size,
        limit,
        mode,
        str(_cost_model(cost)),
    ]
    return CACHE / f"{hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:16]}.json"


def _record_path(job: Job) -> Path:
    """The committed record of a job: named by what was evaluated, not by the weights' files."""
    return RECORDS / f"{hashlib.sha1(json.dumps(list(job)).encode()).hexdigest()[:16]}.json.gz"


def _read_results(path: Path) -> list[StoryResult]:
    text = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [StoryResult(**{**s, "violations": tuple(s["violations"]), "thoughts": tuple(s["thoughts"])})
            for s in json.loads(text)["stories"]]  # fmt: skip


def evaluated(job: Job, progress: bool = False) -> list[StoryResult] | None:
    """The per-story results of a job: from the cache, evaluated now (and cached), or, when its
    model is no longer on disk (runs/ is not kept), from the record committed when it was
    evaluated. Every evaluation of a model on disk rewrites its record, so a retrained model's
    figures replace the old ones."""
    record = _record_path(job)
    path = None if record.is_file() and not _model_on_disk(job[0]) else _cache_path(job)
    if path is None:
        return _read_results(record) if record.is_file() else None
    fresh = not path.is_file()
    if fresh:
        model, mode, data, cost, limit = job
        clock = CostModelClock(_cost_model(cost))
        net, tokenizer = load_reasoner_model(str(ROOT / model) if (ROOT / model).is_dir() else model)
        stories = list(islice(read_dataset(ROOT / data), limit))
        results = evaluate(
            net, tokenizer, stories, mode, ReasonerOptions(), clock, progress=progress or None, batch=BATCH
        )
        report = summarise(results, model=model, data=data, mode=mode, clock=clock)
        save_evaluation(path, report, results)
    if fresh or not record.is_file():
        RECORDS.mkdir(exist_ok=True)
        record.write_bytes(gzip.compress(path.read_bytes(), mtime=0))
    return _read_results(path)


def _model_on_disk(model: str) -> bool:
    return (ROOT / model / "config.json").is_file()


def _fill(job: Job) -> None:
    import torch

    torch.set_num_threads(1)
    evaluated(job)


def fill_cache(jobs: list[Job], workers: int) -> None:
    """Evaluate what the cache lacks, `workers` evaluations side by side (one thread each)."""
    jobs = list(dict.fromkeys(jobs))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_fill, jobs))


# --- a method's figures over its seeds ---------------------------------------------------------------


@dataclass
class Method:
    """One method's per-story results, one list per seed, on the same stories in the same order."""

    label: str
    runs: list[list[StoryResult]]

    def matrix(self, field: str) -> np.ndarray:
        return np.array([[float(getattr(r, field)) for r in results] for results in self.runs])

    @property
    def n(self) -> int:
        return len(self.runs[0])

    def accuracy_cell(self) -> str:
        correct = self.matrix("correct")
        if len(self.runs) == 1:
            low, high = wilson_interval(int(correct.sum()), self.n)
            return f"{correct.mean():.3f} [{low:.3f}, {high:.3f}]"
        mean, spread = mean_and_spread(correct.mean(axis=1))
        low, high = bootstrap_interval(correct.mean(axis=0))
        return f"{mean:.3f} ± {spread:.3f} [{low:.3f}, {high:.3f}]"

    def mean_cell(self, field: str, spec: str) -> str:
        per_story = self.matrix(field).mean(axis=0)
        low, high = bootstrap_interval(per_story)
        return f"{per_story.mean():{spec}} [{low:{spec}}, {high:{spec}}]"

    def rate_cell(self, kind: str) -> str:
        """The skip rate on `kind` chunks (distractor or informative), pooled over the chunks of
        the stories with gold flags (the free-wording stories have none)."""
        chunks = [[getattr(r, f"{kind}_chunks") for r in results] for results in self.runs]
        skips = [[getattr(r, f"{kind}_skips") for r in results] for results in self.runs]
        gold = [i for i in range(self.n) if all(row[i] is not None for row in chunks)]
        c = np.array([[row[i] for i in gold] for row in chunks], dtype=float).sum(axis=0)
        s = np.array([[row[i] for i in gold] for row in skips], dtype=float).sum(axis=0)
        if not gold or not c.sum():
            return "-"
        if len(self.runs) == 1:
            low, high = wilson_interval(int(s.sum()), int(c.sum()))
        else:
            low, high = bootstrap_ratio_interval(s, c)
        return f"{s.sum() / c.sum():.3f} [{low:.3f}, {high:.3f}]"


COLUMNS = ["method", "seeds", "n", "accuracy [95 %]", "valid format", "stream tokens", "deep tokens",
           "skip distractor", "skip informative", "latency mean s", "overflow mean s"]  # fmt: skip


def method_row(method: Method) -> str:
    cells = [
        method.label,
        str(len(method.runs)),
        str(method.n),
        method.accuracy_cell(),
        f"{method.matrix('valid').mean():.3f}",
        method.mean_cell("stream_tokens", ".1f"),
        method.mean_cell("deep_tokens", ".1f"),
        method.rate_cell("distractor"),
        method.rate_cell("informative"),
        method.mean_cell("answer_latency_s", ".2f"),
        method.mean_cell("overflow_s", ".2f"),
    ]
    return "| " + " | ".join(cells) + " |"


def table(methods: list[Method]) -> list[str]:
    return ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS), *map(method_row, methods)]


LOWER_IS_BETTER = {"answer_latency_s", "overflow_s"}  # costs: the smaller value wins


def compare(a: Method, b: Method, field: str) -> PairedDifference:
    return paired_bootstrap(
        a.matrix(field),
        b.matrix(field),
        names=(a.label, b.label),
        higher_is_better=field not in LOWER_IS_BETTER,
    )


def comparison_lines(pairs: list[tuple[Method, Method]]) -> list[str]:
    lines = ["| comparison | metric | A - B [95 %] | p | verdict |", "|---|---|---|---|---|"]
    for a, b in pairs:
        for field, name, spec in (("correct", "accuracy", ".3f"), ("answer_latency_s", "latency s", ".2f"),
                                  ("overflow_s", "overflow s", ".2f")):  # fmt: skip
            d = compare(a, b, field)
            low, high = d.interval
            lines.append(
                f"| {a.label} vs {b.label} | {name} | {d.difference:+{spec}} [{low:+{spec}}, {high:+{spec}}] "
                f"| {d.p:.3f} | {d.verdict} |"
            )
    return lines


def pooled(results: list[list[StoryResult] | None]) -> list[StoryResult] | None:
    return None if any(r is None for r in results) else [s for r in results for s in r]


# --- stages -------------------------------------------------------------------------------------------


def valid_jobs(limit: int) -> list[Job]:
    regime = REGIMES["paper"]
    models = [run("paper", v, 0) for v in (*HRPO_VARIANTS, *GRPO_VARIANTS)] + [SFT]
    return [
        (model, "streaming", data, regime.cost, n)
        for model in models
        for data, n in ((regime.valid, limit), (FREE_CHOOSE, 30))
    ]


def stage_valid(args) -> tuple[list[str], dict[str, str]]:
    regime = REGIMES["paper"]
    fill_cache(valid_jobs(args.valid_limit), args.jobs)

    def method(label: str, model: str) -> Method | None:
        both = [evaluated((model, "streaming", d, regime.cost, n)) for d, n in
                ((regime.valid, args.valid_limit), (FREE_CHOOSE, 30))]  # fmt: skip
        results = pooled(both)
        return None if results is None else Method(label, [results])

    sft = method("SFT (bundled default)", SFT)
    candidates = {v: method(DESCRIBED[v], run("paper", v, 0)) for v in (*HRPO_VARIANTS, *GRPO_VARIANTS)}
    present = [m for m in [sft, *candidates.values()] if m is not None]
    lines = [
        f"Validation: the valid split's first {args.valid_limit} stories and the 30 free-wording "
        f"'choose' stories, pooled; regime `paper`; seed 0 of each variant.",
        "",
        *table(present),
    ]
    choices: dict[str, str] = {}
    for family, variants in (("hrpo", HRPO_VARIANTS), ("grpo", GRPO_VARIANTS)):
        scored = [(v, candidates[v]) for v in variants if candidates[v] is not None]
        if len(scored) < len(variants):
            missing = [v for v in variants if candidates[v] is None]
            lines += ["", f"{family}: no choice yet (runs missing: {', '.join(missing)})"]
            continue
        best = max(scored, key=lambda vm: (vm[1].matrix("correct").mean(), -variants.index(vm[0])))
        choices[family] = best[0]
        lines += [
            "",
            f"Chosen for {family.upper()}: `{best[0]}` ({DESCRIBED[best[0]]}); paired against the others:",
        ]
        lines += ["", *comparison_lines([(best[1], m) for v, m in scored if v != best[0]])]
    if sft is not None:
        chosen = [candidates[c] for c in choices.values()]
        lines += ["", "Each chosen variant against the supervised model it started from:", ""]
        lines += comparison_lines([(m, sft) for m in chosen]) if chosen else ["(no choice yet)"]
    if len(choices) == 2:
        CHOICES.write_text(json.dumps(choices, indent=2) + "\n")
        lines += ["", f"Written to `{CHOICES.relative_to(ROOT)}`: {json.dumps(choices)}"]
    return lines, {f"valid_{k}": v for k, v in choices.items()}


def test_jobs(choices: dict[str, str], limit: int) -> list[Job]:
    jobs = []
    for name, regime in REGIMES.items():
        jobs.append((RTT, "read-then-think", regime.test, regime.cost, limit))
        jobs.append((SFT, "streaming", regime.test, regime.cost, limit))
        for family in ("grpo", "hrpo"):
            jobs += [
                (run(name, choices[family], s), "streaming", regime.test, regime.cost, limit) for s in SEEDS
            ]
    return jobs


def seeded_method(label: str, models: list[str], mode: str, regime: Regime, limit: int) -> Method | None:
    """A method over the runs (seeds) among `models` that exist, on the regime's test stories."""
    runs = [evaluated((m, mode, regime.test, regime.cost, limit)) for m in models]
    runs = [r for r in runs if r is not None]
    return Method(label, runs) if runs else None


def stage_test(args) -> tuple[list[str], dict[str, str]]:
    if not CHOICES.is_file():
        raise SystemExit(f"results: {CHOICES.relative_to(ROOT)} is missing: run --stage valid first")
    choices = json.loads(CHOICES.read_text())
    fill_cache(test_jobs(choices, args.limit), args.jobs)
    lines, figures = [], {}
    for name, regime in REGIMES.items():
        at = (regime, args.limit)
        rtt = seeded_method("read-then-think", [RTT], "read-then-think", *at)
        sft = seeded_method("SFT (bundled default)", [SFT], "streaming", *at)
        runs = {family: [run(name, choices[family], s) for s in SEEDS] for family in ("grpo", "hrpo")}
        grpo = seeded_method(f"GRPO (`{choices['grpo']}`)", runs["grpo"], "streaming", *at)
        hrpo = seeded_method(f"HRPO (`{choices['hrpo']}`)", runs["hrpo"], "streaming", *at)
        present = [m for m in (rtt, sft, grpo, hrpo) if m is not None]
        lines += ["", f"### Regime `{name}`: {regime.label}; test, first {args.limit} stories", ""]
        lines += table(present) if present else ["(no model evaluated yet)"]
        pairs = [(a, b) for a, b in ((hrpo, grpo), (hrpo, sft), (grpo, sft), (sft, rtt)) if a and b]
        lines += ["", *comparison_lines(pairs)] if pairs else []
        for key, m in (("rtt", rtt), ("sft", sft), ("grpo", grpo), ("hrpo", hrpo)):
            if m is not None:
                figures[f"{name}_{key}_acc"] = f"{m.matrix('correct').mean():.3f}"
        if hrpo and grpo:
            figures[f"{name}_hrpo_vs_grpo"] = compare(hrpo, grpo, "correct").verdict.replace(" ", "_")
    return lines, figures


def write_section(stage: str, lines: list[str], command: str) -> None:
    """Replace this stage's part of RESULTS.md (between its markers), or add it at the end."""
    start, end = f"<!-- results.py --stage {stage} -->", f"<!-- /results.py --stage {stage} -->"
    body = "\n".join([start, "", f"Printed by `{command}`.", "", *lines, "", end])
    text = RESULTS.read_text() if RESULTS.is_file() else "# Tiny models: results\n"
    if start in text and end in text:
        text = text[: text.index(start)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["valid", "test"], required=True)
    parser.add_argument("--limit", type=int, default=500, help="test stories per regime")
    parser.add_argument("--valid-limit", type=int, default=300, help="valid-split stories")
    parser.add_argument("--jobs", type=int, default=1, help="evaluations side by side, one thread each")
    args = parser.parse_args()
    lines, figures = (stage_valid if args.stage == "valid" else stage_test)(args)
    command = "python " + " ".join(shlex.quote(a) for a in ["training/tiny/results.py", *sys.argv[1:]])
    write_section(args.stage, lines, command)
    print("\n".join(lines))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
