"""Next-token choice: greedy, or sampling through transformers' temperature / top-k / top-p warpers."""

from __future__ import annotations

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

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if not self.options.do_sample:
            return logits.argmax(dim=-1)
        scores = self.warpers(torch.empty(0, dtype=torch.long), logits)
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
