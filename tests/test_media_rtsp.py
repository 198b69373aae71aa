"""RTSP source against a real RTSP server on loopback (GStreamer's rtsp-server, tests/rtsp_server.py).

Skipped where Debian's python cannot load GstRtspServer; CI installs it with
apt-get install gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav
"""

from __future__ import annotations

import itertools
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from adasr_av.errors import AdasrError
from adasr_av.media.audio import SAMPLE_RATE
from adasr_av.media.rtsp import StreamGap, read_rtsp_audio, read_rtsp_frames
from adasr_av.media.sources import redact

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")
CHIRP = (200.0, 2000.0)  # Hz: a sweep correlates with itself at one lag only
SECONDS = 3.0


def _gst_rtsp_server_missing() -> str | None:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{SYSTEM_PYTHON} cannot run ({err})"
    if done.returncode:
        return (
            f"{SYSTEM_PYTHON} cannot import gi's GstRtspServer (see this file's docstring for the apt line)"
        )
    return None


needs_server = pytest.mark.skipif(
    (reason := _gst_rtsp_server_missing()) is not None, reason=reason or "GStreamer RTSP server available"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RtspServer:
    """tests/rtsp_server.py as a subprocess on a fixed loopback port, so it can be stopped and restarted."""

    def __init__(self, *args: str):
        self.args, self.port, self.process = args, free_port(), None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def start(self, timeout: float = 20.0) -> None:
        command = [SYSTEM_PYTHON, str(SERVER), *self.args, str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if line.strip() != "READY":
            self.stop()
            raise RuntimeError(f"RTSP test server did not start: {line}{self.process.stderr.read()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def chirp(seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0, f1 = CHIRP
    return (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        pcm = (samples * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture
def audio_server(tmp_path):
    server = RtspServer(str(write_wav(tmp_path / "chirp.wav", chirp())))
    server.start()
    yield server
    server.stop()


def best_lag(received: np.ndarray, original: np.ndarray, max_lag: int = 4000) -> tuple[int, float]:
    """The shift of `original` inside `received` and the correlation coefficient there."""
    n = min(len(original), len(received)) - max_lag
    scores = [np.dot(received[lag : lag + n], original[:n]) for lag in range(max_lag)]
    lag = int(np.argmax(scores))
    return lag, float(np.corrcoef(received[lag : lag + n], original[:n])[0, 1])


@needs_server
def test_stream_carries_the_file(audio_server):
    chunks = list(read_rtsp_audio(audio_server.url, end_on_eof=True, max_retries=1))
    samples = np.concatenate([c.samples for c in chunks])
    assert chunks[0].t_start == 0.0
    assert all(a.t_end == b.t_start for a, b in itertools.pairwise(chunks))
    assert chunks[-1].t_end == pytest.approx(SECONDS, abs=0.15)
    lag, correlation = best_lag(samples, chirp())
    assert lag < 0.1 * SAMPLE_RATE and correlation > 0.99


@needs_server
def test_reconnects_after_the_server_restarts(audio_server):
    gaps: list[StreamGap] = []
    reader = read_rtsp_audio(
        audio_server.url, open_timeout=2, read_timeout=2, max_retries=100, backoff=0.05, max_backoff=0.1,
        on_gap=gaps.append,
    )  # fmt: skip
    outage: dict[str, float] = {}

    def restart() -> None:  # in the background: the reader keeps reading, as a live pipeline does
        audio_server.stop()
        outage["down"] = time.monotonic()
        time.sleep(1.5)
        audio_server.start()
        outage["up"] = time.monotonic()

    restarter = threading.Thread(target=restart, daemon=True)
    before, after = [], []
    for chunk in reader:
        (after if gaps else before).append(chunk)
        if chunk.t_end >= 1.0 and not restarter.ident:
            restarter.start()
        if after and after[-1].t_end - after[0].t_start >= 1.0:
            break
    reader.close()
    restarter.join(timeout=30)

    assert len(gaps) == 1
    gap = gaps[0]
    assert gap.t_start == pytest.approx(before[-1].t_end)
    assert gap.t_end - gap.t_start == pytest.approx(outage["up"] - outage["down"], abs=0.4)
    assert after[0].t_start == gap.t_end
    assert all(a.t_end == b.t_start for a, b in itertools.pairwise(after))
    assert gap.reason == "the server ended the stream"  # what a killed server looks like over TCP
    # the restarted server plays the file from its start again
    lag, correlation = best_lag(np.concatenate([c.samples for c in after]), chirp(), max_lag=2000)
    assert correlation > 0.99


def test_unreachable_url_fails_after_the_retries_in_one_line():
    url = f"rtsp://viewer:secret@127.0.0.1:{free_port()}/stream"
    started = time.monotonic()
    with pytest.raises(AdasrError) as caught:
        next(read_rtsp_audio(url, open_timeout=1, read_timeout=1, max_retries=2, backoff=0.05))
    message = str(caught.value)
    assert time.monotonic() - started < 3
    assert message.startswith(f"RTSP {redact(url)}: ") and "(3 attempts)" in message
    assert "secret" not in message and "\n" not in message


@needs_server
def test_a_stalled_server_times_out(audio_server):
    """A frozen server keeps its socket open but sends nothing: only the timeouts can tell."""
    reader = read_rtsp_audio(
        audio_server.url, open_timeout=0.5, read_timeout=0.5, max_retries=1, backoff=0.05
    )
    assert next(reader).t_start == 0.0
    audio_server.process.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(AdasrError, match=r"no answer within 0.5 s \(2 attempts\)$"):
        for _ in reader:
            pass
    assert time.monotonic() - started < 5


def test_redact_hides_only_the_password():
    assert redact("rtsp://admin:pa:ss@cam.local:554/live") == "rtsp://admin:***@cam.local:554/live"
    assert redact("rtsp://cam.local:554/live") == "rtsp://cam.local:554/live"


@needs_server
def test_video_frames_at_the_requested_rate():
    server = RtspServer("--video")
    server.start()
    try:
        frames = list(itertools.islice(read_rtsp_frames(server.url, fps=5), 8))
    finally:
        server.stop()
    assert [f.t for f in frames] == pytest.approx([k / 5 for k in range(8)])
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0].image, frames[-1].image)  # the ball moves
