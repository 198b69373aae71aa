"""Why a story went wrong: each cause found on a story built to have it, in the documented order."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from adasr_av.data.asr_channel import ASRChannel, apply_channel, measure_channel
from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.error_analysis import cause_counts, classify, wrong_sums
from adasr_av.evaluation import StoryResult
from adasr_av.reasoner.normalize import normalized_words


def result(correct=False, valid=True, answer="7", thoughts=(), deep="") -> StoryResult:
    return StoryResult(
        id="s", correct=correct, valid=valid, stream_tokens=0, deep_tokens=0, distractor_chunks=None,
        distractor_skips=None, informative_chunks=None, informative_skips=None, answer_latency_s=0.0,
        max_lag_s=0.0, overflow_s=0.0, answer=answer, reference="8", thoughts=tuple(thoughts), deep=deep,
    )  # fmt: skip


SENTENCES = [
    {"text": "Tom has five apples.", "role": "state", "thought": "Tom = 5"},
    {"text": "The sky is blue.", "role": "distractor", "thought": ""},
    {"text": "He buys three more apples.", "role": "state", "thought": "Tom: 5 + 3 = 8; Tom = 8"},
    {"text": "How many apples does Tom have now?", "role": "question", "thought": "question: Tom"},
]


def story(*texts: str, sentences_per_chunk=None):
    """The four sentences above as the chunks `texts` (default: one chunk per sentence)."""
    texts = texts or tuple(s["text"] for s in SENTENCES)
    covered = sentences_per_chunk or [[i] for i in range(len(texts))]
    chunks = [
        {"text": t, "t_start": i, "t_end": i + 1, "t_emit": i + 1, "sentences": c, "informative": True,
         "thought": ""}
        for i, (t, c) in enumerate(zip(texts, covered, strict=True))
    ]  # fmt: skip
    record = {"id": "s", "sentences": SENTENCES, "question": "", "question_position": "last",
              "answer": "8", "chunks": chunks}  # fmt: skip
    return parse_record(record, "test", need_gold=True)


def test_wrong_sums_checks_each_equation():
    assert wrong_sums("Tom: 21 + 756 = 777; 63 × 12 = 756; 12 - 5 = 7; 12 ÷ 4 = 3") == []
    assert wrong_sums("Tom: 21 + 756 = 778; 63 × 12 = 755") == ["21 + 756 = 778", "63 × 12 = 755"]


def test_each_cause_on_a_story_made_to_have_it():
    clean = story()
    assert classify(clean, result(correct=True)) is None
    assert classify(clean, result(valid=False)) == "format"
    assert classify(clean, result(answer=None)) == "format"
    # what the model read lost a number, or a holder: the ASR changed it
    assert classify(story("Tom has nine apples.", *[s["text"] for s in SENTENCES[1:]]), result()) == "asr"
    assert classify(story("Tim has 5 apples.", *[s["text"] for s in SENTENCES[1:]]), result()) == "asr"
    # the distractor's number is not the story's: a changed one explains nothing
    assert classify(story(*[s["text"] for s in SENTENCES]), result()) == "other"
    # two sentences in one chunk
    merged = story(
        "Tom has 5 apples. The sky is blue.", *[s["text"] for s in SENTENCES[2:]],
        sentences_per_chunk=[[0, 1], [2], [3]],
    )  # fmt: skip
    assert classify(merged, result()) == "segmentation"
    # the thoughts bind a holder the story has not got; a wrong sum; neither
    assert classify(clean, result(thoughts=["Zoltan = 5"])) == "holder"
    assert classify(clean, result(thoughts=["Tom: 5 + 3 = 9; Tom = 9"])) == "arithmetic"
    assert classify(clean, result(thoughts=["Tom: 5 - 3 = 2; Tom = 2"])) == "other"
    counts = cause_counts([clean, clean], [result(correct=True), result(valid=False)])
    assert counts == {"right": 1, "format": 1}


SPOKEN = {
    "id": "s1",
    "mode": "speech",
    "sentences": [
        {"text": "Tom has five apples.", "role": "state", "thought": "Tom = 5"},
        {"text": "He buys three more apples.", "role": "state", "thought": "Tom: 5 + 3 = 8; Tom = 8"},
        {"text": "How many apples does Tom have now?", "role": "question", "thought": "question: Tom"},
    ],
    "chunks": [
        {"text": "Tom has 5 apples, he buys 3 more apples.", "sentences": [0, 1]},
        {"text": "How many apples does Tom have how?", "sentences": [2]},
    ],
}


def test_the_channel_counts_what_the_asr_did():
    channel = measure_channel([SPOKEN])
    assert channel.stories == 1
    # 12 ordinary reference words (2 + 4 + 6: "tom" is a holder, 5 and 3 are numbers); one heard wrong
    assert channel.words == 12
    assert channel.substitution == pytest.approx(1 / 12)
    assert channel.confusions == {"now": {"how": 1}}
    assert channel.merge == pytest.approx(1 / 3)  # the second sentence shares the first one's chunk
    assert channel.end_as_comma == 0 and channel.end_dropped == 0
    with pytest.raises(Exception, match="speech-mode"):
        measure_channel([dict(SPOKEN, mode="text")])


def test_the_channel_keeps_numbers_and_names_and_the_gold_follows_the_sentences():
    confusions = {w: {"wug": 1} for w in ("has", "more", "many", "does", "buys", "gets")}
    channel = ASRChannel(substitution=0.5, merge=0.3, split=0.3, end_dropped=0.5, confusions=confusions)
    for index in range(20):
        clean = parse_record(text_record(generate_story(5, "train", index)), "t", need_gold=True)
        noisy = apply_channel(clean, channel, random.Random(index))
        digits = [w for c in clean.chunks for w in normalized_words(c.text) if w.isdigit()]
        assert [w for c in noisy.chunks for w in normalized_words(c.text) if w.isdigit()] == digits
        # every thought survives, in order, on the chunk that completes its sentence
        assert ". ".join(t for t in noisy.thoughts if t) == ". ".join(t for t in clean.thoughts if t)
        assert all(a.t_emit <= b.t_emit for a, b in zip(noisy.chunks, noisy.chunks[1:], strict=False))
    assert apply_channel(clean, ASRChannel(), random.Random(0)).chunks == tuple(
        replace(c, text=c.text) for c in noisy_free(clean)
    )


def noisy_free(clean):
    """A channel with no errors changes only the written form (normalised numbers)."""
    from adasr_av.reasoner.normalize import normalize_text

    return [replace(c, text=normalize_text(c.text)) for c in clean.chunks]
