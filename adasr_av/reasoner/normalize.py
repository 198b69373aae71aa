"""The one written form of chunk text the reasoner reads, whatever produced it.

Whisper writes an amount as "$35", "35 dollars", "thirty-five dollars" or "Thirty five dollars"
depending on the audio; the story generator writes number words or digits at random. The model
should not have to learn every spelling of every number, so each chunk and question goes through
`normalize_text` on its way into a span (`protocol.chunk_span`, `protocol.question_span`), the one
place both training sequences and live sessions build spans. The form:

- numbers as digits: number words ("sixty-seven", "a hundred and five", "two thousand") and digit
  groups ("1,200") become plain digits ("67", "105", "2000", "1200");
- currency as words after the amount: "$35" -> "35 dollars", "35¢" -> "35 cents", "5%" -> "5 percent";
- punctuation: typographic quotes, dashes and ellipses become ASCII (or go), brackets and quotes
  go, runs of spaces become one, no space before . , ? ! ; :
- casing: the first letter of each sentence is upper case; everything else stays as written
  (names keep their capitals).
"""

from __future__ import annotations

import re

__all__ = ["normalize_text", "normalized_words", "words_to_number"]

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000}
NUMBER_WORDS = set(UNITS) | set(TENS) | set(SCALES)

_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201c": "", "\u201d": "", '"': "", "\u2013": ", ",
        "\u2014": ", ", "\u2026": ".", "(": "", ")": "", "[": "", "]": "", "\u00a0": " ",
    }
)  # fmt: skip
_CURRENCY = re.compile(r"(?:\$\s*)+(\d[\d,]*(?:\.\d+)?)")
_CENTS = re.compile(r"(\d[\d,]*)\s?¢")
_PERCENT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_DIGIT_GROUPS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_TOKEN = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*|\s+|.", re.S)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,?!;:])")
_SENTENCE_START = re.compile(r"(^|[.?!]\s+)([a-z])")
_WORD = re.compile(r"[a-z']+|\d+")


def words_to_number(words: list[str]) -> int | None:
    """The value of a run of lower-case number words, None if the run is not one number.

    "sixty seven" -> 67, "one hundred and five" -> 105, "two thousand three hundred" -> 2300;
    "five six", "twenty thirty" and "thousand million" are not one number.
    """
    total, current = 0, 0
    below_hundred = None  # what the last word left below 100: None, "unit", "teen", "tens"
    last_scale = None  # the last thousand/million scale added to the total
    for i, word in enumerate(words):
        if word == "and":
            if i == 0 or words[i - 1] not in SCALES or i == len(words) - 1:
                return None
        elif word == "hundred":
            if below_hundred is None or current >= 100:
                return None
            current *= 100
            below_hundred = None
        elif word in SCALES:
            scale = SCALES[word]
            if current == 0 or (last_scale is not None and scale >= last_scale):
                return None
            total += current * scale
            current, below_hundred, last_scale = 0, None, scale
        elif word in TENS:
            if below_hundred is not None:
                return None
            current += TENS[word]
            below_hundred = "tens"
        elif word in UNITS:
            value = UNITS[word]
            if below_hundred in ("unit", "teen") or (below_hundred == "tens" and not 0 < value < 10):
                return None
            if value == 0 and len(words) > 1:
                return None
            current += value
            below_hundred = "teen" if value >= 10 else "unit"
        else:
            return None
    return total + current


def _numbers_to_digits(text: str) -> str:
    """Every maximal run of number words (over spaces, hyphens, "and", "a hundred") as digits;
    a run that is not one number ("five six") gives its longest leading number, then the rest."""
    tokens = _TOKEN.findall(text)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        run = _number_run(tokens, i)
        for size in range(len(run), 0, -1):
            value = words_to_number([word for word, _ in run[:size]])
            if value is not None:
                out.append(str(value))
                i = run[size - 1][1]
                break
        else:
            out.append(tokens[i])
            i += 1
    return "".join(out)


def _number_run(tokens: list[str], start: int) -> list[tuple[str, int]]:
    """The run of number words from `start`: (lower-case word, token index just past it) each.

    "and" joins only after a scale and before another number word; "a" counts as one only
    directly before a scale word ("a hundred").
    """
    run: list[tuple[str, int]] = []
    i = start
    while i < len(tokens):
        token = tokens[i]
        if token.isspace():
            if not run or token != " ":
                break
            i += 1
            continue
        parts = token.lower().split("-")
        following = _next_word(tokens, i + 1)
        if _is_number_word(token):
            run.extend((part, i + 1) for part in parts)
        elif parts == ["and"] and run and run[-1][0] in SCALES and _is_number_word(following):
            run.append(("and", i + 1))
        elif parts == ["a"] and not run and following is not None and following.lower() in SCALES:
            run.append(("one", i + 1))
        else:
            break
        i += 1
    return run


def _is_number_word(token: str | None) -> bool:
    return token is not None and all(part in NUMBER_WORDS for part in token.lower().split("-"))


def _next_word(tokens: list[str], i: int) -> str | None:
    """The next word token after single spaces, None if punctuation or the end comes first."""
    while i < len(tokens) and tokens[i] == " ":
        i += 1
    return tokens[i] if i < len(tokens) and tokens[i][:1].isalpha() else None


def normalize_text(text: str) -> str:
    """`text` in the reasoner's one written form (see the module docstring); idempotent."""
    text = text.translate(_TYPOGRAPHY)
    # spacing first, so that no rule below sees a form a second pass would see otherwise
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))
    text = _numbers_to_digits(text)
    text = _CURRENCY.sub(lambda m: f"{m.group(1)} dollars", text)
    text = _CENTS.sub(lambda m: f"{m.group(1)} cents", text)
    text = _PERCENT.sub(lambda m: f"{m.group(1)} percent", text)
    text = _DIGIT_GROUPS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = re.sub(r"\.{2,}", ".", text)  # after the spaces go: ". ." is an ellipsis too
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def normalized_words(text: str) -> list[str]:
    """The lower-case words and numbers of `text` in the one written form, punctuation dropped:
    what comparisons of said and heard text count."""
    return _WORD.findall(normalize_text(text).lower())
