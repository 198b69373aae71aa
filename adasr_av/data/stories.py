"""Spoken arithmetic stories with gold streaming thoughts, deterministic by seed.

A story tracks one quantity (apples, dollars, passengers...) held by one to three holders. Each
sentence sets or changes a state, distracts, or asks the question. Its gold thought is the state
update it causes, written so a small model can compute it left to right: digits always, a product
of a two-digit number split into tens and units ("37 × 4 = 30 × 4 + 7 × 4 = 120 + 28 = 148"), and
every state restated after each update ("Leo = 12, Ruby = 268"), so that looking a state up is
copying what follows a name in the last thought.
The teacher styles that turn these thoughts into training sequences live in `teacher.py`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Literal

from num2words import num2words

from adasr_av.data.domains import (
    COMMON_DISTRACTORS,
    DOMAINS,
    HELD_OUT_DOMAIN,
    PEOPLE,
    POSSESSIVE,
    TRAIN_DOMAINS,
    Domain,
)
from adasr_av.data.wording import broaden, person_names, pronoun_of
from adasr_av.timing import DEFAULT_WORDS_PER_MINUTE, SECONDS_PER_MINUTE, speech_seconds

Role = Literal["state", "distractor", "question"]
QuestionPosition = Literal["first", "last", "prompt"]
Wording = Literal["templates", "broad"]
WORDINGS = ("templates", "broad")
SPLITS = ("train", "valid", "test", "ood")
MAX_VALUE = 2000  # answers and states never exceed this
MAX_AMOUNT = 100  # amounts said in a sentence
MAX_COUNT = 12  # multipliers and divisors


@dataclass(frozen=True)
class Sentence:
    text: str
    role: Role
    thought: str  # the state update in digits; "" for a distractor


@dataclass(frozen=True)
class Story:
    id: str
    split: str
    domain: str
    sentences: tuple[Sentence, ...]  # as spoken; without the question when it is in the prompt
    question: str
    question_position: QuestionPosition
    answer: int
    final: str  # the computation of the answer from the final states: "Tom + Ann = 74 + 38 = 112"
    recap: str  # the final state of every holder: "Tom = 74, Ann = 38"

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    def to_record(self) -> dict:
        record = asdict(self)
        record["sentences"] = [asdict(s) for s in self.sentences]
        record["answer"] = str(self.answer)
        return record


def multiply(a: int, b: int) -> str:
    """`a × b` worked out: a two-digit `a` is split into tens and units."""
    if a <= MAX_COUNT or a % 10 == 0 or a >= 100:
        return f"{a} × {b} = {a * b}"
    tens, units = a - a % 10, a % 10
    return f"{a} × {b} = {tens} × {b} + {units} × {b} = {tens * b} + {units * b} = {a * b}"


# --- drafting: what happens, before the wording ---------------------------------------------------


@dataclass
class _Draft:
    kind: str  # init, add, ..., rate (first sentence), rate2, distractor, question
    template: str
    thought: str
    holder: str | None = None
    other: str | None = None
    n: int = 0
    k: int = 0


class _Simulation:
    """Draws operations that keep every state within 0..MAX_VALUE and records their thoughts."""

    def __init__(self, rng: random.Random, domain: Domain, holders: list[str]):
        self.rng, self.domain = rng, domain
        self.holders = holders
        self.state: dict[str, int] = {}
        self.drafts: list[_Draft] = []

    def template(self, kind: str, index: int | None = None) -> str:
        options = self.domain.ops[kind]
        return options[index] if index is not None else self.rng.choice(options)

    def init(self, holder: str) -> None:
        n = self.rng.randint(1, MAX_AMOUNT)
        self.state[holder] = n
        self.drafts.append(_Draft("init", self.template("init"), self._state_line(), holder, n=n))

    def _state_line(self) -> str:
        """Every holder's value so far, in the order they were introduced."""
        return ", ".join(f"{_key(h)} = {v}" for h, v in self.state.items())

    def _update(self, holders: str | tuple[str, ...], work: str | tuple[str, ...]) -> str:
        """A state update: the work from the old value, then the whole new state restated
        ("Ruby: 67 + 15 = 82; Leo = 12, Ruby = 82"), so the state to look anything up in is always
        the last thought's, and the name to find a value by is right before it."""
        if isinstance(holders, str):
            holders, work = (holders,), (work,)
        steps = "; ".join(f"{_key(h)}: {w}" for h, w in zip(holders, work, strict=True))
        return f"{steps}; {self._state_line()}"

    def feasible(self, slots: int) -> list[str]:
        ready = list(self.state)
        kinds = ["add", "remove", "pack"]
        if len(ready) >= 2 and "transfer" in self.domain.ops:
            kinds.append("transfer")
        if any(v <= MAX_AMOUNT for v in self.state.values()) and "scale" in self.domain.ops:
            kinds.append("scale")
        if any(self._divisors(v) for v in self.state.values()) and "divide" in self.domain.ops:
            kinds.append("divide")
        if slots >= 2:
            kinds.append("rate")
        return kinds

    @staticmethod
    def _divisors(value: int) -> list[int]:
        return [k for k in range(2, MAX_COUNT + 1) if value % k == 0 and value // k <= MAX_COUNT]

    def op(self, kind: str) -> None:
        rng, state = self.rng, self.state
        holder = rng.choice(list(state))
        s = state[holder]
        if kind == "add":
            if s == MAX_VALUE:
                return self.op("remove")
            n = rng.randint(1, min(MAX_AMOUNT, MAX_VALUE - s))
            state[holder] = s + n
            self._add(kind, self._update(holder, f"{s} + {n} = {s + n}"), holder, n=n)
        elif kind == "remove":
            if s == 0:
                return self.op("add")
            n = rng.randint(1, min(MAX_AMOUNT, s))
            state[holder] = s - n
            self._add(kind, self._update(holder, f"{s} - {n} = {s - n}"), holder, n=n)
        elif kind == "transfer":
            givers = [h for h in state if state[h] > 0]
            if not givers:
                return self.op("add")
            holder = rng.choice(givers)
            other = rng.choice([h for h in state if h != holder])
            s, t = state[holder], state[other]
            # a full receiver: checked after the draws, so that stories which never met one stay as they were
            if t == MAX_VALUE:
                return self.op("remove")
            n = rng.randint(1, min(MAX_AMOUNT, s, MAX_VALUE - t))
            state[holder], state[other] = s - n, t + n
            thought = self._update((holder, other), (f"{s} - {n} = {s - n}", f"{t} + {n} = {t + n}"))
            self._add(kind, thought, holder, other, n=n)
        elif kind in ("pack", "rate"):
            k = rng.randint(2, MAX_COUNT)
            room = (MAX_VALUE - s) // k
            if room < 2:
                return self.op("remove")
            n = rng.randint(2, min(MAX_AMOUNT, room))
            state[holder] = s + n * k
            update = f"{multiply(n, k)}; " + self._update(holder, f"{s} + {n * k} = {s + n * k}")
            if kind == "pack":
                self._add(kind, update, holder, n=n, k=k)
            else:
                first, second = self.domain.ops["rate"]
                self.drafts.append(_Draft("rate", first, f"rate = {n}", holder, n=n, k=k))
                self.drafts.append(_Draft("rate2", second, update, holder, n=n, k=k))
        elif kind == "scale":
            holder = rng.choice([h for h in state if state[h] <= MAX_AMOUNT])
            s = state[holder]
            k = rng.randint(2, min(MAX_COUNT, MAX_VALUE // max(s, 1)))
            state[holder] = s * k
            self._add(kind, self._update(holder, multiply(s, k)), holder, k=k)
        elif kind == "divide":
            holder = rng.choice([h for h in state if self._divisors(state[h])])
            s = state[holder]
            k = rng.choice(self._divisors(s))
            state[holder] = s // k
            self._add(kind, self._update(holder, f"{s} ÷ {k} = {s // k}"), holder, k=k)

    def _add(self, kind: str, thought: str, holder: str, other: str | None = None, n=0, k=0) -> None:
        self.drafts.append(_Draft(kind, self.template(kind), thought, holder, other, n, k))


def _people(wording: Wording) -> list[str]:
    return list(person_names()) if wording == "broad" else list(PEOPLE)


def _holders(rng: random.Random, domain: Domain, count: int, wording: Wording = "templates") -> list[str]:
    pool = list(domain.holders) if domain.holders else _people(wording)
    return rng.sample(pool, count)


def _key(holder: str) -> str:
    """How a holder is named in thoughts: "Tom", "red bus"."""
    return holder.removeprefix("the ")


# --- wording ---------------------------------------------------------------------------------------


def _say(rng: random.Random, n: int, words_p: float) -> str:
    """A number as a speaker would say it: words or digits."""
    return num2words(n) if n <= MAX_AMOUNT and rng.random() < words_p else str(n)


def _render(rng: random.Random, domain: Domain, draft: _Draft, previous_holder: str | None) -> str:
    holder = draft.holder or ""
    same = holder == previous_holder and holder != ""
    pronoun = pronoun_of(holder)
    subject = pronoun if same else holder
    template = draft.template
    values = {
        "S": subject,
        "S2": pronoun if "{S}" in template or same else holder,
        "P": holder,
        "p": holder,
        "Q": draft.other or "",
        "q": draft.other or "",
        "poss": POSSESSIVE[pronoun] if same or "{S}" in template else f"{holder}'s",
        "n": _say(rng, draft.n, 0.5),
        "k": _say(rng, draft.k, 0.7),
        "items": domain.items,
    }
    text = template.format(**values)
    return text[0].upper() + text[1:]


def _distractor(
    rng: random.Random, domain: Domain, holders: list[str], wording: Wording = "templates"
) -> _Draft:
    template = rng.choice(domain.distractors + COMMON_DISTRACTORS)
    holder = rng.choice(holders)
    if domain.holders and template in COMMON_DISTRACTORS:
        holder = rng.choice(_people(wording))  # "{P} is 12 years old" is about a person
    return _Draft("distractor", template, "", holder, n=rng.randint(2, MAX_AMOUNT), k=rng.randint(2, 12))


def _question(rng: random.Random, sim: _Simulation, position: QuestionPosition) -> tuple[_Draft, int, str]:
    state = sim.state
    kinds = ["one"]
    if len(state) >= 2:
        kinds += ["sum", "diff"]
    kind = rng.choice(kinds)
    a, b = rng.sample(list(state), 2) if kind != "one" else (rng.choice(list(state)), None)
    if kind == "sum" and state[a] + state[b] > MAX_VALUE or kind == "diff" and state[a] == state[b]:
        kind, b = "one", None
    if kind == "diff" and state[a] < state[b]:
        a, b = b, a
    ka, kb = _key(a), _key(b) if b else ""
    if kind == "one":
        answer, thought, final = state[a], f"question: {ka}", f"{ka} = {state[a]}"
    elif kind == "sum":
        answer, thought = state[a] + state[b], f"question: {ka} + {kb}"
        final = f"{ka} + {kb} = {state[a]} + {state[b]} = {answer}"
    else:
        answer, thought = state[a] - state[b], f"question: {ka} - {kb}"
        final = f"{ka} - {kb} = {state[a]} - {state[b]} = {answer}"
    when = "at the end" if position == "first" else "now"
    template = sim.domain.questions[kind].replace("{when}", when)
    return _Draft("question", template, thought, a, b), answer, final


def generate_story(seed: int, split: str = "train", index: int = 0, wording: Wording = "templates") -> Story:
    """One story; the same (seed, split, index, wording) always gives the same story.

    `ood` stories come from the held-out domain, or are longer (13 to 16 sentences). `wording`
    "broad" draws names, nouns, phrasings and question forms from `wording.py`'s lists; the
    default keeps the fixed templates the bundled models were trained on.
    """
    if wording not in WORDINGS:
        raise ValueError(f"unknown wording {wording!r} (use {', '.join(WORDINGS)})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (use {', '.join(SPLITS)})")
    rng = random.Random(f"{seed}:{split}:{index}")
    longer = split == "ood" and rng.random() < 0.5
    name = HELD_OUT_DOMAIN if split == "ood" and not longer else rng.choice(TRAIN_DOMAINS)
    domain = broaden(DOMAINS[name], rng) if wording == "broad" else DOMAINS[name]
    n_total = rng.randint(13, 16) if longer else rng.randint(3, 12)
    position: QuestionPosition = rng.choices(("first", "last", "prompt"), (0.4, 0.4, 0.2))[0]
    n_spoken = n_total - 1 if position != "prompt" else n_total  # sentences besides the question
    n_holders = min(rng.choices((1, 2, 3), (0.4, 0.4, 0.2))[0], n_spoken)
    n_distractors = rng.randint(0, min(3, n_spoken - n_holders))
    slots = n_spoken - n_holders - n_distractors

    holders = _holders(rng, domain, n_holders, wording)
    sim = _Simulation(rng, domain, holders)
    sim.init(holders[0])
    waiting = holders[1:]
    while slots > 0 or waiting:
        if waiting and (slots == 0 or rng.random() < 0.4):
            sim.init(waiting.pop(0))
            continue
        kind = rng.choice(sim.feasible(slots))
        sim.op(kind)
        slots -= 2 if kind == "rate" else 1
    drafts = sim.drafts
    for _ in range(n_distractors):
        drafts.insert(rng.randint(0, len(drafts)), _distractor(rng, domain, holders, wording))
    question, answer, final = _question(rng, sim, position)
    if position == "first":
        drafts.insert(0, question)
    elif position == "last":
        drafts.append(question)

    question_text = _render(rng, domain, question, None)
    sentences, previous = [], None
    for draft in drafts:
        text = question_text if draft is question else _render(rng, domain, draft, previous)
        sentences.append(Sentence(text, _role(draft.kind), draft.thought))
        previous = draft.holder if draft.kind not in ("distractor", "question") else None
    recap = ", ".join(f"{_key(h)} = {sim.state[h]}" for h in holders)
    return Story(
        id=f"{split}-{index:06d}",
        split=split,
        domain=name,
        sentences=tuple(sentences),
        question=question_text,
        question_position=position,
        answer=answer,
        final=final,
        recap=recap,
    )


def _role(kind: str) -> Role:
    return {"distractor": "distractor", "question": "question"}.get(kind, "state")  # type: ignore[return-value]


def generate_long_story(
    seed: int,
    minutes: float,
    update_every_s: float = 180.0,
    words_per_minute: float = DEFAULT_WORDS_PER_MINUTE,
    domain: str = "shopping",
) -> Story:
    """A stream of about `minutes` of speech for the long-stream benchmark and tests: one holder,
    whose amount is set first and changes once every `update_every_s` seconds of speech, among
    distractors, with the question last. Deterministic in `seed`."""
    rng = random.Random(f"{seed}:long:{minutes:g}:{update_every_s:g}")
    world = DOMAINS[domain]
    holders = _holders(rng, world, 1)
    sim = _Simulation(rng, world, holders)
    sim.init(holders[0])
    spoken, next_update = 0.0, update_every_s
    while spoken < minutes * SECONDS_PER_MINUTE:
        if spoken >= next_update:
            sim.op(rng.choice(("add", "remove")))
            next_update += update_every_s
        else:
            sim.drafts.append(_distractor(rng, world, holders))
        words = len(sim.drafts[-1].template.split())
        spoken += speech_seconds(words, words_per_minute)
    question, answer, final = _question(rng, sim, "last")
    sentences, previous = [], None
    for draft in [*sim.drafts, question]:
        text = _render(rng, world, draft, previous)
        sentences.append(Sentence(text, _role(draft.kind), draft.thought))
        previous = draft.holder if draft.kind not in ("distractor", "question") else None
    return Story(
        id=f"long-{seed}-{minutes:g}min",
        split="long",
        domain=domain,
        sentences=tuple(sentences),
        question=sentences[-1].text,
        question_position="last",
        answer=answer,
        final=final,
        recap=f"{_key(holders[0])} = {sim.state[holders[0]]}",
    )
