"""Fuzzing (hypothesis) of everything that reads outside input: every input ends in a result or an
`AdasrError`, never in another exception, a hang or a crash.

- the protocol parser and validator (`parse_stream`, `validate_stream`) take any text, model output
  included, and only report violations; spans made by the protocol's own builders parse back to
  what they were built from, whatever text the environment put in them;
- the JSON-lines readers (`read_chunks_jsonl`, `read_dataset`) given random bytes or random records
  either read them or stop with an error naming the file and the line;
- config loading (`read_toml`, `load_config`, `from_dict` with `SFTConfig`, `HRPOConfig` and
  `RunConfig`) given random TOML, tables and `--set` overrides gives a config holding the values
  or an error naming the key;
- media opening (`probe`, `open_records`) given random bytes, truncated and corrupted copies of
  the demo files ends, within a time limit, in records or an AdasrError. Each case runs in a forked
  child, so a hang in FFmpeg (which may hold the GIL) or a crash fails the case instead of the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import re
import time
import traceback
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adasr_av.data.dataset import RECORD_FIELDS, read_dataset
from adasr_av.errors import AdasrError
from adasr_av.hrpo.trainer import HRPOConfig
from adasr_av.media.sources import open_records, probe
from adasr_av.media.text import read_chunks_jsonl
from adasr_av.reasoner.normalize import normalize_text
from adasr_av.reasoner.protocol import (
    CHUNK_END,
    MODES,
    PROTOCOL_TOKENS,
    QUESTION_END,
    SOURCE_TAGS,
    chunk_span,
    deep_span,
    parse_stream,
    question_span,
    skip_unit,
    stream_end_span,
    thought_unit,
    validate_stream,
)
from adasr_av.run_config import RunConfig
from adasr_av.training.config import from_dict, load_config, read_toml
from adasr_av.training.sft import SFTConfig

ROOT = Path(__file__).resolve().parents[1]
DEMO_MEDIA = [  # audio alone, video alone, both
    ROOT / "demos" / "media" / name for name in ("shopping.mp3", "slides-shopping.mp4", "mixed-school.mp4")
]
MEDIA_SECONDS = 10.0  # wall seconds one media case may take: 30 times a whole demo file on a busy machine
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TOKENS = re.compile("|".join(re.escape(tok) for tok in PROTOCOL_TOKENS))
BIG_INTS = [2**63, 2**64, -(2**63) - 1, 10**400]  # past int64, past a float


def only_adasr_errors(action) -> tuple[Any, AdasrError | None]:
    """(result, None), or (None, the AdasrError); any other exception fails the test as it is."""
    try:
        return action(), None
    except AdasrError as err:
        assert str(err).strip() and "\n" not in str(err), f"not a one-line message: {err!r}"
        return None, err


# --- the protocol parser and validator ------------------------------------------------------------

MODEL_OUTPUT = st.lists(
    st.one_of(
        st.sampled_from(PROTOCOL_TOKENS),
        st.sampled_from(["\\boxed{", "{", "}", " ", "\n", "<|", "|>", "6"]),
        st.text(max_size=12),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=MODEL_OUTPUT, mode=st.sampled_from(MODES))
@example(text=CHUNK_END * 3 + "<|skip|>" * 2, mode="streaming")  # one mistake again and again
def test_any_text_parses_into_violations_never_an_exception(text, mode):
    parsed = parse_stream(text, mode)
    assert validate_stream(text, mode) == parsed.violations
    assert len(set(parsed.violations)) == len(parsed.violations)  # repeats are counted, not listed
    indices = [unit.chunk_index for unit in parsed.units]
    assert indices == sorted(set(indices)) and all(0 <= i < len(parsed.chunks) for i in indices)
    if not parsed.violations:  # valid: complete, one unit per chunk (none between reads)
        assert parsed.answer is not None
        assert indices == (list(range(len(parsed.chunks))) if mode == "streaming" else [])


def no_tokens(text: str) -> bool:
    return TOKENS.search(text) is None


ENVIRONMENT_TEXT = st.lists(  # what ASR, OCR or a user may write, protocol tokens included
    st.one_of(st.text(max_size=15), st.sampled_from([*PROTOCOL_TOKENS, "<", "|", ">", "(", ")", " "])),
    max_size=6,
).map("".join)
MODEL_TEXT = st.text(max_size=30).filter(no_tokens)
UNIT = st.one_of(st.none(), MODEL_TEXT.filter(str.strip))  # None: skip
ANSWER = st.text(st.characters(blacklist_characters="{}\\", blacklist_categories=["Cs"]), max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    question=ENVIRONMENT_TEXT,
    chunks=st.lists(
        st.tuples(
            ENVIRONMENT_TEXT,
            st.one_of(st.none(), st.floats(0, 1e4)),
            st.sampled_from(list(SOURCE_TAGS)),
            UNIT,
        ),
        max_size=5,
    ),
    deep=MODEL_TEXT,
    answer=ANSWER,
    mode=st.sampled_from(MODES),
)
@example(question="", chunks=[("<|skip|>", None, "ocr", None)], deep="", answer="6", mode="streaming")
@example(question="<(|stream_end|)>", chunks=[], deep="", answer="6", mode="read-then-think")  # "(" goes
def test_spans_built_by_the_builders_parse_back(question, chunks, deep, answer, mode):
    prompt = question_span(question)
    env = [chunk_span(text, lag_s, source) for text, lag_s, source, _ in chunks]
    for span in [prompt, *env]:
        assert len(TOKENS.findall(span)) == 1, f"environment text wrote a protocol token: {span!r}"
    spans = [prompt]
    for span, (*_, unit) in zip(env, chunks, strict=True):
        spans.append(span)
        if mode == "streaming":
            spans.append(skip_unit() if unit is None else thought_unit(unit))
    spans += [stream_end_span(), deep_span(deep, answer)]

    parsed = parse_stream("".join(spans), mode)
    assert parsed.violations == []
    assert parsed.prompt == prompt.removesuffix(QUESTION_END)
    assert parsed.chunks == [span.removesuffix(CHUNK_END).strip() for span in env]
    for (text, lag_s, source, _), chunk in zip(chunks, parsed.chunks, strict=True):
        if "<|" not in normalize_text(text):  # text that writes no token is kept as normalised
            hint = "" if lag_s is None else f" (lag {lag_s:.1f} s)"
            assert chunk == f"{SOURCE_TAGS[source]}{normalize_text(text)}{hint}".strip()
    if mode == "streaming":
        expected = [("skip", "") if u is None else ("think", u.strip()) for *_, u in chunks]
        assert [(u.kind, u.text) for u in parsed.units] == expected
    assert (parsed.deep, parsed.answer) == (deep.strip(), answer.strip())


# --- the JSON-lines readers -----------------------------------------------------------------------

JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(BIG_INTS),
    st.floats(),  # NaN and Infinity too: json writes and reads them
    st.text(max_size=10),
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
SECONDS = st.one_of(st.floats(-10, 100), st.integers(-10, 100), JSON_VALUE)


@st.composite
def chunk_records(draw) -> Any:
    """Mostly objects with the chunk fields, their values right or wrong; sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUE)
    fields = {
        "text": st.one_of(st.text(max_size=20), JSON_VALUE),
        "t_start": SECONDS,
        "t_end": SECONDS,
        "t_emit": SECONDS,
        "source": st.one_of(st.sampled_from(["asr", "ocr", "caption", "text"]), JSON_VALUE),
        draw(st.text(max_size=5)): JSON_VALUE,
    }
    keys = draw(st.lists(st.sampled_from(list(fields)), unique=True))
    return {key: draw(fields[key]) for key in keys}


def blank(line: bytes) -> bool:
    return not line.decode("utf-8", "replace").strip()


def check_line_error(err: AdasrError, what: str, path: Path, lines: list[bytes], read: int) -> None:
    """The error names the file and a line, and every line before it was read."""
    message = str(err)
    assert message.startswith(f"{what} {path}"), message
    if m := re.match(rf"{re.escape(what)} {re.escape(str(path))}, line (\d+)", message):
        number = int(m.group(1))
        assert 1 <= number <= len(lines), message
        assert read == sum(1 for line in lines[: number - 1] if not blank(line)), message


def write_lines(tmp_path: Path, lines: list[bytes]) -> tuple[Path, list[bytes]]:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path, b"\n".join(lines).split(b"\n")


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            chunk_records().map(lambda r: json.dumps(r).encode()),
            st.binary(max_size=40),
            st.sampled_from([b"", b" ", b"\xff\xfe", b"[" * 5000, b"1" * 5000, b'{"text": "a"']),
        ),
        max_size=6,
    )
)
@example(lines=[b'{"text": "a", "t_start": 0, "t_end": 1}', b"\xff"])  # not UTF-8
@example(lines=[b'{"text": "a", "t_start": 0, "t_end": 1' + b"0" * 5000 + b"}"])  # past int digits
@example(lines=[b'{"text": "a", "t_start": 0, "t_end": 1' + b"0" * 400 + b"}"])  # past a float
@example(lines=[b"[" * 100_000])  # nested too deeply
def test_chunk_file_reads_or_names_the_line(tmp_path, lines):
    path, lines = write_lines(tmp_path, lines)
    chunks: list = []
    _, err = only_adasr_errors(lambda: chunks.extend(read_chunks_jsonl(path)))
    if err is not None:
        check_line_error(err, "chunks file", path, lines, len(chunks))
        return
    records = [json.loads(line) for line in lines if not blank(line)]
    assert [c.text for c in chunks] == [r["text"] for r in records]
    for chunk, record in zip(chunks, records, strict=True):
        assert chunk.t_start <= chunk.t_end <= chunk.t_emit and chunk.source == record.get("source", "text")
        assert all(math.isfinite(t) for t in (chunk.t_start, chunk.t_end, chunk.t_emit))


@st.composite
def story_records(draw) -> dict:
    """Story lines: most of the record fields, chunks with or without their gold."""
    chunks = []
    for record in draw(st.lists(chunk_records(), max_size=3)):
        if isinstance(record, dict) and draw(st.booleans()):
            record |= {"informative": draw(JSON_VALUE), "thought": draw(JSON_VALUE)}
        chunks.append(record)
    fields = {
        "id": JSON_VALUE,
        "question": st.text(max_size=10),
        "question_position": st.sampled_from(["prompt", "stream"]) | JSON_VALUE,
        "answer": st.text(max_size=5) | JSON_VALUE,
        "chunks": st.just(chunks) | JSON_VALUE,
    }
    keys = draw(st.lists(st.sampled_from(list(RECORD_FIELDS)), unique=True, min_size=3))
    return {key: draw(fields[key]) for key in keys}


@FUZZ
@given(
    records=st.lists(story_records(), max_size=3),
    need_gold=st.booleans(),
    need_answer=st.booleans(),
)
def test_dataset_reads_or_names_the_line(tmp_path, records, need_gold, need_answer):
    path, lines = write_lines(tmp_path, [json.dumps(r).encode() for r in records])
    stories: list = []
    _, err = only_adasr_errors(lambda: stories.extend(read_dataset(path, need_gold, need_answer)))
    if err is not None:
        check_line_error(err, "dataset", path, lines, len(stories))
        return
    assert [len(s.chunks) for s in stories] == [len(r["chunks"]) for r in records]
    assert all(s.thoughts is not None for s in stories) or not need_gold


# --- config loading -------------------------------------------------------------------------------

CONFIGS = [SFTConfig, HRPOConfig, RunConfig]
ODD_STRINGS = ["", "a" * 300, "a\0b", ".", str(DEMO_MEDIA[0]), "paper", "cpu"]  # names, paths, NUL
ANY_VALUE = st.one_of(
    st.booleans(),
    st.integers(),
    st.sampled_from(BIG_INTS),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
)


def typed_values(hint: Any) -> st.SearchStrategy:
    """Values of the field's type (or near it: ints for floats, out-of-range numbers, odd strings)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if args and origin not in (list, tuple):  # a union
        return st.one_of(*(typed_values(arg) for arg in args))
    if origin in (list, tuple):
        return st.lists(typed_values(args[0]), max_size=3)
    return {
        bool: st.booleans(),
        int: st.integers() | st.sampled_from(BIG_INTS),
        float: st.floats() | st.integers(-10, 10) | st.sampled_from(BIG_INTS),
        str: st.text(max_size=8) | st.sampled_from(ODD_STRINGS),
        Path: st.text(max_size=8).map(lambda s: s + ".png") | st.text(max_size=8),
        type(None): st.none(),
    }[hint]


@st.composite
def tables(draw, cls: type) -> dict:
    """A config's tables: some of its keys, each with a value of its type (one in ten anything)."""
    hints = typing.get_type_hints(cls)
    out: dict = {}
    for f in dataclasses.fields(cls):
        if not draw(st.booleans()):
            continue
        hint = hints[f.name]
        if draw(st.integers(0, 9)) == 0:
            out[f.name] = draw(ANY_VALUE)
        else:
            out[f.name] = draw(tables(hint) if dataclasses.is_dataclass(hint) else typed_values(hint))
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(max_size=6))] = draw(ANY_VALUE)
    return out


CONFIG_TABLES = st.sampled_from(CONFIGS).flatmap(lambda cls: st.tuples(st.just(cls), tables(cls)))


def _landed(value: Any, got: Any) -> bool:
    if isinstance(value, dict):
        return all(_landed(v, getattr(got, k)) for k, v in value.items())
    if isinstance(got, Path):
        return got == Path(value)
    if isinstance(got, float):
        return got == float(value) or (math.isnan(got) and math.isnan(value))
    return got == value


@FUZZ
@given(cls_data=CONFIG_TABLES)
@example(cls_data=(SFTConfig, {"\n": False}))  # a key that would break the message's one line
@example(cls_data=(SFTConfig, {"train": {"lr": 10**400}}))  # an int past a float, for a float key
@example(cls_data=(RunConfig, {"reasoner": {"cost": "a" * 300}}))  # a name too long for a path
@example(cls_data=(RunConfig, {"reasoner": {"cost": str(DEMO_MEDIA[0])}}))  # a cost file not UTF-8
@example(cls_data=(RunConfig, {"reasoner": {"seed": 2**64}}))  # a seed past torch's
def test_config_tables_give_a_config_or_name_the_key(cls_data):
    cls, data = cls_data
    config, err = only_adasr_errors(lambda: from_dict(cls, data, "config fuzz.toml"))
    if err is None:
        assert isinstance(config, cls) and _landed(data, config)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return {"inf": "inf", "-inf": "-inf"}.get(str(value), "nan")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string, or invalid TOML


def toml_text(data: dict) -> str:
    """`data` as TOML (None values dropped: TOML has no null)."""
    top = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | None)]
    for name, table in data.items():
        if isinstance(table, dict):
            top.append(f"[{json.dumps(name)}]")
            top += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(top) + "\n"


OVERRIDE_KEYS = st.sampled_from(
    [
        "model.init",
        "model.init.deeper",
        "train.lr",
        "train",
        "reasoner.seed",
        "asr.step",
        "x.y.z",
        "data.train",
    ]
) | st.text(max_size=8)


@FUZZ
@given(cls_data=CONFIG_TABLES, overrides=st.dictionaries(OVERRIDE_KEYS, ANY_VALUE, max_size=2))
@example(cls_data=(SFTConfig, {"model": {"init": "scratch"}}), overrides={"model.init.deeper": 1})
@example(cls_data=(RunConfig, {"source": 3}), overrides={"source.realtime": True})
def test_config_files_and_overrides_give_a_config_or_an_error(tmp_path, cls_data, overrides):
    cls, data = cls_data
    path = tmp_path / "fuzz.toml"
    path.write_text(toml_text(data), encoding="utf-8")
    config, err = only_adasr_errors(lambda: load_config(path, cls, dict(overrides)))
    if err is None:
        assert isinstance(config, cls)


TOML_PIECES = st.sampled_from(
    ["[model]", "[[train]]", "a = ", "lr", " = ", "1", "1" * 5000, "nan", '"', "'", "\n", "=", "{", "}"]
    + ["[", "]", ",", "true", "1979-05-27", "\\u", "\x00", "\x7f"]
)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.lists(TOML_PIECES | st.text(max_size=5), max_size=20).map(lambda p: "".join(p).encode()),
    )
)
@example(data=b"a = 1\n\xff\n")  # not UTF-8
@example(data=b"a = 1" + b"0" * 5000)  # past int digits
@example(data=b"a = " + b"[" * 100_000)  # nested too deeply
def test_toml_text_reads_or_names_the_file(tmp_path, data):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    tables, err = only_adasr_errors(lambda: read_toml(path))
    if err is not None:
        assert str(err).startswith(f"config {path}: "), str(err)
    else:
        assert isinstance(tables, dict)
        _, err = only_adasr_errors(lambda: load_config(path, SFTConfig, data=tables))


# --- media opening --------------------------------------------------------------------------------


def _read_all(path: str) -> str:
    """Probe `path`, then read every record of it (audio, and frames too when it has video)."""
    streams = probe(path)
    audio = sum(1 for _ in open_records(path)) if streams.audio else 0
    both = sum(1 for _ in open_records(path, fps=2.0, streams=streams))
    return f"{streams}: {audio} audio chunks, {both} records"


def _child(conn, read, path: str) -> None:
    try:
        conn.send(("ok", read(path)))
    except AdasrError as err:
        conn.send(("AdasrError", str(err)))
    except BaseException:
        conn.send(("other", traceback.format_exc()))


def read_media_bounded(path: Path, read=_read_all, seconds: float = MEDIA_SECONDS) -> tuple[str, str]:
    """(outcome, detail) of `read(path)` in a forked child; a hang or a crash fails the test."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, read, str(path)), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(seconds):
            child.kill()
            pytest.fail(f"{path.name} ({path.stat().st_size} bytes): still reading after {seconds} s")
        try:
            return receive.recv()
        except EOFError:
            child.join(5)
            pytest.fail(f"{path.name}: the reader crashed (exit code {child.exitcode})")
    finally:
        child.join(5)
        receive.close()


def check_media(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    outcome, detail = read_media_bounded(path)
    assert outcome in ("ok", "AdasrError"), detail
    if outcome == "AdasrError":
        assert "\n" not in detail and str(path) in detail, detail


SUFFIXES = st.sampled_from([".mp3", ".mp4", ".wav", ".mkv", ".bin"])


@settings(max_examples=20, deadline=None)
@given(data=st.binary(max_size=4096), suffix=SUFFIXES)
@example(data=b"", suffix=".mp3")
@example(data=b"ID3" + bytes(64), suffix=".mp3")
def test_random_bytes_as_media_end_in_adasr_error(tmp_path_factory, data, suffix):
    check_media(tmp_path_factory.mktemp("media") / f"fuzz{suffix}", data)


@settings(max_examples=20, deadline=None)
@given(source=st.sampled_from(DEMO_MEDIA), fraction=st.floats(0, 1))
@example(source=DEMO_MEDIA[1], fraction=0.5)  # an MP4 whose index may be past the cut
def test_truncated_media_reads_or_ends_in_adasr_error(tmp_path_factory, source, fraction):
    data = source.read_bytes()
    check_media(tmp_path_factory.mktemp("media") / source.name, data[: int(len(data) * fraction)])


@settings(max_examples=20, deadline=None)
@given(
    source=st.sampled_from(DEMO_MEDIA),
    flips=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=40),
)
@example(source=DEMO_MEDIA[0], flips=[(444, 161)])  # a frame header whose format is not the first's
@example(source=DEMO_MEDIA[0], flips=[(11, 128)])  # an ID3 tag not in UTF-8: still opens
def test_corrupted_media_reads_or_ends_in_adasr_error(tmp_path_factory, source, flips):
    data = bytearray(source.read_bytes())
    for where, byte in flips:
        data[where % len(data)] = byte
    check_media(tmp_path_factory.mktemp("media") / source.name, bytes(data))


def test_the_media_time_limit_fails_a_hang_or_a_crash(tmp_path):
    """The bound the media properties rely on: a reader that hangs or dies fails the case."""
    path = tmp_path / "any.mp3"
    path.write_bytes(b"")
    with pytest.raises(pytest.fail.Exception, match="still reading"):
        read_media_bounded(path, lambda _: time.sleep(60), seconds=0.5)
    with pytest.raises(pytest.fail.Exception, match="crashed"):
        read_media_bounded(path, lambda _: os._exit(3))
