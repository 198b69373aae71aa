"""`adasr-av demo` as a user starts it, in a subprocess on a free port: for the tests that talk to
the served page (a browser, gradio_client, plain HTTP)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_media_rtsp import free_port

ROOT = Path(__file__).resolve().parent.parent
START_S = 300  # loading Whisper and the reasoner on a busy 2-core machine


@dataclass
class ServedDemo:
    url: str  # http://127.0.0.1:PORT/
    log: Path  # its stdout and stderr
    process: subprocess.Popen

    def output(self) -> str:
        return self.log.read_text()[-3000:]


@contextlib.contextmanager
def served_demo(folder: Path, *flags: str, env: dict[str, str] | None = None) -> Iterator[ServedDemo]:
    """The demo serving until the block ends; fails the test if it exits or does not answer within
    START_S, or if it died in the block."""
    port = free_port()
    log = folder / "demo.log"
    command = [sys.executable, "-m", "adasr_av.cli", "demo", "--port", str(port), *flags]
    env = (env or os.environ) | {"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    demo = ServedDemo(f"http://127.0.0.1:{port}/", log, process)
    try:
        deadline = time.monotonic() + START_S
        while not _answers(demo.url):
            if process.poll() is not None:
                pytest.fail(f"the demo exited with {process.returncode}:\n{demo.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer within {START_S} s:\n{demo.output()}")
            time.sleep(1)
        yield demo
        assert process.poll() is None, f"the demo died:\n{demo.output()}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except urllib.error.HTTPError as err:
        return err.code == 401  # a page behind a password answers, asking for it
    except OSError:
        return False
