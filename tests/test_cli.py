"""The `adasr-av` command: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import CHUNKS, QUESTION

from adasr_av.cli import main
from adasr_av.timing import load_cost_model

STORY = " ".join(c.text for c in CHUNKS)


def reason(model_dir, *extra):
    return main(["reason", "--model", str(model_dir), "--question", QUESTION, *extra])


def test_reason_prints_the_timeline_and_writes_events(trained_model_dir, tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    assert reason(trained_model_dir, "--text", STORY, "--reference", "6", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "think 0" in printed and "skip  1" in printed and "answer: 6  correct=True" in printed
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in events] == [
        "chunk", "think", "chunk", "skip", "chunk", "think", "deep", "answer", "summary"
    ]  # fmt: skip
    for e in events:
        assert {"type", "text", "chunk_index", "tokens", "t_avail", "t_begin", "t_done"} <= e.keys()
        assert e["t_avail"] <= e["t_begin"] + 1e-9 or e["type"] in ("think", "skip", "answer")
        assert e["t_begin"] <= e["t_done"]
    summary = events[-1]
    for key in ("answer_latency_s", "max_lag_s", "stream_tokens", "deep_tokens", "skips", "clock"):
        assert key in summary
    assert summary["answer"] == "6" and summary["clock"] == "cost-model"
    # 150 words per minute: the last of the 14 words is spoken at 14 * 0.4 = 5.6 s
    assert summary["t_avail"] == pytest.approx(5.6)


def test_reason_from_a_chunks_file_in_both_modes(trained_model_dir, tmp_path, capsys):
    chunks = tmp_path / "chunks.jsonl"
    chunks.write_text("".join(json.dumps(c.__dict__) + "\n" for c in CHUNKS))
    for mode in ("streaming", "read-then-think"):
        out = tmp_path / f"{mode}.jsonl"
        assert reason(trained_model_dir, "--chunks", str(chunks), "--mode", mode, "--out", str(out)) == 0
        summary = json.loads(out.read_text().splitlines()[-1])
        assert summary["mode"] == mode
        assert (summary["stream_tokens"] > 0) == (mode == "streaming")


def test_wall_clock_and_calibrated_cost_profile(trained_model_dir, tmp_path, capsys):
    cost = tmp_path / "cost.json"
    assert main(["calibrate", "--model", str(trained_model_dir), "--out", str(cost)]) == 0
    profile = load_cost_model(cost)
    assert profile.decode_per_token_s > 0 and profile.name == trained_model_dir.name
    assert "tokens/s" in capsys.readouterr().out
    for flags in (["--cost", str(cost)], ["--clock", "wall"]):
        out = tmp_path / "events.jsonl"
        assert reason(trained_model_dir, "--text", STORY, "--out", str(out), *flags) == 0
        summary = json.loads(out.read_text().splitlines()[-1])
        assert summary["clock"] == ("wall" if "wall" in flags else "cost-model")
        assert summary["answer_latency_s"] > 0


def test_default_model_is_the_bundled_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADASR_AV_HOME", str(tmp_path))
    assert main(["reason", "--max-deep-tokens", "4", "--max-answer-tokens", "4"]) == 0
    assert not (tmp_path / "models").exists()  # nothing built: the package ships its model
    assert "answer:" in capsys.readouterr().out


def test_a_build_without_the_bundled_model_falls_back_to_a_placeholder(tmp_path, monkeypatch, capsys):
    from adasr_av.reasoner import loading

    monkeypatch.setenv("ADASR_AV_HOME", str(tmp_path))
    monkeypatch.setattr(loading, "BUNDLED_MODELS", tmp_path / "no-models-here")
    assert main(["reason", "--max-deep-tokens", "4", "--max-answer-tokens", "4"]) == 0
    assert (tmp_path / "models" / "placeholder-qwen3" / "config.json").is_file()
    captured = capsys.readouterr()
    assert "answer:" in captured.out and "untrained placeholder" in captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/nope", "--text", "A b."], "model {tmp}/nope: no such folder"),
        (["--model", "{tmp}", "--text", "A b."], "model {tmp}: folder holds no model (no config.json)"),
        (["--model", "{model}", "--text", "   "], "empty stream: --text has no text"),
        (["--model", "{model}", "--chunks", "{tmp}/bad.jsonl"], "bad.jsonl, line 2: not valid JSON"),
        (["--model", "{model}", "--chunks", "{tmp}/nofield.jsonl"], "line 1: missing field 't_end'"),
        (["--model", "{model}", "--chunks", "{tmp}/empty.jsonl"], "empty stream: chunks file"),
        (["--model", "{model}", "--chunks", "{tmp}/absent.jsonl"], "absent.jsonl: no such file"),
        (["--model", "{model}", "--text", "A b.", "--cost", "{tmp}/c.json"], "cost profile {tmp}/c.json"),
        (["--model", "{model}", "--text", "A b.", "--context-tokens", "20"], "--context-tokens 20 is too"),
        (["--model", "{model}", "--text", "A b.", "--context-tokens", "9999"], "--context-tokens 9999 does"),
        (["--model", "{model}", "--text", "A b.", "--retain", "1.5"], "--retain must be between 0 and 1"),
        (["--model", "{model}", "--text", "A b.", "--skip-window", "1"], "--skip-window must be 0"),
    ],
    ids=["missing-model", "empty-folder", "empty-text", "bad-line", "missing-field", "empty-file",
         "absent-file", "absent-cost", "tiny-budget", "huge-budget", "bad-retain", "bad-window"],
)  # fmt: skip
def test_bad_input_is_one_line_and_nonzero(args, message, trained_model_dir, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "t_start": 0, "t_end": 1}\n{"text": \n')
    (tmp_path / "nofield.jsonl").write_text('{"text": "a", "t_start": 0}\n')
    (tmp_path / "empty.jsonl").write_text("\n")
    fill = {"tmp": tmp_path, "model": trained_model_dir}
    assert main(["reason", *(a.format(**fill) for a in args)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adasr-av: error: ")
    assert message.format(**fill) in err[0]


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    lines = tmp_path / "chunks.jsonl"
    lines.write_text('{"text": "a", "t_start": 0, "t_end": 1}\nnot json\n')
    done = subprocess.run(
        [sys.executable, "-m", "adasr_av.cli", "reason", "--model", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"adasr-av: error: model {tmp_path / 'missing'}: no such folder"


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    from adasr_av.data.tts import synthesize, write_audio

    return write_audio(tmp_path_factory.mktemp("media") / "hello.wav", synthesize("Hello there, Tom."))


@pytest.mark.parametrize("command", ["transcribe", "run", "batch"])
@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("fr", "whisper model tiny.en is English-only: --language fr needs a multilingual model (e.g. base)"),
        ("xx", "--language xx: not a Whisper language code (e.g. en, fr, de, es, zh)"),
    ],
)
def test_a_language_tiny_en_cannot_take_is_one_line(command, language, message, spoken, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")] if command == "batch" else []
    assert main([command, str(spoken), "--language", language, *out]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"adasr-av: error: {message}"]


def test_the_language_comes_from_a_pipeline_config_too(spoken, tmp_path, capsys):
    config = tmp_path / "pipeline.toml"
    config.write_text(f'[source]\nsource = "{spoken}"\n[asr]\nlanguage = "de"\n')
    assert main(["run", "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == (
        "adasr-av: error: whisper model tiny.en is English-only: --language de needs a multilingual model "
        "(e.g. base)"
    )


def test_whisper_base_takes_another_language(spoken, tmp_path, monkeypatch, capsys):
    """--model base resolves to the folder joined in the cache, and --language reaches the backend."""
    from adasr_av.encoders import whisper_backends

    monkeypatch.setenv("ADASR_CACHE", str(tmp_path))
    loaded = []
    real = whisper_backends.load_backend
    monkeypatch.setattr(
        whisper_backends,
        "load_backend",
        lambda *args, **kwargs: loaded.append((args, kwargs)) or real(*args, **kwargs),
    )
    assert main(["transcribe", str(spoken), "--model", "base", "--language", "es", "--unaware"]) == 0
    [(args, kwargs)] = loaded
    assert args[:2] == ("faster-whisper", str(tmp_path / "whisper-base")) and kwargs["language"] == "es"
    assert "Whisper steps" in capsys.readouterr().err
