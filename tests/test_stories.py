"""The story generator and its gold: checked by replaying every thought's arithmetic independently."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from num2words import num2words

from adasr_av.data.dataset import parse_record
from adasr_av.data.domains import HELD_OUT_DOMAIN, TRAIN_DOMAINS
from adasr_av.data.stories import MAX_VALUE, generate_story, multiply
from adasr_av.data.streamed import text_record
from adasr_av.data.teacher import NO_CHANGE, gold_spans
from adasr_av.data.wording import ITEMS, person_names
from adasr_av.reasoner.protocol import SKIP, parse_stream, validate_stream

N = 600


@pytest.fixture(scope="module")
def stories():
    return [generate_story(7, "train", i) for i in range(N)]


def _check_chain(chain: str) -> int:
    """Evaluate "a op b = c = ..." left to right; every step must equal the next; returns the last."""
    parts = [p.strip() for p in chain.split("=")]
    values = [eval(p.replace("×", "*").replace("÷", "//")) for p in parts]  # digits and operators only
    for expression, value, following in zip(parts, values, values[1:], strict=False):
        assert value == following, f"{expression} != {following} in {chain!r}"
    return values[-1]


def _replay(story) -> dict[str, int]:
    """Track states from the thoughts alone and check every computation in them: "Ruby: 67 + 15 =
    82" must start from Ruby's last value, and "Ruby = 82" must restate what the work gave."""
    state: dict[str, int] = {}
    for sentence in story.sentences:
        if sentence.role != "state" or sentence.thought.startswith("rate"):
            continue
        worked: dict[str, int] = {}
        for part in re.split(r"; |, ", sentence.thought):
            if ": " in part:
                name, chain = part.split(": ")
                assert int(re.match(r"\d+", chain).group()) == state[name], (story.id, part, state)
                worked[name] = _check_chain(chain)
            elif re.fullmatch(r"[\d ×+=]+", part):  # a product worked out before it is added
                _check_chain(part)
            else:
                name, value = part.split(" = ")
                assert name not in worked or worked[name] == int(value), (story.id, part)
                state[name] = int(value)
    return state


def test_same_seed_same_story_and_splits_differ():
    assert generate_story(3, "test", 5) == generate_story(3, "test", 5)
    assert generate_story(3, "test", 5) != generate_story(3, "test", 6)
    assert generate_story(3, "test", 5).text != generate_story(3, "valid", 5).text
    with pytest.raises(ValueError, match="unknown split"):
        generate_story(0, "dev", 0)


def test_shapes_and_ranges(stories):
    lengths = Counter(len(s.sentences) for s in stories)  # as spoken
    assert min(lengths) == 3 and max(lengths) == 12
    assert all(0 <= s.answer <= MAX_VALUE for s in stories)
    assert all(sum(x.role == "distractor" for x in s.sentences) <= 3 for s in stories)
    assert {s.domain for s in stories} == set(TRAIN_DOMAINS) and len(TRAIN_DOMAINS) >= 6
    positions = Counter(s.question_position for s in stories)
    assert positions["first"] > N / 4 and positions["last"] > N / 4
    for s in stories:
        spoken = [x for x in s.sentences if x.role == "question"]
        assert spoken == [] if s.question_position == "prompt" else [x.text for x in spoken] == [s.question]
        if s.question_position == "first":
            assert s.sentences[0].role == "question"
        if s.question_position == "last":
            assert s.sentences[-1].role == "question"


def test_every_thought_replays_to_the_answer(stories):
    for story in stories:
        state = _replay(story)
        recap = dict(part.split(" = ") for part in story.recap.split(", "))
        assert {k: int(v) for k, v in recap.items()} == state, story.id
        assert _check_chain(story.final.split(" = ", 1)[1]) == story.answer, story.id


def test_operations_numbers_and_distractors_all_occur(stories):
    thoughts = " ".join(x.thought for s in stories for x in s.sentences)
    for marker in (" + ", " - ", " × ", " ÷ ", "rate = ", "; ", "question: "):
        assert marker in thoughts
    texts = " ".join(s.text for s in stories)
    assert re.search(r"\b\d+\b", texts) and any(num2words(n) in texts for n in range(21, 100))
    distractors = [x for s in stories for x in s.sentences if x.role == "distractor"]
    assert len(distractors) > N / 2 and all(x.thought == "" for x in distractors)
    assert any(
        re.search(r"\d|\bone|two|three|four|five|six|seven|eight|nine|ten\b", x.text) for x in distractors
    )


def test_amounts_said_in_a_sentence_are_in_its_thought(stories):
    words = {num2words(n): n for n in range(2, 101)}  # "keeps one bag" is no amount
    for story in stories[:200]:
        for sentence in story.sentences:
            if sentence.role != "state" or "times as" in sentence.text or "divides" in sentence.text:
                continue
            said = [int(t) for t in re.findall(r"\b\d+\b", sentence.text)]
            said += [n for w, n in words.items() if re.search(rf"(?<![\w-]){w}(?![\w-])", sentence.text)]
            for n in said:
                assert re.search(rf"\b{n}\b", sentence.thought), (sentence.text, sentence.thought)


def test_ood_split_holds_out_a_domain_and_longer_stories():
    ood = [generate_story(7, "ood", i) for i in range(200)]
    assert {s.domain for s in ood} == {HELD_OUT_DOMAIN, *({s.domain for s in ood} - {HELD_OUT_DOMAIN})}
    assert sum(s.domain == HELD_OUT_DOMAIN for s in ood) > 50
    longer = [s for s in ood if s.domain != HELD_OUT_DOMAIN]
    assert longer and all(len(s.sentences) >= 13 for s in longer)
    assert all(generate_story(7, "train", i).domain != HELD_OUT_DOMAIN for i in range(300))


def test_multiply_splits_two_digit_numbers():
    assert multiply(37, 4) == "37 × 4 = 30 × 4 + 7 × 4 = 120 + 28 = 148"
    assert multiply(12, 11) == "12 × 11 = 132"
    assert multiply(60, 3) == "60 × 3 = 180"


@pytest.mark.parametrize("style", ["uniform", "adaptive"])
@pytest.mark.parametrize("mode", ["streaming", "read-then-think"])
def test_teacher_sequences_are_valid_protocol(stories, style, mode):
    for story in stories[:100]:
        streamed = parse_record(text_record(story), story.id, need_gold=True)
        text = "".join(t for _, t in gold_spans(streamed, style, mode))
        assert validate_stream(text, mode) == [], (story.id, text)
        parsed = parse_stream(text, mode)
        assert parsed.answer == str(story.answer)
        if mode == "streaming":
            kinds = [u.kind for u in parsed.units]
            distractor = [not i for i in streamed.informative]
            if style == "adaptive":
                assert [k == "skip" for k in kinds] == distractor
            else:
                assert "skip" not in kinds
                assert [u.text == NO_CHANGE for u in parsed.units] == distractor
        else:
            assert SKIP not in text and all(t in parsed.deep for t in streamed.thoughts if t)


def test_uniform_recaps_and_adaptive_is_short(stories):
    story = parse_record(text_record(stories[0]), "x", need_gold=True)
    uniform = parse_stream("".join(t for _, t in gold_spans(story, "uniform")))
    adaptive = parse_stream("".join(t for _, t in gold_spans(story, "adaptive")))
    assert uniform.deep.startswith(stories[0].recap) and adaptive.deep == stories[0].final


# --- broad wording --------------------------------------------------------------------------------


def test_the_default_wording_is_the_one_the_demo_records_were_made_with():
    # demos/media/wages.json was written by the generator before the broad wording existed
    record = json.loads((Path(__file__).parent.parent / "demos/media/wages.json").read_text())
    assert generate_story(record["seed"], "test", 10).text == record["text"]
    with pytest.raises(ValueError, match="unknown wording"):
        generate_story(0, "train", 0, "slang")


def test_broad_wording_draws_names_nouns_and_forms_widely():
    names = person_names()
    assert len(names) >= 2000 and set(names.values()) == {"he", "she"}
    broad = [generate_story(7, "train", i, "broad") for i in range(N)]
    holders = {h for s in broad for x in s.sentences for h in re.findall(r"([A-Z][a-z]+) =", x.thought)}
    assert len(holders) >= 300  # two stories in a hundred share a name at most, not one in four
    nouns = {n for s in broad for n in ITEMS.get(s.domain, ()) if f" {n}" in s.text}
    assert len(nouns) >= 30
    questions = Counter(re.sub(r"[A-Z][a-z]+", "X", s.question.split(" have")[0]) for s in broad)
    assert len(questions) >= 10
    vehicle = re.compile(r"(\w+ (?:bus|van|train|tram|ferry|coach|minibus|boat)) =")
    vehicles = {h for s in broad if s.domain == "travel" for h in vehicle.findall(s.recap)}
    assert len(vehicles) >= 30  # of the 80 colours and kinds


def test_broad_stories_keep_the_gold_exact():
    broad = [generate_story(7, "train", i, "broad") for i in range(N)]
    for story in broad:
        state = _replay(story)
        recap = dict(part.split(" = ") for part in story.recap.split(", "))
        assert {k: int(v) for k, v in recap.items()} == state, story.id
        assert _check_chain(story.final.split(" = ", 1)[1]) == story.answer, story.id
    # a person is "he" or "she" after a sentence about them, never "it"
    people = [s for s in broad if s.domain != "travel"]
    assert not any(x.text.startswith("It ") for s in people for x in s.sentences if x.role == "state")
