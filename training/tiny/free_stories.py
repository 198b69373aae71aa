"""The hand-written free-wording stories (free_stories.jsonl) as datasets for `adasr-av eval`.

    python training/tiny/free_stories.py --out data/free       # text: data/free/{choose,report}.jsonl
    python training/tiny/free_stories.py --out data/free-speech --voices en-us,piper:joe

Each story becomes a text-mode record: one chunk per sentence at 150 words per minute, the
question spoken last (as in the file), no gold thoughts (eval needs none). The "choose" half may
pick models and recipes; the "report" half is only ever reported.

With `--voices`, each story is spoken once per voice (eSpeak NG names or piper:joe), a sentence at
a time with 0.5 s between them at 160 words per minute, into <out>/audio/<id>-<voice>.wav, and
heard by the bundled streaming Whisper tiny.en: the records hold the ASR's chunks, as `adasr-av
synth --mode speech` writes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adasr_av.media.text import read_jsonl, split_sentences, text_stream
from adasr_av.sinks import chunk_record

STORIES = Path(__file__).with_name("free_stories.jsonl")
HALVES = ("choose", "report")


def free_record(story: dict) -> dict:
    chunks = text_stream(story["text"])
    return {
        "id": story["id"],
        "split": f"free-{story['half']}",
        "text": story["text"],
        "question": story["question"],
        "question_position": "last",
        "answer": story["answer"],
        "mode": "text",
        "chunks": [chunk_record(chunk) for chunk in chunks],
    }


SPOKEN_WPM = 160
PAUSE_S = 0.5


def spoken_record(story: dict, voice: str, out: Path, backend) -> dict:
    """The story spoken by `voice` and heard by the streaming ASR, as a speech-mode record."""
    import numpy as np

    from adasr_av.data.audio_file import write_audio
    from adasr_av.data.speech_mode import transcribe_samples
    from adasr_av.data.tts import synthesize
    from adasr_av.encoders.streaming_asr import StreamingASROptions
    from adasr_av.media.audio import seconds_to_samples

    pause = np.zeros(seconds_to_samples(PAUSE_S), dtype=np.float32)
    parts = []
    for sentence in split_sentences(story["text"]):
        parts += [synthesize(sentence, voice, SPOKEN_WPM), pause]
    samples = np.concatenate(parts[:-1])
    name = f"{story['id']}-{voice.replace(':', '-').replace('+', '-')}"
    (out / "audio").mkdir(parents=True, exist_ok=True)
    write_audio(out / "audio" / f"{name}.wav", samples)
    chunks = transcribe_samples(samples, backend, StreamingASROptions())
    return free_record(story) | {
        "id": name,
        "mode": "speech",
        "voice": voice,
        "audio": f"audio/{name}.wav",
        "chunks": [chunk_record(chunk) for chunk in chunks],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("data/free"))
    parser.add_argument("--voices", help="comma-separated voices: spoken records, heard by the ASR")
    parser.add_argument("--halves", default=",".join(HALVES), help="comma-separated halves")
    args = parser.parse_args()
    stories = [record for _, record in read_jsonl(STORIES, "free stories")]
    args.out.mkdir(parents=True, exist_ok=True)
    backend = None
    if args.voices:
        from adasr_av.encoders.whisper_backends import FasterWhisperBackend

        backend = FasterWhisperBackend(None)
    for half in args.halves.split(","):
        chosen = [s for s in stories if s["half"] == half]
        if backend is None:
            records = [free_record(s) for s in chosen]
        else:
            records = [spoken_record(s, v, args.out, backend) for v in args.voices.split(",") for s in chosen]
        path = args.out / f"{half}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        print(f"{len(records)} stories -> {path}")


if __name__ == "__main__":
    main()
