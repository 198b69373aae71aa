"""The policy loss: log-probabilities recomputed on the exact sequences the rollouts produced, and a
clipped surrogate with separate low and high clip ranges, averaged over all model-written tokens.

Sequences are right-padded into one batch with an attention mask; every rollout's tokens sit at
positions 0..n-1, the positions its own session gave them, so the recomputed log-probabilities are
those the rollout was sampled from (up to float error). Environment tokens carry mask 0. A position
is scored for its target, the sequence's own next token except where the model sampled EOS inside a
span and the runtime wrote the span's closing token in its place (`SampledRollout.model_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PolicyBatch:
    """Right-padded rollouts: `input_ids`/`attention_mask` [B, T]; the rest [B, T-1], aligned with
    the token each position predicts (token t+1)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor  # 1 where the model wrote the predicted token
    advantages: torch.Tensor
    targets: torch.Tensor  # the token each position is scored for (the model's choice)


def policy_batch(
    sequences: list[list[int]],
    masks: list[list[bool]],
    advantages: list[list[float]],
    pad_id: int,
    targets: list[list[int]] | None = None,
) -> PolicyBatch:
    """`targets[b]` (default: the sequence itself) is what each position of sequence b is scored for."""
    targets = sequences if targets is None else targets
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    chosen = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    loss_mask = torch.zeros((len(sequences), width), dtype=torch.float)
    adv = torch.zeros((len(sequences), width), dtype=torch.float)
    for b, (seq, mask, a, target) in enumerate(zip(sequences, masks, advantages, targets, strict=True)):
        n = len(seq)
        ids[b, :n] = torch.tensor(seq)
        chosen[b, :n] = torch.tensor(target)
        attention[b, :n] = 1
        loss_mask[b, :n] = torch.tensor(mask, dtype=torch.float)
        adv[b, :n] = torch.tensor(a, dtype=torch.float)
    return PolicyBatch(ids, attention, loss_mask[:, 1:], adv[:, 1:], chosen[:, 1:])


def token_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 1.0,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(target t | tokens ..t) for every position: [B, T-1], at the sampling temperature, so
    that the policy being optimised is the one the rollouts were drawn from. `targets` [B, T-1]
    default to the next tokens, `input_ids[:, 1:]`."""
    targets = input_ids[:, 1:] if targets is None else targets
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float() / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, :, None]).squeeze(-1)


@dataclass(frozen=True)
class LossStats:
    clip_fraction: float
    kl: float
    tokens: int


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    n_tokens: int | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """`-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)` per token, plus `kl_coef` times the k3
    estimate of KL to the reference, summed over masked tokens and divided by `n_tokens` (default:
    this batch's count; pass the step's total when the step is split into micro-batches)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None and kl_coef:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1.0
        per_token = per_token + kl_coef * kl
    count = int(mask.sum())
    denominator = n_tokens or max(count, 1)
    loss = (per_token * mask).sum() / denominator
    was_clipped = ((ratio < 1.0 - eps_low) & (advantages < 0)) | ((ratio > 1.0 + eps_high) & (advantages > 0))
    with torch.no_grad():
        stats = LossStats(
            clip_fraction=float((was_clipped.float() * mask).sum() / max(count, 1)),
            kl=float((kl * mask).sum() / max(count, 1)),
            tokens=count,
        )
    return loss, stats
