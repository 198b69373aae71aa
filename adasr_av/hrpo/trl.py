"""HRPO inside TRL (`pip install adasr-av[trl]`, TRL 1.16): a `GRPOTrainer` whose completions are the
project's streaming rollouts and whose advantages are HRPO's, one per token.

    trainer = HRPOGRPOTrainer(model, stories, args=GRPOConfig(...), processing_class=tokenizer,
                              objective=ObjectiveConfig(lam=0.5))
    trainer.train()

How it maps onto TRL:

- `rollout_func` (`streaming_rollouts`) gets each story's id as its prompt, repeated
  `num_generations` times, and samples the group in one batched streaming session
  (`trainer.group_step`, the native trainer's own): chunks arrive on the cost-model clock, so
  overflow and answer latency are in stream seconds. A rollout's leading environment tokens (the
  prompt and question) are TRL's `prompt_ids`; the rest of its interleaved sequence is
  `completion_ids`, with `env_mask` 0 on every token the model did not write (chunks, stream end,
  spans the runtime closed), so TRL's loss mask `completion_mask * tool_mask` leaves them out.
- Per-token advantages: one overridden method, `_generate_and_score_completions`. It calls TRL's
  and replaces the (B,) sequence advantages in its output with the (B, T) hierarchical ones of
  `adasr_av.hrpo.advantages.token_advantages`; TRL's `_compute_loss` takes (B, T) advantages as they
  are ("to support subclasses that provide advantages with shape (B, T)"). The reward function
  given to TRL only hands it each rollout's global reward, for its logs.

Where it differs from the native trainer (`adasr_av.hrpo.trainer`), and why:

- An EOS the model sampled inside a span, which the runtime replaced with the span's closing token,
  is masked out here. The native trainer scores that position for the EOS (`model_targets`); TRL's
  `_get_per_token_logps_and_entropies` scores the completion ids themselves, with no separate
  targets, and writing the EOS into `completion_ids` would change the context of every later
  token. The format penalty still reaches the phase's other tokens through their advantage.
- After a context compaction the model saw the kept text, not the whole sequence, so a rollout's
  tokens after its first compaction are masked out (the native trainer recomputes them on their own
  context, `model_views`): TRL has one prompt + completion per rollout.
- `drop_zero_variance` masks a group with no advantage on any token, so it does not dilute TRL's
  token-mean (`num_items_in_batch`), which is what dropping it does natively.
- The clipped surrogate, its ranges and KL are TRL's: `GRPOConfig(epsilon=0.2, epsilon_high=0.28,
  beta=0.0, loss_type="dapo")` is the native objective (token-mean over the batch). TRL scores the
  policy in train mode: set `disable_dropout=True` for a model with dropout, as the native trainer
  scores in eval mode.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace

import torch

from adasr_av.data.dataset import StreamedStory
from adasr_av.errors import AdasrError
from adasr_av.hrpo.advantages import carries_signal
from adasr_av.hrpo.rollouts import SampledRollout
from adasr_av.hrpo.trainer import HRPOConfig, ObjectiveConfig, RolloutConfig, RolloutGroup, group_step
from adasr_av.timing import CostModelClock, load_cost_model

try:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
except ImportError:  # the optional extra is missing
    raise AdasrError("adasr_av.hrpo.trl needs TRL: pip install 'adasr-av[trl]'") from None

REWARD_FIELD = "hrpo_reward"  # the rollout's global reward, handed to TRL's reward function


class HRPOGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` training on streaming rollouts of `stories` with per-token HRPO advantages.

    Sampling (group size, temperature, top-p) is TRL's (`args.num_generations`, `args.temperature`,
    `args.top_p`); `rollout` holds the rest (token caps, lag hint, cost profile) and must agree on
    those three. Overrides one method, `_generate_and_score_completions`.
    """

    def __init__(
        self,
        model,
        stories: Sequence[StreamedStory],
        args: GRPOConfig,
        processing_class,
        objective: ObjectiveConfig | None = None,
        rollout: RolloutConfig | None = None,
        **kwargs,
    ):
        rollout = rollout or RolloutConfig()
        _check(args, rollout)
        self.stories = {story.id: story for story in stories}
        if len(self.stories) != len(stories):
            raise AdasrError("HRPO in TRL: story ids must be unique (a story's id is its prompt)")
        self.hrpo = HRPOConfig(rollout=rollout, hrpo=objective or ObjectiveConfig())
        self.clock = CostModelClock(load_cost_model(rollout.cost_profile))
        self.hrpo_groups: list[RolloutGroup] = []
        self._hrpo_advantages: list[list[float]] = []  # per local completion, set by the rollouts
        super().__init__(
            model=model,
            reward_funcs=[hrpo_reward],
            args=args,
            train_dataset=Dataset.from_dict({"prompt": list(self.stories)}),
            processing_class=processing_class,
            rollout_func=streaming_rollouts,
            **kwargs,
        )

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        width = output["completion_ids"].size(1)
        rows = [row + [0.0] * (width - len(row)) for row in self._hrpo_advantages]
        output["advantages"] = torch.tensor(rows, dtype=torch.float32, device=output["completion_ids"].device)
        return output


def _check(args: GRPOConfig, rollout: RolloutConfig) -> None:
    """TRL's sampling settings and the rollout config must name the same sampling."""
    pairs = (
        ("num_generations", args.num_generations, "group_size", rollout.group_size),
        ("temperature", args.temperature, "temperature", rollout.temperature),
        ("top_p", args.top_p, "top_p", rollout.top_p),
    )
    for trl_key, trl_value, key, value in pairs:
        if trl_value != value:
            raise AdasrError(
                f"HRPO in TRL: GRPOConfig.{trl_key} ({trl_value}) and rollout.{key} ({value}) must agree"
            )
    if args.mask_truncated_completions:
        raise AdasrError(
            "HRPO in TRL: GRPOConfig.mask_truncated_completions must be False (a streaming rollout ends "
            "with its answer span, not EOS)"
        )


def hrpo_reward(completions, **kwargs) -> list[float]:
    """Each rollout's global HRPO reward, for TRL's logs (its advantages are replaced)."""
    return list(kwargs[REWARD_FIELD])


def streaming_rollouts(prompts: list[str], trainer: HRPOGRPOTrainer) -> dict:
    """TRL's `rollout_func`: sample each group of story ids as one streaming group."""
    mode = "train" if trainer.model.training else "eval"
    size = trainer.num_generations if mode == "train" else trainer.num_generations_eval
    config = replace(trainer.hrpo, rollout=replace(trainer.hrpo.rollout, group_size=size))
    groups = _groups(prompts, size)
    first = trainer.accelerator.process_index * len(groups)
    out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": None, "env_mask": []}
    out[REWARD_FIELD] = []
    trainer._hrpo_advantages = []
    trainer.hrpo_groups = []
    with _sampling(trainer) as policy:
        for k, story_id in enumerate(groups):
            seed = random.Random(f"trl:{trainer.args.seed}:{trainer.state.global_step}:{first + k}")
            group = group_step(
                policy, trainer.processing_class, trainer.stories[story_id], config, trainer.clock,
                sample_seed=seed.randrange(2**31),
            )  # fmt: skip
            trainer.hrpo_groups.append(group)
            keep = carries_signal(group.advantages) or not config.hrpo.drop_zero_variance
            for rollout, row, reward in zip(group.rollouts, group.advantages, group.rewards, strict=True):
                n = _prompt_length(rollout)
                out["prompt_ids"].append(rollout.tokens[:n])
                out["completion_ids"].append(rollout.tokens[n:])
                out["env_mask"].append([int(keep and m) for m in model_mask(rollout)[n:]])
                out[REWARD_FIELD].append(reward)
                trainer._hrpo_advantages.append(row[n:])
    return out


def model_mask(rollout: SampledRollout) -> list[bool]:
    """Which tokens of the rollout TRL may train: written by the model, in the first context
    segment, and not a closing token the runtime wrote in place of a sampled EOS."""
    end = rollout.segments[1].start if len(rollout.segments) > 1 else len(rollout.tokens)
    return [
        phase != "env" and t < end and t not in rollout.sampled
        for t, phase in enumerate(rollout.labels.phase)
    ]


def _prompt_length(rollout: SampledRollout) -> int:
    """The leading environment tokens (prompt and question): TRL's prompt."""
    for t, phase in enumerate(rollout.labels.phase):
        if phase != "env":
            return t
    return len(rollout.tokens)


def _groups(prompts: list[str], size: int) -> list[str]:
    """The story id of each run of `size` equal prompts (TRL repeats each prompt consecutively)."""
    if len(prompts) % size or any(len(set(prompts[i : i + size])) != 1 for i in range(0, len(prompts), size)):
        raise AdasrError(
            f"HRPO in TRL: each process must get whole groups of {size} rollouts of one story; make "
            "per_device_train_batch_size * steps_per_generation a multiple of num_generations"
        )
    return prompts[::size]


@contextmanager
def _sampling(trainer: HRPOGRPOTrainer):
    """The unwrapped policy in eval mode (no dropout), as the native trainer samples it."""
    policy = trainer.accelerator.unwrap_model(trainer.model)
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            yield policy
    finally:
        policy.train(was_training)
