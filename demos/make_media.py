"""Regenerate demos/media/: short spoken stories from the project's story generator, with answers.

Each story is spoken by eSpeak NG in a fresh process (its output drifts with what a process spoke
before), so a rerun writes the same audio; a story with a pause is spoken sentence by sentence with
that much silence between them (more than Whisper's 0.8 s chunk pause: one text chunk a sentence).
Next to `NAME.mp3` goes `NAME.json`: the story record (text, sentences, question, answer) plus the
voice and rate, which `adasr-av run` reads for the reference answer. `--check` streams every file
through the bundled Whisper and compares the numbers it heard with the story's.

    .venv/bin/python demos/make_media.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from adasr_av.data.stories import generate_story

MEDIA = Path(__file__).resolve().parent / "media"
VOICE = "en+m7"  # the bundled voice that Whisper tiny.en hears best
WORDS_PER_MINUTE = 150  # the papers' speaking rate
SUFFIX = ".mp3"  # a WAV of 30 s at 16 kHz is ~1 MB; an MP3 a fraction of that


@dataclass(frozen=True)
class Demo:
    name: str
    seed: int
    index: int  # in the generator's test split; the question is the last sentence spoken
    voice: str = VOICE
    pause_s: float = 0.0  # silence between sentences (0: the story spoken in one go)


# Picked from the 4-7 sentence stories whose question comes last, one per domain, among those in
# which Whisper tiny.en hears every number (many an eSpeak name or first sentence comes out garbled).
DEMOS = (
    Demo("buses", seed=2, index=51),
    Demo("cookies", seed=1, index=50),
    Demo("points", seed=2, index=73),
    # The browser demo's story (tests/test_demo_browser.py): one holder, a rate, a pause after each
    # sentence, so that every chunk is one sentence as in the bundled reasoner's training; the
    # bundled tiny-streaming-sft answers it right through Whisper at every --step tried.
    Demo("wages", seed=8, index=10, voice="en-us", pause_s=1.0),
)


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
    story = generate_story(demo.seed, "test", demo.index)
    path = MEDIA / f"{demo.name}{SUFFIX}"
    texts = [s.text for s in story.sentences] if demo.pause_s else [story.text]
    speak_fresh(texts, path, demo.voice, demo.pause_s)
    record = {
        **story.to_record(),
        "text": story.text,
        "seed": demo.seed,
        "voice": demo.voice,
        "words_per_minute": WORDS_PER_MINUTE,
    }
    if demo.pause_s:
        record["pause_s"] = demo.pause_s
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def numbers(text: str) -> list[str]:
    """The numbers said in `text`, as digits: "twenty-six" and "26" both give "26"."""
    from whisper.normalizers import EnglishTextNormalizer

    return re.findall(r"\d+", EnglishTextNormalizer()(text))


def check(path: Path) -> bool:
    """Stream the file through the bundled Whisper as `adasr-av run` does; print what it heard."""
    from adasr_av.encoders.streaming_asr import transcribe_stream
    from adasr_av.encoders.whisper_backends import load_backend
    from adasr_av.media.file import read_audio

    heard = " ".join(c.text for c in transcribe_stream(read_audio(path), load_backend()))
    said = json.loads(path.with_suffix(".json").read_text())["text"]
    same = numbers(heard) == numbers(said)
    print(f"{path.name}\n  said:  {said}\n  heard: {heard}\n  numbers {'match' if same else 'DIFFER'}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="transcribe each file and compare numbers")
    args = parser.parse_args()
    paths = [make(demo) for demo in DEMOS]
    for path in paths:
        print(f"{path.relative_to(MEDIA.parent.parent)}: {path.stat().st_size // 1024} KB")
    return 0 if not args.check or all([check(path) for path in paths]) else 1


if __name__ == "__main__":
    sys.exit(main())
