"""The tiny results, all on the cost-model clock: the supervised table (streaming SFT model against
the read-then-think baseline), the HRPO main table (read-then-think, SFT, GRPO, HRPO in text and
speech mode and out of distribution), the paper's ablations, and the main models on a profile
calibrated on this machine. Writes training/tiny/RESULTS.md with the command that printed it.

    python training/tiny/results.py [--jobs 2]  # after build.sh, build_rtt.sh, build_hrpo.sh, synth

Missing models or datasets are skipped (and named). Each report is cached in runs/results-cache,
keyed by model weights, data, limit and profile, so a rerun only evaluates what changed.
Last line: RESULT sft_text_acc=.. sft_speech_acc=.. ... hrpo_latency_vs_sft=..
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from itertools import islice
from pathlib import Path

from adasr_av.data.dataset import read_dataset
from adasr_av.errors import AdasrError
from adasr_av.evaluation import EvalReport, evaluate, summarise
from adasr_av.reasoner.loading import load_reasoner_model, resolve_source
from adasr_av.reasoner.session import ReasonerOptions
from adasr_av.timing import CostModelClock, load_cost_model

HERE = Path(__file__).resolve().parent
CACHE = Path("runs/results-cache")
CALIBRATED = HERE / "cost-cpu.json"  # adasr-av calibrate --model tiny-streaming-sft --out ...

MODELS = {  # label -> (model, mode)
    "read-then-think": ("runs/tiny-rtt/final", "read-then-think"),
    "SFT": ("tiny-streaming-sft", "streaming"),
    "SFT + warm-up": ("runs/tiny-warmup/final", "streaming"),
    "GRPO": ("runs/tiny-grpo/final", "streaming"),
    "HRPO": ("runs/tiny-hrpo/final", "streaming"),
}
DATASETS = {
    "test, text": "data/tiny/test.jsonl",
    "test, speech": "data/tiny-speech/test.jsonl",
    "ood, text": "data/tiny/ood.jsonl",
}
ABLATIONS = {  # title -> [(row label, run name in hrpo_runs.py)]
    "Advantage granularity (lambda 0.5, all rewards)": [
        ("stage", "hrpo"), ("per-unit", "unit"), ("boundary tokens", "boundary"),
    ],
    "Reward set (lambda 0.5, stage)": [
        ("accuracy", "acc"), ("accuracy + format", "acc-format"), ("acc + format + time", "hrpo"),
    ],
    "Training length and learning rate (lambda 0.5, stage, all rewards)": [
        ("40 steps, lr 5e-5", "hrpo"), ("80 steps, lr 5e-5", "hrpo-80"), ("40 steps, lr 1e-4", "lr-1e-4"),
        ("GRPO, 40 steps", "grpo"), ("GRPO, 80 steps", "grpo-80"),
    ],
    "Lambda (stage, all rewards)": [
        ("0 (GRPO)", "grpo"), ("0.3", "lam-0.3"), ("0.5", "hrpo"), ("0.7", "lam-0.7"), ("1", "lam-1"),
    ],
}  # fmt: skip
COLUMNS = (
    ("accuracy", "accuracy", ".3f"),
    ("valid", "format_validity", ".3f"),
    ("stream tok", "mean_stream_tokens", ".1f"),
    ("deep tok", "mean_deep_tokens", ".1f"),
    ("skip distractor", "skip_rate_distractor", ".3f"),
    ("skip informative", "skip_rate_informative", ".3f"),
    ("latency mean s", "answer_latency_mean_s", ".2f"),
    ("latency p90 s", "answer_latency_p90_s", ".2f"),
    ("overflow s", "overflow_mean_s", ".3f"),
    ("max lag s", "max_lag_s", ".2f"),
)


class Evaluator:
    """Evaluates (model, data) pairs once, through the on-disk cache."""

    def __init__(self, cost: str, progress: bool):
        self.cost, self.progress = cost, progress
        self.clock = CostModelClock(load_cost_model(cost))
        self.models: dict[str, tuple] = {}

    def report(self, model: str, mode: str, data: str, limit: int) -> EvalReport | None:
        try:
            source = Path(resolve_source(model))
        except AdasrError:
            source = None
        if source is None or not (source / "config.json").is_file():
            print(f"skipping {model}: not found (see the recipes in training/tiny)", file=sys.stderr)
            return None
        if not Path(data).is_file():
            print(f"skipping {data}: not found", file=sys.stderr)
            return None
        weights = next(source.glob("*.safetensors"))
        stamp = [str(source.resolve()), weights.stat().st_mtime, data, Path(data).stat().st_size, limit, mode]
        key = hashlib.sha1(json.dumps([*stamp, self.cost, str(self.clock.cost)]).encode()).hexdigest()[:16]
        cached = CACHE / f"{key}.json"
        if cached.is_file():
            return EvalReport(**json.loads(cached.read_text()))
        if model not in self.models:
            self.models[model] = load_reasoner_model(str(source))
        net, tokenizer = self.models[model]
        stories = list(islice(read_dataset(data), limit))
        results = evaluate(
            net, tokenizer, stories, mode, ReasonerOptions(), self.clock, progress=self.progress
        )
        report = summarise(results, model=model, data=data, mode=mode, clock=self.clock)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".partial")
        tmp.write_text(json.dumps(asdict(report)))
        tmp.replace(cached)
        return report


def table(first: list[str], rows: list[tuple[list[str], EvalReport]]) -> list[str]:
    lines = ["| " + " | ".join([*first, "n", *(c for c, _, _ in COLUMNS)]) + " |"]
    lines.append("|" + "---|" * (len(first) + 1 + len(COLUMNS)))
    for cells, report in rows:
        values = [
            ("-" if getattr(report, a) is None else format(getattr(report, a), s)) for _, a, s in COLUMNS
        ]
        lines.append("| " + " | ".join([*cells, str(report.n), *values]) + " |")
    return lines


def targets(reports: dict[tuple[str, str], EvalReport]) -> list[str]:
    """Each target of issue 5 with the measured figures and whether it is met."""
    get = {label: reports.get((label, "test, text")) for label in MODELS}
    hrpo, sft, grpo = get["HRPO"], get["SFT"], get["GRPO"]
    if not (hrpo and sft and grpo):
        return ["(models missing)"]
    latency, sft_latency = hrpo.answer_latency_mean_s, sft.answer_latency_mean_s
    checks = [
        ("HRPO accuracy >= SFT", f"{hrpo.accuracy:.3f} vs {sft.accuracy:.3f}", hrpo.accuracy >= sft.accuracy),
        (
            "HRPO accuracy >= GRPO",
            f"{hrpo.accuracy:.3f} vs {grpo.accuracy:.3f}",
            hrpo.accuracy >= grpo.accuracy,
        ),
        (
            "HRPO latency <= 0.7 x SFT",
            f"{latency:.2f} s = {latency / sft_latency:.2f} x {sft_latency:.2f} s",
            latency <= 0.7 * sft_latency,
        ),
        (
            "skip rate on distractors >= 0.80",
            f"{hrpo.skip_rate_distractor:.3f}",
            hrpo.skip_rate_distractor >= 0.8,
        ),
        (
            "skip rate on informative chunks <= 0.10",
            f"{hrpo.skip_rate_informative:.3f}",
            hrpo.skip_rate_informative <= 0.1,
        ),
    ]
    lines = ["| target | measured | met |", "|---|---|---|"]
    return lines + [f"| {name} | {value} | {'yes' if ok else 'no'} |" for name, value, ok in checks]


Job = tuple[str, str, str, str, int]  # (cost profile, model, mode, data, limit)
Row = tuple[list[str], Job]  # (the row's first cells, its evaluation)


def main_jobs(args) -> list[Row]:
    return [
        ([label, data_label], (args.cost, model, mode, data, args.limit))
        for label, (model, mode) in MODELS.items()
        for data_label, data in DATASETS.items()
    ]


def ablation_jobs(args, runs: list[tuple[str, str]]) -> list[Row]:
    test = DATASETS["test, text"]
    return [
        ([label], (args.cost, f"runs/tiny-{run}/final", "streaming", test, args.ablation_limit))
        for label, run in runs
    ]


def calibrated_jobs(args) -> list[Row]:
    test = DATASETS["test, text"]
    return [
        ([label], (str(CALIBRATED), model, mode, test, args.calibrated_limit))
        for label, (model, mode) in MODELS.items()
    ]


def planned(args) -> list[Job]:
    """Every evaluation the tables ask for, once."""
    rows = main_jobs(args) + [row for runs in ABLATIONS.values() for row in ablation_jobs(args, runs)]
    if CALIBRATED.is_file():
        rows += calibrated_jobs(args)
    return list(dict.fromkeys(job for _, job in rows))


def evaluated(evaluator: Evaluator, rows: list[Row]) -> Iterator[tuple[list[str], EvalReport]]:
    """The rows whose model and data exist, with their reports, as each is ready."""
    for cells, (_, *evaluation) in rows:
        report = evaluator.report(*evaluation)
        if report is not None:
            yield cells, report


def _fill_cache(job: Job) -> None:
    import torch

    torch.set_num_threads(1)
    cost, *rest = job
    Evaluator(cost, progress=False).report(*rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=150, help="stories per dataset, main tables")
    parser.add_argument("--ablation-limit", type=int, default=100, help="test stories per ablation run")
    parser.add_argument("--calibrated-limit", type=int, default=50, help="test stories, calibrated profile")
    parser.add_argument("--cost", default="paper", help="cost profile: paper or a calibrate JSON")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--jobs", type=int, default=1, help="evaluations side by side, one thread each")
    args = parser.parse_args()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            list(pool.map(_fill_cache, planned(args)))
    progress = sys.stderr.isatty()
    paper = Evaluator(args.cost, progress)

    main_rows = []
    for row in evaluated(paper, main_jobs(args)):
        main_rows.append(row)
        print(table(["model", "data"], [row])[-1], flush=True)
    reports = {tuple(cells): report for cells, report in main_rows}

    supervised = [(c, r) for c, r in main_rows if c[0] in ("read-then-think", "SFT")]
    sections = [
        "## Supervised: streaming against read-then-think (issue 4)",
        "",
        *table(["model", "data"], supervised),
    ]
    sections += ["", "## Main table: read-then-think, SFT, SFT + adaptive warm-up, GRPO, HRPO (issue 5)", ""]
    sections += table(["model", "data"], main_rows)

    for title, runs in ABLATIONS.items():
        rows = list(evaluated(paper, ablation_jobs(args, runs)))
        sections += ["", f"## Ablation: {title}; test, text, first {args.ablation_limit} stories", ""]
        sections += (
            table(["variant"], rows) if rows else ["(runs missing: python training/tiny/hrpo_runs.py)"]
        )

    if CALIBRATED.is_file():
        calibrated = Evaluator(str(CALIBRATED), progress)
        rows = list(evaluated(calibrated, calibrated_jobs(args)))
        name = calibrated.clock.cost.name
        sections += [
            "",
            f"## Main models on the calibrated profile `{name}` (this CPU); test, text, first "
            f"{args.calibrated_limit} stories",
            "",
        ]
        sections += table(["model"], rows)

    sections += ["", "## Issue 5 targets (test, text)", "", *targets(reports)]

    figures = {}
    for key, (label, data_label, attr) in {
        "sft_text_acc": ("SFT", "test, text", "accuracy"),
        "sft_speech_acc": ("SFT", "test, speech", "accuracy"),
        "sft_ood_acc": ("SFT", "ood, text", "accuracy"),
        "rtt_text_acc": ("read-then-think", "test, text", "accuracy"),
        "warmup_text_acc": ("SFT + warm-up", "test, text", "accuracy"),
        "grpo_text_acc": ("GRPO", "test, text", "accuracy"),
        "hrpo_text_acc": ("HRPO", "test, text", "accuracy"),
        "hrpo_speech_acc": ("HRPO", "test, speech", "accuracy"),
        "hrpo_skip_distractor": ("HRPO", "test, text", "skip_rate_distractor"),
        "hrpo_skip_informative": ("HRPO", "test, text", "skip_rate_informative"),
    }.items():
        value = getattr(reports.get((label, data_label)), attr, None)
        if value is not None:
            figures[key] = f"{value:.3f}"
    ratios = {
        "rtt_latency_vs_sft": ("read-then-think", "SFT"),
        "hrpo_latency_vs_sft": ("HRPO", "SFT"),
        "hrpo_latency_vs_warmup": ("HRPO", "SFT + warm-up"),
    }
    for key, (a, b) in ratios.items():
        ra, rb = reports.get((a, "test, text")), reports.get((b, "test, text"))
        if ra and rb:
            figures[key] = f"{ra.answer_latency_mean_s / rb.answer_latency_mean_s:.2f}"

    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]])
    result = "RESULT " + " ".join(f"{k}={v}" for k, v in figures.items())
    text = [
        "# Tiny models: results",
        "",
        f"Printed by `{command}`: cost-model clock, profile `{paper.clock.cost.name}` unless a section",
        f"says otherwise, greedy decoding, the first {args.limit} stories of each split. Latency is the",
        "answer latency after the stream ends and overflow the streaming work that delayed the next",
        "chunk, both in stream seconds; skip rates are pooled over chunks.",
        "",
        *sections,
        "",
        "```",
        result,
        "```",
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print(result)


if __name__ == "__main__":
    main()
