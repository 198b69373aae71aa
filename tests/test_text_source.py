"""Text sources: sentence splitting, speaking-rate timestamps and JSON-lines chunk files."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest

from adasr_av.errors import AdasrError
from adasr_av.media.text import read_chunks_jsonl, split_sentences, text_stream
from adasr_av.types import TextChunk


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Tom has five apples. He buys one more.", ["Tom has five apples.", "He buys one more."]),
        ("It costs 3.5 dollars. Then it costs 4.", ["It costs 3.5 dollars.", "Then it costs 4."]),
        ("Pi is about 3.14159 today.", ["Pi is about 3.14159 today."]),
        ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        ("Mrs. Lee and Prof. Kim left.", ["Mrs. Lee and Prof. Kim left."]),
        (
            "J. R. R. Tolkien wrote books. They sold well.",
            ["J. R. R. Tolkien wrote books.", "They sold well."],
        ),
        ('He said "Stop!" Then he left.', ['He said "Stop!"', "Then he left."]),
        ('It ended. "Run," she said.', ["It ended.", '"Run," she said.']),
        ("He left (quickly.) Then rain.", ["He left (quickly.)", "Then rain."]),
        ("Really? Yes! Okay.", ["Really?", "Yes!", "Okay."]),
        ("I have 3 cats. 2 are black.", ["I have 3 cats.", "2 are black."]),
        ("It was late. and then it rained.", ["It was late. and then it rained."]),
        ("First line.\nSecond line.", ["First line.", "Second line."]),
        ("  Spaces around.   Many   spaces.  ", ["Spaces around.", "Many   spaces."]),
        ("no final punctuation", ["no final punctuation"]),
        ("", []),
        ("   \n\t ", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


# --- text_stream ---------------------------------------------------------------------------------


def test_text_stream_times_follow_the_speaking_rate():
    # 150 words per minute = 0.4 s per word: 4 words take 1.6 s, 2 words 0.8 s, 5 words 2.0 s.
    chunks = text_stream("Tom has five apples. Really, truly? He buys one more apple.")
    assert [c.text for c in chunks] == ["Tom has five apples.", "Really, truly?", "He buys one more apple."]
    assert [c.t_start for c in chunks] == pytest.approx([0.0, 1.6, 2.4])
    assert [c.t_end for c in chunks] == pytest.approx([1.6, 2.4, 4.4])
    assert all(c.source == "text" for c in chunks)
    assert all(isinstance(c, TextChunk) for c in chunks)


def test_text_stream_emits_each_chunk_when_it_ends_and_chunks_are_contiguous():
    chunks = text_stream("One two three. Four five. Six. Seven eight nine ten eleven.")
    assert len(chunks) == 4
    assert chunks[0].t_start == 0.0
    for chunk in chunks:
        assert chunk.t_emit == chunk.t_end
        assert chunk.t_end > chunk.t_start
    for before, after in pairwise(chunks):
        assert after.t_start == before.t_end


def test_text_stream_other_rates():
    # 120 words per minute = 0.5 s per word; 60 words per minute = 1 s per word.
    chunks = text_stream("Tom has five apples. He buys one more apple.", words_per_minute=120)
    assert [t for c in chunks for t in (c.t_start, c.t_end)] == pytest.approx([0.0, 2.0, 2.0, 4.5])
    chunks = text_stream("A b c. D e.", words_per_minute=60)
    assert [t for c in chunks for t in (c.t_start, c.t_end, c.t_emit)] == pytest.approx([0, 3, 3, 3, 5, 5])


def test_text_stream_of_blank_text_is_empty():
    assert text_stream("") == []
    assert text_stream("  \n ") == []


@pytest.mark.parametrize("rate", [0, -150])
def test_text_stream_rejects_a_non_positive_rate(rate):
    with pytest.raises(AdasrError, match="words per minute"):
        text_stream("Tom has five apples.", words_per_minute=rate)


# --- read_chunks_jsonl ---------------------------------------------------------------------------


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_chunks_jsonl_good_file(tmp_path):
    path = write_lines(
        tmp_path / "chunks.jsonl",
        [
            json.dumps({"text": "Tom has five apples.", "t_start": 0, "t_end": 1.6}),
            "",
            "   ",
            json.dumps(
                {"text": "A sign says SALE.", "t_start": 1.6, "t_end": 2.0, "t_emit": 2.5, "source": "ocr"}
            ),
            json.dumps({"text": "He buys one.", "t_start": 2, "t_end": 3, "t_emit": 3, "source": "asr"}),
        ],
    )
    chunks = list(read_chunks_jsonl(path))
    assert chunks == [
        TextChunk("Tom has five apples.", 0.0, 1.6, 1.6, "text"),
        TextChunk("A sign says SALE.", 1.6, 2.0, 2.5, "ocr"),
        TextChunk("He buys one.", 2.0, 3.0, 3.0, "asr"),
    ]
    assert all(isinstance(t, float) for c in chunks for t in (c.t_start, c.t_end, c.t_emit))
    # A str path works as well as a Path.
    assert list(read_chunks_jsonl(str(path))) == chunks


def test_read_chunks_jsonl_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    assert list(read_chunks_jsonl(path)) == []


def read_error(path) -> str:
    with pytest.raises(AdasrError) as info:
        list(read_chunks_jsonl(path))
    return str(info.value)


def test_malformed_json_names_the_file_and_line(tmp_path):
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            json.dumps({"text": "ok", "t_start": 0, "t_end": 1}),
            "",  # blank lines still count as lines
            '{"text": "broken", "t_start": 1,',
        ],
    )
    message = read_error(path)
    assert str(path) in message
    assert "line 3" in message
    assert "not valid JSON" in message


BAD_RECORDS = {
    "missing text": ({"t_start": 0, "t_end": 1}, "missing field 'text'"),
    "missing t_start": ({"text": "a", "t_end": 1}, "missing field 't_start'"),
    "missing t_end": ({"text": "a", "t_start": 0}, "missing field 't_end'"),
    "text not a string": ({"text": 5, "t_start": 0, "t_end": 1}, "field 'text' must be a string"),
    "t_start a string": (
        {"text": "a", "t_start": "0", "t_end": 1},
        "field 't_start' must be a finite number",
    ),
    "t_end null": ({"text": "a", "t_start": 0, "t_end": None}, "field 't_end' must be a finite number"),
    "t_emit a bool": (
        {"text": "a", "t_start": 0, "t_end": 1, "t_emit": True},
        "field 't_emit' must be a finite number",
    ),
    "t_emit before t_end": (
        {"text": "a", "t_start": 0, "t_end": 2, "t_emit": 1.5},
        "t_emit 1.5 is before t_end 2.0",
    ),
    "t_end before t_start": ({"text": "a", "t_start": 3, "t_end": 2}, "t_end 2.0 is before t_start 3.0"),
    "unknown source": ({"text": "a", "t_start": 0, "t_end": 1, "source": "radio"}, "field 'source'"),
    "not an object": ([1, 2], "expected a JSON object"),
}


@pytest.mark.parametrize("record, expected", list(BAD_RECORDS.values()), ids=list(BAD_RECORDS))
def test_bad_records_are_reported_with_file_line_and_field(tmp_path, record, expected):
    path = write_lines(
        tmp_path / "chunks.jsonl",
        [json.dumps({"text": "ok", "t_start": 0, "t_end": 1}), json.dumps(record)],
    )
    message = read_error(path)
    assert str(path) in message
    assert "line 2" in message
    assert expected in message


def test_the_good_lines_before_an_error_are_yielded(tmp_path):
    path = write_lines(tmp_path / "chunks.jsonl", [json.dumps({"text": "ok", "t_start": 0, "t_end": 1}), "{"])
    chunks = read_chunks_jsonl(path)
    assert next(chunks) == TextChunk("ok", 0.0, 1.0, 1.0, "text")
    with pytest.raises(AdasrError, match="line 2"):
        next(chunks)


def test_nonexistent_file(tmp_path):
    path = tmp_path / "nowhere" / "chunks.jsonl"
    message = read_error(path)
    assert str(path) in message
    assert "no such file" in message


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_non_finite_times_are_rejected(tmp_path, value):
    path = tmp_path / "chunks.jsonl"
    path.write_text(f'{{"text": "a", "t_start": {value}, "t_end": {value}}}\n', encoding="utf-8")
    with pytest.raises(AdasrError):
        list(read_chunks_jsonl(path))
