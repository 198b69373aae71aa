"""HRPO end to end on tiny models: rollout labels, the loss, the trainer, resume and bad input."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass

import pytest
import torch
from conftest import CHUNKS, QUESTION, gold_ids
from kill_and_resume import assert_same_weights, kill_during_step, logged_steps
from safetensors.torch import load_file
from test_group_session import run_group

from adasr_av.cli import main
from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.evaluation import story_result
from adasr_av.hrpo import trainer
from adasr_av.hrpo.advantages import TokenLabels, token_advantages
from adasr_av.hrpo.loss import clipped_surrogate, policy_batch, token_logprobs
from adasr_av.hrpo.rewards import ScoredRollout
from adasr_av.hrpo.rollouts import SampledRollout, sample_group, scored_rollout, token_labels
from adasr_av.hrpo.trainer import HRPOConfig, ObjectiveConfig, RolloutConfig
from adasr_av.reasoner.protocol import chunk_span, question_span
from adasr_av.sinks import chunk_record
from adasr_av.timing import PAPER_PROFILE, CostModelClock

# --- rollouts and loss ------------------------------------------------------------------------------


def test_token_labels_follow_the_spans(trained_model, tokenizer):
    reasoner, _ = run_group(trained_model, tokenizer, group_size=3)
    ids = reasoner.ids
    for row in reasoner.rollouts:
        labels = token_labels(row, ids)
        assert len(labels.phase) == len(row.sequence)
        eos_closed = {e.chunk_index if e.type in ("think", "skip") else e.type
                      for e in row.events if e.info.get("eos")}  # fmt: skip
        for span in row.spans:
            phases = set(labels.phase[span.start : span.end])
            if span.role == "runtime" and (span.unit if span.phase == "stream" else span.phase) in eos_closed:
                assert phases == {"stream" if span.phase == "stream" else "deep"}  # the EOS it replaced
            elif span.role != "model":
                assert phases == {"env"}  # environment and runtime-closed tokens are never trained
            elif span.phase == "stream":
                assert phases == {"stream"} and set(labels.unit[span.start : span.end]) == {span.unit}
            else:
                assert phases == {"deep"}
        closing = {ids.think_end, ids.skip, ids.reason_end, ids.answer_end}
        for t, (token, phase, boundary) in enumerate(
            zip(row.sequence, labels.phase, labels.boundary, strict=True)
        ):
            assert boundary == (phase != "env" and token in closing), t


def test_rollout_overflow_is_the_one_timing_computes(trained_model, tokenizer):
    """The per-unit overflow the rewards read, the summary's total and timing.overflow_by_chunk agree,
    and every unit has one (the last unit's is 0: nothing arrives after it)."""
    from adasr_av.timing import overflow_by_chunk

    reasoner, _ = run_group(trained_model, tokenizer, group_size=3)
    for row in reasoner.rollouts:
        scored = scored_rollout(row.events, story_result("s", row.events, None))
        units = [e.chunk_index for e in row.events if e.type in ("think", "skip")]
        assert (
            scored.unit_overflow_s == overflow_by_chunk(row.events)
            and sorted(scored.unit_overflow_s) == units
        )
        assert row.events[-1].info["overflow_s"] == round(sum(scored.unit_overflow_s.values()), 4)
        assert set(scored.unit_valid) == set(units)


def test_recomputed_logprobs_ignore_padding(trained_model, tokenizer):
    reasoner, _ = run_group(trained_model, tokenizer, group_size=4)
    rows = reasoner.rollouts
    assert len({len(r.sequence) for r in rows}) > 1, "equal lengths: no padding to test"
    masks = [[True] * len(r.sequence) for r in rows]
    batch = policy_batch([r.sequence for r in rows], masks, [[0.0] * len(r.sequence) for r in rows], pad_id=0)
    with torch.no_grad():
        padded = token_logprobs(trained_model, batch.input_ids, batch.attention_mask)
        for b, row in enumerate(rows):
            ids = torch.tensor([row.sequence])
            alone = token_logprobs(trained_model, ids, torch.ones_like(ids))[0]
            torch.testing.assert_close(padded[b, : len(row.sequence) - 1], alone, atol=1e-4, rtol=1e-4)
    assert batch.loss_mask[0].sum() == len(rows[0].sequence) - 1


def test_recomputed_logprobs_follow_the_sampling_temperature(trained_model, tokenizer):
    """Rollouts drawn at temperature T are scored under softmax(logits / T), not the raw softmax."""
    ids = torch.tensor([tokenizer.encode(question_span("What is left?") + chunk_span("Ann has 3 apples."))])
    with torch.no_grad():
        logits = trained_model(input_ids=ids).logits[0, :-1].float()
        for temperature in (0.5, 2.0):
            expected = torch.log_softmax(logits / temperature, -1).gather(-1, ids[0, 1:, None])[:, 0]
            got = token_logprobs(trained_model, ids, torch.ones_like(ids), temperature)[0]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(
            token_logprobs(trained_model, ids, torch.ones_like(ids), 0.5),
            token_logprobs(trained_model, ids, torch.ones_like(ids)),
        )


def test_clipped_surrogate_by_hand():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]])).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    loss, stats = clipped_surrogate(logp, old, adv, torch.ones(1, 3), eps_low=0.2, eps_high=0.28)
    # token 0: min(1.5, 1.28) -> -1.28; token 1: min(-0.5, -0.8) -> 0.8; token 2: -2
    assert loss.item() == pytest.approx((-1.28 + 0.8 - 2.0) / 3)
    assert stats.clip_fraction == pytest.approx(2 / 3)
    loss.backward()
    # clipped tokens pass no gradient; token 2: d(-r A)/dlogp = -r A / 3
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.0, -2.0 / 3]]))


def test_kl_term_is_zero_at_the_reference_and_positive_away():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    zero = torch.zeros(1, 2)
    _, at_ref = clipped_surrogate(logp, logp, zero, torch.ones(1, 2), ref_logp=logp, kl_coef=0.1)
    _, away = clipped_surrogate(logp, logp, zero, torch.ones(1, 2), ref_logp=logp - 0.5, kl_coef=0.1)
    assert at_ref.kl == pytest.approx(0.0) and away.kl > 0.1


def memorised_story():
    """The story the conftest models memorised (think, skip, think, answer 6)."""
    chunks = [chunk_record(c) for c in CHUNKS]
    record = {
        "id": "memorised",
        "question": QUESTION,
        "question_position": "prompt",
        "answer": 6,
        "chunks": chunks,
    }
    return parse_record(record, "memorised")


def small_config(**objective) -> HRPOConfig:
    return HRPOConfig(
        rollout=RolloutConfig(group_size=4, max_unit_tokens=16, max_deep_tokens=48),  # the gold fits
        hrpo=ObjectiveConfig(**objective),
    )


def first_pass(model, tokenizer, config: HRPOConfig, monkeypatch):
    """One sampled group and one update; returns (ratio over the masked tokens, loss stats) of every
    micro-batch of the update's first pass."""
    from accelerate import Accelerator

    from adasr_av.training.model_setup import adamw

    clock = CostModelClock(PAPER_PROFILE)
    group = trainer.group_step(model.eval(), tokenizer, memorised_story(), config, clock, sample_seed=3)
    seen = []

    def recording(logp, old_logp, advantages, mask, *args, **kwargs):
        loss, stats = clipped_surrogate(logp, old_logp, advantages, mask, *args, **kwargs)
        seen.append((torch.exp(logp - old_logp).detach()[mask.bool()], stats))
        return loss, stats

    monkeypatch.setattr(trainer, "clipped_surrogate", recording)
    accelerator = Accelerator()
    model, optimizer = accelerator.prepare(model, adamw(model, 1e-3, 0.0))
    trainer._update(model.train(), optimizer, accelerator, [group], tokenizer.pad_token_id, config.hrpo,
                    config.train, None, config.rollout.temperature)  # fmt: skip
    return seen


def test_the_first_pass_ratio_is_exactly_one_under_dropout(trained_models, tokenizer, monkeypatch):
    """old_logp is the policy the rollouts were sampled from (dropout off), and so is the policy the
    update differentiates: on the first pass the ratio is 1 for every token, not dropout noise."""
    model = copy.deepcopy(trained_models["gpt2"])
    assert model.config.resid_pdrop == model.config.attn_pdrop == model.config.embd_pdrop == 0.1
    seen = first_pass(model, tokenizer, small_config(drop_zero_variance=False), monkeypatch)
    ratios = torch.cat([ratio for ratio, _ in seen])
    assert ratios.numel() > 20 and torch.equal(ratios, torch.ones_like(ratios)), (ratios.min(), ratios.max())


def test_the_reference_under_lora_dropout_is_the_base_policy(trained_models, tokenizer, monkeypatch):
    """Fresh adapters leave the policy equal to the base model: with lora_dropout and GPT-2 dropout
    the first pass has ratio 1 and KL 0 to the adapter-free reference."""
    from adasr_av.training.model_setup import ModelConfig, with_lora

    m = ModelConfig(
        lora=True, lora_r=4, lora_dropout=0.1, lora_targets=["c_attn"], lora_train_protocol_tokens=False
    )
    model = with_lora(copy.deepcopy(trained_models["gpt2"]), tokenizer, m)
    seen = first_pass(model, tokenizer, small_config(kl_coef=0.1, drop_zero_variance=False), monkeypatch)
    ratios = torch.cat([ratio for ratio, _ in seen])
    assert torch.equal(ratios, torch.ones_like(ratios))
    assert [stats.kl for _, stats in seen] == [0.0] * len(seen)


def scripted_rollout(labels: TokenLabels, correct: bool, unit_overflow: dict[int, float], latency: float):
    overflow = sum(unit_overflow.values())
    scored = ScoredRollout("6" if correct else "7", (), True, True, overflow, latency, unit_overflow)
    return SampledRollout([0] * len(labels.phase), labels, scored, result=None, events=[])


# env, unit 0 (2 tokens), env, unit 1, env, unit 2 (the last), env, deep (2 tokens)
UNIT_LABELS = TokenLabels(
    phase=(
        "env",
        "stream",
        "stream",
        "env",
        "stream",
        "stream",
        "env",
        "stream",
        "stream",
        "env",
        "deep",
        "deep",
    ),
    unit=(None, 0, 0, None, 1, 1, None, 2, 2, None, None, None),
    boundary=(False, False, True, False, False, True, False, False, True, False, False, True),
)


@pytest.mark.parametrize("lam", [0.5, 1.0])
@pytest.mark.parametrize("granularity", ["stage", "unit", "boundary"])
def test_a_fast_wrong_rollout_never_outranks_a_correct_one_token_by_token(
    trained_models, tokenizer, monkeypatch, granularity, lam
):
    """Three correct rollouts whose units overflowed and that answered late, one wrong rollout that
    overflowed nothing and answered at once: every token of the wrong one gets a lower advantage than
    the same token of any correct one, at every granularity (per unit too, the last unit included)."""
    slow = {0: 2.0, 1: 1.0}
    group = [scripted_rollout(UNIT_LABELS, True, slow, 3.0) for _ in range(3)]
    group.append(scripted_rollout(UNIT_LABELS, False, {0: 0.0, 1: 0.0}, 0.2))
    monkeypatch.setattr(trainer, "sample_group", lambda reasoner, story: group)
    config = small_config(lam=lam, granularity=granularity)
    clock = CostModelClock(PAPER_PROFILE)
    model = trained_models["qwen3"]  # builds the group's session; the scripted rollouts replace its own
    advantages = trainer.group_step(model, tokenizer, memorised_story(), config, clock, 0).advantages
    *correct, wrong = advantages
    for t, phase in enumerate(UNIT_LABELS.phase):
        if phase != "env":
            assert wrong[t] < min(row[t] for row in correct), (t, wrong[t], [row[t] for row in correct])


@pytest.mark.parametrize("declared", [False, True], ids=["tokenizer-eos", "generation-config-eos"])
@pytest.mark.parametrize("phase", ["stream", "deep"])
def test_an_eos_sampled_inside_a_span_is_trained_with_the_format_penalty(
    trained_models, tokenizer, monkeypatch, phase, declared
):
    """Row 0 samples EOS as the second token of a unit (or of the deep span); the runtime closes the
    span in its place. That position is in the loss mask, scored for the EOS the model chose (with
    `declared`, a second EOS that only the model's generation_config names, as Llama-3 instruct's
    <|eot_id|>), with the phase's advantage, and the rollout lost the phase's format reward.
    Forcing the sample is the one stand-in: a trained model seldom samples EOS there."""
    model = trained_models["qwen3"]
    eos = tokenizer.eos_token_id
    if declared:
        # an ordinary token the model never writes in this story, which it is told ends a turn
        eos = max(set(range(len(tokenizer))) - set(gold_ids(tokenizer)) - set(tokenizer.all_special_ids))
        monkeypatch.setattr(model.generation_config, "eos_token_id", [tokenizer.eos_token_id, eos])
    forced: list[int] = []  # the position the EOS was sampled for

    def sample_with_an_eos(reasoner, story):
        generate = reasoner._generate

        def generating(caps, stops, phase_, units=None):
            if forced or phase_ != phase or caps[0] < 2:
                return generate(caps, stops, phase_, units)
            sampler, start, first = reasoner.sampler, len(reasoner.rollouts[0].sequence), []

            def sample(logits, rows=None, of=None):
                tokens = sampler(logits, rows, of)
                if rows is not None and rows[0] != 0:  # row 0 has left the batch
                    return tokens
                if not first:
                    first.append(int(tokens[0]))
                elif not forced and first[0] not in reasoner.ids.all | reasoner.backend.eos_ids:
                    tokens[0] = eos  # row 0 is still writing its span: its second token
                    forced.append(start + 1)
                return tokens

            reasoner.sampler = sample
            try:
                return generate(caps, stops, phase_, units)
            finally:
                reasoner.sampler = sampler

        reasoner._generate = generating
        return sample_group(reasoner, story)

    monkeypatch.setattr(trainer, "sample_group", sample_with_an_eos)
    config = small_config(lam=0.5)
    clock = CostModelClock(PAPER_PROFILE)
    group = trainer.group_step(model, tokenizer, memorised_story(), config, clock, 0)
    rollouts, advantages = group.rollouts, group.advantages
    (p,) = forced
    row = rollouts[0]
    closing = {"stream": (row.labels.unit[p - 1],), "deep": ()}[phase]
    assert row.tokens[p] in {tokenizer.convert_tokens_to_ids(t) for t in ("<|think_end|>", "<|reason_end|>")}
    kinds = {"stream": ("think", "skip"), "deep": ("deep",)}[phase]
    (event,) = [e for e in row.events if e.type in kinds and e.info.get("eos")]
    assert closing == () or event.chunk_index == closing[0]
    assert not (row.scored.stream_valid if phase == "stream" else row.scored.deep_valid)
    ((ids, mask, adv),) = row.model_views(advantages[0])
    assert mask[p] and ids[p] == row.tokens[p]  # the closing token the later tokens saw stays
    (targets,) = row.model_targets()
    assert targets[p] == eos
    assert targets[:p] + targets[p + 1 :] == ids[:p] + ids[p + 1 :]
    assert row.labels.phase[p] == row.labels.phase[p - 1] and row.labels.boundary[p]
    assert adv[p] == advantages[0][p - 1] != 0.0  # stage: the phase's advantage, the format penalty in it
    batch = policy_batch([ids], [mask], [adv], tokenizer.pad_token_id, [targets])
    with torch.no_grad():
        scored = token_logprobs(model, batch.input_ids, batch.attention_mask, targets=batch.targets)[0]
        logits = model(input_ids=batch.input_ids).logits[0, p - 1].float()
    torch.testing.assert_close(scored[p - 1], torch.log_softmax(logits, -1)[eos])
    assert batch.loss_mask[0, p - 1] == 1 and batch.advantages[0, p - 1] == adv[p]


# --- trainer ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory):
    """A tiny supervised model to start HRPO from, and its training stories."""
    folder = tmp_path_factory.mktemp("hrpo")
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(text_record(generate_story(0, "train", i))) + "\n" for i in range(48)))
    config = folder / "sft.toml"
    config.write_text(
        "[model]\nhidden = 48\nlayers = 2\nhead_dim = 16\nvocab_size = 400\ntokenizer_stories = 48\n"
        f'[data]\ntrain = "{data}"\nadaptive_fraction = 0.5\n'
        f'[train]\noutput = "{folder / "sft"}"\nmax_steps = 40\nbatch_size = 8\nlr = 5e-3\nwarmup_steps = 2\n'
    )
    assert main(["train", "sft", "--config", str(config), "--no-progress"]) == 0
    return folder


def hrpo_config(folder, output: str, steps: int, **sections) -> str:
    tables = {
        "model": {"init": f'"{folder / "sft" / "final"}"'},
        "data": {"train": f'"{folder / "train.jsonl"}"'},
        "rollout": {"group_size": 4, "max_unit_tokens": 12, "max_deep_tokens": 24},
        "hrpo": {"rewards": '["format", "accuracy", "time", "hrpo_user_rewards:shorter_units"]'},
        "train": {"output": f'"{folder / output}"', "max_steps": steps, "prompts_per_step": 2, "lr": 1e-3,
                  "save_every": 1},
    }  # fmt: skip
    for key, value in sections.items():
        section, name = key.split("__")
        tables[section][name] = value
    text = "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in t.items()) for s, t in tables.items())
    path = folder / f"{output}.toml"
    path.write_text(text)
    return str(path)


def test_hrpo_trains_logs_plots_and_changes_the_policy(sft_model):
    config = hrpo_config(sft_model, "run", 3)
    assert main(["train", "hrpo", "--config", config, "--no-progress"]) == 0
    out = sft_model / "run"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    keys = {"reward", "accuracy", "stream_tokens", "deep_tokens", "skip_distractor", "skip_informative",
            "answer_latency_s", "clip_fraction", "loss", "dropped_groups"}  # fmt: skip
    assert keys <= log[0].keys()
    assert (out / "log.png").stat().st_size > 10_000
    before = load_file(sft_model / "sft" / "final" / "model.safetensors")
    after = load_file(out / "final" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("lam", "global_rewards", "stream_rewards", "dropped"),
    [
        (0.5, [1.0] * 4, [0.0, 1.0, 0.0, 1.0], 0),  # the streaming term still ranks the rollouts
        (0.0, [1.0] * 4, [0.0, 1.0, 0.0, 1.0], 2),  # GRPO sees only the global reward
        (1.0, [0.0, 1.0, 0.0, 1.0], [1.0] * 4, 2),  # lam = 1 sees only the phase rewards
    ],
    ids=["lam-0.5-kept", "grpo-dropped", "lam-1-dropped"],
)
def test_a_group_is_dropped_only_when_no_token_has_an_advantage(
    sft_model, monkeypatch, lam, global_rewards, stream_rewards, dropped
):
    def scripted_rewards(rollouts, story, config):
        labels = [r.labels for r in rollouts]
        deep = [0.0] * len(rollouts)
        advantages = token_advantages(labels, global_rewards, stream_rewards, deep, lam)
        return trainer.RolloutGroup(rollouts, advantages, global_rewards)

    monkeypatch.setattr(trainer, "scored_group", scripted_rewards)
    config = hrpo_config(sft_model, f"dropped-{lam}", 1, hrpo__lam=lam)
    assert main(["train", "hrpo", "--config", config, "--no-progress"]) == 0
    (record,) = [
        json.loads(line) for line in (sft_model / f"dropped-{lam}" / "log.jsonl").read_text().splitlines()
    ]
    assert (record["groups"], record["dropped_groups"]) == (2, dropped)
    assert (record["loss"] != 0.0) == (dropped == 0)


def test_hrpo_killed_and_resumed_matches_an_uninterrupted_run(sft_model):
    """A real SIGKILL in step 4, a logged step after the step-2 checkpoint, then a rerun: the same
    final weights and the same log as a run never stopped, each step in it once."""
    keep = {"hrpo__drop_zero_variance": "false", "train__save_every": 2}  # an update every step
    keep |= {"train__prompts_per_step": 1, "rollout__group_size": 2}  # quick steps
    straight = hrpo_config(sft_model, "straight", 4, **keep)
    assert main(["train", "hrpo", "--config", straight, "--no-progress"]) == 0
    killed = hrpo_config(sft_model, "killed", 4, **keep)
    kill_during_step(["train", "hrpo", "--config", killed, "--no-progress"], 4, 300)
    out = sft_model / "killed"
    assert logged_steps(out) == [1, 2, 3]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-2"]
    assert not (out / "final").exists()
    assert main(["train", "hrpo", "--config", killed, "--no-progress"]) == 0
    assert_same_weights(sft_model / "straight" / "final", out / "final")
    assert logged_steps(out) == [1, 2, 3, 4]
    logs = [(sft_model / name / "log.jsonl").read_text().splitlines() for name in ("straight", "killed")]
    strip = [[{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in log] for log in logs]
    assert strip[1] == strip[0]  # the resumed steps sampled and scored the same rollouts


def test_hrpo_plot_fault_after_training_keeps_the_final_model(sft_model):
    """log.png is a folder, so the plot fails for real: a warning, and the final model is saved."""
    from adasr_av.reasoner.loading import load_reasoner_model

    (sft_model / "unplotted" / "log.png").mkdir(parents=True)
    config = hrpo_config(sft_model, "unplotted", 1)
    with pytest.warns(UserWarning, match=r"log\.png: not written .*the model is saved in"):
        assert main(["train", "hrpo", "--config", config, "--no-progress"]) == 0
    model, _ = load_reasoner_model(str(sft_model / "unplotted" / "final"))
    assert model.config.num_hidden_layers == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hrpo.lamda=0.5", "unknown key 'hrpo.lamda'"),
        ('rollout.group_size="8"', "key 'rollout.group_size' must be an integer"),
        ('hrpo.granularity="sentence"', "key 'hrpo.granularity' must be 'stage' or 'unit' or 'boundary'"),
        ("hrpo.lam=1.5", "key 'hrpo.lam' must be in [0, 1]"),
        ("rollout.group_size=1", "key 'rollout.group_size' must be at least 2"),
        ('hrpo.rewards=["acuracy"]', "unknown reward 'acuracy'"),
    ],
)
def test_hrpo_bad_config_names_the_key(sft_model, capsys, override, message):
    config = hrpo_config(sft_model, "bad", 1)
    assert main(["train", "hrpo", "--config", config, "--set", override]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_hrpo_refuses_a_dataset_without_answers(sft_model, capsys):
    path = sft_model / "no-answers.jsonl"
    records = [json.loads(line) for line in (sft_model / "train.jsonl").read_text().splitlines()[:3]]
    del records[1]["answer"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = hrpo_config(sft_model, "noanswer", 1, data__train=f'"{path}"')
    assert main(["train", "hrpo", "--config", config]) == 1
    err = capsys.readouterr().err.strip()
    assert "HRPO needs a reference answer" in err and f"{path}, line 2" in err and "'answer'" in err


def test_hrpo_with_lora_and_kl_to_the_adapter_free_base(sft_model):
    """Under LoRA the reference is the base with adapters off: the KL term grows once the adapters
    have moved (the second update of the batch), and the clip range starts to bite."""
    config = hrpo_config(sft_model, "lora", 1, hrpo__kl_coef=0.1, hrpo__updates_per_batch=3, train__lr=0.01)
    lora = ["--set", "model.lora=true", "--set", "model.lora_r=4", "--set", "hrpo.drop_zero_variance=false"]
    assert main(["train", "hrpo", "--config", config, "--no-progress", *lora]) == 0
    (record,) = [json.loads(line) for line in (sft_model / "lora" / "log.jsonl").read_text().splitlines()]
    assert record["kl"] > 0 and record["clip_fraction"] > 0
    assert (sft_model / "lora" / "adapter" / "adapter_config.json").is_file()


def test_updates_raise_the_accuracy_on_a_story_the_policy_half_knows():
    """The direction of learning: GRPO updates on one story that the bundled supervised model gets
    right at most now and then make it get that story right most of the time."""
    from accelerate import Accelerator

    from adasr_av.data.dataset import parse_record
    from adasr_av.hrpo.trainer import HRPOConfig, _update, group_step
    from adasr_av.reasoner.loading import load_reasoner_model
    from adasr_av.timing import PAPER_PROFILE, CostModelClock
    from adasr_av.training.config import load_config
    from adasr_av.training.model_setup import adamw

    config = load_config(
        "training/tiny/hrpo.toml", HRPOConfig, {"hrpo.rewards": ["accuracy"], "hrpo.lam": 0.0}
    )
    model, tokenizer = load_reasoner_model("tiny-streaming-sft", dtype="float32")
    accelerator = Accelerator()
    model, optimizer = accelerator.prepare(model, adamw(model, 1e-4, 0.0))
    story = parse_record(text_record(generate_story(0, "train", 20)), "story 20")
    clock = CostModelClock(PAPER_PROFILE)
    accuracy = []
    for step in range(8):
        group = group_step(model.eval(), tokenizer, story, config, clock, sample_seed=step)
        accuracy.append(sum(group.rewards) / len(group.rewards))
        _update(model.train(), optimizer, accelerator, [group], 0, config.hrpo,
                config.train, None, config.rollout.temperature)  # fmt: skip
    # eight rollouts a step are noisy: the first three steps against the last three
    assert sum(accuracy[-3:]) / 3 >= sum(accuracy[:3]) / 3 + 0.4, accuracy


# --- the update: log-probs at loss positions, accumulation, checkpointing, token budgets -------------


@dataclass
class _ViewRollout:
    """What `_update` reads of a rollout: one model view and its targets (no session needed)."""

    tokens: list[int]
    mask: list[bool]

    def model_views(self, advantages):
        return [(self.tokens, self.mask, advantages)]

    def model_targets(self):
        return [self.tokens]


def synthetic_groups(vocab: int, n_groups: int = 2, group_size: int = 4, seed: int = 0):
    """Groups of rollouts of different lengths, environment tokens among them, mixed advantages."""
    rng = random.Random(seed)
    groups = []
    for _ in range(n_groups):
        rollouts, advantages = [], []
        for _ in range(group_size):
            n = rng.randint(5, 18)
            tokens = [rng.randrange(3, vocab) for _ in range(n)]
            rollouts.append(_ViewRollout(tokens, [i > 0 and rng.random() < 0.7 for i in range(n)]))
            advantages.append([rng.choice([-1.0, 0.5, 1.0]) for _ in range(n)])
        groups.append(trainer.RolloutGroup(rollouts, advantages, [0.0] * group_size))
    return groups


def plain_logprobs(model, batch: dict, temperature: float) -> torch.Tensor:
    """The computation before chunking: full-vocabulary fp32 log-softmax at every position."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    return logp.gather(-1, batch["targets"][:, :, None]).squeeze(-1)


def updated(model, groups, o: ObjectiveConfig, t, record: dict | None = None):
    """`model` after one `_update` on `groups` through a CPU accelerator; `record` collects the
    inner optimizer's steps and `sync_gradients` at every backward. SGD: the weights move by the
    gradient itself (Adam's first step is lr times its sign, which float noise can flip)."""
    from accelerate import Accelerator

    record = {} if record is None else record
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    step = optimizer.step
    record["steps"], record["syncs"] = 0, []

    def counting_step(*args, **kwargs):
        record["steps"] += 1
        return step(*args, **kwargs)

    optimizer.step = counting_step
    accelerator = Accelerator()
    prepared, optimizer = accelerator.prepare(model, optimizer)
    backward = accelerator.backward

    def recording_backward(loss, **kwargs):
        record["syncs"].append(accelerator.sync_gradients)
        return backward(loss, **kwargs)

    accelerator.backward = recording_backward
    trainer._update(prepared, optimizer, accelerator, groups, 0, o, t, None, 0.7)
    return accelerator.unwrap_model(prepared)


def summed_update(model, groups, o: ObjectiveConfig, t):
    """The update as one batch of every rollout and the pre-chunking log-probs: each pass one
    gradient of the token mean, clipped, one SGD step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    (rows,) = trainer._micro_rows(groups, 10**6)
    batch = trainer._micro_batch(rows, 0, "cpu")
    model.eval()
    with torch.no_grad():
        old = plain_logprobs(model, batch, 0.7)
    for _ in range(o.updates_per_batch):
        loss, _ = clipped_surrogate(
            plain_logprobs(model, batch, 0.7),
            old,
            batch["advantages"],
            batch["loss_mask"],
            o.eps_low,
            o.eps_high,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return model


def assert_close_weights(a, b, atol=1e-5):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=name)


@pytest.mark.parametrize("arch_name", ["qwen3", "gpt2", "gpt2-lora"])
def test_chunked_logprobs_at_loss_positions_equal_the_full_softmax(tokenizer, arch_name):
    """Values and gradients: only the chosen positions are scored (the rest 0), chunk by chunk."""
    from adasr_av.reasoner.scratch import build_model
    from adasr_av.training.model_setup import ModelConfig, with_lora

    model = build_model(tokenizer, arch_name.split("-")[0], hidden=32, layers=2)
    if arch_name.endswith("lora"):  # peft wraps the head with its trainable protocol-token rows
        model = with_lora(model, tokenizer, ModelConfig(lora=True, lora_r=4, lora_targets=["c_attn"]))
    (rows,) = trainer._micro_rows(synthetic_groups(len(tokenizer), 1), 10**6)
    batch = trainer._micro_batch(rows, 0, "cpu")
    positions = batch["loss_mask"].bool()
    ids, attention, targets = batch["input_ids"], batch["attention_mask"], batch["targets"]
    trainable = [p for p in model.parameters() if p.requires_grad]

    def grads(logp):
        return torch.autograd.grad((logp * batch["advantages"]).sum(), trainable)

    chunked = token_logprobs(model, ids, attention, 0.7, targets, positions=positions, chunk=5)
    plain = plain_logprobs(model, batch, 0.7) * positions
    torch.testing.assert_close(chunked, plain, atol=1e-5, rtol=1e-5)
    assert positions.sum() > 5 and torch.all(chunked[~positions] == 0)
    for x, y in zip(grads(chunked), grads(plain), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("updates_per_batch", [1, 2])
def test_one_optimizer_step_per_pass_and_the_update_of_the_summed_gradients(tokenizer, updates_per_batch):
    """Eight rollouts in micro-batches of 3: gradients sync on the last micro-batch of a pass only
    (where DeepSpeed steps), the optimizer steps once a pass, and the weights are those of one
    gradient over all the rollouts' tokens (the pre-chunking log-probs) per pass."""
    from adasr_av.reasoner.scratch import build_model

    model = build_model(tokenizer, "qwen3", hidden=32, layers=2)
    groups = synthetic_groups(len(tokenizer))
    o = ObjectiveConfig(updates_per_batch=updates_per_batch)
    t = trainer.HRPOTrainConfig(micro_batch=3, max_grad_norm=0.5)
    record = {}
    got = updated(copy.deepcopy(model), groups, o, t, record)
    assert record["steps"] == updates_per_batch
    assert record["syncs"] == ([False, False, True] * updates_per_batch)
    assert_close_weights(got, summed_update(copy.deepcopy(model), groups, o, t))
    assert not torch.allclose(got.lm_head.weight, model.lm_head.weight)


def test_a_token_budget_gives_the_same_update_as_fixed_size_micro_batches(tokenizer):
    from adasr_av.reasoner.scratch import build_model

    model = build_model(tokenizer, "gpt2", hidden=32, layers=2)
    groups = synthetic_groups(len(tokenizer))
    budget = trainer._micro_rows(groups, 8, max_tokens=40)
    assert len(budget) > 3 and sorted(len(v[0]) for b in budget for v in b) == sorted(
        len(r.tokens) for g in groups for r in g.rollouts
    )
    assert all(len(b) == 1 or len(b) * max(len(v[0]) for v in b) <= 40 for b in budget)
    o = ObjectiveConfig(updates_per_batch=2)
    fixed = updated(copy.deepcopy(model), groups, o, trainer.HRPOTrainConfig(micro_batch=8))
    record = {}
    by_tokens = updated(
        copy.deepcopy(model), groups, o, trainer.HRPOTrainConfig(micro_batch=8, micro_batch_tokens=40), record
    )
    assert record["steps"] == 2 and len(record["syncs"]) == 2 * len(budget)
    assert_close_weights(fixed, by_tokens)


def test_gradient_checkpointing_recomputes_layers_in_eval_and_gives_the_same_update(tokenizer):
    """GPT-2 has dropout: the update runs in eval mode, and checkpointing must still run there."""
    from adasr_av.reasoner.scratch import build_model
    from adasr_av.training.model_setup import checkpoint_activations

    model = build_model(tokenizer, "gpt2", hidden=32, layers=2)
    assert model.config.resid_pdrop > 0
    groups = synthetic_groups(len(tokenizer))
    o, t = ObjectiveConfig(), trainer.HRPOTrainConfig(micro_batch=4, gradient_checkpointing=True)
    checkpointed = copy.deepcopy(model)
    checkpoint_activations(checkpointed)
    calls = []
    for layer in checkpointed.transformer.h:
        inner = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, inner=inner, **k: calls.append(1) or inner(*a, **k)
    got = updated(checkpointed, groups, o, t)
    assert len(calls) == 2 * 2  # two layers, two micro-batches: the differentiated forwards only
    assert_close_weights(
        got, updated(copy.deepcopy(model), groups, o, trainer.HRPOTrainConfig(micro_batch=4))
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lora_merged_for_rollouts_decodes_the_same_and_leaves_the_base_exact(
    trained_models, tokenizer, dtype
):
    """Inside `merged_lora` the model computes what base + adapters compute; after it the base weights
    are bit for bit what they were (in bfloat16 too, where subtracting the delta again would not
    give them back) and the adapters are live again."""
    from adasr_av.training.model_setup import ModelConfig, merged_lora, with_lora

    m = ModelConfig(lora=True, lora_r=4, lora_train_protocol_tokens=False)
    model = with_lora(copy.deepcopy(trained_models["qwen3"]).to(dtype), tokenizer, m).eval()
    for name, p in model.named_parameters():
        if "lora_B" in name:  # fresh adapters are zero: move them so the merge changes the weights
            torch.nn.init.normal_(p, std=0.05)
    ids = torch.tensor([gold_ids(tokenizer)[:40]])
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits.float()
        with merged_lora(model):
            merged = model(input_ids=ids).logits.float()
            assert any(not torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
        after = model(input_ids=ids).logits.float()
    tolerance = 1e-4 if dtype == torch.float32 else 0.05  # bfloat16 rounds the merged weights
    assert (merged - unmerged).abs().max() <= tolerance * unmerged.abs().max()
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert torch.equal(after, unmerged)


@pytest.mark.parametrize("together", [0, 2])
def test_a_steps_groups_are_decoded_together_and_scored_each_on_its_own_story(
    trained_models, tokenizer, together
):
    """Three prompts: with `rollout.groups_together` 0 one session of 12 rows, with 2 one of 8 rows and
    one of 4; either way three groups of 4, each scored against its own story's answer."""
    from dataclasses import replace

    model = trained_models["qwen3"].eval()
    other = memorised_story()
    other = replace(other, id="other", answer="7", record={**other.record, "id": "other", "answer": 7})
    stories = [memorised_story(), other, memorised_story()]
    config = small_config(lam=0.5)
    config.rollout.groups_together = together
    rows = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        groups = trainer.step_groups(model, tokenizer, stories, config, CostModelClock(PAPER_PROFILE), 5)
    finally:
        hook.remove()
    # the first forward (the questions) carries every row; later ones only the rows with work
    assert rows[0] == max(rows) == (12 if together == 0 else 8)
    assert together == 0 or rows[-1] <= 4  # the second session: the third group alone
    assert [len(g.rollouts) for g in groups] == [4, 4, 4]
    assert [{r.result.reference for r in g.rollouts} for g in groups] == [{"6"}, {"7"}, {"6"}]
    right = [sum(r.result.correct for r in g.rollouts) for g in groups]
    assert right[1] == 0 and right[0] > 0  # the memorised answer 6 is wrong only for the second story
