"""Many media files through the pipeline: plan them, run them on workers, write what each one gave.

    inputs (files, folders, globs, rtsp:// URLs) [+ questions CSV]
        ──plan──▶ items ──workers (here, processes or Ray actors)──▶ results
        ──▶ DIR/<stem>.events.jsonl, DIR/<stem>.srt, DIR/summary.csv

Each worker loads the models once (`load(threads) -> PipelineModels`) and runs its files one at a
time, writing each file's events and SRT as they come (nothing of a stream is kept in memory, so
an hour-long input costs what a short one does): workers on this machine write beside DIR under
hidden `.part` names, Ray actors (maybe on other machines, with no shared output folder) write a
local spool and ship the finished files back. This process settles every file: each output appears
atomically (`os.replace` of its part), and the summary is rewritten after each finished file, so
a killed batch keeps what it did and a rerun skips the files whose outputs are there (and clears
the parts a kill left). An `rtsp://` input never ends by itself: it runs for `--max-seconds` of
stream time, which live inputs require. A file that fails (or a bad input, or a bad row of the
questions CSV) becomes an error row with a one-line message, and the batch goes on.
"""

from __future__ import annotations

import csv
import glob
import multiprocessing
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from adasr_av.atomic import atomic_open, write_atomically
from adasr_av.errors import AdasrError, first_line
from adasr_av.media.sources import LIVE_SCHEMES, MIC, is_media_file, redact
from adasr_av.pipeline import PipelineModels
from adasr_av.run_config import BatchOptions
from adasr_av.types import Event

SUMMARY_FILE = "summary.csv"
EVENTS_SUFFIX = ".events.jsonl"
TRANSCRIPT_SUFFIX = ".srt"
SCREEN_SUFFIX = ".ocr.srt"  # the text read from the frames; only kept when there was some
OUTPUT_SUFFIXES = (TRANSCRIPT_SUFFIX, SCREEN_SUFFIX, EVENTS_SUFFIX)  # settled in order: the events last
PART_GLOB = ".*.part"  # a file's outputs while it runs: .<stem><suffix>.<8 hex>.part
SUMMARY_COLUMNS = (
    "file", "stem", "question", "answer", "reference", "correct", "answer_latency_s",
    "stream_tokens", "deep_tokens", "skips", "audio_s", "wall_s", "status", "error",
    "model", "settings",
)  # fmt: skip
RUN_COLUMNS = ("model", "settings")  # what made a row: a rerun redoes the rows where these differ
RAY_CONNECT_TIMEOUT_S = 5.0  # seconds to wait for a Ray head address to answer

Loader = Callable[[int | None], PipelineModels]  # CPU threads for the models (None: all) -> models


@dataclass(frozen=True)
class BatchItem:
    """One row of the batch: a source to run, or a bad input already known (`error`)."""

    source: str  # path (as given, or as a folder or glob gave it) or URL; "" for a questions-CSV row
    stem: str = ""  # output names: DIR/<stem>.events.jsonl, DIR/<stem>.srt
    question: str = ""
    reference: str | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        """The source as every output shows it (rows, lines, names): a URL without its password;
        the source itself only opens the stream."""
        return redact(self.source)


@dataclass
class FileResult:
    """What a worker sends back for one item: its summary event and where its outputs are, either
    `parts` (written beside DIR as the run went) or `shipped` (their bytes, from a Ray actor)."""

    summary: Event | None = None  # None: nothing was answered
    parts: dict[str, Path] = field(default_factory=dict)  # output suffix -> part file
    shipped: dict[str, bytes] = field(default_factory=dict)  # output suffix -> content
    audio_s: float | None = None
    wall_s: float = 0.0
    error: str | None = None
    models_failed: bool = False  # the worker could not load its models: the batch stops


@dataclass
class BatchReport:
    rows: list[dict[str, str]]
    summary: Path
    wall_s: float

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    def line(self) -> str:
        return (
            f"{len(self.rows)} files: {self.count('ok')} ok, {self.count('skipped')} done earlier, "
            f"{self.count('error')} failed ({self.wall_s:.1f}s); summary in {self.summary}"
        )

    def failure(self) -> str | None:
        """One line naming the failed files, or None when every file succeeded."""
        failed = [row["file"] or "(questions file)" for row in self.rows if row["status"] == "error"]
        if not failed:
            return None
        names = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        return f"{len(failed)} of {len(self.rows)} files failed: {names} (see {self.summary})"


# --- plan: inputs and questions -> items -----------------------------------------------------------


def plan_batch(
    inputs: Sequence[str], question: str | None = None, questions_file: str | Path | None = None
) -> list[BatchItem]:
    """Items in input order, each file once, with unique stems; bad inputs are error items.

    The question of a file: `question` for all, else its row in `questions_file` (CSV:
    file,question[,reference]), else its sidecar JSON's, else none (the stream carries it). The
    reference: the CSV's, else the sidecar's. Without `inputs` the CSV's files are the inputs.
    """
    items = [BatchItem(source, error=error) for source, error in expand_inputs(inputs)]
    if questions_file is not None:
        items = _apply_questions(items, Path(questions_file), named_inputs=bool(inputs))
    items = [_with_sidecar(item, question) for item in items]
    return _with_stems(items)


def expand_inputs(inputs: Sequence[str]) -> list[tuple[str, str | None]]:
    """(source, error) per file that the inputs name, in order; each file once."""
    found: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for name in inputs:
        for source, error in _expand(name):
            key = source if error or "://" in source else os.path.realpath(source)
            if key not in seen:
                seen.add(key)
                found.append((source, error))
    return found


def _expand(name: str) -> list[tuple[str, str | None]]:
    if "://" in name:
        ok = name.lower().startswith(LIVE_SCHEMES)
        return [
            (
                name,
                None
                if ok
                else f"{redact(name)}: unsupported URL (batch takes files, folders, globs, rtsp://)",
            )
        ]
    path = Path(name)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_media_file(p))
        return [(str(p), None) for p in files] or [(name, f"folder {name}: no audio or video files")]
    if path.exists():
        return [(name, _unsupported(path))]
    if any(char in name for char in "*?["):
        matches = sorted(glob.glob(name, recursive=True))
        files = [m for m in matches if Path(m).is_file() and is_media_file(Path(m))]
        return [(m, None) for m in files] or [(name, f"{name}: no audio or video files match")]
    if name == MIC:
        return [(name, "mic: a live microphone is no batch input (use files, folders, globs, rtsp://)")]
    return [(name, f"{name}: no such file or folder")]


def _unsupported(path: Path) -> str | None:
    if path.is_file() and is_media_file(path):
        return None
    if path.is_dir():
        return f"{path}: a folder (name folders on the command line)"
    kind = f"'{path.suffix}'" if path.suffix else "without a suffix"
    return f"{path}: unsupported file type {kind} (batch takes audio and video files: .wav, .mp3, .mp4, ...)"


@dataclass(frozen=True)
class QuestionRow:
    line: int
    file: str
    question: str
    reference: str | None
    error: str | None


def read_questions(path: Path) -> list[QuestionRow]:
    """The rows of a questions CSV (file,question[,reference]); a bad row carries its error."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            if "file" not in header or "question" not in header:
                raise AdasrError(
                    f"questions file {path}: needs a header with the columns file,question[,reference]"
                    f" (found {','.join(header) or 'nothing'})"
                )
            rows = []
            for record in reader:
                rows.append(_question_row(reader.line_num, record))
    except OSError as err:
        raise AdasrError(f"questions file {path}: cannot read it ({err.strerror or err})") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise AdasrError(f"questions file {path}: not a readable CSV ({first_line(err)})") from None
    return rows


def _question_row(line: int, record: dict) -> QuestionRow:
    file, question = record.get("file"), record.get("question")
    reference = (record.get("reference") or "").strip() or None
    missing = [name for name in ("file", "question") if record.get(name) is None]
    if missing:
        error = f"missing column {' and '.join(missing)}"
    elif record.get(None):
        error = "more fields than the header has (quote a question that holds commas)"
    elif not file.strip():
        error = "no file named"
    elif not question.strip():
        error = "empty question"
    else:
        error = None
    return QuestionRow(line, (file or "").strip(), (question or "").strip(), reference, error)


def _apply_questions(items: list[BatchItem], path: Path, named_inputs: bool) -> list[BatchItem]:
    """Set the questions the CSV gives; a bad row makes its file an error row (or adds one)."""
    items = list(items)
    asked: dict[int, int] = {}  # item index -> the CSV line that asked about it
    for row in read_questions(path):
        where = f"{path}, line {row.line}"
        index = _find_input(items, row.file, path.parent) if row.file else None
        if index is None and row.file and not named_inputs:
            items.append(_csv_item(row.file, path.parent, where))
            index = len(items) - 1
        if index is None or index in asked:
            why = row.error or (
                f"unknown file {row.file} (not among the inputs)"
                if index is None
                else f"{row.file} already has a question on line {asked[index]}"
            )
            items.append(BatchItem(row.file, error=f"{where}: {why}"))
            continue
        asked[index] = row.line
        item = items[index]
        if row.error is not None:
            items[index] = replace(item, error=item.error or f"{where}: {row.error}")
        elif item.error is None:
            items[index] = replace(item, question=row.question, reference=row.reference)
    return items


def _csv_item(file: str, folder: Path, where: str) -> BatchItem:
    """An input that only the questions CSV names."""
    source = _csv_path(file, folder)
    if "://" in source:
        return BatchItem(*_expand(source)[0])
    if not Path(source).exists():
        return BatchItem(source, error=f"{where}: unknown file {file} (no such file)")
    error = _unsupported(Path(source))
    return BatchItem(source, error=None if error is None else f"{where}: {error}")


def _csv_path(file: str, folder: Path) -> str:
    """A CSV's file: a URL as is, a path relative to the CSV's folder (else to the working folder)."""
    if "://" in file or Path(file).is_absolute():
        return file
    beside = folder / file
    return str(beside) if beside.exists() or not Path(file).exists() else file


def _find_input(items: list[BatchItem], file: str, folder: Path) -> int | None:
    """The item a CSV row names: by path (from the CSV's folder or the working folder), URL or name."""
    if "://" in file:
        return next((i for i, item in enumerate(items) if item.source == file), None)
    wanted = {os.path.realpath(folder / file), os.path.realpath(file)}
    for i, item in enumerate(items):
        if "://" not in item.source and os.path.realpath(item.source) in wanted:
            return i
    by_name = [i for i, item in enumerate(items) if Path(item.source).name == file]
    return by_name[0] if len(by_name) == 1 else None


def _with_sidecar(item: BatchItem, question: str | None) -> BatchItem:
    """The item with its question and reference settled (a sidecar JSON fills what is not given)."""
    from adasr_av.media.sidecar import read_sidecar

    if item.error is not None or "://" in item.source:
        return item if question is None else replace(item, question=question)
    try:
        sidecar = read_sidecar(item.source)
    except AdasrError as err:
        return replace(item, error=str(err))
    if question is not None:
        item = replace(item, question=question)
    elif not item.question and sidecar is not None:
        item = replace(item, question=sidecar.question)
    if item.reference is None and sidecar is not None:
        item = replace(item, reference=sidecar.answer)
    return item


def _with_stems(items: list[BatchItem]) -> list[BatchItem]:
    """Unique output names from the file names, in input order: buses, buses-2, ... (case-blind)."""
    taken: set[str] = set()
    named = []
    for item in items:
        if item.error is not None:
            named.append(item)
            continue
        base = _base_stem(item.name)
        stem, n = base, 1
        while stem.lower() in taken:
            n += 1
            stem = f"{base}-{n}"
        taken.add(stem.lower())
        named.append(replace(item, stem=stem))
    return named


def _base_stem(source: str) -> str:
    name = source.split("://", 1)[1].split("@")[-1] if "://" in source else Path(source).stem
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "stream"


# --- run: items -> outputs and the summary ---------------------------------------------------------


def run_batch(
    items: Sequence[BatchItem], load: Loader, out: str | Path, options: BatchOptions = BatchOptions()
) -> BatchReport:
    """Run the items not done earlier, write each one's outputs and keep DIR/summary.csv current."""
    started = time.perf_counter()
    options.check_live(items)
    if items and all(item.error is not None for item in items):  # nothing to run: no summary either
        first = items[0].error
        raise AdasrError(
            first if len(items) == 1 else f"none of the {len(items)} inputs can be run ({first})"
        )
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AdasrError(f"cannot write to {out}: {err.strerror or err}") from None
    for part in out.glob(PART_GLOB):  # left by a killed batch
        part.unlink(missing_ok=True)
    summary = out / SUMMARY_FILE
    earlier = _earlier_rows(summary)
    rows: dict[int, dict[str, str]] = {}
    todo: list[int] = []
    made_by = {"model": options.model, "settings": options.settings}
    for index, item in enumerate(items):
        if item.error is not None:
            rows[index] = _row(item, status="error", error=item.error) | made_by
        elif (row := _done_earlier(item, out, earlier.get(item.stem), made_by)) is not None:
            rows[index] = row
        else:
            todo.append(index)
    bar = tqdm(
        total=len(items),
        initial=len(rows),
        unit="file",
        desc="batch",
        disable=not options.progress,
        dynamic_ncols=True,
    )
    bar.set_postfix(failed=sum(row["status"] == "error" for row in rows.values()))
    _write_summary(summary, rows)
    for n, index in enumerate(sorted(rows), start=1):
        _tell(rows[index], n, len(items))
    results = _results(items, todo, load, options, out)
    try:
        for index, result in results:
            if result.models_failed:
                raise AdasrError(f"cannot load the models: {result.error}")
            rows[index] = _finish(items[index], result, out) | made_by
            _write_summary(summary, rows)
            bar.update()
            bar.set_postfix(failed=sum(row["status"] == "error" for row in rows.values()))
            _tell(rows[index], len(rows), len(items))
    finally:
        results.close()
        bar.close()
    ordered = [rows[i] for i in sorted(rows)]
    return BatchReport(ordered, summary, time.perf_counter() - started)


def _tell(row: dict[str, str], n: int, total: int) -> None:
    """One line per settled file: its answer, or why it failed, or that it was done earlier."""
    if row["status"] == "error":
        said = row["error"]
    else:
        verdict = {"True": " (correct)", "False": f" (reference {row['reference']})"}
        said = (
            f"answer {row['answer'] or '(none)'}{verdict.get(row['correct'], '')}, "
            f"latency {row['answer_latency_s']}s" + (" (done earlier)" if row["status"] == "skipped" else "")
        )
    named = said if row["file"] and row["file"] in said else f"{row['file'] or '(questions file)'}: {said}"
    tqdm.write(f"[{n}/{total}] {row['status']:<7} {named}")


def _finish(item: BatchItem, result: FileResult, out: Path) -> dict[str, str]:
    """A worker's result: outputs settled (atomically) and its summary row."""
    if result.error is None and result.summary is None:
        result.error = "no speech heard: nothing to answer"
    if result.error is not None:
        _discard(result.parts.values())
        return _row(item, status="error", error=result.error, wall_s=result.wall_s)
    try:  # the events file last: with it there, both are
        for suffix in OUTPUT_SUFFIXES:
            target = out / f"{item.stem}{suffix}"
            if suffix == SCREEN_SUFFIX and not _has_content(result, suffix):
                target.unlink(missing_ok=True)  # no text on screen: no file (nor an earlier run's)
                _discard([result.parts[suffix]] if suffix in result.parts else [])
                continue
            if suffix in result.shipped:
                write_atomically(target, result.shipped[suffix])
            else:
                os.replace(result.parts[suffix], target)
    except OSError as err:
        _discard(result.parts.values())
        return _row(item, status="error", error=f"cannot write to {out}: {err.strerror or err}")
    return _row(item, [result.summary], "ok", audio_s=result.audio_s, wall_s=result.wall_s)


def _discard(paths) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def _row(
    item: BatchItem,
    events: Sequence[Event] = (),
    status: str = "ok",
    error: str = "",
    audio_s: float | None = None,
    wall_s: float | None = None,
) -> dict[str, str]:
    """A summary row: the item, the figures of its summary event, and how it went."""
    summary = next((e.info for e in reversed(events) if e.type == "summary"), {})

    def text(value) -> str:
        return "" if value is None else str(value)

    return {
        "file": item.name,
        "stem": item.stem,
        "question": item.question,
        "answer": text(summary.get("answer")),
        "reference": text(item.reference if item.reference is not None else summary.get("reference")),
        "correct": text(summary.get("correct")),
        "answer_latency_s": text(summary.get("answer_latency_s")),
        "stream_tokens": text(summary.get("stream_tokens")),
        "deep_tokens": text(summary.get("deep_tokens")),
        "skips": text(summary.get("skips")),
        "audio_s": "" if audio_s is None else f"{audio_s:.2f}",
        "wall_s": "" if wall_s is None else f"{wall_s:.2f}",
        "status": status,
        "error": " ".join(error.split()),
    }


def _has_content(result: FileResult, suffix: str) -> bool:
    if suffix in result.shipped:
        return bool(result.shipped[suffix])
    path = result.parts.get(suffix)
    return path is not None and path.is_file() and path.stat().st_size > 0


def _done_earlier(
    item: BatchItem, out: Path, earlier: dict[str, str] | None, made_by: dict[str, str]
) -> dict[str, str] | None:
    """The row of an item whose outputs are there from an earlier run (status skipped), else None.

    The earlier summary row is carried over when it is for the same file and question, made by
    the same model and settings (otherwise the file is run again); without a summary row, the row
    is read back from the events file (nothing then says what made it: it is taken as this run's).
    """
    events_path = out / f"{item.stem}{EVENTS_SUFFIX}"
    if not (events_path.is_file() and (out / f"{item.stem}{TRANSCRIPT_SUFFIX}").is_file()):
        return None
    if earlier is not None:
        same = _same_source(earlier.get("file", ""), item.name) and earlier.get("question") == item.question
        same = same and all(earlier.get(key, "") == made_by[key] for key in RUN_COLUMNS)
        if not same or earlier.get("status") not in ("ok", "skipped"):
            return None
        carried = {name: earlier.get(name) or "" for name in SUMMARY_COLUMNS}
        return carried | {"file": item.name, "stem": item.stem, "status": "skipped", "error": ""}
    try:
        events = _read_events(events_path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not an events file this command wrote: run the file again
    return _row(item, events, "skipped") | made_by


def _same_source(a: str, b: str) -> bool:
    return a == b or ("://" not in a and "://" not in b and os.path.realpath(a) == os.path.realpath(b))


def _read_events(path: Path) -> list[Event]:
    import json

    lines = path.read_text(encoding="utf-8").splitlines()
    return [Event.from_dict(json.loads(line)) for line in lines if line.strip()]


def _earlier_rows(summary: Path) -> dict[str, dict[str, str]]:
    """The rows of an earlier run's summary by stem; an unreadable one is ignored with a warning."""
    if not summary.is_file():
        return {}
    try:
        with summary.open(newline="", encoding="utf-8") as handle:
            return {row["stem"]: row for row in csv.DictReader(handle) if row.get("stem")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError) as err:
        warnings.warn(f"{summary}: not readable ({first_line(err)}); files will run again", stacklevel=2)
        return {}


def _write_summary(path: Path, rows: dict[int, dict[str, str]]) -> None:
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows[i] for i in sorted(rows))


# --- workers: here, processes or Ray actors --------------------------------------------------------


def run_file(models: PipelineModels, item: BatchItem, spool: Path, options: BatchOptions) -> FileResult:
    """One file through the pipeline, its events and SRT written into `spool` as they come (part
    files named in the result); any failure is the result's one-line error, never raised."""
    from adasr_av.media.sources import open_records, reads_frames

    started = time.perf_counter()
    tag = uuid.uuid4().hex[:8]
    parts = {suffix: spool / f".{item.stem}{suffix}.{tag}.part" for suffix in OUTPUT_SUFFIXES}
    try:
        frames = models.reads_frames and reads_frames(item.source, options.video)
        records = open_records(item.source, options.fps if frames else None, options.realtime)
        result = _stream_to(parts, models, records, item, options.max_seconds)
    except AdasrError as err:
        result = FileResult(error=str(err))
    except Exception as err:  # noqa: BLE001 - one file's failure is its row, not the batch's end
        result = FileResult(error=f"{type(err).__name__}: {first_line(err)}")
    except BaseException:  # Ctrl-C: stop, and keep no outputs
        _discard(parts.values())
        raise
    if result.error is not None:
        _discard(parts.values())
    result.wall_s = time.perf_counter() - started
    return result


def _stream_to(
    parts: dict[str, Path], models, records, item: BatchItem, max_seconds: float | None
) -> FileResult:
    """The pipeline's events and chunks written to the part files as they happen."""
    from adasr_av.pipeline import PipelineRun
    from adasr_av.sinks import EventWriter, TranscriptsBySource

    paths = {"asr": parts[TRANSCRIPT_SUFFIX], "ocr": parts[SCREEN_SUFFIX]}
    with TranscriptsBySource(paths) as transcripts, EventWriter(parts[EVENTS_SUFFIX]) as log:
        run = PipelineRun(
            models,
            records,
            item.question,
            item.reference,
            on_chunk=transcripts.write,
            max_seconds=max_seconds,
        )
        for event in run:
            log.write(event)
    if run.interrupted:  # Ctrl-C closed the stream
        raise KeyboardInterrupt
    return FileResult(run.summary, parts, audio_s=run.t_end)


def _results(
    items: Sequence[BatchItem], todo: list[int], load: Loader, options: BatchOptions, out: Path
) -> Iterator[tuple[int, FileResult]]:
    """(item index, result) as files finish, from the workers `options` asks for; workers on this
    machine write their parts into `out`."""
    if not todo:
        return
    workers = min(options.workers or 1, len(todo))
    if options.ray is not None:
        yield from _on_ray(items, todo, load, options)
    elif workers == 1:
        yield from _here(items, todo, load, options, out)
    else:
        yield from _in_processes(items, todo, load, options, workers, out)


def _here(
    items: Sequence[BatchItem], todo: list[int], load: Loader, options: BatchOptions, out: Path
) -> Iterator[tuple[int, FileResult]]:
    try:
        models = load(None)
    except AdasrError as err:
        raise AdasrError(f"cannot load the models: {err}") from None
    for index in todo:
        yield index, run_file(models, items[index], out, options)


def _threads_per_worker(workers: int) -> int:
    """CPU threads for each of `workers` on this machine (OMP_NUM_THREADS caps it when set)."""
    share = max(1, (os.cpu_count() or 1) // workers)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) > 0 else share


class _Worker:
    """A worker's models, loaded once; a load failure is remembered and reported with each file.

    With a `spool` folder (DIR, on this machine) the outputs are left there as parts; without one
    (a Ray actor) they are written to a local temporary folder and shipped back as bytes."""

    def __init__(self, load: Loader, threads: int | None, spool: Path | None = None):
        import torch

        tqdm.set_lock(threading.RLock())  # faster-whisper's disabled bars: no named semaphore to leak
        if threads is not None:
            torch.set_num_threads(threads)
        self.models: PipelineModels | None = None
        self.error: str | None = None
        self.spool = spool
        try:
            self.models = load(threads)
        except AdasrError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - reported to the parent as one line
            self.error = f"{type(err).__name__}: {first_line(err)}"

    def ready(self) -> str | None:
        return self.error

    def run(self, item: BatchItem, options: BatchOptions) -> FileResult:
        if self.models is None:
            return FileResult(error=self.error, models_failed=True)
        if self.spool is not None:
            return run_file(self.models, item, self.spool, options)
        spool = Path(tempfile.mkdtemp(prefix="adasr-batch-"))
        try:
            result = run_file(self.models, item, spool, options)
            result.shipped = {suffix: path.read_bytes() for suffix, path in result.parts.items()}
            result.parts = {}
            return result
        finally:
            shutil.rmtree(spool, ignore_errors=True)


_process_worker: list[_Worker] = []  # the one worker of a pool process


def _start_process(load: Loader, threads: int, spool: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _process_worker.append(_Worker(load, threads, spool))


def _run_in_process(item: BatchItem, options: BatchOptions) -> FileResult:
    return _process_worker[0].run(item, options)


def _in_processes(
    items: Sequence[BatchItem],
    todo: list[int],
    load: Loader,
    options: BatchOptions,
    workers: int,
    out: Path,
) -> Iterator[tuple[int, FileResult]]:
    """`workers` spawned processes, each loading the models once (in its initializer)."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited threads or locks
    initargs = (load, _threads_per_worker(workers), out)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_process, initargs=initargs)
    pending = {pool.submit(_run_in_process, items[i], options): i for i in todo}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - a worker process died: this file failed
                    result = FileResult(error=f"worker failed: {type(err).__name__}: {first_line(err)}")
                yield index, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _on_ray(
    items: Sequence[BatchItem], todo: list[int], load: Loader, options: BatchOptions
) -> Iterator[tuple[int, FileResult]]:
    """Ray actors (one CPU each), each loading the models once in its constructor; files go to
    whichever actor is free."""
    ray = _connect_ray(options)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = min(options.workers or cpus, len(todo))
        if count > cpus:
            warnings.warn(f"--workers {count}: the Ray cluster has {cpus} CPUs; using {cpus}", stacklevel=2)
            count = cpus
        actor_class = ray.remote(num_cpus=1)(_Worker)
        actors = [actor_class.remote(load, 1) for _ in range(count)]
        for error in ray.get([actor.ready.remote() for actor in actors]):
            if error is not None:
                raise AdasrError(f"cannot load the models: {error}")
        queue, running = deque(todo), {}

        def give(actor) -> None:
            if queue:
                index = queue.popleft()
                running[actor.run.remote(items[index], options)] = (index, actor)

        for actor in actors:
            give(actor)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:  # the actor died (or its node): this file failed
                result = FileResult(error=f"Ray worker failed: {type(err).__name__}: {first_line(err)}")
                if isinstance(err, ray.exceptions.RayActorError):
                    actor = None
            yield index, result
            if actor is not None:
                give(actor)
            elif not running:  # every actor is gone: the rest cannot run
                while queue:
                    yield queue.popleft(), FileResult(error="no Ray worker left to run it")
    finally:
        ray.shutdown()


def _connect_ray(options: BatchOptions):
    """Ray, connected to `options.ray`: `local` starts an instance here with a CPU per worker."""
    import logging

    try:
        import ray
    except ImportError:
        raise AdasrError("--ray needs Ray: pip install 'adasr-av[ray]'") from None
    settings = {"logging_level": logging.ERROR, "log_to_driver": False}
    _check_reachable(options.ray)
    try:
        if options.ray == "local":
            cpus = max(options.workers or 1, os.cpu_count() or 1)
            ray.init(num_cpus=cpus, include_dashboard=False, **settings)
        else:
            ray.init(address=options.ray, **settings)
    except Exception as err:  # noqa: BLE001 - Ray raises many kinds; the user needs one line
        raise AdasrError(f"--ray {options.ray}: cannot connect ({first_line(err)})") from None
    return ray


def _check_reachable(address: str) -> None:
    """A host:port (or ray://host:port) that does not answer fails now: Ray would retry for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # auto, local, or a form Ray itself judges
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise AdasrError(f"--ray {address}: cannot connect ({err.strerror or err})") from None
