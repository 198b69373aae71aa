"""`adasr-av eval`: metrics on hand-made events and results, and a whole run on a tiny real model."""

from __future__ import annotations

import io
import json
import os
import sys
import threading

import pytest
import torch
from conftest import CHUNKS, QUESTION, gold_ids, memorise

from adasr_av.cli import main
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.errors import AdasrError
from adasr_av.evaluation import StoryResult, evaluate, story_result, summarise
from adasr_av.reasoner.scratch import build_model
from adasr_av.sinks import chunk_record
from adasr_av.timing import PAPER_PROFILE, CostModelClock, WallClock
from adasr_av.types import Event

SUMMARY = {
    "answer": "6",
    "reference": "6",
    "correct": True,
    "stream_tokens": 9,
    "deep_tokens": 20,
    "skips": 2,
    "answer_latency_s": 1.5,
    "max_lag_s": 0.25,
    "overflow_s": 0.1,
    "clock": "cost-model",
    "cost_profile": "paper",
    "mode": "streaming",
    "violations": [],
}


def unit(kind: str, index: int, tokens: int = 1, **info) -> Event:
    return Event(kind, "", index, tokens, 0.0, 0.0, 0.0, info)


def events(units: list[Event], **summary) -> list[Event]:
    """chunk, unit, chunk, unit, ..., deep, answer, summary."""
    out = []
    for u in units:
        out += [Event("chunk", "c", u.chunk_index, 5, 0.0, 0.0, 0.0), u]
    return out + [
        Event("deep", "d", None, 18, 0.0, 0.0, 0.0),
        Event("answer", "\\boxed{6}", None, 2, 0.0, 0.0, 0.0),
        Event("summary", "6", None, 40, 0.0, 0.0, 0.0, SUMMARY | summary),
    ]


UNITS = [unit("think", 0, 4), unit("skip", 1), unit("skip", 2), unit("think", 3, 3)]


def test_story_result_counts_skips_by_gold_flag():
    result = story_result("s1", events(UNITS), informative=[True, False, True, False])
    assert (result.distractor_chunks, result.distractor_skips) == (2, 1)  # chunk 1 skipped, 3 thought
    assert (result.informative_chunks, result.informative_skips) == (2, 1)  # chunk 2 skipped
    assert result.correct and result.valid and result.runtime_closed == 0
    assert (result.stream_tokens, result.deep_tokens) == (9, 20)
    assert (result.answer_latency_s, result.max_lag_s, result.overflow_s) == (1.5, 0.25, 0.1)
    assert (result.answer, result.reference) == ("6", "6")


def test_story_result_without_gold_has_no_skip_counts():
    result = story_result("s1", events(UNITS), informative=None)
    assert result.distractor_chunks is result.distractor_skips is None
    assert result.informative_chunks is result.informative_skips is None


def test_violations_and_runtime_closed_spans_are_invalid():
    capped = [unit("think", 0, 64, capped=True), *UNITS[1:]]
    result = story_result("s1", events(capped), [True, False, True, False])
    assert not result.valid and result.runtime_closed == 1
    broken = story_result("s1", events(UNITS, violations=["missing <|answer_end|>"], correct=False), None)
    assert not broken.valid and not broken.correct
    assert broken.violations == ("missing <|answer_end|>",)


def test_story_result_needs_a_summary():
    with pytest.raises(ValueError, match="summary"):
        story_result("s1", events(UNITS)[:-1], None)


def result(
    id: str, correct: bool, valid: bool, latency: float, gold: tuple | None, lag: float = 0.0
) -> StoryResult:
    d_chunks, d_skips, i_chunks, i_skips = gold or (None,) * 4
    return StoryResult(
        id, correct, valid, 10, 100, d_chunks, d_skips, i_chunks, i_skips, latency, lag, 0.5, "1", "1"
    )


def test_summarise_hand_computed():
    results = [
        # gold: distractor chunks, distractor skips, informative chunks, informative skips
        result("a", True, True, 2.0, (2, 1, 2, 1), lag=0.3),
        result("b", False, True, 4.0, (3, 3, 5, 0), lag=1.2),
        result("c", True, False, 1.0, None),
        result("d", True, True, 3.0, (0, 0, 0, 0)),
    ]
    report = summarise(
        results, model="m", data="d.jsonl", mode="streaming", clock=CostModelClock(PAPER_PROFILE)
    )
    assert report.n == 4
    assert report.accuracy == 0.75 and report.format_validity == 0.75
    assert (report.mean_stream_tokens, report.mean_deep_tokens) == (10, 100)
    # pooled over chunks of the stories with gold: (1 + 3 + 0) / (2 + 3 + 0), (1 + 0 + 0) / (2 + 5 + 0)
    assert report.skip_rate_distractor == pytest.approx(4 / 5)
    assert report.skip_rate_informative == pytest.approx(1 / 7)
    assert report.answer_latency_mean_s == pytest.approx(2.5)
    # sorted 1, 2, 3, 4: rank 0.9 * 3 = 2.7, so 3 + 0.7 * (4 - 3)
    assert report.answer_latency_p90_s == pytest.approx(3.7)
    assert report.max_lag_s == 1.2 and report.overflow_mean_s == 0.5
    assert (report.clock, report.cost_profile, report.model, report.data) == (
        "cost-model", "paper", "m", "d.jsonl"
    )  # fmt: skip


def test_summarise_without_gold_or_units_has_no_skip_rates():
    report = summarise(
        [result("c", True, True, 1.0, None)], model="m", data="d", mode="streaming", clock=WallClock()
    )
    assert report.skip_rate_distractor is None and report.skip_rate_informative is None
    assert (report.clock, report.cost_profile) == ("wall", None)
    read_first = summarise(
        [result("r", True, True, 1.0, (0, 0, 0, 0))], model="m", data="d", mode="r", clock=WallClock()
    )
    assert read_first.skip_rate_distractor is None


def test_summarise_refuses_no_results():
    with pytest.raises(AdasrError, match="no stories"):
        summarise([], model="m", data="d.jsonl", mode="streaming", clock=WallClock())


# --- the command on a tiny real model --------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run on one thread: two threads on a busy machine were 30x slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    """One Qwen3-style model taught the conftest sequence: fewer steps than conftest's pair, so this
    file stays fast when it runs alone (100 steps reach a loss near 0.02)."""
    model = build_model(tokenizer, "qwen3", hidden=64, layers=2)
    loss = memorise(model, gold_ids(tokenizer), steps=100)
    assert loss < 0.05, f"the model did not memorise the gold sequence (loss {loss:.3f})"
    path = tmp_path_factory.mktemp("models") / "memorised"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def memorised_record() -> dict:
    """The story the conftest model memorised (think, skip, think, answer 6) as a dataset line."""
    gold = [(True, "Tom = 5"), (False, ""), (True, "Tom = 5 + 1 = 6")]
    chunks = [
        chunk_record(c) | {"informative": i, "thought": t} for c, (i, t) in zip(CHUNKS, gold, strict=True)
    ]
    return {
        "id": "memorised",
        "question": QUESTION,
        "question_position": "prompt",
        "answer": 6,
        "chunks": chunks,
    }


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "test.jsonl"
    records = [
        memorised_record(),
        text_record(generate_story(7, "test", 0)),
        text_record(generate_story(7, "test", 1)),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def eval_cli(model_dir, data, *extra) -> int:
    caps = ["--max-unit-tokens", "12", "--max-deep-tokens", "24", "--max-answer-tokens", "8"]
    return main(["eval", "--model", str(model_dir), "--data", str(data), *caps, *extra])


def test_eval_prints_a_table_and_writes_json(model_dir, dataset, tmp_path, capsys):
    out = tmp_path / "reports" / "report.json"
    assert eval_cli(model_dir, dataset, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "cost-model, profile paper" in printed and "p90" in printed
    saved = json.loads(out.read_text())
    report, stories = saved["report"], saved["stories"]
    assert [s["id"] for s in stories][0] == "memorised" and report["n"] == len(stories) == 3
    assert (report["mode"], report["clock"], report["cost_profile"]) == ("streaming", "cost-model", "paper")
    assert report["options"]["max_unit_tokens"] == 12 and report["options"]["sampling"]["do_sample"] is False
    memorised = stories[0]
    assert memorised["correct"] and memorised["valid"] and memorised["answer"] == "6"
    assert (memorised["distractor_chunks"], memorised["distractor_skips"]) == (1, 1)
    assert (memorised["informative_chunks"], memorised["informative_skips"]) == (2, 0)
    assert report["accuracy"] == pytest.approx(sum(s["correct"] for s in stories) / 3)
    skips = sum(s["distractor_skips"] for s in stories) / sum(s["distractor_chunks"] for s in stories)
    assert report["skip_rate_distractor"] == pytest.approx(skips)
    low, mid, high = sorted(s["answer_latency_s"] for s in stories)
    # p90 of three, interpolated linearly between order statistics: rank 0.9 * (3 - 1) = 1.8
    assert report["answer_latency_p90_s"] == pytest.approx(mid + 0.8 * (high - mid))
    assert report["max_lag_s"] == max(s["max_lag_s"] for s in stories)
    assert not list(out.parent.glob(f".{out.name}.*"))  # the part file was renamed into place


def test_eval_read_then_think_with_limit(model_dir, dataset, tmp_path, capsys):
    out = tmp_path / "rtt.json"
    assert eval_cli(model_dir, dataset, "--mode", "read-then-think", "--limit", "1", "--out", str(out)) == 0
    saved = json.loads(out.read_text())
    report = saved["report"]
    assert report["n"] == 1 and report["mode"] == "read-then-think"
    assert report["mean_stream_tokens"] == 0 and report["skip_rate_distractor"] is None
    assert "skip rates need gold" in capsys.readouterr().out


def bar_lines(text: str) -> list[str]:
    """The states a tqdm bar drew, one per redraw."""
    return [line.strip() for line in text.replace("\r", "\n").splitlines() if "story" in line]


def test_eval_progress_shows_stories_done_running_accuracy_and_time_left(
    model_dir, dataset, tmp_path, capsys
):
    out = tmp_path / "report.json"
    assert eval_cli(model_dir, dataset, "--progress", "--out", str(out)) == 0
    lines = bar_lines(capsys.readouterr().err)
    accuracy = json.loads(out.read_text())["report"]["accuracy"]
    after_first = [line for line in lines if "1/3" in line]
    assert after_first and all("accuracy=1.000" in line for line in after_first)  # the memorised story
    assert "3/3" in lines[-1] and f"accuracy={accuracy:.3f}" in lines[-1]
    assert all("<" in line for line in lines)  # tqdm's elapsed<remaining
    assert eval_cli(model_dir, dataset, "--limit", "1", "--no-progress") == 0
    assert not bar_lines(capsys.readouterr().err)
    assert eval_cli(model_dir, dataset, "--limit", "1") == 0  # stderr is no terminal here
    assert not bar_lines(capsys.readouterr().err)


def test_evaluate_progress_to_a_file(model_dir, dataset):
    from adasr_av.data.dataset import read_dataset
    from adasr_av.reasoner.loading import load_reasoner_model
    from adasr_av.reasoner.session import ReasonerOptions

    model, tokenizer = load_reasoner_model(str(model_dir))
    stories = list(read_dataset(dataset))[:2]
    options = ReasonerOptions(max_unit_tokens=12, max_deep_tokens=24, max_answer_tokens=8)
    sink = io.StringIO()
    results = evaluate(model, tokenizer, stories, options=options, progress=True, progress_file=sink)
    running = sum(r.correct for r in results) / 2
    assert (
        "2/2" in bar_lines(sink.getvalue())[-1]
        and f"accuracy={running:.3f}" in bar_lines(sink.getvalue())[-1]
    )


def test_eval_progress_on_a_terminal_that_reports_no_width(model_dir, dataset, monkeypatch):
    """A terminal with no window size (a pty nobody sized, as `docker exec -t` or `script` give):
    stderr is a terminal, so the bar is shown, and at a usable width rather than none."""
    controller, terminal = os.openpty()
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal side closed
                return
            if not data:
                return
            drawn.extend(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stderr = os.fdopen(terminal, "w")
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        assert stderr.isatty() and os.get_terminal_size(terminal).columns == 0
        assert eval_cli(model_dir, dataset, "--limit", "2") == 0
    finally:
        stderr.close()
        reader.join(timeout=10)
        os.close(controller)
    lines = bar_lines(drawn.decode(errors="replace"))
    assert lines and "2/2" in lines[-1] and "accuracy=" in lines[-1]


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        ("absent.jsonl", [], "dataset {tmp}/absent.jsonl: no such file"),
        ("nofield.jsonl", [], "dataset {tmp}/nofield.jsonl, line 2: missing field 'answer'"),
        ("empty.jsonl", [], "dataset {tmp}/empty.jsonl: no stories"),
        ("test.jsonl", ["--limit", "0"], "--limit must be at least 1"),
        ("test.jsonl", ["--temperature", "0"], "temperature must be positive"),
        ("test.jsonl", ["--cost", "{tmp}/c.json"], "cost profile {tmp}/c.json: no such file"),
    ],
    ids=["absent", "missing-field", "empty", "limit", "temperature", "cost"],
)
def test_bad_input_is_one_line_and_nonzero(data, extra, message, dataset, tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("\n")
    lines = dataset.read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["answer"]
    (tmp_path / "nofield.jsonl").write_text(lines[0] + "\n" + json.dumps(broken) + "\n")
    fill = {"tmp": tmp_path}
    args = ["eval", "--model", str(tmp_path / "never-loaded"), "--data", str(tmp_path / data)]
    assert main([*args, *(a.format(**fill) for a in extra)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adasr-av: error: ")
    assert message.format(**fill) in err[0]


def test_compare_evals_pools_datasets_whose_story_ids_repeat(tmp_path):
    """Two datasets both holding a story "s0": pooled, they are two stories, not one."""
    import subprocess
    import sys
    from pathlib import Path

    def report(name, correct):
        path = tmp_path / f"{name}.json"
        stories = [{"id": f"s{i}", "correct": c} for i, c in enumerate(correct)]
        path.write_text(json.dumps({"report": {}, "stories": stories}))
        return str(path)

    a1, b1 = report("a1", [True, False, False]), report("b1", [True, True, True])
    a2, b2 = report("a2", [False, False]), report("b2", [True, True])
    script = Path(__file__).resolve().parent.parent / "training/tiny/compare_evals.py"
    out = subprocess.run(
        [sys.executable, str(script), a1, b1, "--also", a2, b2], capture_output=True, text=True, check=True
    ).stdout
    # 5 stories; right only after: 2 + 2 = 4, exact two-sided binomial p = 2 / 2**4
    assert out.splitlines()[-1] == "RESULT n=5 before=0.200 after=1.000 only_before=0 only_after=4 p=0.125"


# --- several stories decoded together ----------------------------------------------------------------


@pytest.mark.parametrize("context_tokens", [None, 160], ids=["whole-context", "compacted"])
def test_batched_evaluation_scores_each_story_as_it_scores_alone(context_tokens):
    """The bundled model on ten stories of different lengths, four to a batch (and a last batch of
    two): every figure of every story, and their order, is that of the story run alone. With a
    160-token context 7 of the 10 compact, 1 to 3 times, at different chunks on different rows."""
    from adasr_av.data.dataset import parse_record
    from adasr_av.reasoner.loading import bundled_model, load_reasoner_model
    from adasr_av.reasoner.session import ReasonerOptions

    model, tokenizer = load_reasoner_model(str(bundled_model()))
    stories = [parse_record(text_record(generate_story(3, "valid", i)), f"s{i}") for i in range(10)]
    assert len({len(s.chunks) for s in stories}) > 2  # rows end at different chunks
    options = ReasonerOptions(context_tokens=context_tokens)
    alone = evaluate(model, tokenizer, stories, options=options, progress=False)
    together = evaluate(model, tokenizer, stories, options=options, progress=False, batch=4)
    assert [r.id for r in together] == [s.id for s in stories]
    assert together == alone


def test_batched_evaluation_refuses_a_wall_clock_and_a_batch_below_one(model_dir, dataset):
    from adasr_av.data.dataset import read_dataset
    from adasr_av.reasoner.loading import load_reasoner_model

    model, tokenizer = load_reasoner_model(str(model_dir))
    stories = list(read_dataset(dataset))
    with pytest.raises(AdasrError, match="cost-model clock"):
        evaluate(model, tokenizer, stories, clock=WallClock(), progress=False, batch=2)
    with pytest.raises(AdasrError, match="--batch must be at least 1"):
        evaluate(model, tokenizer, stories, progress=False, batch=0)
    assert eval_cli(model_dir, dataset, "--batch", "0") != 0
