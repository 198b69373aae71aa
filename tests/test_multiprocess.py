"""Two real training processes on CPU (a MULTI_CPU world of 2 over gloo), for SFT and HRPO: both
finish, both end with the same weights, and the log has each step once with every rank's groups.

`ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2` is what makes accelerate see the two
processes as one world on CPU; without it each sees a world of 1, and the trainer refuses.
Run as a script (by torchrun), this file trains through the CLI and leaves each rank's final
weights and its backward and optimizer step counts in `rank-R.pt` beside the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.hrpo.trainer import prompt_order

TORCHRUN = Path(sys.executable).with_name("torchrun")
TIE = "no story has this answer"  # the marked stories' answer: their rollouts all score the same
STEPS = 3


def ties_on_marked(rollouts, records):
    """A reward that ranks rollouts by length, except on marked stories, where they all tie."""
    return [
        0.0 if rec["answer"] == TIE else -r.stream_tokens / 10
        for r, rec in zip(rollouts, records, strict=True)
    ]


def torchrun(
    args: list[str],
    cpu_world: bool = True,
    timeout_s: float = 240,
    env: dict[str, str] | None = None,
    launcher: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """This file run as two processes (by torchrun, or by `launcher`) with `args`."""
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"} | (env or {})
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(__file__)}
    if cpu_world and launcher is None:
        env["ACCELERATE_USE_CPU"] = "true"
    launcher = launcher or [str(TORCHRUN), "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, __file__, *args, "--no-progress"]
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)  # fmt: skip
    try:
        out, err = run.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:  # ranks out of step wait on each other for ever: end them all
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail(f"the two processes did not finish in {timeout_s} s (ranks waiting on each other?)")
    return subprocess.CompletedProcess(command, run.returncode, out, err)


def deepspeed_launch(args: list[str], timeout_s: float = 400) -> subprocess.CompletedProcess:
    """The shipped ZeRO-2 recipe as a researcher launches it, on two CPU processes: DeepSpeed's CPU
    accelerator over gloo, fp32 (the YAML's bf16 is for GPUs), two processes (not the YAML's 8)."""
    recipe = Path(__file__).parents[1] / "training" / "qwen3" / "accelerate" / "deepspeed-zero2.yaml"
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file", str(recipe)]
    launch += ["--num_processes", "2", "--mixed_precision", "no"]
    return torchrun(args, env={"DS_ACCELERATOR": "cpu"}, launcher=launch, timeout_s=timeout_s)


def ranks(run: Path) -> list[dict]:
    return [torch.load(run / f"rank-{r}.pt") for r in range(2)]


def assert_in_sync(run: Path, start: Path | None = None) -> list[dict]:
    """Both ranks made the same steps and hold the same weights, the ones saved as final."""
    first, second = ranks(run)
    assert (first["backward"], first["optimizer_steps"]) == (second["backward"], second["optimizer_steps"])
    assert first["weights"].keys() == second["weights"].keys()
    for key, value in first["weights"].items():
        assert torch.equal(value, second["weights"][key]), key
    final = load_file(run / "final" / "model.safetensors")
    for key, value in final.items():
        assert torch.equal(value, first["weights"][key]), key
    if start is not None:
        before = load_file(start / "model.safetensors")
        assert any(not torch.equal(before[k], final[k]) for k in before), "no update"
    return [first, second]


def log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A tiny supervised model trained by two processes, and its stories."""
    folder = tmp_path_factory.mktemp("multiprocess")
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(text_record(generate_story(0, "train", i))) + "\n" for i in range(16)))
    valid = folder / "valid.jsonl"  # 5 stories in batches of 2: rank 0 gets two batches, rank 1 one
    valid.write_text("".join(json.dumps(text_record(generate_story(0, "valid", i))) + "\n" for i in range(5)))
    config = folder / "sft.toml"
    config.write_text(
        "[model]\nhidden = 32\nlayers = 1\nhead_dim = 16\nvocab_size = 300\ntokenizer_stories = 16\n"
        f'[data]\ntrain = "{data}"\nvalid = "{valid}"\nvalid_stories = 5\n'
        f'[train]\noutput = "{folder / "sft"}"\nmax_steps = {STEPS}\nbatch_size = 2\nlr = 5e-3\n'
        "warmup_steps = 1\nlog_every = 1\nsave_every = 2\n"
    )
    done = torchrun(["train", "sft", "--config", str(config)])
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done


def test_sft_on_two_processes_stays_in_sync(sft_run):
    folder, done = sft_run
    run = folder / "sft"
    first, _ = assert_in_sync(run, start=run / "init")
    assert first["optimizer_steps"] == STEPS
    assert [r["step"] for r in log(run)] == list(range(1, STEPS + 1))  # logged once, not per rank
    # validation split over the ranks in unequal shares, summed once: logged at the last step
    assert [r["step"] for r in log(run) if "valid_loss" in r] == [STEPS] and log(run)[-1]["valid_loss"] > 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-2"]
    assert not (run / "final.partial").exists()
    # the schedule advances once per optimizer step, not once per process (accelerate's default)
    assert [r["lr"] for r in log(run)] == pytest.approx(expected_lrs(lr=5e-3, warmup=1, steps=STEPS))


def expected_lrs(lr: float, warmup: int, steps: int, min_lr_ratio: float = 0.1) -> list[float]:
    """The learning rate after each of `steps` optimizer steps of the SFT schedule, alone."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, steps, min_lr_rate=min_lr_ratio)
    lrs = []
    for _ in range(steps):
        optimizer.step()
        schedule.step()
        lrs.append(schedule.get_last_lr()[0])
    return lrs


def test_the_shipped_deepspeed_recipe_runs_sft_with_one_optimizer_step_per_update(sft_run):
    """ZeRO-2 by `accelerate launch --config_file deepspeed-zero2.yaml`, full fine-tuning with two
    micro-batches an update: the TOML's accumulation replaces the YAML's, the engine steps once per
    update (not on every backward), the ranks end in sync and the schedule runs once."""
    folder, _ = sft_run
    output = folder / "zero2-sft"
    args = ["train", "sft", "--config", str(folder / "sft.toml"), "--set", f'train.output="{output}"']
    done = deepspeed_launch([*args, "--set", "train.grad_accum=2"])
    assert done.returncode == 0, done.stderr[-3000:]
    first, _ = assert_in_sync(output, start=output / "init")
    assert (first["backward"], first["optimizer_steps"]) == (2 * STEPS, STEPS)
    assert [r["step"] for r in log(output)] == list(range(1, STEPS + 1))
    assert [r["lr"] for r in log(output)] == pytest.approx(expected_lrs(lr=5e-3, warmup=1, steps=STEPS))


def test_the_shipped_deepspeed_recipe_runs_hrpo_in_sync(sft_run):
    """HRPO under ZeRO-2, one rank's groups all tying: one engine step per pass on both ranks."""
    folder, _ = sft_run
    output = folder / "zero2-hrpo"
    done = deepspeed_launch(
        ["train", "hrpo", "--config", str(hrpo_config(folder)), "--set", f'train.output="{output}"']
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = assert_in_sync(output, start=folder / "sft" / "final")
    assert first["optimizer_steps"] == STEPS and second["backward"] == first["backward"] > 0
    assert [(r["groups"], r["dropped_groups"]) for r in log(output)] == [(2, 1)] * STEPS


def hrpo_config(folder: Path) -> Path:
    """HRPO from the supervised model on six stories, two a step: story k of a step goes to rank
    k % 2, and the stories rank 1 gets all tie."""
    records = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()][:6]
    rank_1 = {prompt_order(len(records), 0, step, 2)[1] for step in range(STEPS)}  # k % 2 == 1
    for i in rank_1:
        records[i]["answer"] = TIE
    data = folder / "hrpo.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = folder / "hrpo.toml"
    config.write_text(
        f'[model]\ninit = "{folder / "sft" / "final"}"\n'
        f'[data]\ntrain = "{data}"\n'
        "[rollout]\ngroup_size = 4\nmax_unit_tokens = 8\nmax_deep_tokens = 12\n"
        '[hrpo]\nlam = 0.0\nrewards = ["test_multiprocess:ties_on_marked"]\n'
        f'[train]\noutput = "{folder / "hrpo"}"\nmax_steps = {STEPS}\nprompts_per_step = 2\n'
        "micro_batch = 2\nlr = 1e-2\nsave_every = 1\n"
    )
    return config


def test_hrpo_on_two_processes_stays_in_sync_when_one_ranks_groups_all_tie(sft_run):
    """Rank 1's stories all tie, so it drops every group it samples and has nothing to learn from:
    it still runs as many backward passes as rank 0 (on micro-batches that weigh nothing), and both
    take the same optimizer steps."""
    folder, _ = sft_run
    done = torchrun(["train", "hrpo", "--config", str(hrpo_config(folder))])
    assert done.returncode == 0, done.stderr[-3000:]
    run = folder / "hrpo"
    first, second = assert_in_sync(run, start=folder / "sft" / "final")
    assert first["optimizer_steps"] == STEPS and second["backward"] > 0
    records = log(run)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert [(r["groups"], r["dropped_groups"]) for r in records] == [(2, 1)] * STEPS  # every group once
    assert all(r["loss"] != 0.0 for r in records)
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"step-{STEPS}"]


def test_hrpo_with_lora_and_kl_on_two_processes(sft_run):
    """LoRA under DDP: the reference is the base with the adapters off, found through the unwrapped
    model (the DDP wrapper has no adapter switch), so the KL term is computed (above 0 once the
    second pass's policy has moved), and both ranks end with the same adapters."""
    folder, _ = sft_run
    output = folder / "lora"
    args = ["train", "hrpo", "--config", str(hrpo_config(folder)), "--set", f'train.output="{output}"']
    args += ["--set", "model.lora=true", "--set", "model.lora_r=4", "--set", "hrpo.kl_coef=0.1"]
    args += ["--set", "hrpo.updates_per_batch=2"]
    done = torchrun(args)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = ranks(output)
    assert (first["backward"], first["optimizer_steps"]) == (second["backward"], second["optimizer_steps"])
    adapters = [k for k in first["weights"] if "lora_B" in k]
    assert adapters and any(first["weights"][k].abs().sum() > 0 for k in adapters)  # B starts at zero
    assert all(torch.equal(first["weights"][k], second["weights"][k]) for k in first["weights"])
    assert all(r["kl"] > 0 for r in log(output))
    assert (output / "adapter" / "adapter_config.json").is_file()


def test_hrpo_refuses_prompts_per_step_the_world_does_not_divide(sft_run):
    folder, _ = sft_run
    args = ["train", "hrpo", "--config", str(hrpo_config(folder)), "--set", "train.prompts_per_step=3"]
    args += ["--set", f'train.output="{folder / "odd"}"']
    done = torchrun(args)
    assert done.returncode != 0
    assert (
        done.stderr.count("'train.prompts_per_step' (3) must be divisible by the number of processes (2)")
        == 2
    )


def test_two_processes_that_each_see_a_world_of_one_stop_with_a_clear_error(sft_run):
    """Plain torchrun on CPU: accelerate gives each process a world of 1; both refuse before they
    write anything, instead of both training and racing on the run folder."""
    folder, _ = sft_run
    output = folder / "world-of-one"
    args = ["train", "sft", "--config", str(folder / "sft.toml"), "--set", f'train.output="{output}"']
    done = torchrun(args, cpu_world=False)
    assert done.returncode != 0
    assert done.stderr.count("launched as 2 processes (WORLD_SIZE=2) but each sees a world of 1") == 2
    assert "ACCELERATE_USE_CPU=true" in done.stderr
    assert not output.exists()


def _train_and_record(args: list[str]) -> int:
    """In each torchrun process: train through the CLI, counting backward passes and optimizer
    steps, and save this rank's weights as the final model is saved."""
    from accelerate import Accelerator

    from adasr_av.cli import main
    from adasr_av.training import run_folder

    counts = {"backward": 0, "optimizer_steps": 0}
    backward, adamw_step, save_final = Accelerator.backward, torch.optim.AdamW.step, run_folder.save_final

    def counted_backward(self, *a, **k):
        counts["backward"] += 1
        return backward(self, *a, **k)

    def counted_step(self, *a, **k):
        counts["optimizer_steps"] += 1
        return adamw_step(self, *a, **k)

    def recorded_save_final(accelerator, model, tokenizer, output):
        engine = getattr(accelerator, "deepspeed_engine_wrapped", None)
        if engine is not None:  # ZeRO steps AdamW once per parameter group: count the engine's steps
            counts["optimizer_steps"] = engine.engine.global_steps
        weights = {
            k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()
        }
        torch.save(counts | {"weights": weights}, output / f"rank-{accelerator.process_index}.pt")
        return save_final(accelerator, model, tokenizer, output)

    Accelerator.backward, torch.optim.AdamW.step = counted_backward, counted_step
    run_folder.save_final = recorded_save_final
    return main(args)


if __name__ == "__main__":
    sys.exit(_train_and_record(sys.argv[1:]))
