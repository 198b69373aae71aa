"""Final answers: \\boxed{} extraction, number parsing and answer equivalence."""

from __future__ import annotations

import pytest

from adasr_av.reasoner.answer import answers_match, extract_boxed, normalize_text, parse_number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("So the answer is \\boxed{42}.", "42"),
        ("\\boxed{ 42 }", "42"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("x = \\boxed{\\sqrt{\\frac{a}{b}} + {c}} done", "\\sqrt{\\frac{a}{b}} + {c}"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("\\boxed{1} and an unfinished \\boxed{2", "1"),
        ("\\boxed{\\frac{1}{2}", None),
        ("\\boxed{}", ""),
        ("no box here: {42}", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("42", 42.0),
        ("-3.5", -3.5),
        ("+7", 7.0),
        (".5", 0.5),
        ("12.", 12.0),
        ("1e3", 1000.0),
        ("1,234", 1234.0),
        ("1,234.5", 1234.5),
        ("1/2", 0.5),
        ("-1/4", -0.25),
        ("\\frac{1}{2}", 0.5),
        ("\\dfrac{3}{4}", 0.75),
        ("\\tfrac{-1}{2}", -0.5),
        ("50%", 0.5),
        ("50\\%", 0.5),
        ("$12", 12.0),
        ("\\$12.50", 12.5),
        ("$\\frac{1}{4}$", 0.25),
        ("\\text{7}", 7.0),
        (" 6 ", 6.0),
        ("twelve", None),
        ("12 apples", None),
        ("1/0", None),
        ("1/2/3", None),
        ("a/b", None),
        ("%", None),
        ("", None),
    ],
)
def test_parse_number(answer, expected):
    assert parse_number(answer) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("The Blue Car!", "blue car"),
        ("an  apple, a pear", "apple pear"),
        ("\\text{Paris}", "paris"),
        ("the", ""),
    ],
)
def test_normalize_text(answer, expected):
    assert normalize_text(answer) == expected


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("1,234", "1234"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{1}{2}", "1/2"),
        ("1/2", "0.5"),
        ("$12", "12"),
        ("\\$12", "12"),
        ("50%", "0.5"),
        ("6.0", "6"),
        ("6", "6.000"),
        ("1/3", "0.3333333333"),  # within the relative tolerance of 1e-6
        ("Paris", "paris"),
        ("The blue car.", "blue car"),
        ("an apple", "Apple!"),
        ("\\text{Blue}", "blue"),
    ],
)
def test_answers_match(prediction, reference):
    assert answers_match(prediction, reference)


@pytest.mark.parametrize(
    "prediction, reference",
    [
        (None, "6"),
        (None, ""),
        ("7", "6"),
        ("-6", "6"),
        ("0.333", "1/3"),  # outside the tolerance
        ("50%", "50"),  # 0.5 is not 50
        ("12", "twelve"),
        ("red", "blue"),
        ("blue car", "blue bus"),
        ("", ""),  # an empty answer never matches
        ("the", "a"),  # nothing left after normalisation
    ],
)
def test_answers_do_not_match(prediction, reference):
    assert not answers_match(prediction, reference)


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("1.5 hours", "15 hours"),
        ("-5 degrees", "5 degrees"),
        ("x = -3", "x = 3"),
    ],
)
def test_numbers_inside_text_answers_keep_their_sign_and_decimal_point(prediction, reference):
    assert not answers_match(prediction, reference)
