"""What is known about a media file from a JSON file beside it: `story.mp3` + `story.json`.

The sidecar is a story record (as `demos/make_media.py` writes it: the story's text, `question`,
`question_position` and `answer`), so that `adasr-av run story.mp3` can ask the question the audio
does not speak and say whether its answer was right.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from adasr_av.data.dataset import prompt_question
from adasr_av.errors import AdasrError


@dataclass(frozen=True)
class Sidecar:
    path: Path
    question: str  # for the prompt; "" when the audio speaks it
    answer: str | None


def read_sidecar(media: str | Path) -> Sidecar | None:
    """The sidecar of a media file, or None when it has none (or `media` is no file: mic, a URL)."""
    media = Path(media)
    path = media.with_suffix(".json")
    if not media.is_file() or path == media or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdasrError(f"sidecar {path}: not readable JSON ({err})") from None
    if not isinstance(record, dict):
        raise AdasrError(f"sidecar {path}: expected a JSON object")
    has_question = "question" in record and "question_position" in record
    answer = record.get("answer")
    return Sidecar(
        path, prompt_question(record) if has_question else "", None if answer is None else str(answer)
    )
