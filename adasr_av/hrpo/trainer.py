"""The HRPO trainer: sample groups of streaming rollouts, score them in stream seconds, give every
model-written token its hierarchical advantage, and take clipped policy-gradient steps.

One step takes `prompts_per_step` stories in a fixed order (a pure function of seed and epoch) and
samples each with seeds derived from (seed, step, story), so a run killed and resumed from its last
checkpoint continues exactly as if it had never stopped. lambda = 0 is GRPO.

Under several processes each rank samples its share of the step's stories (the same number on
each) and drops its own groups that carry no signal, then every rank runs the same number of
micro-batches, padded with ones that weigh nothing, so DDP's collectives pair up whatever was
dropped; the loss is normalised by the tokens of all ranks and the log counts every rank's groups.
"""

from __future__ import annotations

import importlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adasr_av.data.dataset import StreamedStory, read_dataset
from adasr_av.errors import AdasrError
from adasr_av.evaluation import summarise
from adasr_av.hrpo.advantages import Granularity, carries_signal, token_advantages
from adasr_av.hrpo.loss import clipped_surrogate, policy_batch, token_logprobs
from adasr_av.hrpo.rewards import (
    RewardFn,
    accuracy_reward,
    adaptive_time_reward,
    deep_reward,
    format_reward,
    stream_reward,
    unit_rewards,
)
from adasr_av.hrpo.rollouts import SampledRollout, sample_group, sample_groups
from adasr_av.reasoner.sampling import SamplingOptions
from adasr_av.reasoner.session import ReasonerOptions, StreamingReasoner
from adasr_av.timing import CostModelClock, load_cost_model
from adasr_av.training.model_setup import (
    ModelConfig,
    adamw,
    checkpoint_activations,
    checkpoint_in_eval,
    fit_backend,
    loss_divisor,
    merged_lora,
    with_lora,
)
from adasr_av.training.run_folder import (
    decided_once,
    finish_run,
    log_line,
    make_accelerator,
    resume,
    save_checkpoint,
    start_run,
)

BUILTIN_REWARDS = ("format", "accuracy", "time")


@dataclass
class RolloutConfig:
    group_size: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_unit_tokens: int = 96
    max_deep_tokens: int = 256
    lag_hint: bool = False  # tell the model each chunk's current lag inside its span
    cost_profile: str = "paper"  # the clock of the latency reward: "paper" or a calibrate JSON
    # groups decoded together as the rows of one session (0: all of a step's on this process); the
    # KV cache grows with rows x tokens, so big models on one GPU set a few
    groups_together: int = 0


@dataclass
class ObjectiveConfig:
    lam: float = 0.5  # token advantage (1 - lam) * A_global + lam * A_phase; 0 is GRPO
    granularity: Granularity = "stage"
    rewards: list[str] = field(default_factory=lambda: list(BUILTIN_REWARDS))  # or "module:function"
    alpha: float = 1.0  # weight of streaming overflow in the time reward
    beta: float = 1.0  # weight of answer latency
    tau: float = 5.0  # time scale, stream seconds
    eps_low: float = 0.2
    eps_high: float = 0.28
    kl_coef: float = 0.0  # KL to the reference (the base with adapters off, under LoRA)
    drop_zero_variance: bool = True  # groups where no token got an advantage teach nothing
    updates_per_batch: int = 1  # optimizer steps on each batch of rollouts (>1 makes clipping bite)


@dataclass
class HRPODataConfig:
    train: str = ""
    max_stories: int = 0  # 0: all


@dataclass
class HRPOTrainConfig:
    output: str = ""
    seed: int = 0
    prompts_per_step: int = 4
    micro_batch: int = 8  # at most this many sequences per forward/backward ...
    micro_batch_tokens: int = 0  # ... and at most this many tokens, padding included (0: no limit)
    gradient_checkpointing: bool = False  # recompute layers in backward: less memory, ~1/3 more time
    lr: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int = 100
    save_every: int = 20
    max_minutes: float = 0.0  # 0: no limit; else stop, checkpoint and save when reached


@dataclass
class HRPOConfig:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(init=""))
    data: HRPODataConfig = field(default_factory=HRPODataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    hrpo: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: HRPOTrainConfig = field(default_factory=HRPOTrainConfig)


def reward_functions(o: ObjectiveConfig) -> list[RewardFn]:
    """The global reward's terms: the built-in names, or `package.module:function` of a user's own."""
    builtin = {
        "format": format_reward,
        "accuracy": accuracy_reward,
        "time": adaptive_time_reward(o.alpha, o.beta, o.tau),
    }
    fns = []
    for name in o.rewards:
        if name in builtin:
            fns.append(builtin[name])
            continue
        module, _, attr = name.partition(":")
        try:
            fns.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError, ValueError):
            known = ", ".join(BUILTIN_REWARDS)
            raise AdasrError(
                f"config: key 'hrpo.rewards': unknown reward {name!r} (use {known} or module:function)"
            ) from None
    return fns


def check_config(config: HRPOConfig) -> None:
    t, r, o = config.train, config.rollout, config.hrpo
    required = (
        ("train.output", t.output),
        ("data.train", config.data.train),
        ("model.init", config.model.init),
    )
    for key, value in required:
        if not value:
            raise AdasrError(f"config: key '{key}' is required")
    if config.model.init == "scratch":
        raise AdasrError(
            "config: key 'model.init' must be a trained model (HRPO starts from a supervised one)"
        )
    checks = (
        ("rollout.group_size", r.group_size >= 2, "at least 2 (advantages compare rollouts in a group)"),
        ("rollout.temperature", r.temperature > 0, "positive"),
        ("rollout.groups_together", r.groups_together >= 0, "0 (all of a step's) or more"),
        ("hrpo.lam", 0.0 <= o.lam <= 1.0, "in [0, 1]"),
        ("hrpo.eps_low", 0.0 <= o.eps_low < 1.0, "in [0, 1)"),
        ("hrpo.eps_high", o.eps_high >= 0.0, "non-negative"),
        ("hrpo.tau", o.tau > 0, "positive"),
        ("hrpo.updates_per_batch", o.updates_per_batch >= 1, "at least 1"),
        ("train.prompts_per_step", t.prompts_per_step >= 1, "at least 1"),
        ("train.max_steps", t.max_steps >= 1, "at least 1"),
        ("train.micro_batch", t.micro_batch >= 1, "at least 1"),
        ("train.micro_batch_tokens", t.micro_batch_tokens >= 0, "0 (no limit) or more"),
    )
    for key, ok, what in checks:
        if not ok:
            raise AdasrError(f"config: key '{key}' must be {what}")


def load_prompts(path: str, limit: int = 0) -> list[StreamedStory]:
    """The training stories; each needs its reference answer (the accuracy reward compares to it)."""
    stories = []
    try:
        for story in read_dataset(path, need_answer=True):
            stories.append(story)
            if limit and len(stories) >= limit:
                break
    except AdasrError as err:
        if "answer" in str(err):
            raise AdasrError(f"HRPO needs a reference answer for every story: {err}") from None
        raise
    if not stories:
        raise AdasrError(f"dataset {path}: no stories")
    return stories


def prompt_order(n: int, seed: int, step: int, per_step: int) -> list[int]:
    """The story indices of `step`: a fresh permutation every epoch, fixed by the seed."""
    out = []
    for k in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(k, n)
        order = list(range(n))
        random.Random(f"hrpo:{seed}:{epoch}").shuffle(order)
        out.append(order[i])
    return out


@dataclass
class RolloutGroup:
    """One prompt's group: its rollouts, each rollout's per-token advantages, its global rewards."""

    rollouts: list[SampledRollout]
    advantages: list[list[float]]
    rewards: list[float]


def rollout_options(config: HRPOConfig, sample_seed: int) -> ReasonerOptions:
    """The session options of a step's rollouts: sampled, with the recipe's caps and prompt."""
    r = config.rollout
    sampling = SamplingOptions(do_sample=True, temperature=r.temperature, top_p=r.top_p, seed=sample_seed)
    return ReasonerOptions(
        sampling=sampling,
        max_unit_tokens=r.max_unit_tokens,
        max_deep_tokens=r.max_deep_tokens,
        lag_hint=r.lag_hint,
        chat_template=config.model.chat_template,  # the prompt the SFT sequences were built with
    )


def scored_group(rollouts: list[SampledRollout], story: StreamedStory, config: HRPOConfig) -> RolloutGroup:
    """One story's sampled group with its rewards and each token's advantage."""
    o = config.hrpo
    scored = [x.scored for x in rollouts]
    records = [story.record] * len(rollouts)
    global_rewards = [sum(v) for v in zip(*(fn(scored, records) for fn in reward_functions(o)), strict=True)]
    with_format, with_time = "format" in o.rewards, "time" in o.rewards
    stream = stream_reward(o.alpha, o.tau, with_format, with_time)(scored, records)
    deep = deep_reward(o.beta, o.tau, with_format, with_time)(scored, records)
    units = (
        unit_rewards(scored, records, o.alpha, o.tau, with_format, with_time)
        if o.granularity == "unit"
        else None
    )
    labels = [x.labels for x in rollouts]
    advantages = token_advantages(labels, global_rewards, stream, deep, o.lam, o.granularity, units)
    return RolloutGroup(rollouts, advantages, global_rewards)


def group_step(
    model, tokenizer, story: StreamedStory, config: HRPOConfig, clock, sample_seed: int
) -> RolloutGroup:
    """Sample one story's group and give each token its advantage (TRL's path: one prompt a call)."""
    options = rollout_options(config, sample_seed)
    reasoner = StreamingReasoner(model, tokenizer, options, clock, group_size=config.rollout.group_size)
    return scored_group(sample_group(reasoner, story), story, config)


def step_groups(
    model, tokenizer, stories: list[StreamedStory], config: HRPOConfig, clock, sample_seed: int
) -> list[RolloutGroup]:
    """A step's groups (this process's stories), `rollout.groups_together` at a time decoded as the
    rows of one session (one batched forward per token for all of them, not one per group), then
    scored group by group. Batch b samples with seed `sample_seed + b`."""
    r = config.rollout
    size = r.groups_together or max(len(stories), 1)
    groups: list[RolloutGroup] = []
    for b, start in enumerate(range(0, len(stories), size)):
        batch = stories[start : start + size]
        options = rollout_options(config, sample_seed + b)
        reasoner = StreamingReasoner(model, tokenizer, options, clock, group_size=r.group_size)
        sampled = sample_groups(reasoner, batch)
        groups += [
            scored_group(rollouts, story, config) for rollouts, story in zip(sampled, batch, strict=True)
        ]
    return groups


def train_hrpo(config: HRPOConfig, progress: bool = True) -> Path:
    """Train; returns the folder of the final model."""
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from adasr_av.reasoner.loading import load_reasoner_model

    check_config(config)
    t, o = config.train, config.hrpo
    output = Path(t.output)
    final = output / "final"
    if (final / "config.json").is_file():
        print(f"adasr-av: {final} is already trained (delete it to train again)")
        return final
    stories = load_prompts(config.data.train, config.data.max_stories)
    reward_functions(o)  # unknown reward names fail before the model loads
    clock = CostModelClock(load_cost_model(config.rollout.cost_profile))

    accelerator = make_accelerator()
    _refuse_sharded_parameters(accelerator)
    if t.prompts_per_step % accelerator.num_processes:
        raise AdasrError(
            f"config: key 'train.prompts_per_step' ({t.prompts_per_step}) must be divisible by the "
            f"number of processes ({accelerator.num_processes}): each samples the same share of a step"
        )
    fit_backend(accelerator, t.micro_batch, _nominal_micro_batches(config, accelerator), t.max_grad_norm)
    start_run(output, config, accelerator)
    set_seed(t.seed)
    m = config.model
    model, tokenizer = load_reasoner_model(m.init, device=str(accelerator.device), dtype=m.dtype)
    reference = None
    if m.lora:
        model = with_lora(model, tokenizer, m)
    elif o.kl_coef:
        reference, _ = load_reasoner_model(m.init, device=str(accelerator.device), dtype=m.dtype)
        reference.requires_grad_(False)
    if t.gradient_checkpointing:
        checkpoint_activations(model)
    optimizer = adamw(model, t.lr, t.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    step = resume(accelerator, output, t.max_steps)

    log_path = output / "log.jsonl"
    rank, world = accelerator.process_index, accelerator.num_processes
    bar = tqdm(total=t.max_steps, initial=step, desc="hrpo", disable=not progress, unit="step")
    started = time.time()
    while step < t.max_steps:
        indices = prompt_order(len(stories), t.seed, step, t.prompts_per_step)
        policy = accelerator.unwrap_model(model).eval()
        mine = [stories[index] for k, index in enumerate(indices) if k % world == rank]
        with merged_lora(policy):
            groups = step_groups(policy, tokenizer, mine, config, clock, _sampling_seed(t.seed, step, rank))
        kept = [g for g in groups if carries_signal(g.advantages) or not o.drop_zero_variance]
        dropped = len(groups) - len(kept)
        stats = _update(model, optimizer, accelerator, kept, pad, o, t, reference, config.rollout.temperature)
        step += 1
        bar.update(1)
        everyone, dropped = _all_ranks(accelerator, groups, dropped)
        record = _log_record(step, everyone, dropped, stats, clock, time.time() - started)
        bar.set_postfix(reward=f"{record['reward']:.2f}", acc=f"{record['accuracy']:.2f}")
        log_line(accelerator, log_path, record)
        out_of_time = decided_once(accelerator, t.max_minutes and time.time() - started > t.max_minutes * 60)
        if step % t.save_every == 0 or out_of_time or step == t.max_steps:
            save_checkpoint(accelerator, output, step)
        if out_of_time:
            accelerator.print(f"adasr-av: time limit of {t.max_minutes} min reached at step {step}")
            break
    bar.close()
    return finish_run(accelerator, model, tokenizer, output)


def _refuse_sharded_parameters(accelerator) -> None:
    """Rollouts generate with the whole model on each process: FSDP and ZeRO-3 split it."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    stage = getattr(getattr(accelerator.state, "deepspeed_plugin", None), "zero_stage", 0)
    if kind == DistributedType.FSDP or (kind == DistributedType.DEEPSPEED and stage == 3):
        raise AdasrError(
            "HRPO rollouts need the whole model on each process: use DDP or DeepSpeed ZeRO-2 "
            "(training/qwen3/accelerate/), not FSDP or ZeRO-3"
        )


def _nominal_micro_batches(config: HRPOConfig, accelerator) -> int:
    """Micro-batches of one pass on one rank when no group is dropped: DeepSpeed's accumulation count.

    A pass may have fewer (dropped groups) or, under a token budget, more; the update steps once
    either way (`_update`), so this only keeps DeepSpeed's batch arithmetic consistent."""
    t = config.train
    rollouts = t.prompts_per_step // accelerator.num_processes * config.rollout.group_size
    return max(1, -(-rollouts // t.micro_batch))


def _all_ranks(accelerator, groups, dropped: int) -> tuple[list, int]:
    """Every rank's groups as the log reads them, (results, rewards) each, and their dropped count."""
    mine = [([r.result for r in g.rollouts], g.rewards) for g in groups]
    if accelerator.num_processes == 1:
        return mine, dropped
    from accelerate.utils import gather_object

    total = accelerator.reduce(torch.tensor([dropped], device=accelerator.device), "sum")
    return gather_object(mine), int(total.item())


def _sampling_seed(seed: int, step: int, k: int) -> int:
    return random.Random(f"sample:{seed}:{step}:{k}").randrange(2**31)


def _update(
    model,
    optimizer,
    accelerator,
    groups,
    pad: int,
    o: ObjectiveConfig,
    t: HRPOTrainConfig,
    reference,
    temperature: float,
):
    """`updates_per_batch` clipped policy-gradient steps on this step's rollouts.

    The policy is the one the rollouts were sampled from: the model in eval mode, dropout off (GPT-2
    configs, `lora_dropout`). old_logp, the reference and the differentiated log-probs all use it,
    so the first pass's ratio is exactly 1 and the clip range bites on policy change, not on noise.

    Each pass's micro-batches run inside `accelerator.accumulate` with the accumulation count set to
    their number, so gradients sync and the optimizer steps once per pass under any backend
    (DeepSpeed steps on every backward that syncs).
    """
    model.eval()  # no dropout; gradients still flow
    policy = accelerator.unwrap_model(model)  # DDP's wrapper hides the LoRA adapter switch
    checkpoint_in_eval(policy)  # a no-op unless train.gradient_checkpointing
    with_reference = reference is not None or (o.kl_coef and hasattr(policy, "disable_adapter"))
    rows = _micro_rows(groups, t.micro_batch, t.micro_batch_tokens)
    batches = [_micro_batch(r, pad, accelerator.device) for r in rows]
    mine = torch.tensor([[len(batches), sum(int(b["loss_mask"].sum()) for b in batches)]])
    counts = accelerator.gather(mine.to(accelerator.device))  # [ranks, (micro-batches, tokens)]
    n_batches, n_tokens = int(counts[:, 0].max()), int(counts[:, 1].sum())
    if n_tokens == 0:  # no rank has a token to learn from: no rank steps
        return {"loss": 0.0, "clip_fraction": 0.0, "kl": 0.0, "tokens": 0}
    while len(batches) < n_batches:  # weigh nothing, but pair up with the other ranks' collectives
        batches.append(
            _micro_batch([([pad, pad], [False, False], [0.0, 0.0], [pad, pad])], pad, accelerator.device)
        )
    for batch in batches:
        with torch.no_grad():
            batch["old_logp"] = _logprobs(model, batch, temperature)
            if with_reference:
                batch["ref_logp"] = _reference_logprobs(policy, reference, batch, temperature)
    # DDP averages the ranks' gradients: dividing each rank's token sum by n_tokens / ranks makes
    # the update the mean over every rank's tokens
    per_rank = n_tokens / accelerator.num_processes
    sums = torch.zeros(3, dtype=torch.float64)  # loss, clipped tokens, KL over tokens; this rank's
    for _ in range(o.updates_per_batch):
        accelerator.gradient_accumulation_steps, accelerator.step = len(batches), 0  # one pass, one step
        for batch in batches:
            with accelerator.accumulate(model):  # no_sync but on the last, the same on every rank
                logp = _logprobs(model, batch, temperature)
                loss, stats = clipped_surrogate(
                    logp, batch["old_logp"], batch["advantages"], batch["loss_mask"], o.eps_low,
                    o.eps_high, batch.get("ref_logp"), o.kl_coef, per_rank,
                )  # fmt: skip
                # the micro-batch losses already sum to the pass's token mean: undo backward's division
                accelerator.backward(loss * loss_divisor(accelerator))
            sums += torch.tensor([loss.item(), stats.clip_fraction * stats.tokens, stats.kl * stats.tokens])
        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)  # DeepSpeed clips in its step
        optimizer.step()  # under DeepSpeed a no-op: the engine stepped in the last backward
        optimizer.zero_grad()
    total = accelerator.reduce(sums.to(accelerator.device, torch.float32), "sum") / o.updates_per_batch
    return {
        "loss": float(total[0]) / accelerator.num_processes,
        "clip_fraction": float(total[1]) / n_tokens,
        "kl": float(total[2]) / n_tokens,
        "tokens": n_tokens,
    }


def _micro_rows(groups, size: int, max_tokens: int = 0) -> list[list[tuple]]:
    """The rollouts' model views (sequence, mask, advantages, targets), at most `size` to a
    micro-batch and, with `max_tokens`, at most that many tokens counting padding (a longer
    sequence goes alone). Under a budget the views go longest first, so similar lengths share a
    batch and little of the budget is padding; the update is the same sum over tokens either way."""
    views = [
        (*v, target)
        for group in groups
        for r, a in zip(group.rollouts, group.advantages, strict=True)
        for v, target in zip(r.model_views(a), r.model_targets(), strict=True)
    ]
    if not max_tokens:
        return [views[start : start + size] for start in range(0, len(views), size)]
    batches: list[list[tuple]] = []
    for view in sorted(views, key=lambda v: -len(v[0])):  # a batch is as wide as its first view
        current = batches[-1] if batches else None
        if current and len(current) < size and (len(current) + 1) * len(current[0][0]) <= max_tokens:
            current.append(view)
        else:
            batches.append([view])
    return batches


def _micro_batch(rows: list[tuple], pad: int, device) -> dict:
    sequences, masks, advantages, targets = (list(column) for column in zip(*rows, strict=True))
    batch = policy_batch(sequences, masks, advantages, pad, targets)
    return {k: v.to(device) for k, v in vars(batch).items()}


def _logprobs(model, batch: dict, temperature: float) -> torch.Tensor:
    """At the model-written positions only: the others carry no loss."""
    ids, attention, targets = batch["input_ids"], batch["attention_mask"], batch["targets"]
    return token_logprobs(model, ids, attention, temperature, targets, positions=batch["loss_mask"].bool())


@torch.no_grad()
def _reference_logprobs(model, reference, batch, temperature: float) -> torch.Tensor:
    if reference is not None:
        return _logprobs(reference.eval(), batch, temperature)
    with model.disable_adapter():  # LoRA: the base model is the reference
        return _logprobs(model, batch, temperature)


def _log_record(step: int, groups, dropped: int, stats: dict, clock, elapsed: float) -> dict:
    """`groups`: (results, rewards) of each group of the step, every rank's."""
    results = [r for group_results, _ in groups for r in group_results]
    rewards = [x for _, group_rewards in groups for x in group_rewards]
    report = summarise(results, model="", data="", mode="streaming", clock=clock)
    return {
        "step": step,
        "reward": round(sum(rewards) / max(len(rewards), 1), 4),
        "accuracy": round(report.accuracy, 4),
        "format": round(report.format_validity, 4),
        "stream_tokens": round(report.mean_stream_tokens, 2),
        "deep_tokens": round(report.mean_deep_tokens, 2),
        "skip_distractor": report.skip_rate_distractor,
        "skip_informative": report.skip_rate_informative,
        "answer_latency_s": round(report.answer_latency_mean_s, 4),
        "overflow_s": round(report.overflow_mean_s, 4),
        "loss": round(stats["loss"], 5),
        "clip_fraction": round(stats["clip_fraction"], 4),
        "kl": round(stats["kl"], 5),
        "groups": len(groups),
        "dropped_groups": int(dropped),
        "elapsed_s": round(elapsed, 1),
    }
