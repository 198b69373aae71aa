"""Evaluation over a streamed-story dataset: per-story results from the events, one aggregate report.

Every figure is in stream seconds from the clock the run used (the cost model with the paper-speed
profile by default), so a report is reproducible and names its clock and profile. Skip rates need
the dataset's gold `informative` flags; they are pooled over chunks (skips / chunks that got a
unit), and null when no story has gold or no chunk got a unit (read-then-think writes none).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from rich.table import Table
from tqdm import tqdm

from adasr_av.atomic import write_atomically
from adasr_av.data.dataset import StreamedStory
from adasr_av.errors import AdasrError
from adasr_av.reasoner.protocol import Mode
from adasr_av.reasoner.session import ReasonerOptions, make_reasoner, reason_over_streams
from adasr_av.stats import percentile, wilson_interval
from adasr_av.timing import PAPER_PROFILE, ComputeClock, CostModelClock
from adasr_av.types import Event

RUNTIME_CLOSED = ("capped", "eos")  # event flags: the runtime, not the model, closed the span


@dataclass(frozen=True)
class StoryResult:
    """One story's figures. Chunk counts cover chunks that got a unit; None without gold."""

    id: str
    correct: bool
    valid: bool  # no protocol violation and no span the runtime had to close
    stream_tokens: int
    deep_tokens: int  # deep reasoning plus the answer span
    distractor_chunks: int | None
    distractor_skips: int | None
    informative_chunks: int | None
    informative_skips: int | None
    answer_latency_s: float
    max_lag_s: float
    overflow_s: float
    answer: str | None
    reference: str | None
    violations: tuple[str, ...] = ()
    runtime_closed: int = 0
    thoughts: tuple[str, ...] = ()  # the streaming units that thought, in order (error analysis)
    deep: str = ""  # the deep reasoning before the answer


@dataclass(frozen=True)
class EvalReport:
    """The aggregate over stories, with what produced it (model, data, mode, clock, profile)."""

    model: str
    data: str
    mode: str
    clock: str
    cost_profile: str | None
    n: int
    accuracy: float
    format_validity: float
    mean_stream_tokens: float
    mean_deep_tokens: float
    skip_rate_distractor: float | None
    skip_rate_informative: float | None
    answer_latency_mean_s: float
    answer_latency_p90_s: float
    max_lag_s: float  # the largest over all stories
    overflow_mean_s: float
    options: dict = field(default_factory=dict)
    accuracy_interval: tuple[float, float] = (0.0, 1.0)  # Wilson 95 %


def story_result(story_id: str, events: Sequence[Event], informative: Sequence[bool] | None) -> StoryResult:
    """One story's figures from its events (the last one the summary) and its gold flags."""
    if not events or events[-1].type != "summary":
        raise ValueError(f"story {story_id}: the events do not end with a summary")
    info = events[-1].info
    units = [e for e in events if e.type in ("think", "skip")]
    runtime_closed = sum(any(e.info.get(flag) for flag in RUNTIME_CLOSED) for e in events)
    counts: dict[bool, list[int]] = {True: [0, 0], False: [0, 0]}  # informative -> [chunks, skips]
    for unit in units if informative is not None else ():
        tally = counts[bool(informative[unit.chunk_index])]
        tally[0] += 1
        tally[1] += unit.type == "skip"
    gold = informative is not None
    return StoryResult(
        id=story_id,
        correct=bool(info.get("correct", False)),
        valid=not info["violations"] and runtime_closed == 0,
        stream_tokens=info["stream_tokens"],
        deep_tokens=info["deep_tokens"],
        distractor_chunks=counts[False][0] if gold else None,
        distractor_skips=counts[False][1] if gold else None,
        informative_chunks=counts[True][0] if gold else None,
        informative_skips=counts[True][1] if gold else None,
        answer_latency_s=info["answer_latency_s"],
        max_lag_s=info["max_lag_s"],
        overflow_s=info["overflow_s"],
        answer=info["answer"],
        reference=info.get("reference"),
        violations=tuple(info["violations"]),
        runtime_closed=runtime_closed,
        thoughts=tuple(e.text for e in events if e.type == "think"),
        deep=" ".join(e.text for e in events if e.type == "deep"),
    )


def _pooled_rate(skips: Iterable[int | None], chunks: Iterable[int | None]) -> float | None:
    """Skips over chunks summed across stories with gold; None when there is nothing to divide."""
    pairs = [(s, c) for s, c in zip(skips, chunks, strict=True) if s is not None and c is not None]
    total = sum(c for _, c in pairs)
    return sum(s for s, _ in pairs) / total if total else None


def summarise(
    results: Sequence[StoryResult],
    *,
    model: str,
    data: str,
    mode: str,
    clock: ComputeClock,
    options: dict | None = None,
) -> EvalReport:
    """The aggregate report: means over stories, pooled skip rates, p90 and maximum of the latencies."""
    if not results:
        raise AdasrError(f"dataset {data}: no stories to evaluate")
    n = len(results)
    latencies = [r.answer_latency_s for r in results]
    return EvalReport(
        model=model,
        data=data,
        mode=mode,
        clock=clock.name,
        cost_profile=getattr(getattr(clock, "cost", None), "name", None),
        n=n,
        accuracy=sum(r.correct for r in results) / n,
        format_validity=sum(r.valid for r in results) / n,
        mean_stream_tokens=sum(r.stream_tokens for r in results) / n,
        mean_deep_tokens=sum(r.deep_tokens for r in results) / n,
        skip_rate_distractor=_pooled_rate(
            (r.distractor_skips for r in results), (r.distractor_chunks for r in results)
        ),
        skip_rate_informative=_pooled_rate(
            (r.informative_skips for r in results), (r.informative_chunks for r in results)
        ),
        answer_latency_mean_s=sum(latencies) / n,
        answer_latency_p90_s=percentile(latencies, 90),
        max_lag_s=max(r.max_lag_s for r in results),
        overflow_mean_s=sum(r.overflow_s for r in results) / n,
        options=options or {},
        accuracy_interval=wilson_interval(sum(r.correct for r in results), n),
    )


def evaluate(
    model,
    tokenizer,
    stories: Sequence[StreamedStory],
    mode: Mode = "streaming",
    options: ReasonerOptions | None = None,
    clock: ComputeClock | None = None,
    progress: bool | None = None,
    progress_file: TextIO | None = None,
    batch: int = 1,
) -> list[StoryResult]:
    """Run the reasoner over every story (one fresh session each) and score it.

    `batch` > 1 decodes that many stories together, one row each (stories of similar length side
    by side); each is scored as if it ran alone, which the cost-model clock makes exact (a wall
    clock would charge every row for the whole batch, so it takes one story at a time).
    `progress`: a bar on `progress_file` (stderr) with the stories done, the running accuracy and
    the time left; None shows it when that file is a terminal."""
    if batch < 1:
        raise AdasrError(f"--batch must be at least 1, got {batch}")
    clock = clock or CostModelClock(PAPER_PROFILE)
    if batch > 1 and not isinstance(clock, CostModelClock):
        raise AdasrError(
            f"--batch {batch} needs the cost-model clock: a {clock.name} clock would time the batch"
        )
    reasoner = make_reasoner(model, tokenizer, mode, options=options or ReasonerOptions(), clock=clock)
    order = (
        sorted(range(len(stories)), key=lambda i: len(stories[i].chunks))
        if batch > 1
        else range(len(stories))
    )
    results: dict[int, StoryResult] = {}
    right = 0
    with _progress_bar(len(stories), mode, progress, progress_file) as bar:
        for start in range(0, len(stories), batch):
            group = [stories[i] for i in order[start : start + batch]]
            for i, story, events in zip(
                order[start : start + batch], group, _story_events(reasoner, group), strict=True
            ):
                results[i] = story_result(story.id, events, story.informative)
                right += results[i].correct
            bar.set_postfix(accuracy=f"{right / len(results):.3f}", refresh=False)
            bar.update(len(group))  # draws the count and the accuracy of the same stories
    return [results[i] for i in range(len(stories))]


def _story_events(reasoner, stories: Sequence[StreamedStory]) -> list[list[Event]]:
    """Every event of each story, the stories run as the rows of one session (a story that fails
    is found by running the group's stories alone, so the error names it)."""
    try:
        return reason_over_streams(
            reasoner, [(s.chunks, s.question, s.answer, s.t_stream_end) for s in stories]
        )
    except AdasrError as err:
        if len(stories) == 1:
            raise AdasrError(f"story {stories[0].id}: {err}") from None
        for story in stories:
            _story_events(reasoner, [story])
        raise


def _progress_bar(total: int, mode: str, progress: bool | None, file: TextIO | None) -> tqdm:
    """The stories-done bar (tqdm adds the time elapsed and left) on `file`, stderr by default.
    It redraws after every story (a story takes seconds, so that is cheap): tqdm's default 0.1 s
    rate limit would skip the states of stories a small model finishes faster."""
    file = file or sys.stderr
    show = _is_terminal(file) if progress is None else progress
    return tqdm(
        total=total,
        desc=f"eval {mode}",
        unit="story",
        disable=not show,
        file=file,
        mininterval=0,
        miniters=1,
        **_unsized_terminal(file),
    )


def _is_terminal(file: TextIO) -> bool:
    return bool(getattr(file, "isatty", lambda: False)())


def _unsized_terminal(file: TextIO) -> dict[str, int]:
    """tqdm's size for a terminal that reports none, as a pty nobody sized does (`docker exec -t`,
    `script`): at 0 columns and 0 rows tqdm would draw nothing at all. Otherwise tqdm measures."""
    try:
        size = os.get_terminal_size(file.fileno())
    except (AttributeError, OSError, ValueError):  # not a terminal, or no file descriptor
        return {}
    if size.columns and size.lines:
        return {}
    fallback = shutil.get_terminal_size()  # $COLUMNS and $LINES, else 80 x 24
    return {"ncols": size.columns or fallback.columns, "nrows": size.lines or fallback.lines}


def save_evaluation(path: str | Path, report: EvalReport, results: Sequence[StoryResult]) -> None:
    """Write {"report", "stories"} as JSON; the path never holds half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"report": asdict(report), "stories": [asdict(r) for r in results]}
    write_atomically(path, json.dumps(payload, indent=2) + "\n")


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def report_table(report: EvalReport) -> Table:
    """The report as a two-column table for the terminal; it names the clock and cost profile used."""
    clock = report.clock + (f", profile {report.cost_profile}" if report.cost_profile else "")
    table = Table(title="adasr-av eval")
    table.add_column("metric")
    table.add_column("value", justify="right")
    low, high = report.accuracy_interval
    rows = [
        ("model", report.model),
        ("data", report.data),
        ("mode", report.mode),
        ("clock", clock),
        ("stories", str(report.n)),
        ("accuracy (95 % interval)", f"{report.accuracy:.3f} [{low:.3f}, {high:.3f}]"),
        ("format validity", _fmt(report.format_validity, ".3f")),
        ("mean streaming tokens", _fmt(report.mean_stream_tokens, ".1f")),
        ("mean deep tokens", _fmt(report.mean_deep_tokens, ".1f")),
        ("skip rate, distractor chunks", _fmt(report.skip_rate_distractor, ".3f")),
        ("skip rate, informative chunks", _fmt(report.skip_rate_informative, ".3f")),
        ("answer latency, mean", _fmt(report.answer_latency_mean_s, ".2f", " s")),
        ("answer latency, p90", _fmt(report.answer_latency_p90_s, ".2f", " s")),
        ("maximum lag", _fmt(report.max_lag_s, ".2f", " s")),
        ("streaming overflow, mean", _fmt(report.overflow_mean_s, ".2f", " s")),
    ]
    for row in rows:
        table.add_row(*row)
    if report.skip_rate_distractor is None and report.skip_rate_informative is None:
        table.caption = "skip rates need gold 'informative' flags and streaming units"
    return table
