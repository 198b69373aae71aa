"""Next-token choice: greedy, or sampling through transformers' temperature / top-k / top-p warpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


@dataclass(frozen=True)
class SamplingOptions:
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0


class TokenSampler:
    """Picks one token per row of a [batch, vocab] logits tensor; seeded, so runs repeat."""

    def __init__(self, options: SamplingOptions, device: torch.device | str = "cpu"):
        if options.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {options.temperature}")
        if not 0 < options.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {options.top_p}")
        self.options = options
        self.warpers = LogitsProcessorList()
        if options.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(options.temperature))
        if options.top_k > 0:
            self.warpers.append(TopKLogitsWarper(options.top_k))
        if options.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(options.top_p))
        self.generator = torch.Generator(device=device).manual_seed(options.seed)

    def __call__(
        self, logits: torch.Tensor, rows: Sequence[int] | None = None, of: int | None = None
    ) -> torch.Tensor:
        """`rows`: which rows of a batch of `of` these logits are (all of them when not given).
        Each call draws one uniform number per row of the whole batch and samples by inverse CDF,
        so what a row draws does not depend on which other rows are in the call (a backend drops
        rows that have nothing to do)."""
        logits = logits.float()
        if not self.options.do_sample:
            return logits.argmax(dim=-1)
        scores = self.warpers(torch.empty(0, dtype=torch.long), logits)
        cdf = torch.softmax(scores, dim=-1).cumsum(dim=-1)
        u = torch.rand(of or len(logits), generator=self.generator, device=self.generator.device)
        if rows is not None:
            u = u[torch.tensor(rows, device=u.device)]
        u = u.to(cdf.device)[:, None] * cdf[:, -1:]  # under the total: a token of probability 0 is never hit
        return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)
