"""A story in video mode: slides and speech in an mp4, read back by the live encoders.

Three kinds of clip, drawn per story by (seed, id):
- `slideshow`: every sentence on its own slide, no sound;
- `narrated`: every sentence on a slide while it is spoken;
- `mixed`: each sentence either only spoken (the screen blank) or only shown (silence), at least
  one of each, so that neither the speech nor the screen alone tells the story.

A slide stays up at least `MIN_SLIDE_S`: at 1 frame a second the OCR encoder emits a screen once
it has read the same twice. The chunks are what the live pipeline makes of the file: the
streaming ASR on its audio, the OCR encoder on its frames at 1 fps, merged by arrival. Each
sentence's gold goes to the first chunk that delivered it (a narrated sentence reaches the
reasoner twice, and only its first arrival updates a state: the second is to be skipped).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from adasr_av.data.dataset import StreamedStory
from adasr_av.data.speech_mode import Speaker, transcribe_samples
from adasr_av.data.stories import Story
from adasr_av.data.streamed import chunk_gold
from adasr_av.data.tts import synthesize
from adasr_av.data.video import Slide, write_video
from adasr_av.encoders.contract import merge_by_arrival
from adasr_av.encoders.ocr import OCREncoder
from adasr_av.encoders.streaming_asr import StreamingASROptions
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.media.audio import samples_to_seconds, seconds_to_samples
from adasr_av.media.file import read_video_frames
from adasr_av.sinks import chunk_record
from adasr_av.types import TextChunk

CLIP_KINDS = ("slideshow", "narrated", "mixed")
MIN_SLIDE_S = 3.0  # a slide on screen this long is read twice at 1 fps
READ_S_PER_WORD = 0.4  # a shown-only sentence stays up as long as a slow reader needs
FRAME_RATE = 1.0  # frames the OCR encoder reads per second, as `adasr-av run`'s default


@dataclass(frozen=True)
class Layout:
    """Where each sentence is in the clip and how it is given (said, shown or both)."""

    spans: tuple[tuple[float, float], ...]
    spoken: tuple[bool, ...]
    shown: tuple[bool, ...]
    duration_s: float


def draw_kind(seed: int, story_id: str, kinds: Sequence[str]) -> str:
    return random.Random(f"{seed}:{story_id}:clip").choice(list(kinds))


def draw_modalities(kind: str, n: int, seed: int, story_id: str) -> tuple[list[bool], list[bool]]:
    """(spoken, shown) per sentence for a clip of `kind`."""
    return modalities(kind, n, random.Random(f"{seed}:{story_id}:mixed"))


def modalities(kind: str, n: int, rng: random.Random) -> tuple[list[bool], list[bool]]:
    if kind == "slideshow":
        return [False] * n, [True] * n
    if kind == "narrated":
        return [True] * n, [True] * n
    spoken = [rng.random() < 0.5 for _ in range(n)]
    if n >= 2 and len(set(spoken)) == 1:  # at least one of each
        spoken[rng.randrange(n)] = not spoken[0]
    return spoken, [not s for s in spoken]


def as_clip(story: StreamedStory, kind: str, rng: random.Random) -> StreamedStory:
    """A streamed story's chunks as a clip of `kind` delivers them, without rendering one (for
    training): a shown chunk comes from the OCR encoder, word for word (the OCR reads a rendered
    slide exactly), a spoken one from the ASR; a narrated chunk comes twice, first from the screen
    (read a second after the slide appears, before the speech is committed), then from the speech,
    which brings nothing new (no gold of its own: to be skipped)."""
    if story.thoughts is None or story.informative is None:
        return story
    spoken, shown = modalities(kind, len(story.chunks), rng)
    chunks, informative, thoughts = [], [], []
    for i, chunk in enumerate(story.chunks):
        if shown[i]:
            chunks.append(replace(chunk, source="ocr"))
            informative.append(story.informative[i])
            thoughts.append(story.thoughts[i])
        if spoken[i]:
            chunks.append(replace(chunk, source="asr"))
            informative.append(story.informative[i] and not shown[i])
            thoughts.append("" if shown[i] else story.thoughts[i])
    return replace(story, chunks=tuple(chunks), informative=tuple(informative), thoughts=tuple(thoughts))


def lay_out(
    story: Story, kind: str, speaker: Speaker, seed: int
) -> tuple[Layout, np.ndarray | None, list[Slide]]:
    """The clip's layout, its 16 kHz audio (None for a slideshow) and its slides."""
    n = len(story.sentences)
    spoken, shown = draw_modalities(kind, n, seed, story.id)
    pause = speaker.pause_s
    parts, slides, spans, t = [], [], [], 0.0
    for i, sentence in enumerate(story.sentences):
        speech = synthesize(sentence.text, speaker.voice, speaker.words_per_minute) if spoken[i] else None
        said_s = samples_to_seconds(len(speech)) if speech is not None else 0.0
        read_s = max(MIN_SLIDE_S, READ_S_PER_WORD * len(sentence.text.split())) if shown[i] else 0.0
        length = max(said_s, read_s)
        spans.append((t, t + length))
        if shown[i]:
            slides.append(Slide(sentence.text, t, t + length + pause))
        clip = np.zeros(seconds_to_samples(length + pause), dtype=np.float32)
        if speech is not None:
            clip[: len(speech)] = speech[: len(clip)]
        parts.append(clip)
        t += length + pause
    audio = np.concatenate(parts) if any(spoken) else None
    layout = Layout(tuple(spans), tuple(spoken), tuple(shown), t + 1.0)  # a blank second at the end
    return layout, audio, slides


def clip_chunks(
    path: Path,
    layout: Layout,
    audio: np.ndarray | None,
    backend: WhisperBackend | None,
    asr: StreamingASROptions,
    ocr: OCREncoder,
) -> list[TextChunk]:
    """What the live pipeline reads from the clip: speech chunks and screen chunks, by arrival."""
    streams = []
    if audio is not None and backend is not None:
        streams.append(transcribe_samples(audio, backend, asr))
    streams.append(list(ocr(read_video_frames(path, FRAME_RATE))))
    chunks = list(merge_by_arrival(streams))
    if not chunks:
        chunks = [TextChunk("", 0.0, layout.duration_s, layout.duration_s, "ocr")]
    return chunks


def assign_first_arrival(layout: Layout, chunks: Sequence[TextChunk]) -> list[list[int]]:
    """Sentence indices per chunk: for each way a sentence was given (speech, screen), the chunk
    of that source overlapping most of its span; of those, the one that arrived first."""
    covered: list[list[int]] = [[] for _ in chunks]
    for i, (start, end) in enumerate(layout.spans):
        sources = {"asr"} if layout.spoken[i] else set()
        sources |= {"ocr"} if layout.shown[i] else set()
        best = None
        for source in sources:
            mine = [k for k, c in enumerate(chunks) if c.source == source]
            if not mine:
                continue
            k = max(mine, key=lambda k: (min(end, chunks[k].t_end) - max(start, chunks[k].t_start), -k))
            if best is None or chunks[k].t_emit < chunks[best].t_emit:
                best = k
        covered[best if best is not None else 0].append(i)
    return covered


def video_record(
    story: Story,
    kind: str,
    speaker: Speaker,
    video: str,
    layout: Layout,
    chunks: Sequence[TextChunk],
) -> dict:
    """The story in video mode; `video` is the mp4's path relative to the dataset folder."""
    gold = [chunk_gold(story, indices) for indices in assign_first_arrival(layout, chunks)]
    return story.to_record() | {
        "mode": "video",
        "clip": kind,
        "voice": speaker.voice if any(layout.spoken) else None,
        "words_per_minute": speaker.words_per_minute,
        "video": video,
        "sentence_times": [[round(a, 3), round(b, 3)] for a, b in layout.spans],
        "spoken": list(layout.spoken),
        "shown": list(layout.shown),
        "chunks": [chunk_record(chunk) | g for chunk, g in zip(chunks, gold, strict=True)],
    }


def make_clip(path: Path, layout: Layout, audio: np.ndarray | None, slides: list[Slide]) -> Path:
    return write_video(path, slides, layout.duration_s, audio)
