"""Final answers: `\\boxed{...}` extraction and equivalence between a prediction and a reference."""

from __future__ import annotations

import math
import re
import string
from fractions import Fraction

_BOXED = "\\boxed"


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text`, nested braces included; None if there is none."""
    start = text.rfind(_BOXED + "{")
    while start != -1:
        depth, i = 0, start + len(_BOXED)
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j].strip()
        start = text.rfind(_BOXED + "{", 0, start)  # unbalanced: try an earlier one
    return None


_FRAC = re.compile(r"^\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$")
_TEXT = re.compile(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}")
_NUMBER_PUNCT = re.compile(r"(?<![\w.])-\d|\d\.\d")  # a sign or a decimal point to keep
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def parse_number(answer: str) -> float | None:
    """A number written as `1,234`, `-3.5`, `1/2`, `\\frac{1}{2}`, `50%` or `$12`; else None."""
    s = _TEXT.sub(r"\1", answer).strip().strip("$").replace("\\$", "").replace("\\!", "")
    s = s.replace(",", "").replace(" ", "").rstrip(".")
    percent = s.endswith("%") or s.endswith("\\%")
    s = s.removesuffix("\\%").removesuffix("%")
    if m := _FRAC.match(s):
        s = f"{m.group(1)}/{m.group(2)}"
    try:
        if "/" in s:
            num, den = s.split("/")
            if not (_NUMBER.match(num) and _NUMBER.match(den)):
                return None
            value = float(Fraction(num) / Fraction(den))
        elif _NUMBER.match(s):
            value = float(s)
        else:
            return None
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


def normalize_text(answer: str) -> str:
    """Lower case, no LaTeX text wrappers, articles, repeated spaces or punctuation (but signs and
    decimal points of numbers stay: "1.5 hours" is not "15 hours")."""
    s = _TEXT.sub(r"\1", answer).lower()
    s = _NUMBER_PUNCT.sub(lambda m: m.group(0).replace(".", "\0").replace("-", "\1"), s)
    s = s.translate(str.maketrans("", "", string.punctuation))
    s = s.replace("\0", ".").replace("\1", "-")
    words = [w for w in s.split() if w not in {"a", "an", "the"}]
    return " ".join(words)


def answers_match(prediction: str | None, reference: str) -> bool:
    """Numeric equality (relative tolerance 1e-6) when both are numbers, else normalised text."""
    if prediction is None:
        return False
    a, b = parse_number(prediction), parse_number(reference)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return normalize_text(prediction) == normalize_text(reference) != ""
