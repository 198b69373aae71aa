"""The streaming reasoning session: `start`, `feed` each chunk, `finish` with the answer.

One causal sequence on one KV cache. Each chunk span is prefilled onto the cache when it arrives
and one unit is generated after it; nothing already in the cache is encoded again. Tokens that were
chosen but not yet run through the model (a unit's closing token) wait in `pending` and go in
front of the next prefill, so the cache always holds `sequence[:len(sequence) - len(pending)]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from adasr_av.errors import AdasrError
from adasr_av.reasoner.answer import answers_match, extract_boxed
from adasr_av.reasoner.kv_cache import StreamingCache, native_gqa_on_cpu
from adasr_av.reasoner.protocol import (
    DEFAULT_INSTRUCTION,
    Mode,
    ProtocolIds,
    chunk_span,
    encode_span,
    parse_stream,
    question_span,
    stream_end_span,
)
from adasr_av.reasoner.sampling import SamplingOptions, TokenSampler
from adasr_av.timing import (
    PAPER_PROFILE,
    ComputeClock,
    CostModelClock,
    ReasonerSchedule,
    answer_latency,
    lag,
    streaming_overflow,
)
from adasr_av.types import Event, EventType, TextChunk

Role = Literal["env", "model", "runtime"]
Phase = Literal["prompt", "stream", "deep", "answer"]


@dataclass(frozen=True)
class ReasonerOptions:
    """Sampling and token caps. `max_total_tokens` caps units plus deep reasoning; the answer
    span has its own cap so a run that spent its budget can still answer."""

    sampling: SamplingOptions = SamplingOptions()
    max_unit_tokens: int = 96
    max_deep_tokens: int = 512
    max_answer_tokens: int = 32
    max_total_tokens: int = 4096
    instruction: str = DEFAULT_INSTRUCTION


@dataclass(frozen=True)
class Span:
    """Tokens sequence[start:end], written by `role` during `phase` (unit: the chunk it follows)."""

    role: Role
    phase: Phase
    start: int
    end: int
    unit: int | None = None


@dataclass
class _Generation:
    tokens: list[int] = field(default_factory=list)
    stop: int | None = None  # the closing token the model wrote, if it wrote one
    eos: bool = False  # the model ended with EOS instead (dropped; the runtime closes the span)
    wall_s: float = 0.0

    @property
    def body(self) -> list[int]:
        """The tokens without the closing protocol token."""
        return self.tokens[:-1] if self.stop is not None else self.tokens

    @property
    def info(self) -> dict[str, bool]:
        """Flags for the event: `capped` when the token cap closed the span."""
        return {"capped": self.stop is None and not self.eos} | ({"eos": True} if self.eos else {})


class StreamingReasoner:
    """Thinks or skips after each chunk while the stream arrives, deliberates once at its end."""

    mode: Mode = "streaming"

    def __init__(
        self,
        model,
        tokenizer,
        options: ReasonerOptions = ReasonerOptions(),
        clock: ComputeClock | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.clock = clock or CostModelClock(PAPER_PROFILE)
        self.ids = ProtocolIds.of(tokenizer)
        self.device = next(model.parameters()).device
        self.eos_ids = {tokenizer.eos_token_id} - {None}
        self.max_positions = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None
        )
        self._started = False

    # --- public door ------------------------------------------------------------------------

    def start(self, question: str = "", reference: str | None = None) -> None:
        """Open a stream: prefill the instruction and question onto a fresh cache."""
        self.question, self.reference = question, reference
        self.sampler = TokenSampler(self.options.sampling, self.device)
        self.cache = StreamingCache(self.model.config)
        self.sequence: list[int] = []
        self.pending: list[int] = []
        self.spans: list[Span] = []
        self.events: list[Event] = []
        self.encoded_tokens = 0  # tokens ever run through the model: equals the cache length
        self.generated_tokens = 0  # streaming units plus deep reasoning, for the total cap
        self.schedule = ReasonerSchedule()
        self.n_chunks = 0
        self.t_last_avail = 0.0
        self._logits: torch.Tensor | None = None
        self._started = True
        prompt = self._span_ids(question_span(question, self.options.instruction))
        if self._tokenizer_adds_bos():
            prompt = [self.tokenizer.bos_token_id, *prompt]
        wall = self._prefill(prompt, "prompt")
        self.schedule.run(0.0, self.clock.duration(len(prompt), 0, wall))

    def feed(self, chunk: TextChunk) -> Event:
        """Prefill one chunk and write its unit; returns the unit event (the chunk event if empty)."""
        self._require_started()
        index, self.n_chunks = self.n_chunks, self.n_chunks + 1
        a_i = chunk.t_emit
        self.t_last_avail = max(self.t_last_avail, a_i)
        if not chunk.text.strip():
            begin, done = self.schedule.run(a_i, 0.0)
            return self._emit("chunk", chunk.text, index, 0, a_i, begin, done, empty=True)
        ids = self._span_ids(chunk_span(chunk.text))
        wall = self._prefill(ids, "stream")
        begin, done = self.schedule.run(a_i, self.clock.duration(len(ids), 0, wall))
        self._emit("chunk", chunk.text, index, len(ids), a_i, begin, done, lag_s=round(lag(begin, a_i), 4))
        return self._unit(index, a_i) or self.events[-1]

    def finish(self, t_stream_end: float | None = None) -> list[Event]:
        """Close the stream: deep reasoning, answer and summary events.

        T, the stream end, is the later of `t_stream_end` (end of media) and the last arrival.
        """
        self._require_started()
        if not any(e.type == "chunk" and e.tokens for e in self.events):
            raise AdasrError("empty stream: no chunk with text was fed")
        t_end = max(self.t_last_avail, t_stream_end or 0.0)
        n_before = len(self.events)
        ids = self._span_ids(stream_end_span())
        wall = self._prefill(ids, "deep")
        begin, _ = self.schedule.run(t_end, self.clock.duration(len(ids), 0, wall))

        deep_cap = min(self.options.max_deep_tokens, self._budget_left())
        deep = self._generate(deep_cap, {self.ids.reason_end, self.ids.answer_end}, "deep")
        deep_closed = deep.stop is not None
        if not deep_closed:
            self._append([self.ids.reason_end], "runtime", "deep")
        _, t_deep = self.schedule.run(begin, self.clock.duration(0, len(deep.tokens), deep.wall_s))
        deep_text = self._text(deep.body).strip()
        self._emit("deep", deep_text, None, len(deep.tokens), t_end, begin, t_deep, **deep.info)

        answer = _Generation()
        if deep.stop != self.ids.answer_end:
            answer = self._generate(self.options.max_answer_tokens, {self.ids.answer_end}, "answer")
            if answer.stop is None:
                self._append([self.ids.answer_end], "runtime", "answer")
        _, t_answer = self.schedule.run(t_deep, self.clock.duration(0, len(answer.tokens), answer.wall_s))
        answer_text = self._text(answer.body if answer.tokens else deep.body).strip()
        boxed = extract_boxed(answer_text)
        flags = answer.info if deep.stop != self.ids.answer_end else {}
        self._emit(
            "answer", answer_text, None, len(answer.tokens), t_end, t_deep, t_answer, answer=boxed, **flags
        )
        self._emit_summary(t_end, t_answer, boxed)
        self._started = False
        return self.events[n_before:]

    @property
    def text(self) -> str:
        """The whole sequence so far, protocol tokens included."""
        return self._text(self.sequence)

    # --- units ------------------------------------------------------------------------------

    def _unit(self, index: int, a_i: float) -> Event | None:
        budget = min(self.options.max_unit_tokens, self._budget_left())
        t0 = self.schedule.busy_until
        if budget == 0:
            self._append([self.ids.skip], "runtime", "stream", index)
            return self._emit("skip", "", index, 0, a_i, t0, t0, capped=True)
        gen = self._generate(budget, self.ids.all, "stream", index)
        closed = gen.stop is not None
        if not closed:
            self._append([self.ids.think_end], "runtime", "stream", index)
        _, done = self.schedule.run(t0, self.clock.duration(0, len(gen.tokens), gen.wall_s))
        kind: EventType = "skip" if gen.stop == self.ids.skip else "think"
        info = gen.info
        if closed and gen.stop not in (self.ids.skip, self.ids.think_end):
            info["malformed"] = self.tokenizer.convert_ids_to_tokens(gen.stop)
        return self._emit(kind, self._text(gen.body).strip(), index, len(gen.tokens), a_i, t0, done, **info)

    # --- model work -------------------------------------------------------------------------

    def _prefill(self, ids: list[int], phase: Phase) -> float:
        """Run pending tokens plus an environment span through the model; returns wall seconds."""
        self._append(ids, "env", phase)
        return self._forward()

    def _forward(self) -> float:
        if self.max_positions and len(self.sequence) > self.max_positions:
            raise AdasrError(
                f"stream too long for the model: {len(self.sequence)} tokens > {self.max_positions} positions"
            )
        t0 = time.perf_counter()
        inputs = torch.tensor([self.pending], device=self.device)
        with torch.inference_mode(), native_gqa_on_cpu(self.device):
            out = self.model(input_ids=inputs, past_key_values=self.cache, use_cache=True)
        self._logits = out.logits[:, -1, :]
        self.encoded_tokens += len(self.pending)
        self.pending = []
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def _generate(self, cap: int, stops: set[int], phase: Phase, unit: int | None = None) -> _Generation:
        """Sample up to `cap` tokens, stopping at a token of `stops` (or EOS, which is not kept)."""
        gen = _Generation()
        t0 = time.perf_counter()
        while len(gen.tokens) < cap:
            if self._logits is None:
                self._forward()
            token = int(self.sampler(self._logits)[0])
            self._logits = None
            if token in self.eos_ids and token not in stops:
                gen.eos = True
                break
            gen.tokens.append(token)
            self._append([token], "model", phase, unit)
            if token in stops:
                gen.stop = token
                break
        self.generated_tokens += len(gen.tokens) if phase != "answer" else 0
        gen.wall_s = time.perf_counter() - t0
        return gen

    def _append(self, ids: list[int], role: Role, phase: Phase, unit: int | None = None) -> None:
        start = len(self.sequence)
        self.sequence.extend(ids)
        self.pending.extend(ids)
        last = self.spans[-1] if self.spans else None
        if last and (last.role, last.phase, last.unit) == (role, phase, unit) and last.end == start:
            self.spans[-1] = Span(role, phase, last.start, start + len(ids), unit)
        else:
            self.spans.append(Span(role, phase, start, start + len(ids), unit))

    # --- events -----------------------------------------------------------------------------

    def _emit(
        self,
        type_: EventType,
        text: str,
        index: int | None,
        tokens: int,
        t_avail: float,
        t_begin: float,
        t_done: float,
        **info,
    ) -> Event:
        event = Event(type_, text, index, tokens, t_avail, t_begin, t_done, info)
        self.events.append(event)
        return event

    def _emit_summary(self, t_end: float, t_answer: float, answer: str | None) -> None:
        chunks = [e for e in self.events if e.type == "chunk" and e.tokens]
        units = [e for e in self.events if e.type in ("think", "skip")]
        info = {
            "answer": answer,
            "stream_tokens": sum(e.tokens for e in units),
            "deep_tokens": sum(e.tokens for e in self.events if e.type in ("deep", "answer")),
            "skips": sum(e.type == "skip" for e in units),
            "answer_latency_s": round(answer_latency(t_answer, t_end), 4),
            "max_lag_s": round(max((lag(e.t_begin, e.t_avail) for e in chunks), default=0.0), 4),
            "overflow_s": round(self._overflow(chunks), 4),
            "clock": self.clock.name,
            "cost_profile": getattr(getattr(self.clock, "cost", None), "name", None),
            "mode": self.mode,
            "violations": parse_stream(self.text, self.mode).violations,
        }
        if self.reference is not None:
            info["reference"] = self.reference
            info["correct"] = answers_match(answer, self.reference)
        self._emit("summary", answer or "", None, len(self.sequence), t_end, t_end, t_answer, **info)

    def _overflow(self, chunks: list[Event]) -> float:
        """Streaming work (prefill plus unit) on chunk i that ran past the arrival of chunk i+1."""
        done_by_chunk = {e.chunk_index: e.t_done for e in self.events if e.type in ("chunk", "think", "skip")}
        return streaming_overflow([done_by_chunk[c.chunk_index] for c in chunks], [c.t_avail for c in chunks])

    # --- helpers ----------------------------------------------------------------------------

    def _span_ids(self, text: str) -> list[int]:
        return encode_span(self.tokenizer, text)

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _budget_left(self) -> int:
        return max(0, self.options.max_total_tokens - self.generated_tokens)

    def _tokenizer_adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        return bos is not None and self.tokenizer.encode("a")[:1] == [bos]

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("call start(question) before feed() or finish()")


class ReadThenThinkReasoner(StreamingReasoner):
    """Baseline: the same model and prompt, but all chunks are read first and every token of
    reasoning comes after the stream ends."""

    mode: Mode = "read-then-think"

    def _unit(self, index: int, a_i: float) -> Event | None:
        return None


def make_reasoner(model, tokenizer, mode: Mode = "streaming", **kwargs) -> StreamingReasoner:
    cls = ReadThenThinkReasoner if mode == "read-then-think" else StreamingReasoner
    return cls(model, tokenizer, **kwargs)


def reason_over_stream(
    reasoner: StreamingReasoner,
    chunks: Iterable[TextChunk],
    question: str = "",
    reference: str | None = None,
    t_stream_end: float | Callable[[], float | None] | None = None,
) -> Iterator[Event]:
    """Run a whole stream, yielding every event (chunks, units, deep, answer, summary) as it happens.

    `t_stream_end` may be a function, called once the chunks run out: a live source knows where it
    ended only then.
    """
    reasoner.start(question, reference)
    for chunk in chunks:
        n = len(reasoner.events)
        reasoner.feed(chunk)
        yield from reasoner.events[n:]
    yield from reasoner.finish(t_stream_end() if callable(t_stream_end) else t_stream_end)
