"""Why a story was answered wrong: one cause per wrong story, checked in a fixed order.

The causes, first match wins (an ASR error usually explains what follows it):

1. `format`: the protocol was broken or no answer was boxed;
2. `asr`: a number or holder name of the story is missing from the chunk text the model read;
3. `segmentation`: the chunks are merged or split against the story's sentences;
4. `holder`: the model's thoughts name a holder the story does not have;
5. `arithmetic`: a sum, difference, product or quotient in the thoughts is wrong;
6. `other`: none of the above (a state carried wrongly, the wrong question, ...).

Causes 2-4 need the story's sentences (every `synth` record has them); a record without them
can only be `format`, `arithmetic` or `other`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from rich.table import Table

from adasr_av.data.dataset import StreamedStory, holder_names, holders_in
from adasr_av.evaluation import StoryResult
from adasr_av.reasoner.normalize import normalized_words

CAUSES = ("format", "asr", "segmentation", "holder", "arithmetic", "other")

_EQUATION = re.compile(r"(\d+) ([-+×÷*/]) (\d+) = (\d+)")


def wrong_sums(text: str) -> list[str]:
    """The equations `a op b = c` in `text` that do not hold (chains are checked pair by pair)."""
    wrong = []
    for left, op, right, result in _EQUATION.findall(text.replace("−", "-")):
        a, b, c = int(left), int(right), int(result)
        value = {"+": a + b, "-": a - b, "×": a * b, "*": a * b}.get(op)
        if op in "÷/":
            value = a // b if b and a % b == 0 else None
        if value != c:
            wrong.append(f"{a} {op} {b} = {c}")
    return wrong


def story_keys(story: StreamedStory) -> Counter[str]:
    """The numbers and holder-name words the story's informative sentences say, with how often
    (normalised, names in lower case)."""
    names = {word.lower() for holder in holder_names(story.record) for word in holder.split()}
    keys: Counter[str] = Counter()
    for sentence in story.record.get("sentences", []):
        if sentence.get("role") != "distractor":
            keys.update(w for w in normalized_words(sentence["text"]) if w.isdigit() or w in names)
    return keys


def classify(story: StreamedStory, result: StoryResult) -> str | None:
    """The cause of a wrong answer (one of CAUSES), None for a right one."""
    if result.correct:
        return None
    if not result.valid or result.answer in (None, ""):
        return "format"
    heard = Counter(normalized_words(" ".join(c.text for c in story.chunks)))
    if story_keys(story) - heard:  # a number or name said more often than it was heard
        return "asr"
    if "sentences" in story.record and _segmented(story):
        return "segmentation"
    written = " ".join((*result.thoughts, result.deep))
    holders = holder_names(story.record)
    if holders and holders_in(written) - holders:
        return "holder"
    if wrong_sums(written):
        return "arithmetic"
    return "other"


def _segmented(story: StreamedStory) -> bool:
    """A chunk holds more or less than one sentence (speech mode's gold `sentences` per chunk)."""
    covered = [c.get("sentences") for c in story.record.get("chunks", [])]
    return any(c is not None and len(c) != 1 for c in covered)


def cause_counts(stories: Sequence[StreamedStory], results: Sequence[StoryResult]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for story, result in zip(stories, results, strict=True):
        cause = classify(story, result)
        counts[cause or "right"] += 1
    return counts


def causes_table(title: str, counts: Counter[str]) -> Table:
    total = sum(counts.values())
    table = Table(title=f"why wrong: {title}")
    table.add_column("cause")
    table.add_column("stories", justify="right")
    table.add_column("share of all", justify="right")
    for cause in ("right", *CAUSES):
        table.add_row(cause, str(counts[cause]), f"{counts[cause] / max(total, 1):.3f}")
    table.caption = f"{total} stories; first matching cause: " + " > ".join(CAUSES)
    return table
