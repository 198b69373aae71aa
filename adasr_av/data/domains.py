"""Wording of the spoken arithmetic stories: one `Domain` per topic, data only.

Placeholders: {S} the subject as spoken (a name, or a pronoun right after a sentence about the same
holder), {P}/{Q} holders by name, {p}/{q} the same mid-sentence, {poss} the subject's possessive,
{n} an amount, {k} a count (2..12), {items} the domain's plural noun. `garden` is held out of
training for the out-of-distribution split.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Domain:
    name: str
    items: str  # plural noun of the tracked quantity
    holders: tuple[str, ...] = ()  # non-person holders ("the red bus"); empty: people
    ops: dict[str, tuple[str, ...]] = field(default_factory=dict)
    questions: dict[str, str] = field(default_factory=dict)  # one, sum, diff
    distractors: tuple[str, ...] = ()


PEOPLE = {
    "Tom": "he", "Ann": "she", "Leo": "he", "Mia": "she", "Sam": "he", "Eva": "she",
    "Ben": "he", "Zoe": "she", "Max": "he", "Lily": "she", "Jack": "he", "Emma": "she",
    "Noah": "he", "Ella": "she", "Luke": "he", "Ruby": "she", "Owen": "he", "Nora": "she",
    "Adam": "he", "Lucy": "she", "Ivan": "he", "Sara": "she", "Paul": "he", "Rosa": "she",
}  # fmt: skip
POSSESSIVE = {"he": "his", "she": "her", "it": "its"}

PERSON_QUESTIONS = {
    "one": "How many {items} does {p} have {when}?",
    "sum": "How many {items} do {p} and {q} have together {when}?",
    "diff": "How many more {items} does {p} have than {q} {when}?",
}

COMMON_DISTRACTORS = (
    "The weather is sunny and warm today.",
    "{P} is {n} years old.",
    "The shop on the corner opens at {k} o'clock.",
    "{P} also has {n} pencils in a drawer.",
    "{P} lives {n} kilometres from the city.",
    "A song on the radio lasts {k} minutes.",
    "{P} likes the colour blue more than green.",
    "There are {n} trees in the park nearby.",
)

DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            "shopping",
            "apples",
            ops={
                "init": ("{P} has {n} apples.", "{P} starts the day with {n} apples."),
                "add": ("{S} buys {n} more apples at the market.", "{S} buys another {n} apples."),
                "remove": ("{S} eats {n} of {poss} apples.", "{S} drops {n} apples on the way home."),
                "transfer": ("{P} gives {n} apples to {q}.", "{P} sells {n} apples to {q}."),
                "pack": ("{S} buys {k} bags with {n} apples in each bag.",),
                "scale": ("{S} buys more until {S2} has {k} times as many apples as before.",),
                "divide": ("{S} splits {poss} apples into {k} equal bags and keeps only one bag.",),
                "rate": ("{S} buys {n} apples every day.", "{S} does this for {k} days."),
            },
            questions=PERSON_QUESTIONS,
            distractors=("An orange costs {n} cents at the market.", "{P} also buys {n} bananas."),
        ),
        Domain(
            "money",
            "dollars",
            ops={
                "init": ("{P} has {n} dollars.", "{P} has {n} dollars in a wallet."),
                "add": ("{S} earns {n} dollars.", "{S} finds {n} dollars in a coat."),
                "remove": ("{S} spends {n} dollars on lunch.", "{S} pays {n} dollars for a book."),
                "transfer": ("{P} gives {n} dollars to {q}.", "{P} lends {n} dollars to {q}."),
                "pack": ("{S} sells {k} cakes for {n} dollars each.",),
                "scale": ("{S} invests the money and ends up with {k} times as much.",),
                "divide": ("{S} splits {poss} money equally into {k} envelopes and keeps one.",),
                "rate": ("{S} earns {n} dollars every hour.", "{S} works for {k} hours."),
            },
            questions=PERSON_QUESTIONS,
            distractors=("The bank opens at {k} o'clock.", "{P} owes nobody {n} cents."),
        ),
        Domain(
            "travel",
            "passengers",
            holders=("the red bus", "the blue bus", "the green bus"),
            ops={
                "init": ("{P} carries {n} passengers.", "There are {n} passengers on {p}."),
                "add": ("At the next stop, {n} passengers get on {p}.", "{n} more passengers board {p}."),
                "remove": ("Then {n} passengers get off {p}.", "At the station, {n} passengers leave {p}."),
                "transfer": ("{n} passengers move from {p} to {q}.",),
                "pack": ("{k} groups of {n} passengers get on {p}.",),
                "scale": ("At the fair, {p} fills up until it carries {k} times as many passengers.",),
                "rate": ("{n} passengers get on {p} at every stop.", "{P} makes {k} more stops."),
            },
            questions={
                "one": "How many passengers are on {p} {when}?",
                "sum": "How many passengers are on {p} and {q} together {when}?",
                "diff": "How many more passengers are on {p} than on {q} {when}?",
            },
            distractors=("The driver of {p} is {n} years old.", "{P} is painted in bright colours."),
        ),
        Domain(
            "cooking",
            "cookies",
            ops={
                "init": ("{P} bakes {n} cookies.", "{P} has {n} cookies in a jar."),
                "add": ("{S} bakes {n} more cookies.", "{S} gets {n} cookies from a neighbour."),
                "remove": ("{S} eats {n} of the cookies.", "{S} burns {n} cookies and throws them away."),
                "transfer": ("{P} gives {n} cookies to {q}.", "{P} shares {n} cookies with {q}."),
                "pack": ("{S} bakes {k} trays with {n} cookies on each tray.",),
                "scale": ("{S} keeps baking until {S2} has {k} times as many cookies.",),
                "divide": ("{S} puts {poss} cookies into {k} equal boxes and keeps one box.",),
                "rate": ("{S} bakes {n} cookies every hour.", "{S} bakes for {k} hours."),
            },
            questions=PERSON_QUESTIONS,
            distractors=("The oven is heated to {n} degrees.", "The recipe needs {k} eggs."),
        ),
        Domain(
            "school",
            "stickers",
            ops={
                "init": ("{P} has {n} stickers.", "{P} collects {n} stickers."),
                "add": ("{S} gets {n} stickers from the teacher.", "{S} wins {n} stickers in a quiz."),
                "remove": ("{S} loses {n} stickers.", "{S} uses {n} stickers on a poster."),
                "transfer": ("{P} gives {n} stickers to {q}.", "{P} swaps away {n} stickers to {q}."),
                "pack": ("{S} gets {k} packs with {n} stickers in each pack.",),
                "scale": ("By the end of term {S2} has {k} times as many stickers.",),
                "divide": ("{S} sorts {poss} stickers into {k} equal piles and keeps one pile.",),
                "rate": ("{S} earns {n} stickers every week.", "{S} keeps this up for {k} weeks."),
            },
            questions=PERSON_QUESTIONS,
            distractors=("The class has {n} desks.", "{P} reads {n} pages of a book."),
        ),
        Domain(
            "sport",
            "points",
            ops={
                "init": ("{P} has {n} points.", "{P} starts the season with {n} points."),
                "add": ("{S} scores {n} points in the next game.", "{S} earns {n} points."),
                "remove": ("{S} loses {n} points for a foul.", "{S} gets a penalty of {n} points."),
                "transfer": ("{P} loses {n} points to {q}.",),
                "pack": ("{S} wins {k} games worth {n} points each.",),
                "scale": ("A bonus round multiplies {poss} points by {k}.",),
                "divide": ("A penalty divides {poss} points by {k}.",),
                "rate": ("{S} scores {n} points every game.", "{S} plays {k} more games."),
            },
            questions=PERSON_QUESTIONS,
            distractors=("The stadium has {n} rows of seats.", "The match starts at {k} o'clock."),
        ),
        Domain(
            "garden",
            "flowers",
            ops={
                "init": ("{P} has {n} flowers.", "{P} grows {n} flowers."),
                "add": ("{S} plants {n} more flowers.", "{S} buys {n} flowers at the nursery."),
                "remove": ("{S} picks {n} flowers for a vase.", "{S} loses {n} flowers to the frost."),
                "transfer": ("{P} gives {n} flowers to {q}.",),
                "pack": ("{S} plants {k} rows with {n} flowers in each row.",),
                "scale": ("After the rain {S2} has {k} times as many flowers.",),
                "divide": ("{S} splits {poss} flowers into {k} equal pots and keeps one pot.",),
                "rate": ("{S} plants {n} flowers every day.", "{S} does this for {k} days."),
            },
            questions=PERSON_QUESTIONS,
            distractors=("The garden fence is {n} metres long.", "{P} waters the roses at {k} o'clock."),
        ),
    )
}
HELD_OUT_DOMAIN = "garden"
TRAIN_DOMAINS = tuple(name for name in DOMAINS if name != HELD_OUT_DOMAIN)
