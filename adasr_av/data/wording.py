"""Broad wording for the story generator: thousands of names, many objects, verbs and questions.

With the fixed templates of `domains.py` a model can pass by recalling 24 names and one noun per
topic; a person telling a story uses any name and any object. `broaden(domain, rng)` turns a
domain into one story's wording: the tracked noun drawn from the topic's list, each operation
with extra phrasings, each question in one of several forms, vehicles of any colour. Names come
from Faker's English-speaking locales (about 2,400 first names with their usual pronoun), so that
what the model learns is to copy a name it has not seen, not to recall one.
Data and one function; `stories.generate_story(..., wording="broad")` uses it.
"""

from __future__ import annotations

import importlib
import random
import re
from dataclasses import replace
from functools import cache

from adasr_av.data.domains import PEOPLE, Domain

NAME_LOCALES = ("en_US", "en_GB", "en_IN", "en_IE", "en_NZ", "en_PK", "en_TH", "en_KE", "en_NG")

ITEMS = {
    "shopping": (
        "apples", "pears", "plums", "lemons", "peaches", "mangoes", "apricots", "limes", "melons",
        "onions", "potatoes", "carrots", "tomatoes", "eggs", "cucumbers", "avocados", "figs",
        "cherries", "coconuts", "peppers",
    ),
    "cooking": (
        "cookies", "muffins", "cupcakes", "pancakes", "biscuits", "rolls", "pies", "doughnuts",
        "buns", "tarts", "scones", "brownies", "waffles", "dumplings", "pretzels",
    ),
    "school": (
        "stickers", "crayons", "markers", "erasers", "notebooks", "stamps", "badges", "cards",
        "marbles", "beads", "shells", "paper clips", "rulers", "postcards",
    ),
    "garden": ("flowers", "tulips", "roses", "daisies", "seedlings", "sunflowers", "lilies"),
}  # fmt: skip
COLOURS = ("red", "blue", "green", "yellow", "white", "black", "silver", "orange", "purple", "grey")
VEHICLES = ("bus", "van", "train", "tram", "ferry", "coach", "minibus", "boat")

EXTRA_OPS = {  # for domains whose holders are people; {items} is the story's noun
    "init": (
        "{P} owns {n} {items}.",
        "At first, {p} has {n} {items}.",
        "{P} starts out with {n} {items}.",
    ),
    "add": (
        "{S} gets {n} more {items}.",
        "{S} is given {n} {items}.",
        "{S} gets hold of another {n} {items}.",
    ),
    "remove": (
        "{S} loses {n} {items}.",
        "{S} gives away {n} {items}.",
        "{S} no longer has {n} of the {items}.",
    ),
    "transfer": ("{P} hands {n} {items} to {q}.", "{P} passes {n} {items} over to {q}."),
}
PERSON_QUESTION_FORMS = {
    "one": (
        "How many {items} does {p} have {when}?",
        "How many {items} has {p} got {when}?",
        "What is the number of {items} {p} has {when}?",
        "Can you tell me how many {items} {p} has {when}?",
        "So how many {items} does {p} have {when}?",
    ),
    "sum": (
        "How many {items} do {p} and {q} have together {when}?",
        "How many {items} do {p} and {q} have altogether {when}?",
        "What is the total number of {items} {p} and {q} have {when}?",
    ),
    "diff": (
        "How many more {items} does {p} have than {q} {when}?",
        "How many {items} more than {q} does {p} have {when}?",
        "By how many {items} is {p} ahead of {q} {when}?",
    ),
}


@cache
def person_names() -> dict[str, str]:
    """Name -> pronoun: the bundled 24 and Faker's first names of one gender (3-10 letters)."""
    male, female = set(), set()
    shape = re.compile(r"[A-Z][a-z]{2,9}")
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        male |= {n for n in getattr(provider, "first_names_male", ()) if shape.fullmatch(n)}
        female |= {n for n in getattr(provider, "first_names_female", ()) if shape.fullmatch(n)}
    names = {n: "he" for n in sorted(male - female)} | {n: "she" for n in sorted(female - male)}
    return PEOPLE | names


def pronoun_of(holder: str) -> str:
    """ "he" or "she" for a person, "it" for a thing ("the red bus"); Faker's names load only for a
    holder that is neither one of the bundled 24 nor a thing."""
    if holder in PEOPLE:
        return PEOPLE[holder]
    if holder.startswith("the "):
        return "it"
    return person_names().get(holder, "it")


def broaden(domain: Domain, rng: random.Random) -> Domain:
    """One story's wording of `domain`: its noun drawn, extra phrasings, one question form each."""
    items = rng.choice(ITEMS.get(domain.name, (domain.items,)))

    def with_items(template: str) -> str:
        return template.replace(domain.items, "{items}")

    ops = {kind: tuple(with_items(t) for t in templates) for kind, templates in domain.ops.items()}
    questions = {kind: with_items(t) for kind, t in domain.questions.items()}
    holders = domain.holders
    if domain.holders:  # vehicles: any colour and kind
        holders = tuple(f"the {c} {v}" for c in COLOURS for v in VEHICLES)
    else:
        for kind, extra in EXTRA_OPS.items():
            if kind in ops:
                ops[kind] += extra
        questions = {kind: rng.choice(forms) for kind, forms in PERSON_QUESTION_FORMS.items()}
    distractors = tuple(d for d in domain.distractors if items not in d)
    return replace(
        domain, items=items, holders=holders, ops=ops, questions=questions, distractors=distractors
    )
