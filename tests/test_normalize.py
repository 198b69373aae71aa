"""One written form of chunk text: whatever spelling Whisper or the story generator chose for an
amount, a number or a sentence start, the reasoner reads the same characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from num2words import num2words

from adasr_av.reasoner.normalize import normalize_text, words_to_number
from adasr_av.reasoner.protocol import chunk_span, question_span


@given(st.integers(min_value=0, max_value=999_999_999))
def test_number_words_as_num2words_writes_them_become_digits(n):
    spoken = num2words(n).replace(",", "")  # "one thousand, two hundred" -> no comma
    assert normalize_text(f"Tom has {spoken} apples.") == f"Tom has {n} apples."


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        # how Whisper writes an amount, and how the generator does
        ("He earns $35 every hour.", "He earns 35 dollars every hour."),
        ("He earns thirty-five dollars every hour.", "He earns 35 dollars every hour."),
        ("He earns Thirty five dollars every hour.", "He earns 35 dollars every hour."),
        ("He earns 35 dollars every hour.", "He earns 35 dollars every hour."),
        ("It costs $1,200.", "It costs 1200 dollars."),
        ("A pen costs 40¢.", "A pen costs 40 cents."),
        ("Prices rise by 5%.", "Prices rise by 5 percent."),
        ("She has a hundred and five plums.", "She has 105 plums."),
        ("Two thousand three hundred people came.", "2300 people came."),
        # punctuation and casing
        ("  “Now” , he said…  ", "Now, he said."),
        ("how many plums does nina have? she ate four.", "How many plums does nina have? She ate 4."),
        ("Tom (the baker) sells bread - and cakes.", "Tom the baker sells bread - and cakes."),
        # words that only look like numbers, and runs that are not one number
        ("A cat and a dog.", "A cat and a dog."),
        ("Someone ate one of them.", "Someone ate 1 of them."),
        ("He said five six.", "He said 5 6."),
        ("Twenty twelve.", "20 12."),
        ("One and two.", "1 and 2."),
    ],
)
def test_written_forms(written, expected):
    assert normalize_text(written) == expected


PIECES = [*"abc XYZ.,?!$%¢-'019", "one", "hundred", " and ", "a ", "thirty"]


@given(st.lists(st.sampled_from(PIECES), max_size=20).map("".join))
def test_normalising_twice_changes_nothing(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_words_to_number_rejects_what_is_not_one_number():
    assert words_to_number(["sixty", "seven"]) == 67
    assert words_to_number(["one", "hundred", "and", "five"]) == 105
    for words in (["five", "six"], ["twenty", "thirty"], ["thousand", "million"], ["hundred"], ["and"]):
        assert words_to_number(words) is None, words


def test_spans_read_the_normalised_text_for_training_and_live_alike():
    # the generator's words and Whisper's symbols give the same span, so the same tokens
    assert chunk_span("He earns thirty-five dollars.") == chunk_span("He earns $35.")
    assert question_span("how many dollars does Tom have?") == question_span(
        "How many dollars does Tom have?"
    )
