"""What both trainers start a model with: the model section of their configs, LoRA adapters,
activation checkpointing, the optimizer and the backend's batch settings (SFT and HRPO import these
from here, not from each other)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def merged_lora(model) -> Iterator[None]:
    """LoRA's deltas folded into the base weights for the duration (rollouts then decode with plain
    matmuls, not base + B @ A in every layer at every token), unfolded after; no-op without adapters.

    Unmerging subtracts the delta again, which in bfloat16 would not give the base weights back (an
    ulp of drift per layer per step, compounding): the weights LoRA touches are copied before the
    merge and put back after, so the base is exact whatever the dtype (memory: one copy of them)."""
    if not hasattr(model, "merge_adapter"):
        yield
        return
    layers = [m.base_layer for m in model.modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")]
    saved = [layer.weight.detach().clone() for layer in layers]
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for layer, weight in zip(layers, saved, strict=True):
                layer.weight.copy_(weight)


def adamw(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases, norms and other vectors."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def checkpoint_activations(model) -> None:
    """Recompute each layer in backward instead of keeping its activations (non-reentrant, so frozen
    LoRA bases and keyword inputs work): memory of one layer's activations, about a third more time."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def checkpoint_in_eval(model) -> None:
    """Let activation checkpointing run while the model is in eval mode.

    transformers checkpoints a layer only while that layer is in training mode, and HRPO
    differentiates the policy in eval mode (dropout off: the policy that sampled). Marking only the
    checkpointed layers as training turns their checkpointing on and leaves every module inside
    them, dropout and attention included, in eval. Call it after each `model.eval()`."""
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) and hasattr(
            module, "_gradient_checkpointing_func"
        ):
            module.training = True


def fit_backend(accelerator, micro_batch: int, accumulation: int, max_grad_norm: float) -> None:
    """Make the config's batch values the ones accelerate and DeepSpeed use; call before `prepare`.

    `accelerate launch` with a DeepSpeed YAML sets the accumulation count from the YAML over the
    Accelerator's argument, and DeepSpeed reads its micro-batch size off a dataloader these trainers
    do not pass (it refuses to start without one). The run folder records the TOML, so the TOML wins."""
    from accelerate.utils import DistributedType

    accelerator.gradient_accumulation_steps = accumulation
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    plugin = accelerator.state.deepspeed_plugin
    plugin.deepspeed_config.update(
        train_micro_batch_size_per_gpu=micro_batch,
        gradient_accumulation_steps=accumulation,
        train_batch_size=micro_batch * accumulation * accelerator.num_processes,
        gradient_clipping=max_grad_norm,
    )
    plugin.gradient_accumulation_steps, plugin.gradient_clipping = accumulation, max_grad_norm


def loss_divisor(accelerator) -> int:
    """What `accelerator.backward` divides a loss by: accelerate's accumulation count, or under
    DeepSpeed the engine's own (its config's, whatever accelerate's count is now)."""
    engine = getattr(accelerator, "deepspeed_engine_wrapped", None)
    if engine is not None:
        return int(engine.engine.gradient_accumulation_steps())
    return accelerator.gradient_accumulation_steps
