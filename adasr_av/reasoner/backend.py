"""The model work of a session behind one small interface: rows of token ids in, sampled tokens out.

The session (spans, events, budgets, clocks, compaction) decides what each row reads and how much
it may write; a `RolloutBackend` only runs ids through the model and samples. `CacheBackend` is
the default: one batched KV cache on the model's own device, rows of different lengths padded
with holes that the attention mask hides. An engine with its own scheduler (vLLM's streaming-input
or prefix-cached requests) maps onto the same four calls: `reset` opens one request per row,
`run` appends prompt text to each, `generate` asks each for at most `caps[r]` tokens with `stops`
as stop ids, and a compaction is a `reset` followed by a `run` of the kept context.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from adasr_av.errors import AdasrError
from adasr_av.reasoner.kv_cache import StreamingCache, cache_argument, native_gqa_on_cpu
from adasr_av.reasoner.sampling import TokenSampler

MAX_ROOM = 512  # cache positions a row copy reserves up front; past that it grows as any cache does


@dataclass
class Generation:
    """What one row wrote in one `generate` call."""

    tokens: list[int] = field(default_factory=list)
    stop: int | None = None  # the closing token the model wrote, if it wrote one
    eos_id: int | None = None  # the EOS the model sampled instead (not kept: the runtime closes the span)
    logprobs: list[float] = field(default_factory=list)  # of each kept token, at the sampling temperature
    wall_s: float = 0.0

    @property
    def eos(self) -> bool:
        return self.eos_id is not None

    @property
    def body(self) -> list[int]:
        """The tokens without the closing protocol token."""
        return self.tokens[:-1] if self.stop is not None else self.tokens

    @property
    def info(self) -> dict[str, object]:
        """Flags for the event: `capped` when the token cap closed the span, `eos` (with the id the
        model chose, which the RL loss scores) when the model ended it with an EOS."""
        if self.eos:
            return {"capped": False, "eos": True, "eos_id": self.eos_id}
        return {"capped": self.stop is None}


class RolloutBackend(Protocol):
    """Runs ids through a model for `rows` independent sequences and samples their next tokens."""

    def reset(self, rows: int) -> None:
        """Forget everything: `rows` empty sequences."""

    def run(self, ids: Sequence[Sequence[int]]) -> float:
        """Append `ids[r]` to row r (a row may get none) and run them; returns wall seconds."""

    def generate(
        self, caps: Sequence[int], stops: set[int], sampler: TokenSampler, temperature: float = 1.0
    ) -> list[Generation]:
        """Sample up to `caps[r]` tokens on row r; a row stops after a token of `stops`, or at an
        EOS, which is not kept. The sampled tokens are part of the rows from then on; their
        log-probabilities are at `temperature`, the one the sampler uses."""


class CacheBackend:
    """The default backend: one batched forward per step over a hole-padded KV cache."""

    def __init__(self, model, pad_id: int, eos_ids: frozenset[int], max_positions: int | None):
        self.model = model
        self.pad_id = pad_id
        self.eos_ids = eos_ids
        self.max_positions = max_positions
        self.device = next(model.parameters()).device
        self.cache_argument = cache_argument(model)
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps it
        self.keeps_logits = "logits_to_keep" in inspect.signature(inner.forward).parameters
        self.compacts = True  # rows with nothing to do leave the batch (see `_narrowed_to`)
        self.reset(1)

    def reset(self, rows: int) -> None:
        self.rows = rows
        self.cache = StreamingCache(self.model.config)
        self.encoded_tokens = 0  # positions ever run through the model: equals the cache length
        self._queued: list[list[int]] = [[] for _ in range(rows)]  # written, not yet run
        self._logits: torch.Tensor | None = None  # [rows, vocab]: each row's next-token logits
        self._fresh = False  # whether _logits reflect every token written so far
        self._mask: torch.Tensor | None = None  # [rows, cache length], once a row has a hole
        self._positions = torch.zeros(rows, dtype=torch.long, device=self.device)
        self._part: tuple[list[int], CacheBackend] | None = None  # (its rows, the narrowed batch)
        self.batch_rows, self.all_rows = list(range(rows)), rows  # this batch's rows among all rows

    def run(self, ids: Sequence[Sequence[int]]) -> float:
        for queue, more in zip(self._queued, ids, strict=True):
            queue.extend(more)
        live, _ = self._narrowed_to([bool(q) for q in self._queued], MAX_ROOM)
        return live._forward()

    def generate(
        self, caps: Sequence[int], stops: set[int], sampler: TokenSampler, temperature: float = 1.0
    ) -> list[Generation]:
        gens = [Generation() for _ in range(self.rows)]
        t0 = time.perf_counter()
        live, rows = self._narrowed_to([cap > 0 for cap in caps], min(max(caps, default=0), MAX_ROOM))
        live._generate_into([gens[r] for r in rows], [caps[r] for r in rows], stops, sampler, temperature)
        wall = time.perf_counter() - t0
        for gen in gens:
            gen.wall_s = wall
        return gens

    def widen(self) -> None:
        """Take every narrowed batch back, so that this backend's cache, mask and positions hold
        every row again (the next call narrows again where it can)."""
        if self._part is None:
            return
        rows, part = self._part
        part.widen()
        with torch.inference_mode():  # the cache's tensors were made in it
            self._append_rows(rows, part)
        self._part = None

    # --- narrowing: rows with nothing to do leave the batch -----------------------------------
    #
    # A step's forward costs every row in the batch, pads included: the rows of a story whose
    # stream has ended, or of a span that closed early, would wait in every forward until the last
    # row is done. Once at most half the rows have work, the work runs on a copy of the cache that
    # holds only those rows (a `_part`, which may narrow again), and the full batch takes the
    # copy's new positions back, as masked holes for the rows that waited, only when a row outside
    # it has work again. Narrowing at halves bounds the copies to about twice the cache per call.

    def _narrowed_to(self, work: list[bool], room: int) -> tuple[CacheBackend, list[int]]:
        """The batch to run `work`'s rows on (every row with work in it), narrowing or widening as
        needed, and which of this backend's rows it holds, in its order."""
        if self._part is not None:
            rows, part = self._part
            inside = set(rows)
            if all(r in inside for r in range(self.rows) if work[r]):
                live, held = part._narrowed_to([work[r] for r in rows], room)
                return live, [rows[i] for i in held]
            self.widen()
        writing = [r for r in range(self.rows) if work[r]]
        if writing and self._narrows(len(writing)):
            self._narrow(writing, room)
            return self._part[1], writing
        return self, list(range(self.rows))

    def _narrows(self, n_writing: int) -> bool:
        return self.compacts and 2 * n_writing <= self.rows and self.cache.rows_selectable

    def _narrow(self, rows: list[int], room: int) -> CacheBackend:
        """Put rows `rows` in a batch of their own: a copy of their cache with room for `room` more
        tokens each (it grows past that as any cache does), their queues shared."""
        part = CacheBackend.__new__(CacheBackend)
        part.__dict__.update(self.__dict__)
        index = torch.tensor(rows, device=self.device)
        part.rows = len(rows)
        with torch.inference_mode():
            part.cache = self.cache.select_rows(index, room + max(len(self._queued[r]) for r in rows))
        part._queued = [self._queued[r] for r in rows]  # the same lists: the part runs and clears them
        part._logits = self._logits[index] if self._logits is not None else None
        part._mask = self._mask[index] if self._mask is not None else None
        part._positions = self._positions[index]
        part._part = None
        part.batch_rows = [self.batch_rows[r] for r in rows]
        self._part = (rows, part)
        return part

    def _append_rows(self, rows: list[int], part: CacheBackend) -> None:
        """Take back what `part` (a `_narrow` to rows `rows`) ran and wrote since; the other rows
        wait behind masked holes as they do when a forward pads them."""
        grown = part.encoded_tokens - self.encoded_tokens
        index = torch.tensor(rows, device=self.device)
        if grown:
            self.cache.append_rows(index, part.cache)
            if self._mask is None:
                self._mask = torch.ones(self.rows, self.encoded_tokens, dtype=torch.long, device=self.device)
            tail = torch.zeros(self.rows, grown, dtype=torch.long, device=self.device)
            tail[index] = part._mask[:, self.encoded_tokens :] if part._mask is not None else 1
            self._mask = torch.cat([self._mask, tail], dim=1)
            self.encoded_tokens = part.encoded_tokens
        if part._logits is not None:
            if self._logits is None:
                self._logits = part._logits.new_zeros((self.rows, part._logits.shape[1]))
            self._logits[index] = part._logits
        self._positions[index] = part._positions
        self._fresh = False

    def _generate_into(
        self,
        gens: list[Generation],
        caps: Sequence[int],
        stops: set[int],
        sampler: TokenSampler,
        temperature: float,
    ) -> None:
        """Sample into `gens` (one per row, possibly holding tokens already) until each row is done,
        narrowing the batch to the rows still writing once at most half of them are."""
        active = [
            len(gen.tokens) < cap and gen.stop is None and not gen.eos
            for gen, cap in zip(gens, caps, strict=True)
        ]
        while any(active):
            writing = [r for r in range(self.rows) if active[r]]
            if self._narrows(len(writing)):
                room = min(max(caps[r] - len(gens[r].tokens) for r in writing), MAX_ROOM)
                part = self._narrow(writing, room)
                part._generate_into(
                    [gens[r] for r in writing], [caps[r] for r in writing], stops, sampler, temperature
                )
                return
            if not self._fresh:
                self._forward()
            tokens = sampler(self._logits, self.batch_rows, self.all_rows)
            logprobs = torch.log_softmax(self._logits.float() / temperature, dim=-1)
            chosen = logprobs.gather(1, tokens[:, None]).squeeze(1).tolist()
            self._fresh = False
            for r, (gen, token) in enumerate(zip(gens, tokens.tolist(), strict=True)):
                if not active[r]:
                    continue
                if token in self.eos_ids and token not in stops:
                    gen.eos_id, active[r] = token, False
                    continue
                gen.tokens.append(token)
                gen.logprobs.append(chosen[r])
                self._queued[r].append(token)
                if token in stops:
                    gen.stop, active[r] = token, False
                elif len(gen.tokens) >= caps[r]:
                    active[r] = False

    def _forward(self) -> float:
        """Run every row's queued tokens in one forward (short rows padded, the pads masked)."""
        lengths = [len(q) for q in self._queued]
        width = max(lengths)
        if width == 0:  # every row's logits already follow its last token
            self._fresh = True
            return 0.0
        longest = int((self._positions + torch.tensor(lengths, device=self.device)).max())
        if self.max_positions and longest > self.max_positions:
            raise AdasrError(  # the context policy keeps this from happening; it reports a bug if it does
                f"stream too long for the model: {longest} tokens > {self.max_positions} positions"
            )
        t0 = time.perf_counter()
        inputs = torch.tensor(
            [q + [self.pad_id] * (width - n) for q, n in zip(self._queued, lengths, strict=True)],
            device=self.device,
        )
        kwargs = {}
        if self._mask is not None or min(lengths) < width:
            real = (
                torch.arange(width, device=self.device)[None, :]
                < torch.tensor(lengths, device=self.device)[:, None]
            )
            if self._mask is None:
                self._mask = torch.ones(self.rows, self.encoded_tokens, dtype=torch.long, device=self.device)
            self._mask = torch.cat([self._mask, real.long()], dim=1)
            positions = self._positions[:, None] + torch.arange(width, device=self.device)[None, :]
            kwargs = {"attention_mask": self._mask, "position_ids": positions}
        last = [max(n - 1, 0) for n in lengths]
        keep = width - min(last)  # only the columns some row's next token is read from
        if self.keeps_logits:
            kwargs["logits_to_keep"] = keep
        with torch.inference_mode(), native_gqa_on_cpu(self.device):
            out = self.model(input_ids=inputs, use_cache=True, **{self.cache_argument: self.cache}, **kwargs)
        self._check_cache(self.encoded_tokens + width)
        offset = width - out.logits.shape[1]  # 0 when the model returned every column
        index = torch.tensor([i - offset for i in last], device=self.device)
        logits = out.logits[torch.arange(self.rows, device=self.device), index, :]
        if self._logits is not None and min(lengths) == 0:
            # a row with nothing to run (its last token was run earlier) keeps the logits it had: a
            # row whose deep phase ended first samples its answer from them, not from a pad
            ran = torch.tensor(lengths, device=self.device)[:, None] > 0
            logits = torch.where(ran, logits, self._logits)
        self._logits, self._fresh = logits, True
        self._positions = self._positions + torch.tensor(lengths, device=self.device)
        self.encoded_tokens += width
        for queue in self._queued:
            queue.clear()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def _check_cache(self, expected: int) -> None:
        """The model must have written what it was fed into the cache it was given: one that ignored
        the cache argument would see only the newest tokens from then on, with no error."""
        cached = self.cache.get_seq_length()
        if cached != expected:
            import transformers

            raise AdasrError(
                f"the model ignored its KV cache: {cached} tokens cached after {expected} fed "
                f"(transformers {transformers.__version__} takes it as `{self.cache_argument}`?)"
            )
