"""The hand-written free-wording stories: well formed, split in two fixed halves, and readable by
`adasr-av eval` once free_stories.py has made them datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from adasr_av.data.dataset import read_dataset
from adasr_av.data.stories import generate_story

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "training" / "tiny" / "free_stories.jsonl"


def test_sixty_stories_in_two_halves_each_asking_last():
    stories = [json.loads(line) for line in STORIES.read_text().splitlines()]
    assert len(stories) >= 60 and len({s["id"] for s in stories}) == len(stories)
    halves = [s["half"] for s in stories]
    assert halves.count("choose") == halves.count("report") == len(stories) // 2
    for story in stories:
        assert story["text"].endswith(story["question"]) and story["question"].endswith("?")
        assert story["answer"].isdigit()
    # written by hand, not by the generator: no statement is one of its templates' sentences (a
    # question may be: "How many dollars does Rosa have now?" is how anyone would ask)
    generated = {x.text for i in range(300) for x in generate_story(0, "train", i).sentences}
    statements = [t + "." for s in stories for t in s["text"].removesuffix(s["question"]).split(". ") if t]
    assert len(statements) >= 100 and not any(t.replace("..", ".") in generated for t in statements)


def test_the_halves_become_eval_datasets(tmp_path):
    command = [sys.executable, str(ROOT / "training/tiny/free_stories.py"), "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True)
    choose = list(read_dataset(tmp_path / "choose.jsonl"))
    report = list(read_dataset(tmp_path / "report.jsonl"))
    assert len(choose) == len(report) == 30
    first = choose[0]
    assert first.answer == "35" and first.question == ""  # the question is spoken, last
    assert [c.text for c in first.chunks][-1] == "How many plums does Nina have?"
    assert all(a.t_emit < b.t_emit for a, b in zip(first.chunks, first.chunks[1:], strict=False))
