"""Text sources: sentences arriving at a speaking rate, and chunk files (JSON lines)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from adasr_av.errors import AdasrError, first_line
from adasr_av.timing import DEFAULT_WORDS_PER_MINUTE, speech_seconds
from adasr_av.types import TextChunk

# A sentence ends at . ! or ? (maybe closed by a quote or bracket) followed by space and a capital
# or a digit; "3.5" never splits. Titles and initials ("Mr. Smith", "J. Doe") are joined back.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_NO_END = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Mt|vs|etc|No)|\b[A-Z])\.$")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` in order; blank input gives an empty list."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if sentences and _NO_END.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece.strip()}"
        elif piece.strip():
            sentences.append(piece.strip())
    return sentences


def text_stream(text: str, words_per_minute: float = DEFAULT_WORDS_PER_MINUTE) -> list[TextChunk]:
    """One chunk per sentence; chunk i is committed when its last word has been spoken."""
    chunks, words_so_far = [], 0
    for sentence in split_sentences(text):
        n_words = len(sentence.split())
        t_start = speech_seconds(words_so_far, words_per_minute)
        words_so_far += n_words
        t_end = speech_seconds(words_so_far, words_per_minute)
        chunks.append(TextChunk(sentence, t_start, t_end, t_end, "text"))
    return chunks


CHUNK_FIELDS = ("text", "t_start", "t_end")


def read_jsonl(path: str | Path, what: str) -> Iterator[tuple[str, dict]]:
    """(where, record) for each JSON object line of `path`; `where` names the file and line for
    errors ("dataset data/test.jsonl, line 3"). Blank lines are skipped."""
    path = Path(path)
    try:
        handle = path.open("rb")  # decoded line by line, so that bad UTF-8 names its line
    except OSError as err:
        raise AdasrError(f"{what} {path}: {err.strerror.lower()}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{what} {path}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise AdasrError(f"{where}: not UTF-8 text (byte {err.start + 1})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise AdasrError(f"{where}: not valid JSON ({err.msg})") from None
            except (ValueError, RecursionError) as err:  # a number too long, arrays nested too deep
                raise AdasrError(f"{where}: not valid JSON ({first_line(err)})") from None
            if not isinstance(record, dict):
                raise AdasrError(f"{where}: expected a JSON object")
            yield where, record


def read_chunks_jsonl(path: str | Path) -> Iterator[TextChunk]:
    """Chunks from a JSON-lines file: `text`, `t_start`, `t_end` required; `t_emit` (default
    `t_end`) and `source` (default "text") optional. Errors name the file and line."""
    for where, record in read_jsonl(path, "chunks file"):
        yield chunk_from_record(record, where)


def chunk_from_record(record: dict, where: str) -> TextChunk:
    for key in CHUNK_FIELDS:
        if key not in record:
            raise AdasrError(f"{where}: missing field '{key}'")
    if not isinstance(record["text"], str):
        raise AdasrError(f"{where}: field 'text' must be a string")
    times = {}
    for key in ("t_start", "t_end", "t_emit"):
        value = record.get(key, record["t_end"])
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not abs(value) <= sys.float_info.max:  # NaN, infinities, ints past a float
            raise AdasrError(f"{where}: field '{key}' must be a finite number of seconds")
        times[key] = float(value)
    if times["t_emit"] < times["t_end"]:
        raise AdasrError(f"{where}: t_emit {times['t_emit']} is before t_end {times['t_end']}")
    if times["t_end"] < times["t_start"]:
        raise AdasrError(f"{where}: t_end {times['t_end']} is before t_start {times['t_start']}")
    source = record.get("source", "text")
    if source not in ("asr", "ocr", "caption", "text"):
        raise AdasrError(f"{where}: field 'source' must be asr, ocr, caption or text")
    return TextChunk(record["text"], times["t_start"], times["t_end"], times["t_emit"], source)
