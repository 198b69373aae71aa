"""The demo beyond loopback: never without a password, the RTSP tab only to allowed hosts and
with one message for every failure (no port scan through the page), and uploads checked by what
they hold before anything reads them."""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request

import av
import numpy as np
import pytest
from demo_server import served_demo
from test_demo import models  # noqa: F401 - the module's loaded pipeline, a fixture
from test_media_rtsp import free_port

from adasr_av.cli import main
from adasr_av.demo import DemoSession
from adasr_av.errors import AdasrError
from adasr_av.run_config import AUTH_ENV, DemoSettings, is_loopback

PASSWORD = "hunter22"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "0.0.0.0"], "--host 0.0.0.0 serves the page beyond this machine: give --auth USER:PASS"),
        (["--share"], "--share serves the page beyond this machine: give --auth USER:PASS"),
        (["--auth", f"alice{PASSWORD}"], "--auth: must be USER:PASS, both non-empty"),
        (["--auth", ":x", "--host", "0.0.0.0"], "--auth: must be USER:PASS, both non-empty"),
        (["--host", "0.0.0.0", "--auth-file", "/nonexistent/auth"], "--auth-file /nonexistent/auth: no such"),
        (["--auth", "a:b", "--auth-file", "f"], "--auth and --auth-file: give one of them"),
    ],
)
def test_an_exposed_page_without_a_password_is_refused_in_one_line(flags, message, capsys, monkeypatch):
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert main(["demo", *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"adasr-av: error: {message}")
    assert PASSWORD not in err[0]


def test_loopback_needs_no_password_and_the_environment_can_give_one(monkeypatch):
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert all(map(is_loopback, ("127.0.0.1", "127.3.0.1", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "192.168.1.5", "::", "example.org")))
    assert DemoSettings().credentials() is None and not DemoSettings().exposed
    monkeypatch.setenv(AUTH_ENV, f"alice:{PASSWORD}")
    assert DemoSettings(host="0.0.0.0").credentials() == ("alice", PASSWORD)


def _get(url: str, data: dict | None = None, cookie: str = "") -> tuple[int, str, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            cookies = "; ".join(c.split(";")[0] for c in answer.headers.get_all("Set-Cookie") or [])
            return answer.status, answer.read().decode(errors="replace"), cookies
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace"), ""


def test_a_page_served_beyond_loopback_asks_for_the_password(tmp_path):
    """The real `adasr-av demo --host 0.0.0.0` with a password file; the page's config (what a
    visitor needs to use it) is refused until the login succeeds."""
    auth = tmp_path / "auth"
    auth.write_text(f"alice:{PASSWORD}\n")
    env = {k: v for k, v in os.environ.items() if k != AUTH_ENV}
    with served_demo(tmp_path, "--host", "0.0.0.0", "--auth-file", str(auth), env=env) as demo:
        base = demo.url.rstrip("/")
        status, _, _ = _get(f"{base}/config")
        assert status == 401
        status, _, cookie = _get(f"{base}/login", {"username": "alice", "password": "wrong"})
        assert status >= 400 and not cookie
        status, _, cookie = _get(f"{base}/login", {"username": "alice", "password": PASSWORD})
        assert status == 200 and cookie
        status, config, _ = _get(f"{base}/config", cookie=cookie)
        assert status == 200 and "components" in config
    assert PASSWORD not in demo.log.read_text()


EXPOSED = {"host": "0.0.0.0", "auth": f"alice:{PASSWORD}"}


def test_an_exposed_rtsp_tab_connects_only_to_the_hosts_allowed(models):  # noqa: F811
    with pytest.raises(AdasrError, match="^the RTSP tab is off on a page served beyond this machine"):
        DemoSession.from_rtsp(models, "rtsp://127.0.0.1:554/x", settings=DemoSettings(**EXPOSED))
    allowed = DemoSettings(**EXPOSED, rtsp_allow="cam.local, 10.0.0.7")
    for url in ("rtsp://127.0.0.1:554/x", "rtsp://user:pw@169.254.169.254/x", "rtsp://cam.local.evil.org/x"):
        with pytest.raises(AdasrError, match="this page may not connect to"):
            DemoSession.from_rtsp(models, url, settings=allowed)


def test_an_exposed_rtsp_tab_says_the_same_of_a_closed_and_an_open_port(models):  # noqa: F811
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]

    def answer_garbage() -> None:  # an open port that is no RTSP server
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            connection.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    settings = DemoSettings(**EXPOSED, rtsp_allow="127.0.0.1")
    said = []
    try:
        for port in (free_port(), open_port):
            session = DemoSession.from_rtsp(models, f"rtsp://127.0.0.1:{port}/x", settings=settings)
            assert session.wait(timeout=90)
            said.append(session.view().status.replace(str(port), "PORT"))
    finally:
        listener.close()
    assert said[0] == said[1] == "**Error:** RTSP rtsp://127.0.0.1:PORT/x: no stream could be read"


def _png(path) -> None:
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _long_wav(path, seconds: float) -> None:
    from adasr_av.data.audio_file import write_audio

    write_audio(path, np.zeros(int(seconds * 16000), np.float32))


def test_uploads_are_checked_by_what_they_hold_before_anything_reads_them(models, tmp_path):  # noqa: F811
    image = tmp_path / "holiday.mp4"
    _png(image)
    long = tmp_path / "long.wav"
    _long_wav(long, 8.0)
    cases = [
        (image, "holiday.mp4: a png_pipe file is not taken (audio or video files only)", DemoSettings()),
        (long, "long.wav: 8 s long; at most 5 s is taken", DemoSettings(max_record_s=5)),
    ]
    for path, message, settings in cases:
        with pytest.raises(AdasrError) as caught:
            DemoSession.from_file(models, path, name=path.name, settings=settings)
        assert str(caught.value) == message
    assert not models.lock.locked()  # nothing started
