"""Supervised warm-up on interleaved streaming sequences, for any Hugging Face causal LM.

Full fine-tuning or LoRA (peft), through accelerate (one CPU, one GPU or many). The batch order is
a pure function of (seed, epoch), and checkpoints hold model, optimizer, scheduler and RNG state,
so a run that is killed and started again continues where its last checkpoint left it (its log
and config with it: training/run_folder.py).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from adasr_av.data.asr_channel import ASRChannel, apply_channel
from adasr_av.data.dataset import StreamedStory, read_dataset
from adasr_av.data.teacher import Style, gold_spans
from adasr_av.errors import AdasrError
from adasr_av.training.model_setup import (
    ModelConfig,
    adamw,
    checkpoint_activations,
    fit_backend,
    with_lora,
)
from adasr_av.training.run_folder import (
    BestValidation,
    decided_once,
    finish_run,
    log_line,
    make_accelerator,
    resume,
    save_checkpoint,
    save_final,
    start_run,
)
from adasr_av.training.sequences import Example, encode_story, iterate_batches, merge_chunks


@dataclass
class DataConfig:
    train: str | list[str] = ""  # one dataset or several, pooled
    valid: str | None = None
    mode: Literal["streaming", "read-then-think"] = "streaming"
    adaptive_fraction: float = 0.0  # share of stories taught in the adaptive style (skips, short deep)
    merge_prob: float = 0.0  # chance to join neighbouring chunks, as streaming ASR does
    asr_channel: str | None = None  # a measured ASR channel (JSON, asr_channel.ASRChannel) ...
    channel_fraction: float = 0.0  # ... that this share of the stories goes through instead of merging
    video_fraction: float = 0.0  # share of the stories given as a video clip gives them (data.video_mode)
    video_clips: list[str] = field(default_factory=lambda: ["slideshow", "narrated", "mixed"])
    max_stories: int = 0  # 0: all
    skip_too_long: bool = False  # drop stories longer than the model's positions (else an error)
    valid_stories: int = 200


@dataclass
class TrainConfig:
    output: str = ""
    seed: int = 0
    batch_size: int = 16  # sequences per forward/backward (DeepSpeed's micro-batch) ...
    grad_accum: int = 1  # ... and forward/backwards per optimizer step (the TOML wins over a YAML)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    epochs: int = 1
    max_steps: int = 0  # 0: as many as the epochs give
    save_every: int = 200
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    gradient_checkpointing: bool = False  # recompute layers in backward: less memory, ~1/3 more time
    patience: int = 0  # > 0: stop after this many validations without a new best; final = the best
    max_minutes: float = 0.0  # 0: no time limit; else stop, checkpoint and save when reached

    def __post_init__(self) -> None:
        if self.patience < 0:
            raise AdasrError(f"config: 'train.patience' must be 0 or more, got {self.patience}")


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def story_style(seed: int, index: int, adaptive_fraction: float) -> Style:
    return "adaptive" if random.Random(f"style:{seed}:{index}").random() < adaptive_fraction else "uniform"


def load_stories(paths: str | list[str], limit: int = 0) -> list[StreamedStory]:
    """The stories of one dataset or of several in turn (`limit`: the first ones of each)."""
    stories = []
    for path in [paths] if isinstance(paths, str) else paths:
        taken = []
        for story in read_dataset(path, need_gold=True):
            taken.append(story)
            if limit and len(taken) >= limit:
                break
        if not taken:
            raise AdasrError(f"dataset {path}: no stories")
        stories += taken
    return stories


def build_examples(
    tokenizer, stories: list[StreamedStory], data: DataConfig, seed: int, chat_template: bool = False
) -> list[Example]:
    from adasr_av.data.video_mode import CLIP_KINDS, as_clip

    if unknown := set(data.video_clips) - set(CLIP_KINDS):
        raise AdasrError(
            f"config: 'data.video_clips' has {', '.join(sorted(unknown))}; known: {', '.join(CLIP_KINDS)}"
        )
    channel = ASRChannel.load(data.asr_channel) if data.asr_channel else None
    if channel is None and data.channel_fraction > 0:
        raise AdasrError("config: 'data.channel_fraction' needs 'data.asr_channel'")
    examples = []
    for i, story in enumerate(stories):
        style = story_style(seed, i, data.adaptive_fraction)
        rng = random.Random(f"merge:{seed}:{i}")
        if data.video_fraction > 0 and random.Random(f"video:{seed}:{i}").random() < data.video_fraction:
            story = as_clip(story, rng.choice(data.video_clips), rng)
        elif channel is not None and rng.random() < data.channel_fraction:
            story = apply_channel(story, channel, rng)
        else:
            story = merge_chunks(story, rng, data.merge_prob)
        examples.append(encode_story(tokenizer, story, style, data.mode, chat_template=chat_template))
    return examples


def _scratch_model(config: SFTConfig, stories: list[StreamedStory], folder: Path, accelerator):
    """Tokenizer trained on the corpus and a fresh model, saved once (by the main rank) so every
    rank and a resumed run load the same ones."""
    from adasr_av.reasoner.loading import load_reasoner_model
    from adasr_av.reasoner.scratch import build_model, everyday_english, train_tokenizer

    if accelerator.is_main_process and not (folder / "config.json").is_file():
        m, d = config.model, config.data
        sample = stories[:: max(1, len(stories) // m.tokenizer_stories)][: m.tokenizer_stories]
        texts = ["".join(text for _, text in gold_spans(s, "uniform", d.mode)) for s in sample]
        texts += ["".join(text for _, text in gold_spans(s, "adaptive", d.mode)) for s in sample[:200]]
        if m.tokenizer_english_words:
            texts += list(everyday_english(m.tokenizer_english_words))
        tokenizer = train_tokenizer(texts, m.vocab_size)
        model = build_model(
            tokenizer, m.arch, config.train.seed, hidden=m.hidden, layers=m.layers,
            head_dim=m.head_dim, max_positions=m.max_positions,
        )  # fmt: skip
        tmp = folder.with_name(folder.name + ".partial")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.replace(folder)
    accelerator.wait_for_everyone()
    return load_reasoner_model(str(folder), dtype=torch.float32)


def _load_model(config: SFTConfig, stories: list[StreamedStory], output: Path, accelerator):
    from adasr_av.reasoner.loading import load_reasoner_model

    m = config.model
    if m.init == "scratch":
        model, tokenizer = _scratch_model(config, stories, output / "init", accelerator)
    else:
        model, tokenizer = load_reasoner_model(m.init, device=str(accelerator.device), dtype=m.dtype)
    if m.lora:
        model = with_lora(model, tokenizer, m)
    if config.train.gradient_checkpointing:
        checkpoint_activations(model)
    return model.train(), tokenizer


def train_sft(config: SFTConfig, progress: bool = True) -> Path:
    """Train; returns the folder of the final model (tokenizer included)."""
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    t, d = config.train, config.data
    if not t.output:
        raise AdasrError("config: key 'train.output' is required")
    if not d.train:
        raise AdasrError("config: key 'data.train' is required")
    output = Path(t.output)
    final = output / "final"
    if (final / "config.json").is_file():
        print(f"adasr-av: {final} is already trained (delete it to train again)")
        return final
    stories = load_stories(d.train, d.max_stories)  # a bad dataset fails before the run folder is made
    valid_stories = load_stories(d.valid, d.valid_stories) if d.valid else []
    accelerator = make_accelerator(t.grad_accum)
    fit_backend(accelerator, t.batch_size, t.grad_accum, t.max_grad_norm)
    start_run(output, config, accelerator)
    set_seed(t.seed)
    model, tokenizer = _load_model(config, stories, output, accelerator)
    chat = config.model.chat_template
    examples = build_examples(tokenizer, stories, d, t.seed, chat)
    valid = build_examples(tokenizer, valid_stories, d, t.seed + 1, chat) if valid_stories else []
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and d.skip_too_long:
        kept = [e for e in examples if len(e) <= limit]
        accelerator.print(f"adasr-av: {len(examples) - len(kept)} stories longer than {limit} tokens skipped")
        examples, valid = kept, [e for e in valid if len(e) <= limit]
    too_long = max(len(e) for e in examples)
    if limit and too_long > limit:
        raise AdasrError(
            f"dataset {d.train}: a sequence has {too_long} tokens, the model takes {limit} "
            "(data.skip_too_long = true drops such stories)"
        )

    batches_per_epoch = math.ceil(len(examples) / t.batch_size)
    steps_per_epoch = batches_per_epoch // (t.grad_accum * accelerator.num_processes)
    total_steps = t.max_steps or steps_per_epoch * t.epochs
    epochs = math.ceil(total_steps / max(steps_per_epoch, 1))
    optimizer = adamw(model, t.lr, t.weight_decay)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, t.warmup_steps, total_steps, min_lr_rate=t.min_lr_ratio
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step = resume(accelerator, output, total_steps)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = iterate_batches(examples, t.batch_size, t.seed, epochs, pad)
    rank, world = accelerator.process_index, accelerator.num_processes
    skip = step * t.grad_accum * world  # batches the steps done so far consumed
    log_path = output / "log.jsonl"
    bar = tqdm(total=total_steps, initial=step, desc="sft", disable=not progress, unit="step")
    started, tokens, losses = time.time(), 0, []
    best = BestValidation.from_log(log_path)  # a resumed run keeps its best and its count since
    for index, batch in enumerate(batches):
        if step >= total_steps:
            break
        if index < skip or index % world != rank:
            continue
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients:  # once per optimizer step, whatever the world size
                scheduler.step()
            optimizer.zero_grad()
        tokens += int(batch["attention_mask"].sum())
        losses.append(loss.item())
        if not accelerator.sync_gradients:
            continue
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        elapsed = time.time() - started
        out_of_time = decided_once(accelerator, t.max_minutes and elapsed > t.max_minutes * 60)
        record = {}
        if step % t.log_every == 0 or step == total_steps or out_of_time:
            loss_mean, all_tokens = _over_ranks(accelerator, sum(losses) / len(losses), tokens)
            record = {
                "step": step,
                "loss": round(loss_mean, 4),
                "lr": scheduler.get_last_lr()[0],
                "tokens_per_s": round(all_tokens / elapsed, 1),
                "elapsed_s": round(elapsed, 1),
            }
            losses = []
        last = step == total_steps or out_of_time  # the run's valid loss goes in its last record
        stop_early = False
        if valid and ((t.eval_every and step % t.eval_every == 0) or last):
            record = record or {"step": step}
            record["valid_loss"] = round(validation_loss(model, valid, t.batch_size, pad, accelerator), 4)
            if best.update(step, record["valid_loss"]) and t.patience:
                save_final(accelerator, model, tokenizer, output, name="best")
            stop_early = bool(t.patience) and best.since >= t.patience
        if record:
            log_line(accelerator, log_path, record)
        if step % t.save_every == 0 or out_of_time or stop_early:
            save_checkpoint(accelerator, output, step)
        if out_of_time:
            accelerator.print(f"adasr-av: time limit of {t.max_minutes} min reached at step {step}")
            break
        if stop_early:
            accelerator.print(
                f"adasr-av: validation loss not better for {t.patience} validations; stopping at step "
                f"{step}, the final model is step {best.step}'s (validation loss {best.loss})"
            )
            break
    bar.close()
    if t.patience and (output / "best").is_dir():
        return finish_run(accelerator, model, tokenizer, output, use_saved="best")
    return finish_run(accelerator, model, tokenizer, output)


def _over_ranks(accelerator, loss: float, tokens: int) -> tuple[float, int]:
    """The ranks' mean loss and their tokens together (each rank trains on its own batches)."""
    both = accelerator.reduce(torch.tensor([loss, float(tokens)], device=accelerator.device), "sum")
    return float(both[0]) / accelerator.num_processes, int(both[1])


@torch.no_grad()
def validation_loss(model, examples: list[Example], batch_size: int, pad: int, accelerator) -> float:
    """Mean loss per model-written token over all the examples, each rank taking every
    world-th batch and one reduce adding the sums (every rank gets the same figure, so the
    patience decision is the same everywhere). The unwrapped model runs the forwards: DDP's
    forward would broadcast buffers, a collective the ranks' unequal shares would leave unmatched."""
    from adasr_av.training.sequences import IGNORE, collate

    net = accelerator.unwrap_model(model)
    net.eval()
    total, count = 0.0, 0
    first, stride = accelerator.process_index * batch_size, batch_size * accelerator.num_processes
    for start in range(first, len(examples), stride):
        batch = collate(examples[start : start + batch_size], pad)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        total += net(**batch).loss.item() * n
        count += n
    net.train()
    sums = torch.tensor([total, float(count)], dtype=torch.float64, device=accelerator.device)
    total, count = accelerator.reduce(sums, "sum").tolist()
    return total / max(count, 1.0)
