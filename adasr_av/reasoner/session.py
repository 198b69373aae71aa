"""The streaming reasoning session: `start`, `feed` each chunk, `finish` with the answer.

One causal sequence per rollout on one KV cache. Each chunk span is prefilled onto the cache when
it arrives and one unit is generated after it; nothing already in the cache is encoded again.
Tokens that were chosen but not yet run through the model (a unit's closing token) wait in
`pending` and go in front of the next prefill, so the cache always holds
`context[:len(context) - len(pending)]`, where `context` is what the model sees: the whole
`sequence` until the first compaction.

Streams of any length: when the next chunk and its unit would cross the context budget, the
session compacts (`context.py`: the prompt, the latest thoughts and the most recent pieces are
kept) and rebuilds the cache from exactly the kept text, positions restarting at 0. A `context`
event reports it, and its prefill counts on the run's clock like any other work.

A session can carry a group of G rollouts of the same stream (HRPO samples G per prompt): they share
the environment spans, and every forward runs all G rows at once. Units end at different lengths,
so a row that has nothing to run gets a masked pad; the cache then has holes, which an attention
mask over the cache and per-row position ids hide. With G = 1 there are never holes and the model
sees exactly what a single session would give it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from adasr_av.errors import AdasrError
from adasr_av.reasoner.answer import answers_match, extract_boxed
from adasr_av.reasoner.backend import CacheBackend, Generation, RolloutBackend
from adasr_av.reasoner.context import MIN_PIECE_TOKENS, SKIP_WINDOW_CONFIG_KEY, ContextPolicy, Piece
from adasr_av.reasoner.protocol import (
    DEFAULT_INSTRUCTION,
    Mode,
    ProtocolIds,
    chunk_span,
    encode_span,
    eos_ids,
    parse_stream,
    prompt_ids,
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
    overflow_by_chunk,
)
from adasr_av.types import Event, EventType, TextChunk

Role = Literal["env", "model", "runtime"]
# Deep phases of the bundled models and of AdaSR's streaming models are a few dozen to a few
# hundred tokens; reserving a 512-token cap in full would halve a 1,024-position model's context.
DEEP_RESERVE_TOKENS = 128
Phase = Literal["prompt", "stream", "deep", "answer"]


@dataclass(frozen=True)
class ReasonerOptions:
    """Sampling, token caps and the context policy. `max_total_tokens` caps units plus deep
    reasoning; the answer span has its own cap so a run that spent its budget can still answer.

    `context_tokens`: the budget for the prompt, the chunks and their units, which prefilling a
    chunk may not cross (default: the model's positions less the room the next unit, the deep phase
    and the answer need, or what its config declares; no position limit: no compaction);
    `retain`: the fraction of it a compaction keeps; `keep_thoughts`: the latest thoughts a
    compaction keeps however old (0: recency alone); `skip_window`: the most skipped chunks the
    context may hold (None: what the model's config declares; 0: no limit)."""

    sampling: SamplingOptions = SamplingOptions()
    max_unit_tokens: int = 96
    max_deep_tokens: int = 512
    max_answer_tokens: int = 32
    max_total_tokens: int = 4096
    instruction: str = DEFAULT_INSTRUCTION
    chat_template: bool = False  # wrap the question span in the tokenizer's chat template
    lag_hint: bool = False  # append each chunk's current lag to its span (HRPO option)
    context_tokens: int | None = None
    retain: float = 0.5
    keep_thoughts: int = 1
    skip_window: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_unit_tokens", "max_deep_tokens", "max_answer_tokens", "max_total_tokens"):
            if getattr(self, name) < 1:
                raise AdasrError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.context_tokens is not None and self.context_tokens < 1:
            raise AdasrError(f"--context-tokens must be at least 1, got {self.context_tokens}")
        if not 0.0 < self.retain < 1.0:
            raise AdasrError(f"--retain must be between 0 and 1 (exclusive), got {self.retain}")
        if self.keep_thoughts < 0:
            raise AdasrError(f"--keep-thoughts must be at least 0, got {self.keep_thoughts}")
        if self.skip_window is not None and (self.skip_window < 0 or self.skip_window == 1):
            raise AdasrError(f"--skip-window must be 0 (no limit) or at least 2, got {self.skip_window}")

    @property
    def finish_tokens(self) -> int:
        """Positions the context budget keeps for the end of a stream: its span, the deep phase
        (up to DEEP_RESERVE_TOKENS of it: a longer one is capped by the positions left) and the
        answer, each with the closing token the runtime may add."""
        return 1 + min(self.max_deep_tokens, DEEP_RESERVE_TOKENS) + 1 + self.max_answer_tokens + 1


@dataclass(frozen=True)
class Span:
    """Tokens sequence[start:end], written by `role` during `phase` (unit: the chunk it follows)."""

    role: Role
    phase: Phase
    start: int
    end: int
    unit: int | None = None


@dataclass(frozen=True)
class Segment:
    """From `sequence[start]` on, the model saw `prefix` (a compaction's kept text) before
    `sequence[start:]`: what log-probabilities must be recomputed on."""

    start: int
    prefix: tuple[int, ...] = ()


@dataclass
class Rollout:
    """One row of a session: its token sequence, who wrote each span, its events and its clock.

    `sequence` is everything the row's stream wrote; `context` is what its model sees now (the
    kept text of the last compaction, then what came after), `pieces` divides it into the prompt
    and one piece per chunk, and `segments` say where each compaction restarted the context."""

    sequence: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # in `context`, not yet run through the model
    context: list[int] = field(default_factory=list)
    pieces: list[Piece] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=lambda: [Segment(0)])
    spans: list[Span] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    schedule: ReasonerSchedule = field(default_factory=ReasonerSchedule)
    generated_tokens: int = 0  # streaming units plus deep reasoning, for the total cap
    compactions: int = 0
    chunks_dropped: int = 0
    reference: str | None = None  # the gold answer the summary scores against
    n_chunks: int = 0  # chunks fed to this row's stream so far
    t_last_avail: float = 0.0  # the latest arrival on this row's stream

    def append(
        self, ids: list[int], role: Role, phase: Phase, unit: int | None = None, run: bool = True
    ) -> None:
        """Write ids on the row; `run` False for tokens the backend sampled (it has them already)."""
        start = len(self.sequence)
        self.sequence.extend(ids)
        if run:
            self.pending.extend(ids)
        self.context.extend(ids)
        last = self.spans[-1] if self.spans else None
        if last and (last.role, last.phase, last.unit) == (role, phase, unit) and last.end == start:
            self.spans[-1] = Span(role, phase, last.start, start + len(ids), unit)
        else:
            self.spans.append(Span(role, phase, start, start + len(ids), unit))

    def emit(self, type_: EventType, text: str, index: int | None, tokens: int, t_avail: float,
             t_begin: float, t_done: float, **info) -> Event:  # fmt: skip
        event = Event(type_, text, index, tokens, t_avail, t_begin, t_done, info)
        self.events.append(event)
        return event

    def close_piece(self, start: int, chunk_index: int | None, thinks: bool = False) -> None:
        """`context[start:]` is one piece: the prompt, or a chunk span with its unit."""
        self.pieces.append(Piece(start, len(self.context), chunk_index, thinks))

    def compact(self, kept: list[Piece]) -> None:
        """Make the kept pieces the whole context; all of it is to be run through the model again."""
        ids: list[int] = []
        pieces = []
        for piece in kept:
            pieces.append(Piece(len(ids), len(ids) + piece.size, piece.chunk_index, piece.thinks))
            ids += self.context[piece.start : piece.end]
        self.chunks_dropped += len(self.pieces) - len(kept)
        self.compactions += 1
        self.context, self.pieces = ids, pieces
        self.segments.append(Segment(len(self.sequence), tuple(ids)))


class StreamingReasoner:
    """Thinks or skips after each chunk while the stream arrives, deliberates once at its end.

    `group_size` rollouts run side by side (sample with `options.sampling` to make them differ);
    `events`, `sequence`, `spans` and `text` are those of the first, `rollouts` holds them all.
    `start_many`, `feed_many` and `finish_many` run several different streams as the rows instead
    (one story each, decoded together), each scored as if it ran alone under a cost-model clock.
    """

    mode: Mode = "streaming"

    def __init__(
        self,
        model,
        tokenizer,
        options: ReasonerOptions = ReasonerOptions(),
        clock: ComputeClock | None = None,
        group_size: int = 1,
        backend: RolloutBackend | None = None,
    ):
        if group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {group_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.clock = clock or CostModelClock(PAPER_PROFILE)
        self.group_size = group_size
        self.ids = ProtocolIds.of(tokenizer)
        self.device = next(model.parameters()).device
        self.max_positions = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None
        )
        pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        self.backend = backend or CacheBackend(model, pad_id, eos_ids(model, tokenizer), self.max_positions)
        self.policy = self._context_policy()
        self._started = False

    # --- public door ------------------------------------------------------------------------

    def start(self, question: str = "", reference: str | None = None) -> None:
        """Open a stream: prefill the instruction and question onto a fresh cache."""
        self.start_many([question] * self.group_size, [reference] * self.group_size)

    def start_many(self, questions: Sequence[str], references: Sequence[str | None]) -> None:
        """Open one stream per row (their questions and gold answers) on one fresh cache."""
        if not questions or len(questions) != len(references):
            raise ValueError(
                f"start_many needs one reference per question: {len(questions)}, {len(references)}"
            )
        self.sampler = TokenSampler(self.options.sampling, self.device)
        self.rollouts = [Rollout(reference=reference) for reference in references]
        self.backend.reset(len(self.rollouts))
        o = self.options
        prompts = [prompt_ids(self.tokenizer, q, o.instruction, o.chat_template) for q in questions]
        for prompt in prompts:
            self._check_budget(len(prompt))
        self._started = True
        wall = self._prefill(prompts, "prompt")
        for row, prompt in zip(self.rollouts, prompts, strict=True):
            row.schedule.run(0.0, self.clock.duration(len(prompt), 0, wall))
            row.close_piece(0, None)

    def feed(self, chunk: TextChunk) -> Event:
        """Prefill one chunk and write its unit; returns the unit event (the chunk event if empty)."""
        self._require_started()
        self.feed_many([chunk] * len(self.rollouts))
        return self.events[-1]

    def feed_many(self, chunks: Sequence[TextChunk | None]) -> list[Event | None]:
        """Row r takes `chunks[r]` and writes its unit; a row given None (its stream has nothing
        now, or has ended) is left as it was. Returns each row's last event (None where idle)."""
        self._require_started()
        if len(chunks) != len(self.rollouts):
            raise ValueError(
                f"feed_many needs one chunk (or None) per row: {len(chunks)} for {len(self.rollouts)}"
            )
        indices: list[int | None] = []  # the chunk index on each row that takes a chunk with text
        spans: list[list[int]] = []
        for row, chunk in zip(self.rollouts, chunks, strict=True):
            index = None
            if chunk is not None:
                index, row.n_chunks = row.n_chunks, row.n_chunks + 1
                row.t_last_avail = max(row.t_last_avail, chunk.t_emit)
                if not chunk.text.strip():
                    begin, done = row.schedule.run(chunk.t_emit, 0.0)
                    row.emit(
                        "chunk",
                        chunk.text,
                        index,
                        0,
                        chunk.t_emit,
                        begin,
                        done,
                        empty=True,
                        source=chunk.source,
                    )
                    index = None
            indices.append(index)
            spans.append(
                []
                if index is None
                else self._span_ids(chunk_span(chunk.text, self._lag_hint(row, chunk.t_emit), chunk.source))
            )
        if any(index is not None for index in indices):
            arrivals = [chunk.t_emit if chunk is not None else 0.0 for chunk in chunks]
            self._feed_spans(spans, indices, arrivals, chunks)
        return [
            row.events[-1] if chunk is not None else None
            for row, chunk in zip(self.rollouts, chunks, strict=True)
        ]

    def _feed_spans(
        self,
        spans: list[list[int]],
        indices: list[int | None],
        arrivals: list[float],
        chunks: Sequence[TextChunk | None],
    ) -> None:
        """Prefill the chunk spans of the rows that took one, then write their units."""
        full = [len(ids) for ids in spans]
        spans = self._fit_context(spans, indices, arrivals)
        starts = [len(row.context) for row in self.rollouts]
        wall = self._prefill(spans, "stream")
        for row, ids, n, index, a_i, chunk in zip(
            self.rollouts, spans, full, indices, arrivals, chunks, strict=True
        ):
            if index is None:
                continue
            begin, done = row.schedule.run(a_i, self.clock.duration(len(ids), 0, wall))
            cut = {"truncated_tokens": n - len(ids)} if n > len(ids) else {}
            row.emit(
                "chunk", chunk.text, index, len(ids), a_i, begin, done,
                lag_s=round(lag(begin, a_i), 4), source=chunk.source, **cut,
            )  # fmt: skip
        self._unit(indices, arrivals)
        for row, start, index in zip(self.rollouts, starts, indices, strict=True):
            if index is not None:
                row.close_piece(start, index, thinks=row.events[-1].type == "think")

    def finish(self, t_stream_end: float | None = None) -> list[Event]:
        """Close the stream: deep reasoning, answer and summary events (those of the first rollout).

        T, the stream end, is the later of `t_stream_end` (end of media) and the last arrival.
        """
        n_before = len(self.events)
        self.finish_many([t_stream_end] * len(self.rollouts))
        return self.events[n_before:]

    def finish_many(self, t_stream_ends: Sequence[float | None]) -> None:
        """Close every row's stream together (each at its own end T): deep reasoning, answer and
        summary events on each row."""
        self._require_started()
        empty = [
            r
            for r, row in enumerate(self.rollouts)
            if not any(e.type == "chunk" and e.tokens for e in row.events)
        ]
        if empty:
            where = f" (rows {empty})" if len(self.rollouts) > 1 and len(empty) < len(self.rollouts) else ""
            raise AdasrError(f"empty stream: no chunk with text was fed{where}")
        ends = [max(row.t_last_avail, t or 0.0) for row, t in zip(self.rollouts, t_stream_ends, strict=True)]
        ids = self._span_ids(stream_end_span())
        wall = self._prefill([ids] * len(self.rollouts), "deep")
        begins = [
            row.schedule.run(t_end, self.clock.duration(len(ids), 0, wall))[0]
            for row, t_end in zip(self.rollouts, ends, strict=True)
        ]

        deep_caps = [min(self.options.max_deep_tokens, self._budget_left(row)) for row in self.rollouts]
        deeps = self._generate(deep_caps, {self.ids.reason_end, self.ids.answer_end}, "deep")
        answered = [deep.stop == self.ids.answer_end for deep in deeps]
        for row, deep, begin, t_end in zip(self.rollouts, deeps, begins, ends, strict=True):
            if deep.stop is None:
                row.append([self.ids.reason_end], "runtime", "deep")
            row.schedule.run(begin, self.clock.duration(0, len(deep.tokens), deep.wall_s))
            deep_text = self._text(deep.body).strip()
            row.emit(
                "deep", deep_text, None, len(deep.tokens), t_end, begin, row.schedule.busy_until, **deep.info
            )

        room = [
            self.max_positions - len(row.context) - 1 if self.max_positions else 10**9
            for row in self.rollouts
        ]
        answer_caps = [
            0 if done else max(0, min(self.options.max_answer_tokens, r))
            for done, r in zip(answered, room, strict=True)
        ]
        answers = self._generate(answer_caps, {self.ids.answer_end}, "answer")
        for row, deep, answer, done, t_end in zip(self.rollouts, deeps, answers, answered, ends, strict=True):
            if not done and answer.stop is None:
                row.append([self.ids.answer_end], "runtime", "answer")
            t_deep = row.schedule.busy_until
            _, t_answer = row.schedule.run(t_deep, self.clock.duration(0, len(answer.tokens), answer.wall_s))
            answer_text = self._text(answer.body if answer.tokens else deep.body).strip()
            boxed = extract_boxed(answer_text)
            flags = {} if done else answer.info
            row.emit(
                "answer",
                answer_text,
                None,
                len(answer.tokens),
                t_end,
                t_deep,
                t_answer,
                answer=boxed,
                **flags,
            )
            self._emit_summary(row, t_end, t_answer, boxed)
        self._started = False

    @property
    def events(self) -> list[Event]:
        return self.rollouts[0].events

    @property
    def sequence(self) -> list[int]:
        return self.rollouts[0].sequence

    @property
    def pending(self) -> list[int]:
        return self.rollouts[0].pending

    @property
    def spans(self) -> list[Span]:
        return self.rollouts[0].spans

    @property
    def n_chunks(self) -> int:
        """Chunks fed to the first rollout's stream so far."""
        return self.rollouts[0].n_chunks

    @property
    def text(self) -> str:
        """The first rollout's whole sequence so far, protocol tokens included."""
        return self._text(self.sequence)

    # --- units ------------------------------------------------------------------------------

    def _unit(self, indices: list[int | None], arrivals: list[float]) -> None:
        """The unit after each row's chunk (rows whose index is None took none and write none)."""
        caps = [
            0 if index is None else min(self.options.max_unit_tokens, self._budget_left(row))
            for row, index in zip(self.rollouts, indices, strict=True)
        ]
        starts = [row.schedule.busy_until for row in self.rollouts]
        gens = self._generate(caps, self.ids.all, "stream", indices)
        for row, gen, cap, t0, index, a_i in zip(
            self.rollouts, gens, caps, starts, indices, arrivals, strict=True
        ):
            if index is None:
                continue
            if cap == 0:
                row.append([self.ids.skip], "runtime", "stream", index)
                row.emit("skip", "", index, 0, a_i, t0, t0, capped=True)
                continue
            if gen.stop is None:
                row.append([self.ids.think_end], "runtime", "stream", index)
            _, done = row.schedule.run(t0, self.clock.duration(0, len(gen.tokens), gen.wall_s))
            kind: EventType = "skip" if gen.stop == self.ids.skip else "think"
            info = gen.info
            if gen.stop is not None and gen.stop not in (self.ids.skip, self.ids.think_end):
                info["malformed"] = self.tokenizer.convert_ids_to_tokens(gen.stop)
            row.emit(kind, self._text(gen.body).strip(), index, len(gen.tokens), a_i, t0, done, **info)

    # --- context policy ---------------------------------------------------------------------

    def _context_policy(self) -> ContextPolicy | None:
        """The budget the options ask for, checked against the model's positions. The default is
        the positions less room for a unit, the deep phase and the answer (or half the positions on
        a model too short for their caps: generation is then capped by the positions left)."""
        o, window = self.options, self._skip_window()
        if self.max_positions is None:
            if o.context_tokens is None and window is None:
                return None
            return ContextPolicy(o.context_tokens or 2**62, o.retain, o.keep_thoughts, window)
        reserved = min(self._unit_room() + o.finish_tokens, self.max_positions // 2)
        most = self.max_positions - reserved
        if o.context_tokens is not None and o.context_tokens > most:
            raise AdasrError(
                f"--context-tokens {o.context_tokens} does not fit the model: of its {self.max_positions} "
                f"positions, {reserved} are kept for a unit, the deep phase and the answer, which leaves "
                f"at most {most}"
            )
        return ContextPolicy(o.context_tokens or most, o.retain, o.keep_thoughts, window)

    def _skip_window(self) -> int | None:
        """The options' window, else the model's declared one; none in read-then-think (no units)."""
        if self.mode != "streaming":
            return None
        window = self.options.skip_window
        if window is None:
            window = getattr(self.model.config, SKIP_WINDOW_CONFIG_KEY, None)
        return window or None

    def _check_budget(self, prompt_tokens: int) -> None:
        """The budget must hold the question plus one chunk and one unit."""
        minimum = prompt_tokens + 2 * MIN_PIECE_TOKENS
        if self.policy is not None and self.policy.budget < minimum:
            raise AdasrError(
                f"--context-tokens {self.policy.budget} is too small: the instruction and question take "
                f"{prompt_tokens} tokens, and a chunk and a unit at least {MIN_PIECE_TOKENS} each; "
                f"the minimum is {minimum}"
            )

    def _unit_room(self) -> int:
        """Tokens the unit after a chunk may take (with the closing token the runtime may add)."""
        return self.options.max_unit_tokens + 1 if self.mode == "streaming" else 0

    def _fit_context(
        self, spans: list[list[int]], indices: list[int | None], arrivals: list[float]
    ) -> list[list[int]]:
        """Compact the rows whose next chunk would cross the budget; returns the chunk spans, a span
        that cannot fit even beside the prompt alone cut to its end."""
        if self.policy is None:
            return spans
        over = [
            index is not None and self.policy.needs_compaction(row.pieces, len(ids))
            for row, ids, index in zip(self.rollouts, spans, indices, strict=True)
        ]
        if any(over):
            kept = [
                self.policy.kept(row.pieces, len(ids)) if o else None
                for row, ids, o in zip(self.rollouts, spans, over, strict=True)
            ]
            self._compact(kept, indices, arrivals)
        rooms = [self.policy.budget - len(row.context) for row in self.rollouts]
        return [
            ids if len(ids) <= room else ids[-max(room, 1) :] for ids, room in zip(spans, rooms, strict=True)
        ]

    def _compact(
        self, kept: list[list[Piece] | None], indices: list[int | None], arrivals: list[float]
    ) -> None:
        """Rebuild the cache: rows with kept pieces keep just those, the others all they had (a row
        of a group is compacted exactly when a lone session on its stream would be)."""
        before = [(len(row.context), len(row.pieces)) for row in self.rollouts]
        for row, pieces in zip(self.rollouts, kept, strict=True):
            if pieces is not None:
                row.compact(pieces)
            row.pending = list(row.context)
        self.backend.reset(len(self.rollouts))
        wall = self._forward()
        for row, pieces, (tokens, n_pieces), index, a_i in zip(
            self.rollouts, kept, before, indices, arrivals, strict=True
        ):
            if pieces is None:
                continue
            cost = self.clock.duration(len(row.context), 0, wall)
            begin, done = row.schedule.run(a_i, cost)
            dropped = n_pieces - len(pieces)
            row.emit(
                "context", "", index, len(row.context), a_i, begin, done,
                tokens_before=tokens, tokens_after=len(row.context), chunks_dropped=dropped,
                cost_s=round(cost, 4),
            )  # fmt: skip

    # --- model work -------------------------------------------------------------------------

    def _prefill(self, spans: list[list[int]], phase: Phase) -> float:
        """Run pending tokens plus each row's environment span through the model; returns wall
        seconds. The rows' spans are the same unless the lag hint makes them differ."""
        for row, ids in zip(self.rollouts, spans, strict=True):
            if ids:
                row.append(ids, "env", phase)
        return self._forward()

    def _forward(self) -> float:
        """Run every row's pending tokens through the backend; returns wall seconds."""
        wall = self.backend.run([row.pending for row in self.rollouts])
        for row in self.rollouts:
            row.pending.clear()
        return wall

    def _generate(
        self, caps: list[int], stops: set[int], phase: Phase, units: Sequence[int | None] | None = None
    ) -> list[Generation]:
        """Sample up to `caps[r]` tokens for each row r (one batched step at a time in the default
        backend); a row stops at a token of `stops` (or EOS, which is not kept). Rows with cap 0
        write nothing."""
        if any(caps):
            self._forward()  # what the runtime wrote since the last run (a closing token) goes in first
        gens = self.backend.generate(caps, stops, self.sampler, self.options.sampling.temperature)
        for r, (row, gen) in enumerate(zip(self.rollouts, gens, strict=True)):
            if gen.tokens:
                row.append(gen.tokens, "model", phase, units[r] if units is not None else None, run=False)
            row.generated_tokens += len(gen.tokens) if phase != "answer" else 0
        return gens

    # --- events -----------------------------------------------------------------------------

    def _emit_summary(self, row: Rollout, t_end: float, t_answer: float, answer: str | None) -> None:
        chunks = [e for e in row.events if e.type == "chunk" and e.tokens]
        units = [e for e in row.events if e.type in ("think", "skip")]
        info = {
            "answer": answer,
            "stream_tokens": sum(e.tokens for e in units),
            "deep_tokens": sum(e.tokens for e in row.events if e.type in ("deep", "answer")),
            "skips": sum(e.type == "skip" for e in units),
            "answer_latency_s": round(answer_latency(t_answer, t_end), 4),
            "max_lag_s": round(max((lag(e.t_begin, e.t_avail) for e in chunks), default=0.0), 4),
            "overflow_s": round(sum(overflow_by_chunk(row.events).values()), 4),
            "clock": self.clock.name,
            "cost_profile": getattr(getattr(self.clock, "cost", None), "name", None),
            "mode": self.mode,
            "violations": parse_stream(self._text(row.sequence), self.mode).violations,
            "compactions": row.compactions,
            "chunks_dropped": row.chunks_dropped,
        }
        if self.mode == "read-then-think":  # the deep phase read only the chunks still in context
            info["truncated"] = row.chunks_dropped > 0
        if row.reference is not None:
            info["reference"] = row.reference
            info["correct"] = answers_match(answer, row.reference)
        row.emit("summary", answer or "", None, len(row.sequence), t_end, t_end, t_answer, **info)

    # --- helpers ----------------------------------------------------------------------------

    def _lag_hint(self, row: Rollout, a_i: float) -> float | None:
        return max(0.0, lag(row.schedule.busy_until, a_i)) if self.options.lag_hint else None

    def _span_ids(self, text: str) -> list[int]:
        return encode_span(self.tokenizer, text)

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _budget_left(self, row: Rollout) -> int:
        """Tokens a unit or the deep phase may still write: the total cap, and the model's positions
        minus room for the answer, so a run that rambles is capped instead of overflowing."""
        left = self.options.max_total_tokens - row.generated_tokens
        if self.max_positions:
            left = min(left, self.max_positions - len(row.context) - self.options.max_answer_tokens - 2)
        return max(0, left)

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("call start(question) before feed() or finish()")


class ReadThenThinkReasoner(StreamingReasoner):
    """Baseline: the same model and prompt, but all chunks are read first and every token of
    reasoning comes after the stream ends."""

    mode: Mode = "read-then-think"

    def _unit(self, indices: list[int | None], arrivals: list[float]) -> None:
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


def reason_over_streams(
    reasoner: StreamingReasoner,
    streams: Sequence[tuple[Sequence[TextChunk], str, str | None, float | None]],
) -> list[list[Event]]:
    """Several whole streams, (chunks, question, reference, stream end) each, as the rows of one
    session: chunk i of every stream is fed in the same step (a stream that ran out waits), and the
    rows finish together, each at its own end. Returns each row's events."""
    reasoner.start_many([question for _, question, _, _ in streams], [ref for _, _, ref, _ in streams])
    for i in range(max(len(chunks) for chunks, _, _, _ in streams)):
        reasoner.feed_many([chunks[i] if i < len(chunks) else None for chunks, _, _, _ in streams])
    reasoner.finish_many([end for _, _, _, end in streams])
    return [row.events for row in reasoner.rollouts]
