"""A password in an RTSP URL never leaves the source boundary: not in a log line, an event, the
terminal view, a plot, a CSV, an SRT, a file name or an error message. Every command that takes a
URL is run on `rtsp://user:s3cret@127.0.0.1:<port>/stream` against the real RTSP server (it asks
for no password, so FFmpeg never sends one), the server restarted once mid-stream so that the
gap warning is printed too, and every byte written (stdout, stderr, logs, files and their names)
is searched for the password."""

from __future__ import annotations

import logging
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_media_rtsp import RtspServer, free_port, needs_server

from adasr_av.cli import main
from adasr_av.data.audio_file import write_audio
from adasr_av.media.file import read_audio

SECRET = "s3cret"
DEMOS = Path(__file__).resolve().parent.parent / "demos" / "media"
ADASR = [sys.executable, "-m", "adasr_av.cli"]


def secret_url(server: RtspServer) -> str:
    return f"rtsp://user:{SECRET}@127.0.0.1:{server.port}/stream"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("rtsp") / "wages.wav"
    write_audio(path, np.concatenate([c.samples for c in read_audio(DEMOS / "wages.mp3")]))
    server = RtspServer(str(path))
    server.start()
    yield server
    server.stop()


def leaks(folder: Path) -> list[str]:
    """Every file under `folder` whose name or bytes hold the secret."""
    found = []
    for path in folder.rglob("*"):
        if SECRET in path.name or (path.is_file() and SECRET.encode() in path.read_bytes()):
            found.append(str(path))
    return found


def interrupted(command: list[str], server: RtspServer, cwd: Path) -> str:
    """`command` run as a user runs it on a live camera: once it has put out a line of text the
    server is restarted (a gap), and once text comes after the reconnect, Ctrl-C; its stdout and
    stderr together."""
    leader, follower = pty.openpty()  # a terminal: `run` draws its live view (the title too)
    process = subprocess.Popen(
        command, cwd=cwd, stdout=follower, stderr=follower, env=os.environ | {"COLUMNS": "200"}
    )
    os.close(follower)
    lines: list[str] = []

    def read() -> None:
        with open(leader, "rb", buffering=0) as terminal:
            pending = b""
            while True:
                try:
                    block = terminal.read(4096)
                except OSError:  # the process ended and closed the terminal
                    block = b""
                if not block:
                    break
                *whole, pending = (pending + block).split(b"\n")
                lines.extend(line.decode(errors="replace") + "\n" for line in whole)
            lines.append(pending.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(test, what: str, timeout: float = 90.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            for i, line in enumerate(list(lines)):
                if test(line):
                    return i
            time.sleep(0.2)
        process.kill()
        raise AssertionError(f"no {what} from {command[3]}: {''.join(lines)}")

    wait_for(lambda line: "dollars" in line.lower(), "text")
    server.stop()
    time.sleep(1.0)
    server.start()
    after = wait_for(lambda line: "reconnected after" in line, "reconnect")
    wait_for(lambda line: "dollars" in line.lower() and lines.index(line) > after, "text after the gap")
    process.send_signal(signal.SIGINT)
    process.wait(timeout=300)  # the reasoner still deliberates and answers
    reader.join(timeout=10)
    return "".join(lines)


@needs_server
def test_run_and_transcribe_keep_the_password_out_of_every_output(server, tmp_path):
    url = secret_url(server)
    said = interrupted(
        [*ADASR, "run", url, "--out", "events.jsonl", "--srt", "speech.srt", "--plot", "t.png"],
        server, tmp_path,
    )  # fmt: skip
    assert "user:***@127.0.0.1" in said and "answer" in said.lower()
    said += interrupted([*ADASR, "transcribe", url, "--format", "txt"], server, tmp_path)
    assert SECRET not in said and leaks(tmp_path) == []


@needs_server
def test_batch_keeps_the_password_out_of_names_rows_and_logs(server, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    assert main(["batch", secret_url(server), "--max-seconds", "6", "--unaware", "--out", str(out)]) == 0
    said = "".join(capsys.readouterr()) + caplog.text
    assert len(list(out.glob("*.events.jsonl"))) == 1 and (out / "summary.csv").is_file()
    assert SECRET not in said and leaks(tmp_path) == []


def test_an_rtsp_url_that_does_not_answer_is_one_line_without_the_password(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://user:{SECRET}@127.0.0.1:{free_port()}/stream"
    for command in (["transcribe", url], ["batch", url, "--out", str(tmp_path / "out")]):
        main(command)
    said = "".join(capsys.readouterr()) + caplog.text
    assert "user:***@127.0.0.1" in said
    assert SECRET not in said and leaks(tmp_path) == []


@needs_server
def test_the_demo_rtsp_tab_keeps_the_password_out_of_the_page(server, caplog):
    from adasr_av.demo import DemoSession
    from adasr_av.run_config import RunConfig

    caplog.set_level(logging.DEBUG)
    models = RunConfig().pipeline_models("off")
    session = DemoSession.from_rtsp(models, secret_url(server), "How many dollars does Tom have now?")
    views = []
    for _ in range(8):  # the page polls the view while the stream runs
        time.sleep(1.0)
        views.append(session.view())
    session.stop()
    assert session.wait(timeout=120)
    views.append(session.view())
    figure = session.figure()
    texts = [t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text"))] if figure else []
    page = "".join(map(repr, views)) + " ".join(texts) + caplog.text
    assert "user:***@127.0.0.1" in page and views[-1].done
    assert SECRET not in page
