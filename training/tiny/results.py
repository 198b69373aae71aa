"""The supervised results table of the tiny models: streaming (bundled) and read-then-think, on the
test split in text and speech mode and on the out-of-distribution split, cost-model clock with the
paper-speed profile. Writes training/tiny/RESULTS.md (table plus the command that printed it).

    python training/tiny/results.py            # after build.sh, build_rtt.sh and the speech synth

Last line: RESULT text_acc=.. speech_acc=.. ood_acc=.. rtt_text_acc=.. latency_ratio=..
"""

from __future__ import annotations

import argparse
import shlex
import sys
from itertools import islice
from pathlib import Path

from adasr_av.data.dataset import read_dataset
from adasr_av.evaluation import EvalReport, evaluate, summarise
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.session import ReasonerOptions
from adasr_av.timing import CostModelClock, load_cost_model

HERE = Path(__file__).resolve().parent
COLUMNS = (
    ("accuracy", "accuracy", ".3f"),
    ("valid", "format_validity", ".3f"),
    ("stream tok", "mean_stream_tokens", ".1f"),
    ("deep tok", "mean_deep_tokens", ".1f"),
    ("skip distractor", "skip_rate_distractor", ".3f"),
    ("skip informative", "skip_rate_informative", ".3f"),
    ("latency mean s", "answer_latency_mean_s", ".2f"),
    ("latency p90 s", "answer_latency_p90_s", ".2f"),
    ("max lag s", "max_lag_s", ".2f"),
)


def _row(label: str, data: str, report: EvalReport) -> str:
    cells = [label, data, str(report.n)]
    for _, name, spec in COLUMNS:
        value = getattr(report, name)
        cells.append("-" if value is None else format(value, spec))
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="streaming model (default: the bundled one)")
    parser.add_argument("--rtt-model", default="runs/tiny-rtt/final", help="read-then-think model")
    parser.add_argument("--text", default="data/tiny/test.jsonl")
    parser.add_argument("--speech", default="data/tiny-speech/test.jsonl")
    parser.add_argument("--ood", default="data/tiny/ood.jsonl")
    parser.add_argument("--limit", type=int, default=300, help="stories per dataset")
    parser.add_argument("--cost", default="paper", help="cost profile: paper or a calibrate JSON")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()

    clock = CostModelClock(load_cost_model(args.cost))
    options = ReasonerOptions()
    models = [("streaming (bundled)", args.model or str(default_model()), "streaming")]
    models.append(("read-then-think", args.rtt_model, "read-then-think"))
    datasets = [("test, text", args.text), ("test, speech", args.speech), ("ood, text", args.ood)]
    reports: dict[tuple[str, str], EvalReport] = {}
    for label, path, mode in models:
        if not Path(path).is_dir():
            print(f"skipping {label}: {path} not found (see the recipes in training/tiny)", file=sys.stderr)
            continue
        model, tokenizer = load_reasoner_model(path)
        for data_label, data in datasets:
            if not Path(data).is_file():
                print(f"skipping {data_label}: {data} not found", file=sys.stderr)
                continue
            stories = list(islice(read_dataset(data), args.limit))
            results = evaluate(model, tokenizer, stories, mode, options, clock, progress=sys.stderr.isatty())
            report = summarise(results, model=path, data=data, mode=mode, clock=clock)
            reports[label, data_label] = report
            print(_row(label, data_label, report), flush=True)

    header = "| model | data | n | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 3)]
    lines += [_row(m, d, r) for (m, d), r in reports.items()]
    figures = {}
    for key, (m, d) in {
        "text_acc": ("streaming (bundled)", "test, text"),
        "speech_acc": ("streaming (bundled)", "test, speech"),
        "ood_acc": ("streaming (bundled)", "ood, text"),
        "rtt_text_acc": ("read-then-think", "test, text"),
    }.items():
        if (m, d) in reports:
            figures[key] = f"{reports[m, d].accuracy:.3f}"
    streaming, rtt = (
        reports.get(("streaming (bundled)", "test, text")),
        reports.get(("read-then-think", "test, text")),
    )
    if streaming and rtt:
        figures["latency_ratio"] = f"{rtt.answer_latency_mean_s / streaming.answer_latency_mean_s:.2f}"
    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]])
    profile = clock.cost.name
    result = "RESULT " + " ".join(f"{k}={v}" for k, v in figures.items())
    text = [
        "# Tiny models: supervised results",
        "",
        f"Printed by `{command}` (cost-model clock, profile `{profile}`, greedy decoding,",
        f"first {args.limit} stories of each split). Latency is answer latency after the stream ends,",
        "in stream seconds; skip rates are pooled over chunks.",
        "",
        *lines,
        "",
        "```",
        result,
        "```",
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print("\n".join(lines))
    print(result)


if __name__ == "__main__":
    main()
