"""What both trainers start a model with: the model section of their configs, LoRA adapters and
the optimizer (SFT and HRPO import these from here, not from each other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from adasr_av.reasoner.protocol import PROTOCOL_TOKENS


@dataclass
class ModelConfig:
    init: str = "scratch"  # "scratch", or a model folder, bundled model name or hub id to fine-tune
    # weights of a loaded model; "auto": the checkpoint's on an accelerator, float32 on CPU
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: bool = False  # wrap the question in the tokenizer's chat template (run --chat-template)
    arch: Literal["qwen3", "gpt2"] = "qwen3"  # scratch only, like the four below
    hidden: int = 256
    layers: int = 6
    head_dim: int = 32
    max_positions: int = 1024
    vocab_size: int = 1024  # BPE vocabulary trained on the corpus
    tokenizer_stories: int = 5000  # stories the tokenizer is trained on
    tokenizer_english_words: int = 0  # and this many everyday English words (wordfreq); 0: stories only
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_train_protocol_tokens: bool = True  # train the protocol tokens' embeddings beside the adapters


def with_lora(model, tokenizer, m: ModelConfig):
    """The model wrapped with LoRA adapters as `m` describes."""
    from peft import LoraConfig, get_peft_model

    # A base model that never saw the protocol tokens has untrained rows for them: train those
    # rows too (peft's trainable tokens), not the whole embedding matrix.
    protocol = tokenizer.convert_tokens_to_ids(list(PROTOCOL_TOKENS))
    lora = LoraConfig(
        r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
        target_modules=m.lora_targets, task_type="CAUSAL_LM",
        trainable_token_indices=protocol if m.lora_train_protocol_tokens else None,
    )  # fmt: skip
    return get_peft_model(model, lora)


def adamw(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases, norms and other vectors."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
