"""A training run's folder, the same for SFT and HRPO, and what keeps it whole across restarts.

    runs/x/config.json          the config the run started with, checked again by every resume
    runs/x/log.jsonl            one JSON line per logged step
    runs/x/checkpoints/step-N/  model, optimizer, scheduler and RNG state (the last one only)
    runs/x/final/               the trained model, saved before anything is plotted
    runs/x/log.png              the log's curves

A run killed and started again resumes from its last checkpoint, step N: the log loses the lines
the dead run wrote after step N (the resumed run writes them again, so each step is there once),
and the config must be the one the checkpoint was trained with, the keys of RESUMABLE aside.

Under several processes every rank runs the same code and only the main one writes: config.json,
the log, the checkpoint's marker and the final model, each behind a barrier, so no rank reads a
file another is still writing. A decision to stop is the main rank's, broadcast (`decided_once`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from adasr_av.atomic import write_atomically
from adasr_av.errors import AdasrError, first_line

# The keys a resume may change: how long the run goes on and how often it logs, evaluates and
# saves (and where its folder now is). Every other key decides what the steps compute, so a run
# resumed with another value would be neither the old run nor a new one. In SFT a new
# train.max_steps or train.epochs spreads the cosine schedule over the new length from the
# checkpoint's step on.
RESUMABLE = (
    "train.max_steps",
    "train.epochs",
    "train.max_minutes",
    "train.save_every",
    "train.log_every",
    "train.eval_every",
    "train.output",
)


def make_accelerator(gradient_accumulation_steps: int = 1):
    """The trainers' Accelerator, refused if the launcher's processes do not form one world.

    The learning-rate schedule is stepped by the trainer once per optimizer step: accelerate's own
    stepping advances it once per process (it assumes each process's batches are a share of one
    epoch's), so the cosine schedule would end after 1 / world of the run and then rise again.

    DeepSpeed without a GPU (its CPU accelerator, `DS_ACCELERATOR=cpu`) needs accelerate to be told
    the process group's backend: accelerate finds none for a CPU it was not told to use and would
    give every process a world of 1. This is how a DeepSpeed recipe is run on CPU (the tests)."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    handlers = []
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if deepspeed and os.environ.get("DS_ACCELERATOR") == "cpu":
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    accelerator = Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=handlers,
    )
    check_world(accelerator)
    return accelerator


def check_world(accelerator) -> None:
    """Refuse a launcher that started several processes which accelerate sees as one world each:
    they would all train alone, log every step and race on the run folder."""
    launched = max(int(os.environ.get(name) or 1) for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"))
    if launched > 1 and accelerator.num_processes == 1:
        raise AdasrError(
            f"launched as {launched} processes (WORLD_SIZE={os.environ.get('WORLD_SIZE')}) but each "
            "sees a world of 1, so they would train alone and race on the run folder: on CPU set "
            "ACCELERATE_USE_CPU=true for torchrun (accelerate launch --cpu starts only one process); "
            "on GPUs check that each process sees a device"
        )


def decided_once(accelerator, decision: bool) -> bool:
    """The main rank's `decision`, on every rank (a stop read from each rank's clock would differ)."""
    if accelerator.num_processes == 1:
        return bool(decision)
    from accelerate.utils import broadcast

    flag = torch.tensor([int(bool(decision))], device=accelerator.device)
    return bool(broadcast(flag, from_process=0).item())


def log_line(accelerator, path: Path, record: dict) -> None:
    """Append one record to the log, from the main rank only."""
    if accelerator.is_main_process:
        with path.open("a") as log:
            log.write(json.dumps(record) + "\n")


def start_run(output: Path, config, accelerator=None) -> None:
    """Record `config` in the run folder. A fresh start writes config.json; a resume (the folder
    holds a checkpoint) checks `config` against it first: an error naming every key that differs,
    RESUMABLE aside, and nothing written. Every rank checks (so all fail together); the main one
    writes."""
    _check_resumed_config(output, config)
    if accelerator is None or accelerator.is_main_process:
        _write_config(output, config)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def _check_resumed_config(output: Path, config) -> None:
    path = output / "config.json"
    checkpoint = latest_checkpoint(output)
    if checkpoint is not None and path.is_file():
        new = json.loads(json.dumps(asdict(config)))
        if changes := config_changes(with_new_defaults(_read_config(path), config), new):
            may = ", ".join(key for key in RESUMABLE if key in flat(new))
            raise AdasrError(
                f"{output}: resuming with a config that differs from the checkpoint's "
                f"({checkpoint.relative_to(output)}): {', '.join(changes)} "
                f"(start a new output folder, or put the old values back; a resume may change {may})"
            )


def with_new_defaults(saved: dict, config) -> dict:
    """The saved config with the options added since it was written at their defaults, so that a
    run stays resumable when the code gains an option (set to anything else, it is a change)."""
    merged = json.loads(json.dumps(asdict(type(config)())))

    def update(into: dict, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                update(into[key], value)
            else:
                into[key] = value

    update(merged, saved)
    return merged


def _write_config(output: Path, config) -> None:
    path = output / "config.json"
    new = json.loads(json.dumps(asdict(config)))
    if path.is_file() and latest_checkpoint(output) is not None and _read_config(path) == new:
        return
    output.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(new, indent=2) + "\n")


def config_changes(saved: dict, new: dict) -> list[str]:
    """'key old -> new' for each dotted key whose value differs, RESUMABLE aside ('absent': a key
    only one of them has)."""
    old, now = flat(saved), flat(new)
    return [
        f"{key} {_shown(old, key)} -> {_shown(now, key)}"
        for key in dict.fromkeys([*old, *now])
        if key not in RESUMABLE and _shown(old, key) != _shown(now, key)
    ]


def flat(table: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: {"train": {"lr": 0.1}} -> {"train.lr": 0.1}."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def _shown(table: dict, key: str) -> str:
    return json.dumps(table[key]) if key in table else "absent"  # JSON: 1 and 1.0 differ, one line


def _read_config(path: Path) -> dict:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdasrError(f"{path}: not readable ({first_line(err)}); cannot check the resume") from None
    if not isinstance(saved, dict):
        raise AdasrError(f"{path}: not a config (a JSON object); cannot check the resume")
    return saved


def keep_log_until(path: Path, step: int) -> None:
    """Drop the log's lines of steps after `step` (a resumed run writes them again) and any line a
    kill cut short; lines without a step stay, in order. Rewritten whole, and only if a line goes."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    kept = "".join(line + "\n" for line in text.splitlines() if _logged_by(line, step))
    if kept != text:
        write_atomically(path, kept)


def _logged_by(line: str, step: int) -> bool:
    """Whether a log line belongs to the run up to `step`: a record of that step or before, or one
    without a step; not a line cut short or a blank one."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    logged = record.get("step") if isinstance(record, dict) else None
    return not isinstance(logged, int | float) or logged <= step


def latest_checkpoint(output: Path) -> Path | None:
    done = [p for p in (output / "checkpoints").glob("step-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def resume(accelerator, output: Path, total_steps: int) -> int:
    """Load the last checkpoint in `output` into the prepared objects and cut the log back to its
    step; returns the step (0: none, and the log keeps no step a run before wrote)."""
    checkpoint = latest_checkpoint(output)
    step = 0
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        step = json.loads((checkpoint / "trainer_state.json").read_text())["step"]
        accelerator.print(f"adasr-av: resuming from {checkpoint} (step {step} of {total_steps})")
    if accelerator.is_main_process:
        keep_log_until(output / "log.jsonl", step)
    accelerator.wait_for_everyone()
    return step


def save_checkpoint(accelerator, output: Path, step: int) -> None:
    """Every rank saves its share (its RNG state); the main rank marks the checkpoint whole once all
    have, then deletes the older ones; no rank goes on before that."""
    folder = output / "checkpoints" / f"step-{step}"
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_atomically(folder / "trainer_state.json", json.dumps({"step": step}))  # marks it whole
        for old in (output / "checkpoints").glob("step-*"):
            if old != folder and int(old.name.split("-")[1]) < step:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


@dataclass
class BestValidation:
    """The best validation loss so far, its step, and the validations since (early stopping). Read
    back from the log on a resume, which the log's cut to the checkpoint keeps consistent."""

    loss: float = math.inf
    step: int = 0
    since: int = 0

    @classmethod
    def from_log(cls, path: Path) -> BestValidation:
        best = cls()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return best
        for line in lines:
            record = json.loads(line)
            if isinstance(record, dict) and "valid_loss" in record:
                best.update(record["step"], record["valid_loss"])
        return best

    def update(self, step: int, loss: float) -> bool:
        """Count one validation; True when it is a new best."""
        if loss < self.loss:
            self.loss, self.step, self.since = loss, step, 0
            return True
        self.since += 1
        return False


def finish_run(accelerator, model, tokenizer, output: Path, use_saved: str | None = None) -> Path:
    """Save the final model (or make the model saved in `output/use_saved`, the best one, final),
    then plot the log beside it: a plot that fails is a warning, and the saved model stays.
    Returns the final model's folder."""
    if use_saved is None:
        final = save_final(accelerator, model, tokenizer, output)
    else:
        final = output / "final"
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            tmp = output / "final.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(output / use_saved, tmp)
            replace_folder(tmp, final)
        accelerator.wait_for_everyone()
    log = output / "log.jsonl"
    if accelerator.is_main_process and log.is_file():
        from adasr_av.training.plot import plot_log

        try:
            plot_log(log, output / "log.png")
        except Exception as err:  # any plotting fault: the model is saved, the curves are an extra
            warnings.warn(
                f"{output / 'log.png'}: not written ({first_line(err)}); the model is saved in {final}",
                stacklevel=2,
            )
    return final


def replace_folder(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`, which may already hold one (a better `best` replaces the
    last): the old one is moved aside first, as a rename cannot land on a folder that has files."""
    old = target.with_name(f"{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.replace(old)
    new.replace(target)
    shutil.rmtree(old, ignore_errors=True)


def save_final(accelerator, model, tokenizer, output: Path, name: str = "final") -> Path:
    final = output / name
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        tmp = output / f"{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        if hasattr(model, "merge_and_unload"):  # LoRA: keep the adapter, ship the merged model
            model.save_pretrained(output / ("adapter" if name == "final" else f"{name}-adapter"))
            # merging changes the model in place: a model saved mid-run (the best) merges a copy
            model = (model if name == "final" else copy.deepcopy(model)).merge_and_unload()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        replace_folder(tmp, final)
    accelerator.wait_for_everyone()  # every rank returns a folder that is there
    return final
