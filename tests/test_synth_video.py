"""`adasr-av synth --mode video`: stories as mp4 clips (slides, speech or both), read back by the
real ASR and OCR; each sentence's gold on the chunk that delivered it first."""

from __future__ import annotations

import json
import random
from pathlib import Path

import av
import pytest

from adasr_av.cli import main
from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.data.teacher import gold_spans
from adasr_av.data.video_mode import Layout, as_clip, assign_first_arrival, draw_modalities
from adasr_av.encoders.ocr import sentence_key
from adasr_av.reasoner.protocol import SOURCE_TAGS
from adasr_av.types import TextChunk


def test_mixed_clips_give_some_sentences_only_by_speech_and_the_rest_only_on_screen():
    for story_id in (f"valid-{i:06d}" for i in range(40)):
        spoken, shown = draw_modalities("mixed", 5, 3, story_id)
        assert all(a != b for a, b in zip(spoken, shown, strict=True)) and any(spoken) and any(shown)
    assert draw_modalities("narrated", 3, 0, "x") == ([True] * 3, [True] * 3)
    assert draw_modalities("slideshow", 3, 0, "x") == ([False] * 3, [True] * 3)


def test_a_sentence_given_twice_is_gold_on_its_first_arrival_only():
    layout = Layout(((0.0, 3.0), (3.5, 6.0)), (True, True), (True, True), 7.0)
    chunks = [
        TextChunk("One.", 0.0, 2.0, 2.0, "ocr"),  # the slide was read before the speech ended
        TextChunk("One.", 0.0, 3.0, 3.4, "asr"),
        TextChunk("Two.", 3.5, 6.0, 6.2, "asr"),  # the speech came first this time
        TextChunk("Two.", 3.5, 6.0, 6.5, "ocr"),
    ]
    assert assign_first_arrival(layout, chunks) == [[0], [], [1], []]


def test_a_text_story_as_a_clip_gives_it_the_way_the_encoders_do():
    """Training's stand-in for rendering (`data.video_fraction`): the same gold, each shown
    sentence from the screen, a narrated one twice with its gold on the screen's (first) copy."""
    story = parse_record(text_record(generate_story(5, "train", 3)), "story", need_gold=True)
    texts = [c.text for c in story.chunks]
    rng = random.Random(0)
    slides = as_clip(story, "slideshow", rng)
    assert [c.text for c in slides.chunks] == texts and {c.source for c in slides.chunks} == {"ocr"}
    assert slides.thoughts == story.thoughts and slides.informative == story.informative
    narrated = as_clip(story, "narrated", rng)
    assert [c.source for c in narrated.chunks] == ["ocr", "asr"] * len(texts)
    assert narrated.thoughts[::2] == story.thoughts and set(narrated.thoughts[1::2]) == {""}
    assert not any(narrated.informative[1::2])
    mixed = as_clip(story, "mixed", rng)
    assert [c.text for c in mixed.chunks] == texts and mixed.thoughts == story.thoughts
    assert {c.source for c in mixed.chunks} == {"ocr", "asr"}
    spans = "".join(text for _, text in gold_spans(mixed, "uniform"))
    assert spans.count(SOURCE_TAGS["ocr"]) == sum(c.source == "ocr" for c in mixed.chunks)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "video"
    for kind in ("slideshow", "mixed"):
        command = ["synth", "--mode", "video", "--n", "1", "--seed", "4", "--splits", "valid",
                   "--clips", kind, "--workers", "1", "--out", str(out / kind), "--no-progress"]  # fmt: skip
        assert main(command) == 0
    return out


def record_of(clips: Path, kind: str) -> dict:
    (line,) = (clips / kind / "valid.jsonl").read_text().splitlines()
    return json.loads(line)


def test_a_slideshow_is_a_silent_mp4_read_by_ocr_sentence_by_sentence(clips):
    record = record_of(clips, "slideshow")
    story = generate_story(4, "valid", 0)
    assert record["mode"] == "video" and record["clip"] == "slideshow" and not any(record["spoken"])
    with av.open(str(clips / "slideshow" / record["video"])) as container:
        assert not container.streams.audio and container.streams.video[0].codec_context.name == "h264"
        assert (container.streams.video[0].width, container.streams.video[0].height) == (1280, 720)
    chunks = record["chunks"]
    assert {c["source"] for c in chunks} == {"ocr"}
    read = [sentence_key(c["text"]) for c in chunks]
    said = [sentence_key(s.text) for s in story.sentences]
    assert sum(a == b for a, b in zip(read, said, strict=False)) >= len(said) - 1  # OCR may slip once
    assert sorted(i for c in chunks for i in c["sentences"]) == list(range(len(said)))


def test_a_mixed_clip_needs_both_encoders(clips):
    record = record_of(clips, "mixed")
    assert any(record["spoken"]) and any(record["shown"])
    with av.open(str(clips / "mixed" / record["video"])) as container:
        assert container.streams.audio and container.streams.video
    sources = {c["source"] for c in record["chunks"]}
    assert sources == {"asr", "ocr"}
    times = [c["t_emit"] for c in record["chunks"]]
    assert times == sorted(times)  # merged by arrival
    for c in record["chunks"]:
        for i in c["sentences"]:  # a sentence's gold sits on a chunk of the way it was given
            assert (record["spoken"][i] and c["source"] == "asr") or (
                record["shown"][i] and c["source"] == "ocr"
            )


def test_a_rerun_into_the_same_folder_adds_nothing(clips, capsys):
    out = str(clips / "mixed")
    command = ["synth", "--mode", "video", "--n", "1", "--seed", "4", "--splits", "valid",
               "--clips", "mixed", "--workers", "1", "--out", out, "--no-progress"]  # fmt: skip
    assert main(command) == 0
    assert "0 stories written, 1 already there" in capsys.readouterr().out


def test_clip_kinds_are_checked(tmp_path, capsys):
    assert main(["synth", "--mode", "video", "--n", "1", "--clips", "movie", "--out", str(tmp_path)]) == 1
    assert "unknown clip kind 'movie'" in capsys.readouterr().err
    assert main(["synth", "--mode", "text", "--n", "1", "--clips", "mixed", "--out", str(tmp_path)]) == 1
    assert "--clips is only for --mode video" in capsys.readouterr().err
