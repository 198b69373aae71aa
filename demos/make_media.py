"""Regenerate demos/media/: short spoken stories with their answers.

What is in it is fixed before anything is heard or answered: four stories drawn from the story
generator by a fixed seed and a rule on their shape (the first stories of seed `DRAWN_SEED`'s test
split whose question comes last, 4 to 7 sentences, one per domain), two stories written by hand in
free wording, the browser test's story, and two video clips of the next two drawn stories (of any
domain): a slideshow (`slides-*.mp4`, one sentence a slide, no sound) and a mixed clip
(`mixed-*.mp4`: each sentence either only spoken or only shown, drawn by the seed, as
`synth --mode video` makes them). Voices go by position: eSpeak NG and Piper's neural
voice in turn. The evaluation tables use seed 0, so no demo is a story they count.

Each story is spoken in a fresh process (eSpeak's output drifts with what a process spoke before),
so a rerun writes the same audio, sentence by sentence with `pause_s` of silence between them.
Next to `NAME.mp3` goes `NAME.json`: the story record (text, question, answer) plus voice and rate,
which `adasr-av run` reads for the reference answer. `--check` streams every file through the
bundled Whisper, prints what it heard against what was said, then answers every file with the
bundled reasoner (`adasr-av batch`) and exits 1 when any answer is wrong.

    .venv/bin/python demos/make_media.py [--check] [--video-only]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from adasr_av.data.stories import generate_story

MEDIA = Path(__file__).resolve().parent / "media"
WORDS_PER_MINUTE = 150  # the papers' speaking rate
SUFFIX = ".mp3"  # a WAV of 30 s at 16 kHz is ~1 MB; an MP3 a fraction of that
DRAWN_SEED = 7
DRAWN = 4
VOICES = ("en+m7", "piper:joe")  # taken in turn: eSpeak NG's clearest voice for Whisper, Piper's joe
PAUSE_S = 0.5  # between sentences, as a person reading aloud


@dataclass(frozen=True)
class Demo:
    name: str
    record: dict  # the story record: text, question, question_position, answer (and gold, if any)
    voice: str
    pause_s: float = PAUSE_S


# Written by hand, in words the generator does not use; the answers worked out by hand.
FREE = (
    {
        "id": "demo-free-muffins",
        "text": "Maya baked twenty-four muffins for the school fair. She sold fifteen of them before "
        "lunch. Then her brother brought her twelve more muffins. How many muffins does Maya have now?",
        "question": "How many muffins does Maya have now?",
        "answer": "21",
    },
    {
        "id": "demo-free-eggs",
        "text": "A farmer put forty eggs in his basket. On the way to the market he dropped six of "
        "them. At the market he sold eighteen eggs. How many eggs are left in the basket?",
        "question": "How many eggs are left in the basket?",
        "answer": "16",
    },
)


def drawn_stories(seed: int = DRAWN_SEED, n: int = DRAWN) -> list[dict]:
    """The first `n` test-split stories of `seed` that end on their question, have 4 to 7
    sentences and a domain not drawn before: a rule on shape, never on how a model does."""
    stories, domains, index = [], set(), 0
    while len(stories) < n:
        story = generate_story(seed, "test", index)
        index += 1
        if (
            story.question_position == "last"
            and 4 <= len(story.sentences) <= 7
            and story.domain not in domains
        ):
            domains.add(story.domain)
            stories.append({**story.to_record(), "text": story.text, "seed": seed})
    return stories


def demos() -> list[Demo]:
    drawn = [Demo(r["domain"], r, VOICES[i % 2]) for i, r in enumerate(drawn_stories())]
    free = [
        Demo(
            r["id"].removeprefix("demo-"),
            {**r, "question_position": "last", "wording": "free"},
            VOICES[i % 2],
        )
        for i, r in enumerate(FREE, start=1)
    ]
    # The browser test's story (tests/test_demo_browser.py), kept as it was written for that test:
    # one holder, a rate, a second of silence after each sentence.
    wages = generate_story(8, "test", 10)
    browser = Demo("wages", {**wages.to_record(), "text": wages.text, "seed": 8}, "en-us", pause_s=1.0)
    return [*drawn, *free, browser]


VIDEO_KINDS = ("slideshow", "mixed")
VIDEO_PREFIX = {"slideshow": "slides", "mixed": "mixed"}


def video_stories(seed: int = DRAWN_SEED) -> list:
    """The two stories after the drawn ones that meet the same shape rule (any domain)."""
    drawn = {r["id"] for r in drawn_stories(seed)}
    found, index = [], 0
    while len(found) < len(VIDEO_KINDS):
        story = generate_story(seed, "test", index)
        index += 1
        if story.id not in drawn and story.question_position == "last" and 4 <= len(story.sentences) <= 7:
            found.append(story)
    return found


def make_video(story, kind: str, voice: str) -> Path:
    """A clip as `synth --mode video` lays it out, with its story record beside it."""
    from adasr_av.data.speech_mode import Speaker
    from adasr_av.data.video_mode import lay_out, make_clip

    speaker = Speaker(voice, WORDS_PER_MINUTE, PAUSE_S)
    layout, audio, slides = lay_out(story, kind, speaker, DRAWN_SEED)
    path = MEDIA / f"{VIDEO_PREFIX[kind]}-{story.domain}.mp4"
    make_clip(path, layout, audio, slides)
    record = {**story.to_record(), "text": story.text, "seed": DRAWN_SEED, "clip": kind}
    record |= {"spoken": list(layout.spoken), "shown": list(layout.shown)}
    if any(layout.spoken):
        record |= {"voice": voice, "words_per_minute": WORDS_PER_MINUTE, "pause_s": PAUSE_S}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def sentences(text: str) -> list[str]:
    return re.findall(r"[^.?!]+[.?!]", text)


def speak_fresh(texts: list[str], path: Path, voice: str, pause_s: float) -> None:
    """Speak `texts` one after the other, `pause_s` of silence between them, in a fresh process."""
    code = (
        "import json, sys; import numpy as np; from adasr_av.data.tts import synthesize, write_audio; "
        "texts, voice, wpm = json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]); "
        "pause = float(sys.argv[5]); "
        "gap = np.zeros(int(16000 * pause), np.float32); "
        "parts = [part for text in texts for part in (gap, synthesize(text, voice, wpm))][1:]; "
        "write_audio(sys.argv[1], np.concatenate(parts))"
    )
    args = [str(path), json.dumps(texts), voice, str(WORDS_PER_MINUTE), str(pause_s)]
    subprocess.run([sys.executable, "-c", code, *args], check=True)


def make(demo: Demo) -> Path:
    path = MEDIA / f"{demo.name}{SUFFIX}"
    speak_fresh([s.strip() for s in sentences(demo.record["text"])], path, demo.voice, demo.pause_s)
    record = {
        **demo.record,
        "voice": demo.voice,
        "words_per_minute": WORDS_PER_MINUTE,
        "pause_s": demo.pause_s,
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def numbers(text: str) -> list[str]:
    """The numbers said in `text`, as digits: "twenty-six" and "26" both give "26"."""
    from whisper.normalizers import EnglishTextNormalizer

    return re.findall(r"\d+", EnglishTextNormalizer()(text))


def check_heard(path: Path) -> bool:
    """Stream the file through the bundled Whisper as `adasr-av run` does; print what it heard."""
    from adasr_av.encoders.streaming_asr import transcribe_stream
    from adasr_av.encoders.whisper_backends import load_backend
    from adasr_av.media.file import read_audio

    heard = " ".join(c.text for c in transcribe_stream(read_audio(path), load_backend()))
    said = json.loads(path.with_suffix(".json").read_text())["text"]
    same = numbers(heard) == numbers(said)
    print(f"{path.name}\n  said:  {said}\n  heard: {heard}\n  numbers {'match' if same else 'DIFFER'}")
    return same


def check_answers() -> bool:
    """Answer every file with the bundled default reasoner, as the README's batch example does."""
    with tempfile.TemporaryDirectory() as out:
        cli = Path(sys.executable).with_name("adasr-av")
        subprocess.run([str(cli), "batch", str(MEDIA), "--out", out], check=True)
        rows = list(csv.DictReader((Path(out) / "summary.csv").open()))
    right = [row["answer"] == row["reference"] for row in rows]
    print(f"answered right: {sum(right)} of {len(rows)}")
    return all(right)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="transcribe and answer every file")
    parser.add_argument("--video-only", action="store_true", help="remake only the video clips")
    args = parser.parse_args()
    videos = [*MEDIA.glob("*.mp4"), *(p.with_suffix(".json") for p in MEDIA.glob("*.mp4"))]
    for stale in videos if args.video_only else [*MEDIA.glob(f"*{SUFFIX}"), *MEDIA.glob("*.json"), *videos]:
        stale.unlink(missing_ok=True)
    paths = [] if args.video_only else [make(demo) for demo in demos()]
    kinds = zip(video_stories(), VIDEO_KINDS, strict=True)
    paths += [make_video(story, kind, VOICES[i % 2]) for i, (story, kind) in enumerate(kinds)]
    for path in paths:
        print(f"{path.relative_to(MEDIA.parent.parent)}: {path.stat().st_size // 1024} KB")
    if not args.check:
        return 0
    heard = all([check_heard(path) for path in paths])
    return 0 if check_answers() and heard else 1


if __name__ == "__main__":
    sys.exit(main())
