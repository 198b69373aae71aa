"""The one run config: its fields are the flags of run, batch and demo and the keys of a pipeline
file; a flag always wins over a file key; each section checks itself, naming the flag and the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import pytest

from adasr_av.cli import build_parser, main
from adasr_av.errors import AdasrError
from adasr_av.options import dests
from adasr_av.run_config import (
    SECTIONS,
    ASRSection,
    OutputSection,
    ReasonerSection,
    RunConfig,
    VideoSection,
    run_config,
)


def config_of(argv: list[str]) -> RunConfig:
    args = build_parser().parse_args(argv)
    return run_config(args, args.parser_, args.command)


# keys whose non-default value another key's non-default value rules out (int8 weights are
# faster-whisper's; the other backend's default is openai-whisper): set in a file of their own
ALONE = {("asr", "compute_type"): "int8"}


def other_value(section: str, f: dataclasses.Field, hint) -> object:
    """A valid value of the field that is not its default (what a file or flag would set)."""
    special = {
        "reasoner.cost": "paper",  # the one named profile; a JSON path is checked when read
        "reasoner.skip_window": 4,
        "output.plot": "fig.svg",
        "video.video": "caption",
        "reasoner.mode": "read-then-think",
    }
    key = f"{section}.{f.name}"
    if key in special:
        return special[key]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(h for h in typing.get_args(hint) if h is not type(None)) if union else hint
    default = f.default
    if typing.get_origin(kind) is typing.Literal:
        return next(v for v in typing.get_args(kind) if v != default)
    if kind is bool:
        return not default
    if kind is int:
        return (default or 2) + 3
    if kind is float:
        return (default or 1.0) / 2
    if kind is Path:
        return f"{f.name}.out"
    return f"some-{f.name}"


def every_key():
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield section, f, hints[f.name]


def test_every_run_config_key_is_a_run_flag_and_each_flag_a_key():
    keys = {f"{section}.{f.name}" for section, f, _ in every_key()}
    parser = build_parser().parse_args(["run"]).parser_
    assert dests(parser) == keys


def test_every_key_set_in_a_file_reaches_the_config(tmp_path):
    lines = []
    expected = {}
    for section, f, hint in every_key():
        if (section, f.name) in ALONE:
            continue
        value = other_value(section, f, hint)
        expected[(section, f.name)] = Path(value) if f.name in ("out", "srt", "ocr", "plot") else value
        lines.append((section, f.name, value))
    text = ""
    for section in SECTIONS:
        text += f"[{section}]\n"
        for s, name, value in lines:
            if s == section:
                literal = str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')
                text += f"{name} = {literal}\n"
    path = tmp_path / "all.toml"
    path.write_text(text)
    config = config_of(["run", "--config", str(path)])
    for (section, name), value in expected.items():
        assert getattr(getattr(config, section), name) == value, f"{section}.{name}"
    assert config != RunConfig()
    for (section, name), value in ALONE.items():  # each in a file of its own
        path.write_text(f"[{section}]\n{name} = {value!r}\n".replace("'", '"'))
        assert getattr(getattr(config_of(["run", "--config", str(path)]), section), name) == value


def test_a_flag_wins_over_the_file_and_the_file_over_the_default(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        "[asr]\nstep = 2.0\nunaware = true\n[video]\nfps = 2.0\n[reasoner]\nmax_answer_tokens = 9\n"
    )
    config = config_of(["run", "--config", str(path), "x.wav", "--step", "0.5", "--no-unaware"])
    assert (config.asr.step, config.asr.unaware) == (0.5, False)  # the flags
    assert (config.video.fps, config.reasoner.max_answer_tokens) == (2.0, 9)  # the file
    assert config.source.source == "x.wav" and config.output.queue_size == 64  # flag, default


def test_sampling_and_answer_caps_can_be_set_in_a_pipeline_file(tmp_path):
    """What the old hand-kept config could not set."""
    path = tmp_path / "p.toml"
    path.write_text("[reasoner]\nsample = true\ntemperature = 0.7\nmax_answer_tokens = 12\n")
    options = config_of(["run", "--config", str(path)]).reasoner.options()
    assert (
        options.sampling.do_sample and options.sampling.temperature == 0.7 and options.max_answer_tokens == 12
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ASRSection(step=0), "--step (asr.step) must be positive"),
        (
            lambda: ASRSection(backend="openai-whisper", compute_type="int8"),
            "--asr-compute-type (asr.compute_type) is for faster-whisper",
        ),
        (lambda: VideoSection(fps=-1), "--fps (video.fps) must be positive"),
        (lambda: VideoSection(change_threshold=300), "video.change_threshold"),
        (lambda: VideoSection(video="off", caption_model="x"), "--caption-model (video.caption_model)"),
        (lambda: OutputSection(plot=Path("a.xyz")), "--plot (output.plot) a.xyz"),
        (lambda: OutputSection(queue_size=0), "output.queue_size"),
        (lambda: ReasonerSection(retain=1.5), "--retain"),
        (lambda: ReasonerSection(cost="no-such-profile"), "no-such-profile"),
        (lambda: ReasonerSection(seed=2**64), "--seed (reasoner.seed) must be within 0..2**63-1"),
        (lambda: ReasonerSection(seed=-1), "--seed (reasoner.seed)"),
    ],
)
def test_each_section_checks_itself_naming_the_field(make, message):
    with pytest.raises(AdasrError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        ("run", "[video]\nfps = 0\n", "--fps (video.fps) must be positive"),
        ("run", '[output]\nplot = "t.gif"\n', "--plot (output.plot) t.gif"),
        ("batch", '[source]\nsource = "mic"\n', "`adasr-av batch` does not take source.source"),
        ("batch", '[output]\nsrt = "a.srt"\n', "does not take output.srt"),
        ("demo", '[reasoner]\nquestion = "?"\n', "does not take reasoner.question"),
        ("run", "[vidoe]\nfps = 1\n", "unknown key 'vidoe'"),
        ("run", '[asr]\ncompute_type = "int4"\n', "key 'asr.compute_type' must be 'auto' or"),
    ],
)
def test_a_bad_pipeline_file_is_one_line_before_anything_loads(command, text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    extra = {"batch": ["x.wav", "--out", str(tmp_path / "o")], "run": ["x.wav"], "demo": []}[command]
    assert main([command, "--config", str(path), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_batch_and_demo_take_the_shipped_recorded_pipeline():
    for argv in (["batch", "x", "--out", "o"], ["demo"]):
        config = config_of([*argv, "--config", "pipelines/recorded.toml"])
        assert config.asr.unaware is True and config.reasoner.clock == "cost-model"


@pytest.mark.parametrize(("flag", "loaded"), [("auto", "float32"), ("int8", "int8_float32")])
def test_the_asr_compute_type_reaches_the_loaded_whisper(flag, loaded):
    """auto is float32 on the CPU; int8 loads int8 weights (CTranslate2 names them int8_float32 on a
    CPU: int8 weights, float32 activations)."""
    config = config_of(["run", "x.wav", "--asr-compute-type", flag])
    assert config.asr.load(1).model.model.compute_type == loaded
