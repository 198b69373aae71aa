"""Shared by the trainers' resume tests: train in a child process and SIGKILL it at a checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file


def kill_at_checkpoint(args: list[str], checkpoint: Path, timeout_s: float) -> None:
    """Run `adasr-av ARGS` until `checkpoint` exists, then kill it hard (no cleanup can run)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(__file__)}
    cmd = [sys.executable, "-m", "adasr_av.cli", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), f"no {checkpoint} before the kill"


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-4, atol=1e-5)
