"""`adasr-av batch`: demo stories through FFmpeg, the bundled Whisper tiny.en and the bundled
reasoner, in this process, in worker processes and on Ray actors; outputs (written as the run goes),
summary, reruns, bad inputs, and live RTSP inputs cut at --max-seconds (a real RTSP server on
loopback, see test_media_rtsp.py)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import socket
from pathlib import Path

import pytest
from test_media_rtsp import RtspServer, needs_server

from adasr_av.batch import BatchOptions, FileResult, plan_batch, run_file
from adasr_av.cli import build_parser, main
from adasr_av.reasoner.loading import default_model
from adasr_av.run_config import run_config

DEMOS = Path(__file__).resolve().parent.parent / "demos" / "media"
HEARD = {  # words of each demo story Whisper tiny.en hears (float32; see demos/make_media.py --check)
    "shopping": {"apples", "trees", "park"},  # "Jack has" and "bags" come out "Dark her", "back"
    "cooking": {"emma", "cookies", "oven"},
}


def copy_story(name: str, folder: Path, as_name: str | None = None) -> Path:
    """A demo story's audio and its sidecar JSON, copied into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{as_name or name}.mp3"
    shutil.copy(DEMOS / f"{name}.mp3", target)
    shutil.copy(DEMOS / f"{name}.json", target.with_suffix(".json"))
    return target


def batch(*argv: str) -> int:
    # computation-unaware ASR: where Whisper commits follows the audio, not this machine's load
    return main(["batch", *argv, "--unaware"])


def summary_rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def events_of(out: Path, stem: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{stem}.events.jsonl").read_text().splitlines()]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def srt_text(path: Path) -> str:
    """The cue texts of an SRT file (numbers and time lines dropped), checking its layout."""
    cues = path.read_text().strip().split("\n\n")
    texts = []
    for number, cue in enumerate(cues, start=1):
        index, span, *lines = cue.splitlines()
        assert index == str(number)
        assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", span)
        texts += lines
    return " ".join(texts)


def assert_ok_row(row: dict[str, str], out: Path, story: str) -> None:
    """A successful row agrees with its events file, its SRT holds the story's words."""
    assert row["status"] == "ok" and row["error"] == ""
    events = events_of(out, row["stem"])
    summary = events[-1]
    assert summary["type"] == "summary" and [e["type"] for e in events].count("answer") == 1
    assert row["answer"] == (summary["answer"] or "") and row["answer"]
    assert float(row["answer_latency_s"]) == pytest.approx(summary["answer_latency_s"])
    assert int(row["stream_tokens"]) == summary["stream_tokens"] and int(row["skips"]) == summary["skips"]
    assert int(row["deep_tokens"]) == summary["deep_tokens"]
    assert row["reference"] == summary["reference"] and row["correct"] == str(summary["correct"])
    assert float(row["audio_s"]) == pytest.approx(summary["t_avail"], abs=0.5)  # T: where the audio ended
    heard = words(srt_text(out / f"{row['stem']}.srt"))
    assert HEARD[story] <= heard
    chunks = " ".join(e["text"] for e in events if e["type"] == "chunk")
    assert words(chunks) == heard  # the SRT is the chunks the reasoner read


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "Error:" not in stderr.replace("adasr-av: error:", "")


# --- planning: no models ---------------------------------------------------------------------------


def test_duplicate_names_get_distinct_stems_in_input_order(tmp_path):
    a = copy_story("shopping", tmp_path / "a", "story")
    b = copy_story("cooking", tmp_path / "b", "story")
    c = copy_story("school", tmp_path / "c", "Story")  # case-blind: story.srt and Story.srt may be one
    copy_story("school", tmp_path / "d", "story-2")
    items = plan_batch([str(tmp_path / "a"), str(b), str(tmp_path / "*" / "*.mp3")])
    assert [(Path(i.source).parent.name, i.stem) for i in items] == [
        ("a", "story"), ("b", "story-2"), ("c", "Story-3"), ("d", "story-2-2"),
    ]  # fmt: skip
    assert all(i.error is None for i in items) and len({Path(i.source).resolve() for i in items}) == 4
    assert items[0].reference == "1255" and items[0].question == ""  # the sidecar's; the audio asks
    assert plan_batch([str(b), str(a)])[0].stem == "story" and plan_batch([str(c)])[0].stem == "Story"


def test_a_questions_file_without_its_columns_is_one_line(tmp_path, capsys):
    questions = tmp_path / "questions.csv"
    questions.write_text("path,text\nshopping.mp3,How many?\n")
    assert batch("--questions", str(questions), "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"adasr-av: error: questions file {questions}: needs a header with the columns "
        "file,question[,reference] (found path,text)"
    ]


# --- runs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_batch(tmp_path_factory):
    """A folder (shopping) and a glob (cooking), and a glob that names shopping again: two files run."""
    root = tmp_path_factory.mktemp("batch")
    copy_story("shopping", root / "stories")
    copy_story("cooking", root / "more")
    out = root / "out"
    argv = [str(root / "stories"), str(root / "more" / "*.mp3"), str(root / "stories" / "*.mp3")]
    code = batch(*argv, "--out", str(out))
    return argv, out, code


def test_a_folder_and_a_glob_give_events_srt_and_a_summary(first_batch):
    argv, out, code = first_batch
    assert code == 0
    rows = summary_rows(out)
    assert [(Path(r["file"]).name, r["stem"]) for r in rows] == [
        ("shopping.mp3", "shopping"),
        ("cooking.mp3", "cooking"),
    ]
    assert_ok_row(rows[0], out, "shopping")
    assert_ok_row(rows[1], out, "cooking")
    assert rows[0]["reference"] == "1255" and rows[1]["reference"] == "111"  # from the sidecars
    outputs = ["cooking.events.jsonl", "cooking.srt", "shopping.events.jsonl", "shopping.srt", "summary.csv"]
    assert sorted(p.name for p in out.iterdir()) == outputs  # and no temporary files left behind


def test_a_rerun_skips_finished_files_and_carries_their_rows(first_batch, capsys):
    argv, out, code = first_batch
    assert code == 0
    before = summary_rows(out)
    outputs = sorted(p for p in out.iterdir() if p.name != "summary.csv")
    mtimes = [p.stat().st_mtime_ns for p in outputs]
    stale = out / ".shopping.srt.0badf00d.part"  # what a batch killed mid-file leaves
    stale.write_text("1\n00:00:00,000 --> 00:00:01,000\nhalf a\n\n")
    assert batch(*argv, "--out", str(out)) == 0
    assert not stale.exists()
    printed = capsys.readouterr().out
    assert "2 files: 0 ok, 2 done earlier, 0 failed" in printed
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes
    after = summary_rows(out)
    assert [r["status"] for r in after] == ["skipped", "skipped"]
    for old, new in zip(before, after, strict=True):
        assert {k: v for k, v in new.items() if k != "status"} == {
            k: v for k, v in old.items() if k != "status"
        }


def test_a_rerun_with_other_reasoner_settings_redoes_the_files_and_rows_name_the_model(first_batch, capsys):
    argv, out, code = first_batch
    before = summary_rows(out)
    bundled = str(default_model())
    assert {r["model"] for r in before} == {bundled} and len({r["settings"] for r in before}) == 1
    assert batch(*argv[:1], "--out", str(out), "--max-deep-tokens", "64") == 0  # shopping only
    assert "1 files: 1 ok, 0 done earlier, 0 failed" in capsys.readouterr().out
    (redone,) = [r for r in summary_rows(out) if r["stem"] == "shopping"]
    assert redone["status"] == "ok" and redone["model"] == bundled
    assert redone["settings"] != before[0]["settings"]


def test_bad_inputs_are_error_rows_and_the_batch_goes_on(tmp_path, capfd):
    good = copy_story("shopping", tmp_path / "in")
    corrupt = tmp_path / "in" / "x.mp3"
    corrupt.write_bytes(bytes(range(256)) * 64)
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio\n")
    missing = tmp_path / "absent.wav"
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"rtsp://127.0.0.1:{port}/live"
    out = tmp_path / "out"
    code = batch(
        str(tmp_path / "in"), str(notes), str(missing), url, "--out", str(out), "--max-seconds", "30"
    )
    captured = capfd.readouterr()
    assert code == 1
    no_traceback(captured.err)
    assert captured.err.strip().splitlines()[-1] == (
        f"adasr-av: error: 4 of 5 files failed: {corrupt}, {notes}, {missing} and 1 more "
        f"(see {out / 'summary.csv'})"
    )
    rows = {Path(r["file"]).name if "://" not in r["file"] else r["file"]: r for r in summary_rows(out)}
    assert_ok_row(rows[good.name], out, "shopping")
    assert (
        rows["x.mp3"]["status"] == "error"
        and f"media file {corrupt}: FFmpeg cannot read it" in rows["x.mp3"]["error"]
    )
    assert rows["notes.txt"]["error"].startswith(f"{notes}: unsupported file type '.txt'")
    assert rows["absent.wav"]["error"] == f"{missing}: no such file or folder"
    assert rows[url]["status"] == "error" and rows[url]["error"].startswith(f"RTSP {url}: ")
    assert all("\n" not in r["error"] for r in rows.values())
    assert sorted(p.name for p in out.iterdir()) == ["shopping.events.jsonl", "shopping.srt", "summary.csv"]


def test_a_questions_file_with_bad_rows(tmp_path, capfd):
    copy_story("shopping", tmp_path)
    copy_story("cooking", tmp_path)
    copy_story("school", tmp_path)
    questions = tmp_path / "questions.csv"
    question = "How many apples does Jack have now?"
    questions.write_text(
        "file,question,reference\n"
        f'shopping.mp3,"{question}",133\n'
        "cooking.mp3,  ,52\n"
        "nothere.mp3,How many?,1\n"
        "school.mp3\n"
    )
    out = tmp_path / "out"
    assert batch("--questions", str(questions), "--out", str(out)) == 1
    no_traceback(capfd.readouterr().err)
    rows = summary_rows(out)
    assert [(Path(r["file"]).name, r["status"]) for r in rows] == [
        ("shopping.mp3", "ok"), ("cooking.mp3", "error"), ("nothere.mp3", "error"), ("school.mp3", "error"),
    ]  # fmt: skip
    assert rows[0]["question"] == question and rows[0]["reference"] == "133"
    assert_ok_row(rows[0], out, "shopping")
    assert events_of(out, "shopping")[-1]["reference"] == "133"
    assert rows[1]["error"] == f"{questions}, line 3: empty question"
    assert rows[2]["error"] == f"{questions}, line 4: unknown file nothere.mp3 (no such file)"
    assert rows[3]["error"] == f"{questions}, line 5: missing column question"


def two_stories(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "in"
    copy_story("shopping", folder)
    copy_story("cooking", folder)
    return folder, tmp_path / "out"


QUESTION = "What is the answer?"


def test_two_worker_processes(tmp_path, capfd):
    folder, out = two_stories(tmp_path)
    assert batch(str(folder), "--workers", "2", "--question", QUESTION, "--out", str(out)) == 0
    captured = capfd.readouterr()
    no_traceback(captured.err)
    assert "2 files: 2 ok, 0 done earlier, 0 failed" in captured.out
    rows = summary_rows(out)
    assert [r["stem"] for r in rows] == ["cooking", "shopping"] and all(
        r["question"] == QUESTION for r in rows
    )
    assert_ok_row(rows[0], out, "cooking")
    assert_ok_row(rows[1], out, "shopping")


def test_ray_actors_on_a_local_instance(tmp_path, capfd):
    """Ray is a test dependency (pyproject's [test] extra): without it this fails, never skips."""
    import ray  # noqa: F401

    folder, out = two_stories(tmp_path)
    assert batch(str(folder), "--ray", "local", "--workers", "2", "--out", str(out)) == 0
    captured = capfd.readouterr()
    no_traceback(captured.err)
    assert "2 files: 2 ok, 0 done earlier, 0 failed" in captured.out
    rows = summary_rows(out)
    assert [r["stem"] for r in rows] == ["cooking", "shopping"]
    assert_ok_row(rows[0], out, "cooking")
    assert_ok_row(rows[1], out, "shopping")


# --- live inputs and memory ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "rtsp://viewer:***@127.0.0.1:9/cam: a live input never ends; give --max-seconds"),
        (["--max-seconds", "0"], "--max-seconds must be positive, got 0"),
    ],
)
def test_a_live_input_needs_max_seconds(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert batch("rtsp://viewer:secret@127.0.0.1:9/cam", "--out", str(out), *flags) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adasr-av: error: ") and message in err[0]
    assert "secret" not in err[0] and not out.exists()  # before anything ran or loaded


@pytest.fixture(scope="module")
def story_server():
    """shopping.mp3 served live over RTSP on loopback (each connection plays it from its start)."""
    server = RtspServer(str(DEMOS / "shopping.mp3"))
    server.start()
    yield server
    server.stop()


@needs_server
def test_an_rtsp_input_stops_at_max_seconds_and_is_answered(story_server, tmp_path, capfd):
    out = tmp_path / "out"
    question = "How many passengers are on the bus now?"
    assert batch(story_server.url, "--question", question, "--max-seconds", "6", "--out", str(out)) == 0
    no_traceback(capfd.readouterr().err)
    (row,) = summary_rows(out)
    assert row["status"] == "ok" and row["file"] == story_server.url and row["question"] == question
    assert float(row["audio_s"]) == pytest.approx(6.0)  # the live stream was cut there
    events = events_of(out, row["stem"])
    assert events[-1]["type"] == "summary" and events[-1]["t_avail"] == pytest.approx(6.0, abs=1e-3)
    assert row["answer"] == (events[-1]["answer"] or "") and [e["type"] for e in events].count("answer") == 1
    heard = words(srt_text(out / f"{row['stem']}.srt"))
    story = words(json.loads((DEMOS / "shopping.json").read_text())["text"])
    assert len(heard) >= 5 and len(heard & story) >= 0.7 * len(heard)  # Whisper heard the story's start
    assert all(e["t_avail"] <= 6.0 + 1e-3 for e in events if e["type"] == "chunk")


def test_a_worker_writes_the_outputs_as_they_come_and_sends_back_only_the_summary(tmp_path):
    """What crosses from a worker is its summary and where its outputs are: nothing that grows
    with the stream is kept or shipped in memory."""
    args = build_parser().parse_args(["batch", "x", "--out", str(tmp_path), "--unaware"])
    (item,) = plan_batch([str(copy_story("shopping", tmp_path / "in"))])
    result = run_file(
        run_config(args, args.parser_, "batch").pipeline_models(), item, tmp_path, BatchOptions()
    )
    assert isinstance(result, FileResult) and result.error is None
    assert result.summary.type == "summary" and result.shipped == {}
    events = [json.loads(line) for line in result.parts[".events.jsonl"].read_text().splitlines()]
    assert events[-1] == result.summary.to_dict() and result.parts[".srt"].name.startswith(".shopping.srt.")
    assert HEARD["shopping"] <= words(srt_text(result.parts[".srt"]))
