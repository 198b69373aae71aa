"""`adasr-av run`: a demo story streamed from its media file through Whisper into the reasoner, and
what a run writes and shows (timeline lines, the live view, the figure's bounded record)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from adasr_av.cli import main
from adasr_av.errors import AdasrError
from adasr_av.live_view import TRANSCRIPT_SHOWN, LiveView
from adasr_av.media.file import read_audio
from adasr_av.media.sidecar import read_sidecar
from adasr_av.reasoner.scratch import build_model
from adasr_av.sinks import EventWriter, Timeline, TranscriptWriter, format_event
from adasr_av.types import Event, TextChunk

DEMO = Path(__file__).resolve().parent.parent / "demos" / "media" / "shopping.mp3"
SHORT = ["--max-unit-tokens", "8", "--max-deep-tokens", "16", "--max-answer-tokens", "8"]


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    """A tiny untrained Qwen3-style model: its answers are noise, but every event is real."""
    path = tmp_path_factory.mktemp("models") / "tiny-qwen3"
    build_model(tokenizer, "qwen3", hidden=64, layers=2).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_a_demo_story_streams_through_the_asr_into_the_reasoner(model_dir, tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    # computation-unaware ASR: where Whisper commits then follows the audio, not this machine's load
    argv = ["run", str(DEMO), "--model", str(model_dir), "--out", str(out), "--unaware", *SHORT]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"reference answer from {DEMO.with_suffix('.json')}" in printed and "answer latency" in printed

    events = [json.loads(line) for line in out.read_text().splitlines()]
    chunks = [e for e in events if e["type"] == "chunk"]
    story = json.loads(DEMO.with_suffix(".json").read_text())
    heard = words(" ".join(c["text"] for c in chunks))
    assert len(chunks) >= 3 and {"apples", "trees", "park"} <= heard  # "Jack" is heard "Dark"
    assert len(heard & words(story["text"])) >= 0.7 * len(heard)  # Whisper heard the story
    assert [e["type"] for e in events].count("answer") == 1
    assert [e["type"] for e in events].count("summary") == 1 and events[-1]["type"] == "summary"
    summary = events[-1]
    assert summary["answer_latency_s"] > 0 and summary["reference"] == story["answer"] == "1255"
    assert "correct" in summary and summary["clock"] == "cost-model" and summary["cost_profile"] == "paper"
    # T, the stream end, is where the audio ended (the unaware ASR commits the last words there)
    audio_end = max(chunk.t_end for chunk in read_audio(DEMO))
    assert summary["t_avail"] == pytest.approx(audio_end, abs=1e-3)
    assert all(c["t_avail"] <= audio_end + 1e-3 for c in chunks)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.wav", None, "media file {path}: no such file"),
        ("notes.wav", "these are notes, not audio\n", "media file {path}: FFmpeg cannot read it"),
        ("notes.txt", "these are notes, not audio\n", "media file {path}: FFmpeg cannot read it"),
    ],
    ids=["missing", "text-as-wav", "text-file"],
)
def test_bad_input_is_one_line_naming_the_file(name, content, message, model_dir, tmp_path, capsys):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert main(["run", str(path), "--model", str(model_dir)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adasr-av: error: ")
    assert message.format(path=path) in err[0]
    assert "question:" not in captured.out  # it failed before any model loaded


def test_sidecar_gives_the_reference_and_an_unspoken_question(tmp_path):
    media = tmp_path / "story.mp3"
    media.write_bytes(b"")
    assert read_sidecar(media) is None
    record = {"question": "How many apples?", "question_position": "prompt", "answer": 6}
    media.with_suffix(".json").write_text(json.dumps(record))
    sidecar = read_sidecar(media)
    assert (sidecar.question, sidecar.answer) == ("How many apples?", "6")
    media.with_suffix(".json").write_text(json.dumps(record | {"question_position": "last"}))
    assert read_sidecar(media).question == ""  # the audio speaks it
    assert read_sidecar("mic") is None and read_sidecar("rtsp://127.0.0.1/cam") is None
    media.with_suffix(".json").write_text("{not json")
    with pytest.raises(AdasrError, match="sidecar .*story.json: not readable JSON"):
        read_sidecar(media)


# --- what the run writes and shows, whatever the stream's length ---------------------------------

COMPACTION = Event(
    "context", "", 31, 0, 80.0, 80.0, 80.4,
    {"tokens_before": 1000, "tokens_after": 400, "chunks_dropped": 12, "cost_s": 0.4},
)  # fmt: skip


def test_a_context_compaction_is_a_timeline_line_and_shown_live():
    line = format_event(COMPACTION)
    assert "context" in line and "compacted 1000 -> 400 tokens, 12 chunks dropped" in line
    out = io.StringIO()
    with LiveView("stream", "Q?", Console(file=out, force_terminal=False)) as view:
        view.update(COMPACTION)
    assert out.getvalue().strip() == line.strip()
    assert view.compacted == "context compacted at 80.4s: 1000 -> 400 tokens, 12 chunks dropped"
    odd = Event("novel", "a kind the printer does not know", None, 3, 1.0, 1.0, 1.5)
    assert "novel" in format_event(odd) and "a kind the printer does not know" in format_event(odd)


def test_the_live_view_keeps_only_the_latest_transcript():
    view = LiveView("stream", "", Console(file=io.StringIO(), force_terminal=False))
    for i in range(1000):
        view.update(Event("chunk", f"sentence {i}.", i, 5, i, i, i + 0.1))
    assert list(view.transcript) == [f"sentence {i}." for i in range(1000 - TRANSCRIPT_SHOWN, 1000)]


def test_the_timeline_record_is_bounded_and_its_figure_says_so(tmp_path):
    timeline = Timeline(max_spans=3)
    for i in range(5):
        timeline.add_chunk(TextChunk(f"words {i}", i, i + 1, i + 1.2))
        timeline.add_event(Event("chunk", f"words {i}", i, 4, i + 1.2, i + 1.2, i + 1.3))
    timeline.add_event(COMPACTION)
    summary = Event("summary", "", None, 0, 6.0, 6.0, 7.0, {"answer": "6", "answer_latency_s": 1.0})
    timeline.add_event(summary)
    events = timeline.events()
    assert [e.chunk_index for e in events] == [3, 4, 31, None] and events[-1] is summary
    assert [c.t_start for c in timeline.chunks()] == [2, 3, 4]
    assert timeline.title("run") == "run (the latest 3 events; 3 earlier ones not kept)"
    assert timeline.save(tmp_path / "t.png", "run").stat().st_size > 10_000


def test_transcripts_and_events_are_on_disk_as_they_come(tmp_path):
    """Nothing waits for the end of the stream: each cue and event line is there once written."""
    with TranscriptWriter(tmp_path / "t.srt", "srt") as srt, EventWriter(tmp_path / "e.jsonl") as log:
        srt.write(TextChunk("Tom has five apples.", 0.0, 1.6, 1.9))
        log.write(COMPACTION)
        assert (
            tmp_path / "t.srt"
        ).read_text() == "1\n00:00:00,000 --> 00:00:01,600\nTom has five apples.\n\n"
        assert json.loads((tmp_path / "e.jsonl").read_text())["tokens_before"] == 1000
