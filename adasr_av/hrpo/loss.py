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
from torch.utils.checkpoint import checkpoint


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


LOGPROB_CHUNK = 1024  # scored positions whose full-vocabulary logits exist at once (fp32: 4 B x vocab each)


def token_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 1.0,
    targets: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
    chunk: int = LOGPROB_CHUNK,
) -> torch.Tensor:
    """log p(target t | tokens ..t): [B, T-1], at the sampling temperature, so that the policy being
    optimised is the one the rollouts were drawn from. `targets` [B, T-1] default to the next tokens,
    `input_ids[:, 1:]`; only `positions` (bool [B, T-1], default all) are scored, the rest are 0.

    The body runs once; the output head runs on the scored positions only, `chunk` at a time, each
    chunk recomputed in backward rather than kept: a [B, T, vocab] fp32 tensor never exists (for
    Qwen3 and a few thousand tokens it would be several GB)."""
    targets = input_ids[:, 1:] if targets is None else targets
    if positions is None:
        positions = torch.ones_like(targets, dtype=torch.bool)
    # logits_to_keep=1: the model's own logits only for the last position, which nothing scores
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
        use_cache=False, logits_to_keep=1,
    )  # fmt: skip
    hidden = out.hidden_states[-1][:, :-1]  # the final (normed) states, the head's input
    scored = positions.bool()
    empty = not bool(scored.any())
    if empty:  # still reach every parameter, at zero weight: DDP pairs every backward
        scored = torch.zeros_like(scored)
        scored[0, 0] = True
    rows, cols = scored.nonzero(as_tuple=True)
    values = torch.cat([
        _scored_chunk(output_head(model), hidden[rows[i : i + chunk], cols[i : i + chunk]],
                      targets[rows[i : i + chunk], cols[i : i + chunk]], temperature)
        for i in range(0, len(rows), chunk)
    ])  # fmt: skip
    values = values * 0.0 if empty else values
    return hidden.new_zeros(targets.shape, dtype=torch.float32).index_put((rows, cols), values)


def output_head(model):
    """The module that turns final hidden states into logits, under DDP, DeepSpeed and peft wrappers
    (peft's trainable-token rows included)."""
    while not hasattr(model, "get_output_embeddings") and hasattr(model, "module"):
        model = model.module
    return model.get_output_embeddings()


def _scored_chunk(head, hidden: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    if torch.is_grad_enabled():
        return checkpoint(_chunk_logprobs, head, hidden, targets, temperature, use_reentrant=False)
    return _chunk_logprobs(head, hidden, targets, temperature)


def _chunk_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = head(hidden).float() / temperature
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


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
