"""Bad input, across every command: each case gives one line naming the culprit (the file, URL,
key or flag), a non-zero exit, no traceback, and leaves no output file behind. The inputs are
real: empty, truncated and wrong-format media written here, a closed port, malformed files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_media_rtsp import free_port

from adasr_av.cli import main
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record

ROOT = Path(__file__).resolve().parent.parent
DEMOS = ROOT / "demos" / "media"
SPEECH = str(DEMOS / "shopping.mp3")


def _inputs(folder: Path) -> None:
    """The bad files the cases name, made in the case's folder."""
    (folder / "empty.mp3").write_bytes(b"")
    data = (DEMOS / "slides-shopping.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.wav").write_text("not audio\n")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (folder / "typo.toml").write_text('[asr]\nmodle = "base"\n')
    (folder / "broken.toml").write_text("[asr\nstep = 1\n")
    (folder / "wrongtype.toml").write_text('[reasoner]\ntemperature = "hot"\n')
    (folder / "train-typo.toml").write_text("[train]\nlearning_rate = 0.1\n")
    (folder / "train-type.toml").write_text('[train]\nbatch_size = "many"\n')
    (folder / "train-nodata.toml").write_text('[data]\ntrain = "missing.jsonl"\n[train]\noutput = "runs/x"\n')
    (folder / "not-json.jsonl").write_text("{not json\n")
    story = text_record(generate_story(0, "valid", 0))
    (folder / "story.jsonl").write_text(json.dumps(story) + "\n")
    (folder / "no-answer.jsonl").write_text(json.dumps({"id": "a", "question": "q", "chunks": []}) + "\n")
    (folder / "questions.csv").write_text("file,question\nmissing.mp3,How many?\n")
    (folder / "corrupt-model").mkdir()
    (folder / "corrupt-model" / "config.json").write_text("{ not a config")
    (folder / "a-folder.srt").mkdir()


CLOSED = f"rtsp://127.0.0.1:{free_port()}/stream"
CASES = {
    # run: media
    "run: missing file": (["run", "nofile.mp3"], "nofile.mp3"),
    "run: empty file": (["run", "empty.mp3"], "empty.mp3"),
    "run: truncated video": (["run", "truncated.mp4"], "truncated.mp4"),
    "run: text file named .wav": (["run", "notes.wav"], "notes.wav"),
    "run: a folder": (["run", "corrupt-model"], "corrupt-model"),
    "run: unsupported URL scheme": (["run", "http://example.org/a.mp3"], "http://example.org/a.mp3"),
    "run: an RTSP URL without a host": (["run", "rtsp:///stream"], "rtsp:///stream"),
    "transcribe: unreachable RTSP": (["transcribe", CLOSED], CLOSED),
    # run: configs and flags
    "run: misspelt pipeline key": (["run", SPEECH, "--config", "typo.toml"], "modle"),
    "run: malformed pipeline file": (["run", SPEECH, "--config", "broken.toml"], "broken.toml"),
    "run: pipeline value of the wrong type": (["run", SPEECH, "--config", "wrongtype.toml"], "temperature"),
    "run: missing pipeline file": (["run", SPEECH, "--config", "nope.toml"], "nope.toml"),
    "run: step zero": (["run", SPEECH, "--step", "0"], "--step"),
    "run: step not a number": (["run", SPEECH, "--step", "abc"], "--step"),
    "run: unknown video mode": (["run", SPEECH, "--video", "x-ray"], "--video"),
    "run: frames of an audio file": (["run", SPEECH, "--video", "ocr"], "shopping.mp3"),
    "run: missing Whisper folder": (["run", SPEECH, "--asr-model", "no-such-whisper/"], "no-such-whisper"),
    "run: missing reasoner folder": (["run", SPEECH, "--model", "no-such-model/"], "no-such-model"),
    # run: outputs, checked before the run starts
    "run: plot suffix not supported": (["run", SPEECH, "--plot", "timeline.xyz"], "timeline.xyz"),
    "run: events under /proc": (["run", SPEECH, "--out", "/proc/adasr/events.jsonl"], "/proc/adasr"),
    "run: SRT onto a folder": (["run", SPEECH, "--srt", "a-folder.srt"], "a-folder.srt"),
    "transcribe: output suffix not supported": (
        ["transcribe", SPEECH, "--out", "speech.docx"],
        "speech.docx",
    ),
    "transcribe: output under /proc": (["transcribe", SPEECH, "--out", "/proc/adasr/t.srt"], "/proc/adasr"),
    # reason
    "reason: corrupt model folder": (
        ["reason", "--text", "Tom has 3.", "--model", "corrupt-model"],
        "corrupt-model",
    ),
    "reason: missing chunk file": (["reason", "--chunks", "nochunks.jsonl"], "nochunks.jsonl"),
    # eval
    "eval: missing dataset": (["eval", "--data", "missing.jsonl"], "missing.jsonl"),
    "eval: a line that is not JSON": (["eval", "--data", "not-json.jsonl"], "not-json.jsonl"),
    "eval: a story without its answer": (["eval", "--data", "no-answer.jsonl"], "no-answer.jsonl"),
    "eval: report under /proc": (
        ["eval", "--data", "story.jsonl", "--out", "/proc/adasr/r.json"],
        "/proc/adasr",
    ),
    # batch
    "batch: nothing matches": (["batch", "nothing-*.mp3", "--out", "out"], "nothing-*.mp3"),
    "batch: zero workers": (["batch", SPEECH, "--workers", "0", "--out", "out"], "--workers"),
    "batch: questions file naming a missing file": (
        ["batch", "--questions", "questions.csv", "--out", "out"],
        "missing.mp3",
    ),
    # synth
    "synth: zero stories": (["synth", "--mode", "text", "--n", "0", "--out", "out"], "--n"),
    "synth: unknown clip kind": (
        ["synth", "--mode", "video", "--n", "1", "--clips", "cartoon", "--out", "out"],
        "cartoon",
    ),
    "synth: unknown voice": (
        ["synth", "--mode", "speech", "--n", "1", "--voices", "klingon", "--out", "out"],
        "klingon",
    ),
    # train
    "train: missing config": (["train", "sft", "--config", "none.toml"], "none.toml"),
    "train: misspelt key": (["train", "sft", "--config", "train-typo.toml"], "learning_rate"),
    "train: value of the wrong type": (["train", "hrpo", "--config", "train-type.toml"], "batch_size"),
    "train: missing dataset": (["train", "sft", "--config", "train-nodata.toml"], "missing.jsonl"),
    # calibrate
    "calibrate: missing model": (
        ["calibrate", "--model", "no-such-model/", "--out", "cost.json"],
        "no-such-model",
    ),
    # demo
    "demo: exposed without a password": (["demo", "--host", "0.0.0.0"], "--auth"),
    "demo: port out of range": (["demo", "--port", "99999"], "--port"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_naming_it_and_leaves_nothing(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    argv, culprit = CASES[case]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code not in (0, None), f"{case}: exit {code}"
    assert len(lines) == 1 and "Traceback" not in err, f"{case}: {err}"
    assert lines[0].startswith("adasr-av") and "error" in lines[0] and culprit in lines[0], lines[0]
    made = {p for p in tmp_path.rglob("*")} - before
    assert not [p for p in made if p.is_file()], f"{case}: left {made}"
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
