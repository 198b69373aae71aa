"""A story in speech mode: spoken by eSpeak NG, heard by the streaming ASR, gold mapped onto ASR chunks.

The sentences are synthesised one by one and joined with short pauses, so where each one lies in
the audio is known exactly. The ASR then chunks the audio its own way (with its own errors); each
story sentence goes to the one ASR chunk that overlaps most of its time span, and a chunk's gold
is that of the sentences it got (none: not informative).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adasr_av.data.stories import Story
from adasr_av.data.streamed import chunk_gold
from adasr_av.data.tts import synthesize
from adasr_av.encoders.streaming_asr import StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.media.audio import Chunker, samples_to_seconds, seconds_to_samples
from adasr_av.sinks import chunk_record
from adasr_av.types import TextChunk

# Voices that tiny.en follows: word error rates 0.17-0.35 on five stories at 140-180 wpm, where
# tts.VOICES's en-gb-scotland+f4 made it hallucinate (WER > 2), which is noise, not ASR errors.
SPEECH_VOICES = ("en-us", "en-us+f3", "en+m7", "en-gb-x-rp")
SPEECH_WPM_RANGE = (130, 190)  # eSpeak's nominal words per minute, drawn uniformly per story
PAUSE_RANGE_S = (0.2, 1.2)  # silence between sentences, drawn per story: from run-on speech to slow reading


@dataclass(frozen=True)
class Speaker:
    voice: str
    words_per_minute: int
    pause_s: float


def draw_speaker(seed: int, story_id: str, voices: Sequence[str]) -> Speaker:
    """The voice and rate of one story: fixed by (seed, story id), independent of run order."""
    rng = random.Random(f"{seed}:{story_id}:speech")
    return Speaker(
        rng.choice(list(voices)), rng.randint(*SPEECH_WPM_RANGE), round(rng.uniform(*PAUSE_RANGE_S), 2)
    )


def speak_story(story: Story, speaker: Speaker) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """16 kHz samples of the whole story and the (start, end) seconds of each sentence in them."""
    pause = np.zeros(seconds_to_samples(speaker.pause_s), dtype=np.float32)
    parts, spans, offset = [], [], 0
    for i, sentence in enumerate(story.sentences):
        if i:
            parts.append(pause)
            offset += len(pause)
        speech = synthesize(sentence.text, speaker.voice, speaker.words_per_minute)
        spans.append((samples_to_seconds(offset), samples_to_seconds(offset + len(speech))))
        parts.append(speech)
        offset += len(speech)
    return np.concatenate(parts), spans


def transcribe_samples(
    samples: np.ndarray, backend: WhisperBackend, options: StreamingASROptions
) -> list[TextChunk]:
    """The ASR chunks of `samples` streamed from t = 0; one empty chunk if it heard nothing, so
    every record has a chunk to carry the sentences' gold."""
    chunker = Chunker()
    chunks = list(transcribe_stream([*chunker.push(samples), *chunker.flush()], backend, options))
    if not chunks:
        end = samples_to_seconds(len(samples))
        chunks = [TextChunk("", 0.0, end, end, "asr")]
    return chunks


def assign_sentences(spans: Sequence[tuple[float, float]], chunks: Sequence[TextChunk]) -> list[list[int]]:
    """Sentence indices per chunk: each sentence to the chunk overlapping most of its span.

    Overlap `min(ends) - max(starts)` is minus the gap for disjoint spans, so a sentence the ASR
    missed goes to the nearest chunk; ties go to the earlier chunk.
    """
    covered: list[list[int]] = [[] for _ in chunks]
    for i, (start, end) in enumerate(spans):
        overlaps = [min(end, c.t_end) - max(start, c.t_start) for c in chunks]
        covered[overlaps.index(max(overlaps))].append(i)
    return covered


def speech_record(
    story: Story,
    speaker: Speaker,
    audio: str,
    spans: Sequence[tuple[float, float]],
    chunks: Sequence[TextChunk],
) -> dict:
    """The story in speech mode; `audio` is the wav's path relative to the dataset folder."""
    gold = [chunk_gold(story, indices) for indices in assign_sentences(spans, chunks)]
    return story.to_record() | {
        "mode": "speech",
        "voice": speaker.voice,
        "words_per_minute": speaker.words_per_minute,
        "pause_s": speaker.pause_s,
        "audio": audio,
        "sentence_times": [[round(start, 3), round(end, 3)] for start, end in spans],
        "chunks": [chunk_record(chunk) | g for chunk, g in zip(chunks, gold, strict=True)],
    }
