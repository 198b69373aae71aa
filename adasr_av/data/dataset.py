"""Streamed-story datasets: one JSON object per line, a story plus the chunks it arrived as.

A record is `Story.to_record()` plus `mode` ("text", "speech" or "video") and `chunks`; each chunk is a
`TextChunk` record plus its gold: `sentences` (indices of the story sentences it covers),
`informative` (it sets, changes or asks about a state) and `thought` (their state updates; "" for
a chunk of distractors only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from adasr_av.errors import AdasrError
from adasr_av.media.text import chunk_from_record, read_jsonl
from adasr_av.types import TextChunk

RECORD_FIELDS = ("id", "question", "question_position", "answer", "chunks")
GOLD_FIELDS = ("informative", "thought")


@dataclass(frozen=True)
class StreamedStory:
    """What evaluation and training need of one dataset line."""

    id: str
    question: str  # the question for the prompt span; "" when the stream carries it
    answer: str | None
    chunks: tuple[TextChunk, ...]
    informative: tuple[bool, ...] | None  # per chunk; None when the dataset has no gold
    thoughts: tuple[str, ...] | None
    record: dict

    @property
    def t_stream_end(self) -> float:
        return max((c.t_end for c in self.chunks), default=0.0)


_HOLDER = re.compile(r"([A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*)?) =")


def holders_in(thought: str) -> set[str]:
    """The holders a thought states ("Ruby = 268, Leo = 12" -> Ruby, Leo), as written; vehicles,
    named in lower case ("red bus = 40"), are not found."""
    return set(_HOLDER.findall(thought))


def holder_names(record: dict) -> set[str]:
    """The holders a record's gold thoughts name; none for a record without sentences."""
    return {h for s in record.get("sentences", []) for h in holders_in(s.get("thought", ""))}


def prompt_question(record: dict) -> str:
    """The prompt span's question: only when it is not spoken in the stream."""
    return record["question"] if record["question_position"] == "prompt" else ""


def read_dataset(
    path: str | Path, need_gold: bool = False, need_answer: bool = True
) -> Iterator[StreamedStory]:
    """Stories of a dataset file; a missing or mistyped field is an error naming file and line."""
    for where, record in read_jsonl(path, "dataset"):
        yield parse_record(record, where, need_gold, need_answer)


def parse_record(
    record: dict, where: str, need_gold: bool = False, need_answer: bool = True
) -> StreamedStory:
    for key in RECORD_FIELDS:
        if key not in record and (key != "answer" or need_answer):
            raise AdasrError(f"{where}: missing field '{key}'")
    if need_answer and record["answer"] in (None, ""):
        raise AdasrError(f"{where}: field 'answer' is empty")
    if not isinstance(record["chunks"], list) or not record["chunks"]:
        raise AdasrError(f"{where}: field 'chunks' must be a non-empty list")
    chunks, informative, thoughts = [], [], []
    for i, chunk in enumerate(record["chunks"]):
        if not isinstance(chunk, dict):
            raise AdasrError(f"{where}: chunk {i} must be a JSON object")
        chunks.append(chunk_from_record(chunk, f"{where}, chunk {i}"))
        has_gold = all(key in chunk for key in GOLD_FIELDS)
        if need_gold and not has_gold:
            missing = next(key for key in GOLD_FIELDS if key not in chunk)
            raise AdasrError(f"{where}, chunk {i}: missing field '{missing}'")
        if has_gold:
            informative.append(bool(chunk["informative"]))
            thoughts.append(str(chunk["thought"]))
    gold = len(informative) == len(chunks)
    answer = record.get("answer")
    return StreamedStory(
        id=str(record["id"]),
        question=prompt_question(record),
        answer=None if answer is None else str(answer),
        chunks=tuple(chunks),
        informative=tuple(informative) if gold else None,
        thoughts=tuple(thoughts) if gold else None,
        record=record,
    )
