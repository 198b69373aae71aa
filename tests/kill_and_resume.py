"""Shared by the trainers' resume tests: train in a child process that is SIGKILLed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def kill_during_step(args: list[str], step: int, timeout_s: float) -> None:
    """Run `adasr-av ARGS` in a child that SIGKILLs itself as its optimizer starts `step`: the steps
    before it are done and logged, with the checkpoints the config asks for, and no cleanup runs."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(__file__)}
    code = f"import kill_and_resume; kill_and_resume._train_until_killed({step}, {args!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, timeout=timeout_s,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, f"not killed at step {step}: {done.stderr[-2000:]}"


def _train_until_killed(step: int, args: list[str]) -> None:
    """In the child: count AdamW steps (one per training step, at grad_accum = 1) and die hard
    before the optimizer takes step `step`."""
    from adasr_av.cli import main

    taken = 0
    adamw_step = torch.optim.AdamW.step

    def counted(self, *a, **k):
        nonlocal taken
        taken += 1
        if taken == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return adamw_step(self, *a, **k)

    torch.optim.AdamW.step = counted
    main(args)


def logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-4, atol=1e-5)
