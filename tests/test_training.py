"""Configs, gold sequences with their loss mask, batch order, and the SFT trainer (resume included)."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from kill_and_resume import assert_same_weights, kill_during_step, logged_steps

from adasr_av.cli import main
from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.data.teacher import gold_spans
from adasr_av.errors import AdasrError
from adasr_av.hrpo.trainer import HRPOConfig
from adasr_av.reasoner.protocol import encode_span
from adasr_av.reasoner.scratch import train_tokenizer
from adasr_av.training.config import load_config
from adasr_av.training.sequences import IGNORE, batch_order, collate, encode_story, merge_chunks
from adasr_av.training.sft import SFTConfig, story_style


def _story(i: int, split: str = "train"):
    return parse_record(text_record(generate_story(1, split, i)), f"story {i}", need_gold=True)


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["".join(t for _, t in gold_spans(_story(i), "uniform")) for i in range(200)]
    return train_tokenizer(texts, 512)


# --- config ----------------------------------------------------------------------------------------


@dataclass
class _Inner:
    rate: float = 0.1
    name: str = "x"
    mode: str | None = None
    items: list[str] = field(default_factory=list)


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    steps: int = 1


def test_config_reads_nested_tables_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('steps = 3\n[inner]\nrate = 1\nitems = ["a", "b"]\n')
    config = load_config(path, _Outer, {"inner.name": "y"})
    assert config == _Outer(_Inner(1.0, "y", None, ["a", "b"]), 3)
    assert isinstance(config.inner.rate, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz = 3\n", "unknown key 'stepz'"),
        ("[inner]\nrat = 1\n", "unknown key 'inner.rat'"),
        ('steps = "3"\n', "key 'steps' must be an integer"),
        ("steps = 2.5\n", "key 'steps' must be an integer"),
        ("[inner]\nrate = true\n", "key 'inner.rate' must be a number"),
        ("[inner]\nitems = [1]\n", "key 'inner.items' must be"),
        ("inner = 3\n", "'inner' must be a table"),
        ("steps = \n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(AdasrError, match=message) as err:
        load_config(path, _Outer)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_shipped_configs_load():
    paths = sorted(Path("training").glob("*/*.toml"))
    assert {"sft.toml", "rtt.toml", "sft-lora.toml", "hrpo.toml"} <= {p.name for p in paths}
    for path in paths:
        config = load_config(path, HRPOConfig if path.name.startswith("hrpo") else SFTConfig)
        assert config.train.output and config.data.train


def test_accelerate_configs_name_a_parameter_whole_setup():
    import yaml

    configs = sorted(Path("training/qwen3/accelerate").glob("*.yaml"))
    assert len(configs) >= 2
    for path in configs:
        config = yaml.safe_load(path.read_text())
        assert config["distributed_type"] in ("MULTI_GPU", "DEEPSPEED"), path
        assert config.get("deepspeed_config", {}).get("zero_stage", 2) <= 2, path


# --- sequences ---------------------------------------------------------------------------------------


def test_loss_mask_covers_exactly_the_model_spans(tokenizer):
    story = _story(0)
    for style in ("uniform", "adaptive"):
        example = encode_story(tokenizer, story, style)
        assert len(example.input_ids) == len(example.labels)
        taught = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
        spans = gold_spans(story, style)
        assert taught == [i for role, t in spans if role == "model" for i in encode_span(tokenizer, t)]
        squash = "".join  # the tokenizer gives each span segment a leading space; compare without
        assert squash(tokenizer.decode(example.input_ids).split()) == squash(
            "".join(t for _, t in spans).split()
        )


def test_merge_chunks_joins_text_and_gold():
    story = _story(3)
    merged = merge_chunks(story, random.Random(0), 1.0)
    assert len(merged.chunks) == 1
    assert merged.chunks[0].text == " ".join(c.text for c in story.chunks)
    assert merged.thoughts[0] == ". ".join(t for t in story.thoughts if t)
    assert merged.informative == (True,)
    assert merge_chunks(story, random.Random(0), 0.0) is story


def test_batch_order_is_a_deterministic_permutation():
    lengths = [random.Random(i).randint(10, 500) for i in range(1000)]
    order = batch_order(lengths, 16, seed=0, epoch=0)
    flat = [i for batch in order for i in batch]
    assert sorted(flat) == list(range(1000))
    assert order == batch_order(lengths, 16, seed=0, epoch=0)
    assert order != batch_order(lengths, 16, seed=0, epoch=1)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in order) / len(order)
    assert spread < 50  # length-sorted windows keep padding small


def test_collate_pads_and_masks(tokenizer):
    examples = [encode_story(tokenizer, _story(i), "uniform") for i in range(3)]
    batch = collate(examples, pad_id=tokenizer.pad_token_id)
    width = max(len(e) for e in examples)
    assert batch["input_ids"].shape == (3, width)
    for row, e in enumerate(examples):
        assert batch["attention_mask"][row].sum() == len(e)
        assert (batch["labels"][row, len(e) :] == IGNORE).all()


def test_style_mix_follows_the_fraction():
    styles = [story_style(0, i, 0.3) for i in range(2000)]
    assert 0.25 < styles.count("adaptive") / 2000 < 0.35
    assert styles == [story_style(0, i, 0.3) for i in range(2000)]


# --- trainer -----------------------------------------------------------------------------------------


def _write_data(folder, n: int, split: str = "train"):
    path = folder / f"{split}.jsonl"
    path.write_text("".join(json.dumps(text_record(generate_story(0, split, i))) + "\n" for i in range(n)))
    return path


def _config(tmp_path, output, steps: int, **train) -> str:
    train = {"batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "log_every": 1, "save_every": 2} | train
    extra = "".join(f"{k} = {v}\n" for k, v in train.items())
    path = tmp_path / f"{output}.toml"
    path.write_text(
        "[model]\nhidden = 32\nlayers = 1\nhead_dim = 16\nvocab_size = 400\ntokenizer_stories = 100\n"
        f'[data]\ntrain = "{tmp_path / "train.jsonl"}"\nvalid = "{tmp_path / "valid.jsonl"}"\n'
        "valid_stories = 8\nadaptive_fraction = 0.5\nmerge_prob = 0.2\n"
        f'[train]\noutput = "{tmp_path / output}"\nmax_steps = {steps}\n{extra}'
    )
    return str(path)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft")
    _write_data(folder, 64)
    _write_data(folder, 8, "valid")
    return folder


def test_sft_trains_logs_and_saves_a_loadable_model(data_dir):
    from adasr_av.reasoner.loading import load_reasoner_model

    config = _config(data_dir, "run", 12)
    assert main(["train", "sft", "--config", config, "--no-progress"]) == 0
    out = data_dir / "run"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.5
    assert "valid_loss" in log[-1]
    model, tokenizer = load_reasoner_model(str(out / "final"))
    assert model.config.num_hidden_layers == 1 and "<|skip|>" in tokenizer.get_vocab()


def test_sft_killed_and_resumed_matches_an_uninterrupted_run(data_dir):
    """A real SIGKILL in step 7, three logged steps after the step-4 checkpoint, then a rerun: the
    same final weights and the same log as a run never stopped, each step in it once."""
    straight = _config(data_dir, "straight", 10, save_every=4)
    assert main(["train", "sft", "--config", straight, "--no-progress"]) == 0
    killed = _config(data_dir, "killed", 10, save_every=4)
    kill_during_step(["train", "sft", "--config", killed, "--no-progress"], 7, 120)
    out = data_dir / "killed"
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-4"]
    assert not (out / "final").exists()
    assert main(["train", "sft", "--config", killed, "--no-progress"]) == 0
    assert_same_weights(data_dir / "straight" / "final", out / "final")
    assert logged_steps(out) == list(range(1, 11))
    expected = _log(data_dir / "straight")
    for key in ("loss", "lr", "valid_loss"):
        got = [r.get(key) for r in _log(out)]
        assert got == pytest.approx([r.get(key) for r in expected], abs=2e-4), key
    assert "valid_loss" in _log(out)[-1]


def test_sft_resume_with_a_changed_config_is_refused(data_dir, capsys):
    """A killed run resumed with another lr: one line naming the key, and the checkpoint, config and
    log as they were; resumed with a longer max_steps (a key a resume may change), it goes on."""
    config = _config(data_dir, "changed", 4)
    args = ["train", "sft", "--config", config, "--no-progress"]
    kill_during_step(args, 4, 120)
    out = data_dir / "changed"
    files = [out / "config.json", out / "log.jsonl", *(out / "checkpoints").rglob("*")]
    files = [path for path in files if path.is_file()]
    before = {path: path.read_bytes() for path in files}
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-2"]
    capsys.readouterr()
    assert main([*args, "--set", "train.lr=0.001"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"{out}: resuming with a config that differs from the checkpoint's" in err
    assert "): train.lr 0.003 -> 0.001 (start a new output folder" in err  # that key, and only it
    assert {path: path.read_bytes() for path in files} == before
    assert main([*args, "--set", "train.max_steps=5"]) == 0
    assert logged_steps(out) == [1, 2, 3, 4, 5]
    assert json.loads((out / "config.json").read_text())["train"]["max_steps"] == 5


def test_sft_stops_when_validation_stops_improving_and_keeps_the_best(data_dir):
    """A learning rate of 1 drives the validation loss up after the first steps: the run stops
    `patience` validations after its best, before max_steps, and the final model is the best
    step's, not the last step's (whose weights are in the checkpoint the stop wrote)."""
    from safetensors.torch import load_file

    config = _config(data_dir, "patient", 30, lr=1.0, warmup_steps=1, eval_every=1, patience=2)
    assert main(["train", "sft", "--config", config, "--no-progress"]) == 0
    out = data_dir / "patient"
    valid = [(r["step"], r["valid_loss"]) for r in _log(out) if "valid_loss" in r]
    best_step, best_loss = min(valid, key=lambda sv: sv[1])
    assert valid[-1][0] == best_step + 2 < 30  # stopped two validations after the best
    assert all(loss >= best_loss for _, loss in valid[valid.index((best_step, best_loss)) + 1 :])
    assert_same_weights(out / "best", out / "final")
    last = load_file(out / "checkpoints" / f"step-{valid[-1][0]}" / "model.safetensors")
    final = load_file(out / "final" / "model.safetensors")
    assert any(not torch.allclose(last[k], final[k]) for k in final)


def test_a_best_model_that_improves_again_replaces_the_saved_best(data_dir):
    """Validation improving twice saves `best` twice; the second save once failed with "Directory
    not empty" and ended the run (the read-then-think baseline, at its second validation)."""
    config = _config(data_dir, "improving", 6, eval_every=1, patience=6)
    assert main(["train", "sft", "--config", config, "--no-progress"]) == 0
    out = data_dir / "improving"
    valid = [loss for r in _log(out) if "valid_loss" in r for loss in [r["valid_loss"]]]
    improvements = [i for i, loss in enumerate(valid) if all(loss < v for v in valid[:i])]
    assert len(improvements) >= 2  # a second best was saved over the first
    assert_same_weights(out / "best", out / "final")
    assert not [p.name for p in out.iterdir() if p.name.endswith((".old", ".partial"))]


def test_sft_plot_fault_after_training_keeps_the_final_model(data_dir):
    """log.png is a folder, so the plot fails for real: a warning, and the final model is saved."""
    from adasr_av.reasoner.loading import load_reasoner_model

    (data_dir / "unplotted" / "log.png").mkdir(parents=True)
    config = _config(data_dir, "unplotted", 2)
    with pytest.warns(UserWarning, match=r"log\.png: not written .*the model is saved in"):
        assert main(["train", "sft", "--config", config, "--no-progress"]) == 0
    model, _ = load_reasoner_model(str(data_dir / "unplotted" / "final"))
    assert model.config.num_hidden_layers == 1


def test_sft_lora_on_an_existing_model(data_dir):
    base = data_dir / "run" / "final"
    if not (base / "config.json").exists():
        main(["train", "sft", "--config", _config(data_dir, "run", 12), "--no-progress"])
    config = _config(data_dir, "lora", 3)
    args = ["--set", f'model.init="{base}"', "--set", "model.lora=true", "--set", "model.lora_r=4"]
    assert main(["train", "sft", "--config", config, "--no-progress", *args]) == 0
    assert (data_dir / "lora" / "adapter" / "adapter_config.json").is_file()
    assert (data_dir / "lora" / "final" / "config.json").is_file()


def test_sft_with_gradient_checkpointing_and_accumulation_trains_the_same_model(data_dir):
    """Checkpointed layers recompute in backward: the same weights after steps of two accumulated
    micro-batches each, one optimizer step per `grad_accum` batches as the step count says."""
    plain = _config(data_dir, "accumulated", 3, grad_accum=2, batch_size=2)
    checkpointed = _config(
        data_dir, "checkpointed", 3, grad_accum=2, batch_size=2, gradient_checkpointing="true"
    )
    for config in (plain, checkpointed):
        assert main(["train", "sft", "--config", config, "--no-progress"]) == 0
    assert [r["step"] for r in _log(data_dir / "checkpointed") if "loss" in r] == [1, 2, 3]
    assert_same_weights(data_dir / "accumulated" / "final", data_dir / "checkpointed" / "final")


@pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
def test_gradient_checkpointing_gives_the_same_gradients(tokenizer, arch):
    import copy

    from adasr_av.reasoner.scratch import build_model
    from adasr_av.training.model_setup import checkpoint_activations

    model = build_model(tokenizer, arch, hidden=32, layers=2).train()
    checkpointed = copy.deepcopy(model)
    checkpoint_activations(checkpointed)
    calls = []
    for layer in [m for m in checkpointed.modules() if getattr(m, "gradient_checkpointing", False)]:
        inner = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, inner=inner, **k: calls.append(1) or inner(*a, **k)
    ids = torch.randint(3, len(tokenizer), (2, 24))
    grads = []
    for m in (model, checkpointed):
        torch.manual_seed(1)  # GPT-2's dropout: the same masks (the recompute replays its RNG state)
        m(input_ids=ids, labels=ids).loss.backward()
        grads.append([p.grad for p in m.parameters()])
    assert len(calls) == 2  # each of the two layers ran checkpointed
    for x, y in zip(*grads, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


def test_the_toml_fills_deepspeeds_batch_settings():
    """accelerate refuses DeepSpeed without a micro-batch size when no dataloader is prepared, and
    the YAML's accumulation count would override the TOML's: the trainers write the TOML's."""
    from types import SimpleNamespace

    import yaml
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    from adasr_av.hrpo.trainer import _nominal_micro_batches
    from adasr_av.training.model_setup import fit_backend

    launch = yaml.safe_load(Path("training/qwen3/accelerate/deepspeed-zero2.yaml").read_text())
    world, yaml_accumulation = (
        launch["num_processes"],
        launch["deepspeed_config"]["gradient_accumulation_steps"],
    )
    sft = load_config("training/qwen3/sft-lora-4b.toml", SFTConfig).train
    hrpo = load_config("training/qwen3/hrpo-4b.toml", HRPOConfig)
    cases = [
        (sft.batch_size, sft.grad_accum, sft.max_grad_norm),
        (
            hrpo.train.micro_batch,
            _nominal_micro_batches(hrpo, SimpleNamespace(num_processes=world)),
            hrpo.train.max_grad_norm,
        ),
    ]
    assert cases[1][1] == 12  # 16 prompts over 8 GPUs, 12 rollouts each, 2 to a micro-batch
    for micro, accumulation, clip in cases:
        plugin = DeepSpeedPlugin(**launch["deepspeed_config"])
        accelerator = SimpleNamespace(
            distributed_type=DistributedType.DEEPSPEED, state=SimpleNamespace(deepspeed_plugin=plugin),
            num_processes=world, gradient_accumulation_steps=yaml_accumulation,
        )  # fmt: skip
        fit_backend(accelerator, micro, accumulation, clip)
        ds = plugin.deepspeed_config
        assert not plugin.is_auto("train_micro_batch_size_per_gpu") and not plugin.is_auto("train_batch_size")
        assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (
            micro,
            accumulation,
        )
        assert ds["train_batch_size"] == micro * accumulation * world and ds["gradient_clipping"] == clip
        assert accelerator.gradient_accumulation_steps == accumulation


def test_sft_bad_dataset_line_names_file_and_line(tmp_path, capsys):
    _write_data(tmp_path, 3)
    path = tmp_path / "train.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    del record["chunks"][0]["thought"]
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    _write_data(tmp_path, 2, "valid")
    assert main(["train", "sft", "--config", _config(tmp_path, "bad", 2)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path}, line 2, chunk 0: missing field 'thought'" in err


def test_sft_unknown_config_key(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlearning_rate = 1\n")
    assert main(["train", "sft", "--config", str(path)]) == 1
    assert "unknown key 'train.learning_rate'" in capsys.readouterr().err


def test_sft_stories_longer_than_the_model_are_an_error_or_skipped(data_dir, capsys):
    """A model of 160 positions against stories of up to about 600 tokens: one clear line, or,
    with data.skip_too_long, a run on the stories that fit that says how many it dropped."""
    small = ["--set", "model.max_positions=160"]
    config = _config(data_dir, "short-positions", 2)
    assert main(["train", "sft", "--config", config, "--no-progress", *small]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the model takes 160" in err and "skip_too_long" in err
    config = _config(data_dir, "short-skipped", 2)
    args = [*small, "--set", "data.skip_too_long=true"]
    assert main(["train", "sft", "--config", config, "--no-progress", *args]) == 0
    said = re.search(r"(\d+) stories longer than 160 tokens skipped", capsys.readouterr().out)
    dropped = int(said.group(1))
    assert 0 < dropped < 64
    assert (data_dir / "short-skipped" / "final" / "config.json").is_file()


def test_load_stories_pools_several_datasets_with_a_limit_each(tmp_path):
    from adasr_av.training.sft import load_stories

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _write_data(tmp_path / "a", 5), _write_data(tmp_path / "b", 4, "valid")
    pooled = load_stories([str(a), str(b)], limit=3)
    assert [s.id for s in pooled][:3] == [s.id for s in load_stories(str(a), 3)]
    assert len(pooled) == 6 and {s.record["split"] for s in pooled} == {"train", "valid"}
    assert len(load_stories([str(a), str(b)])) == 9


def test_a_training_checkpoint_exports_as_a_model(data_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from adasr_av.reasoner.loading import load_reasoner_model
    from adasr_av.training import export

    assert main(["train", "sft", "--config", _config(data_dir, "exported", 4), "--no-progress"]) == 0
    checkpoint = data_dir / "exported" / "checkpoints" / "step-4"
    model, _ = load_reasoner_model(str(export.export_model(checkpoint, tmp_path / "step-4")))
    weights = model.state_dict()
    for name, saved in load_file(checkpoint / "model.safetensors").items():
        assert torch.allclose(weights[name], saved, atol=1e-3, rtol=1e-3), name  # float16 rounding
    assert torch.equal(weights["lm_head.weight"], weights["model.embed_tokens.weight"])  # still tied
    capsys.readouterr()
    lonely = tmp_path / "elsewhere" / "checkpoints" / "step-1"
    lonely.mkdir(parents=True)
    (lonely / "trainer_state.json").write_text('{"step": 1}')
    assert export.main([str(lonely), str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "no run config" in out
