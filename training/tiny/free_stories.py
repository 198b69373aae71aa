"""The hand-written free-wording stories (free_stories.jsonl) as datasets for `adasr-av eval`.

    python training/tiny/free_stories.py --out data/free       # text: data/free/{choose,report}.jsonl

Each story becomes a text-mode record: one chunk per sentence at 150 words per minute, the
question spoken last (as in the file), no gold thoughts (eval needs none). The "choose" half may
pick models and recipes; the "report" half is only ever reported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adasr_av.media.text import read_jsonl, text_stream
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("data/free"))
    args = parser.parse_args()
    stories = [record for _, record in read_jsonl(STORIES, "free stories")]
    args.out.mkdir(parents=True, exist_ok=True)
    for half in HALVES:
        chosen = [free_record(s) for s in stories if s["half"] == half]
        path = args.out / f"{half}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
        print(f"{len(chosen)} stories -> {path}")


if __name__ == "__main__":
    main()
