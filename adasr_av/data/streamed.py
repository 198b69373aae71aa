"""A story as a stream: chunks with arrival times and the gold of the sentences each one covers.

Text mode is here: one chunk per sentence at a speaking rate. Speech mode (synthesised, then
transcribed by the streaming ASR) builds its chunks elsewhere and labels them with `chunk_gold`.
"""

from __future__ import annotations

from collections.abc import Sequence

from adasr_av.data.stories import Story
from adasr_av.sinks import chunk_record
from adasr_av.timing import DEFAULT_WORDS_PER_MINUTE, speech_seconds
from adasr_av.types import TextChunk


def join_thoughts(*thoughts: str) -> str:
    """The state updates of several sentences as one chunk's thought, in order ("" for none)."""
    return ". ".join(t for t in thoughts if t)


def join_chunks(first: TextChunk, second: TextChunk) -> TextChunk:
    """Two neighbouring chunks as the one chunk an ASR that did not pause between them writes."""
    return TextChunk(f"{first.text} {second.text}", first.t_start, second.t_end, second.t_emit, first.source)


def chunk_gold(story: Story, sentence_indices: Sequence[int]) -> dict:
    """Gold of a chunk covering these sentences: informative unless all are distractors, and the
    state updates they cause joined in order."""
    covered = [story.sentences[i] for i in sentence_indices]
    thoughts = [s.thought for s in covered if s.role != "distractor" and s.thought]
    return {
        "sentences": list(sentence_indices),
        "informative": bool(thoughts),
        "thought": join_thoughts(*thoughts),
    }


def text_record(story: Story, words_per_minute: float = DEFAULT_WORDS_PER_MINUTE) -> dict:
    """The story in text mode: sentence i arrives when its last word has been spoken."""
    chunks, words = [], 0
    for i, sentence in enumerate(story.sentences):
        t_start = speech_seconds(words, words_per_minute)
        words += len(sentence.text.split())
        t_end = speech_seconds(words, words_per_minute)
        chunk = TextChunk(sentence.text, t_start, t_end, t_end, "text")
        chunks.append(chunk_record(chunk) | chunk_gold(story, [i]))
    return story.to_record() | {"mode": "text", "words_per_minute": words_per_minute, "chunks": chunks}
