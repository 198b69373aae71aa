"""HRPO inside TRL (the optional extra `[trl]`): a tiny Qwen3 model trained for a few steps on CPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import gold_ids, memorise

pytest.importorskip("trl", reason="TRL is the optional extra adasr-av[trl]")

from test_hrpo_trainer import memorised_story  # noqa: E402

from adasr_av.errors import AdasrError  # noqa: E402
from adasr_av.hrpo import trainer as native  # noqa: E402
from adasr_av.hrpo.advantages import TokenLabels, carries_signal, token_advantages  # noqa: E402
from adasr_av.hrpo.rewards import ScoredRollout, deep_reward, stream_reward  # noqa: E402
from adasr_av.hrpo.rollouts import SampledRollout  # noqa: E402
from adasr_av.hrpo.trainer import ObjectiveConfig, RolloutConfig  # noqa: E402
from adasr_av.hrpo.trl import HRPOGRPOTrainer, model_mask  # noqa: E402
from adasr_av.reasoner.scratch import build_model  # noqa: E402
from adasr_av.reasoner.session import Segment  # noqa: E402

GROUP = 4


def grpo_config(tmp_path, **overrides):
    from trl import GRPOConfig

    settings = dict(
        output_dir=str(tmp_path),
        num_generations=GROUP,
        per_device_train_batch_size=GROUP,
        max_steps=3,
        learning_rate=1e-3,
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        loss_type="dapo",
        disable_dropout=True,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    return GRPOConfig(**{**settings, **overrides})


def expected_advantages(rollouts, objective: ObjectiveConfig) -> list[list[float]]:
    """adasr_av.hrpo.advantages for the group's rewards, recomputed here from its scored rollouts."""
    scored = [r.scored for r in rollouts]
    records = [memorised_story().record] * len(rollouts)
    terms = [fn(scored, records) for fn in native.reward_functions(objective)]
    global_rewards = [sum(values) for values in zip(*terms, strict=True)]
    stream = stream_reward(objective.alpha, objective.tau, True, True)(scored, records)
    deep = deep_reward(objective.beta, objective.tau, True, True)(scored, records)
    labels = [r.labels for r in rollouts]
    return token_advantages(labels, global_rewards, stream, deep, objective.lam, objective.granularity)


def test_hrpo_trains_inside_trl_with_per_token_advantages(tokenizer, tmp_path):
    model = build_model(tokenizer, "qwen3", hidden=64, layers=2)
    assert memorise(model, gold_ids(tokenizer)) < 0.05
    before = copy.deepcopy(model.state_dict())
    objective = ObjectiveConfig(
        lam=0.5, rewards=["format", "accuracy", "time", "hrpo_user_rewards:shorter_units"]
    )
    rollout = RolloutConfig(group_size=GROUP, max_unit_tokens=16, max_deep_tokens=48)
    trainer = HRPOGRPOTrainer(
        model, [memorised_story()], grpo_config(tmp_path), tokenizer, objective=objective, rollout=rollout
    )
    seen = []
    compute_loss = trainer._compute_loss

    def recording(model, inputs):
        loss = compute_loss(model, inputs)
        seen.append((loss.detach(), inputs, trainer.hrpo_groups[0].rollouts))
        return loss

    trainer._compute_loss = recording
    trainer.train()

    assert len(seen) == 3 and all(math.isfinite(loss.item()) for loss, _, _ in seen)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "no parameter moved"
    signal = False
    for _, inputs, rollouts in seen:
        expected = expected_advantages(rollouts, objective)
        keep = carries_signal(expected)  # a group with no advantage anywhere is dropped: no weight
        weight = inputs["completion_mask"] * inputs["tool_mask"]  # TRL's loss mask
        assert inputs["advantages"].shape == inputs["completion_ids"].shape  # one advantage per token
        for b in range(len(rollouts)):
            ids = inputs["completion_ids"][b][inputs["completion_mask"][b].bool()].tolist()
            prompt = inputs["prompt_ids"][b][inputs["prompt_mask"][b].bool()].tolist()
            r = next(i for i, x in enumerate(rollouts) if x.tokens == prompt + ids)
            n = len(prompt)
            phases = rollouts[r].labels.phase[n:]
            assert [int(w) for w in weight[b, : len(ids)]] == [
                int(keep and m) for m in model_mask(rollouts[r])[n:]
            ]
            assert all(weight[b, t] == 0 for t, p in enumerate(phases) if p == "env")
            assert any(p == "env" for p in phases) and any(p != "env" for p in phases)
            torch.testing.assert_close(
                inputs["advantages"][b, : len(ids)], torch.tensor(expected[r][n:]), atol=1e-6, rtol=1e-6
            )
            signal |= any(a != 0.0 for a in expected[r])
    assert signal, "no group carried an advantage"


def test_only_first_context_model_tokens_that_the_model_chose_are_trained():
    """Environment tokens, the closing token the runtime wrote for a sampled EOS (position 2) and
    everything after a compaction (position 5 on) get no loss weight."""
    phase = ("env", "stream", "stream", "env", "deep", "deep", "deep")
    labels = TokenLabels(phase, (None, 0, 0, None, None, None, None), (False,) * 7)
    scored = ScoredRollout("6", (), True, True, 0.0, 1.0)
    rollout = SampledRollout(
        list(range(7)), labels, scored, None, [], (Segment(0), Segment(5, (0, 1))), sampled={2: 99}
    )
    assert model_mask(rollout) == [False, True, False, False, True, False, False]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"num_generations": 2, "per_device_train_batch_size": 2}, "num_generations"),
        ({"temperature": 0.7}, "temperature"),
        ({"mask_truncated_completions": True}, "mask_truncated_completions"),
    ],
)
def test_trl_and_rollout_sampling_must_agree(tokenizer, tmp_path, override, message):
    model = build_model(tokenizer, "qwen3", hidden=32, layers=1)
    with pytest.raises(AdasrError, match=message):
        HRPOGRPOTrainer(
            model, [memorised_story()], grpo_config(tmp_path, **override), tokenizer,
            rollout=RolloutConfig(group_size=GROUP),
        )  # fmt: skip
