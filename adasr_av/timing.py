"""Stream time: speaking-rate constants, compute clocks, the cost model and latency accounting.

Every duration in adasr-av is in *stream seconds* from the stream's start. The reasoner does one
thing at a time, so chunk i (available at a_i) is handled over [begin_i, done_i] with

    begin_i = max(a_i, done_{i-1})      done_i = begin_i + prefill(chunk_i) + decode(unit_i)

and the answer is done at done_A = max(T, done_last) + prefill(stream_end) + decode(deep + answer).
`prefill` and `decode` come from a clock: the wall clock (measured compute time) or the cost model
(`c_p + n*s_p`, `n*s_d`), which makes training and evaluation reproducible and still in seconds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from adasr_av.atomic import write_atomically
from adasr_av.errors import AdasrError
from adasr_av.types import Event

SECONDS_PER_MINUTE = 60.0
DEFAULT_WORDS_PER_MINUTE = 150.0  # the input rate of the AdaSR and StreamingThinker papers

# AdaSR's read-then-think Qwen3-1.7B: 1866 tokens in 56.25 s, about 33 tokens/s.
PAPER_DECODE_S_PER_TOKEN = 56.25 / 1866


def speech_seconds(n_words: int, words_per_minute: float = DEFAULT_WORDS_PER_MINUTE) -> float:
    """How long a speaker at `words_per_minute` takes to say `n_words` words."""
    if words_per_minute <= 0:
        raise AdasrError(f"words per minute must be positive, got {words_per_minute}")
    return n_words * SECONDS_PER_MINUTE / words_per_minute


@dataclass(frozen=True)
class CostModel:
    """Compute seconds as a linear function of token counts, for one model on one device."""

    name: str
    prefill_base_s: float
    prefill_per_token_s: float
    decode_per_token_s: float
    model: str = ""
    device: str = ""
    notes: str = ""

    def prefill(self, n_tokens: int) -> float:
        return self.prefill_base_s + n_tokens * self.prefill_per_token_s if n_tokens > 0 else 0.0

    def decode(self, n_tokens: int) -> float:
        return n_tokens * self.decode_per_token_s

    def save(self, path: str | Path) -> None:
        write_atomically(path, json.dumps(asdict(self), indent=2) + "\n")


PAPER_PROFILE = CostModel(
    name="paper",
    prefill_base_s=0.02,
    prefill_per_token_s=0.0005,
    decode_per_token_s=PAPER_DECODE_S_PER_TOKEN,
    notes="decode speed of AdaSR's Qwen3-1.7B (1866 tokens in 56.25 s); prefill assumed 2000 tok/s",
)
COST_PROFILES = {PAPER_PROFILE.name: PAPER_PROFILE}


def load_cost_model(spec: str | Path) -> CostModel:
    """A built-in profile by name (`paper`) or a JSON file written by `adasr-av calibrate`."""
    if str(spec) in COST_PROFILES:
        return COST_PROFILES[str(spec)]
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    except OSError as err:  # a name too long for a path, a file it may not read
        raise AdasrError(f"cost profile {spec}: {err.strerror.lower()}") from None
    except UnicodeDecodeError:
        raise AdasrError(f"cost profile {spec}: not a JSON file (not UTF-8 text)") from None
    if text is None:
        known = ", ".join(COST_PROFILES)
        raise AdasrError(f"cost profile {spec}: no such file (built-in profiles: {known})")
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise AdasrError(f"cost profile {path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(fields, dict):
        raise AdasrError(f"cost profile {path}: expected a JSON object")
    required = ("name", "prefill_base_s", "prefill_per_token_s", "decode_per_token_s")
    for key in required:
        if key not in fields:
            raise AdasrError(f"cost profile {path}: missing field '{key}'")
        value = fields[key]
        if key != "name" and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise AdasrError(f"cost profile {path}: field '{key}' must be a non-negative number")
    known = {k: v for k, v in fields.items() if k in CostModel.__dataclass_fields__}
    return CostModel(**known)


class ComputeClock(Protocol):
    """Turns one step of reasoner work into stream seconds."""

    name: str

    def duration(self, prefill_tokens: int, decode_tokens: int, wall_s: float) -> float: ...


class WallClock:
    """Measured compute time: what a live run on this machine experiences."""

    name = "wall"

    def duration(self, prefill_tokens: int, decode_tokens: int, wall_s: float) -> float:
        return wall_s


class CostModelClock:
    """Modelled compute time from token counts: reproducible across machines and runs."""

    name = "cost-model"

    def __init__(self, cost: CostModel):
        self.cost = cost

    def duration(self, prefill_tokens: int, decode_tokens: int, wall_s: float) -> float:
        return self.cost.prefill(prefill_tokens) + self.cost.decode(decode_tokens)


class StreamClock:
    """Seconds since the stream started, for live sources that run in real time."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0


class ReasonerSchedule:
    """When the single-threaded reasoner begins and finishes each piece of work."""

    def __init__(self) -> None:
        self.busy_until = 0.0

    def run(self, t_avail: float, duration_s: float) -> tuple[float, float]:
        """Work available at `t_avail` taking `duration_s`: returns (begin, done)."""
        begin = max(t_avail, self.busy_until)
        self.busy_until = begin + duration_s
        return begin, self.busy_until


def answer_latency(t_answer_done: float, t_stream_end: float) -> float:
    """L = done_A - T: how long after the stream ended the answer was complete."""
    return t_answer_done - t_stream_end


def lag(t_begin: float, t_avail: float) -> float:
    """lag_i = begin_i - a_i: how long chunk i waited for the reasoner."""
    return t_begin - t_avail


def chunk_overflows(t_done: Sequence[float], t_avail: Sequence[float]) -> list[float]:
    """max(0, done_i - a_{i+1}) for each chunk i: how far its streaming work ran into the next
    arrival. The last chunk's is 0: nothing arrives after it (its work shows in the answer latency)."""
    if len(t_done) != len(t_avail):
        raise ValueError(f"one done time per available chunk: {len(t_done)} != {len(t_avail)}")
    following = [*t_avail[1:], math.inf] if t_avail else []
    return [max(0.0, done - nxt) for done, nxt in zip(t_done, following, strict=True)]


def streaming_overflow(t_done: Sequence[float], t_avail: Sequence[float]) -> float:
    """sum_i max(0, done_i - a_{i+1}): streaming work that delayed the next chunk."""
    return sum(chunk_overflows(t_done, t_avail))


def overflow_by_chunk(events: Iterable[Event]) -> dict[int, float]:
    """`chunk_overflows` of a run, by chunk index, from its events: a_i is chunk i's arrival, done_i
    the end of its streaming work (its prefill and unit). A chunk without text got no work and is
    no arrival. The session's `overflow_s` is the sum; HRPO's per-unit reward reads each."""
    arrivals: dict[int, float] = {}
    done: dict[int, float] = {}
    for e in events:
        if e.chunk_index is None or e.type not in ("chunk", "think", "skip"):
            continue
        if e.type == "chunk" and e.tokens:
            arrivals[e.chunk_index] = e.t_avail
        done[e.chunk_index] = max(done.get(e.chunk_index, -math.inf), e.t_done)
    chunks = list(arrivals)
    overflows = chunk_overflows([done[i] for i in chunks], [arrivals[i] for i in chunks])
    return dict(zip(chunks, overflows, strict=True))
