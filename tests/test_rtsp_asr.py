"""Speech over a real RTSP server on loopback, through the streaming ASR (see test_media_rtsp.py)."""

from __future__ import annotations

import threading
import time

import pytest
from test_media_rtsp import RtspServer, needs_server
from test_streaming_asr import SPEECH, UNAWARE, synthesize_fresh, wer

from adasr_av.encoders.streaming_asr import transcribe_stream
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.media.rtsp import StreamGap, read_rtsp_audio


@pytest.fixture(scope="module")
def speech_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("rtsp") / "speech.wav"
    synthesize_fresh(SPEECH, path)
    server = RtspServer(str(path))
    server.start()
    yield server
    server.stop()


@needs_server
def test_transcript_of_an_rtsp_stream(speech_server):
    audio = read_rtsp_audio(speech_server.url, end_on_eof=True, max_retries=1)
    chunks = list(transcribe_stream(audio, load_backend(), UNAWARE))
    assert wer(SPEECH, " ".join(c.text for c in chunks)) <= 0.25  # one offline call: 0.18 (eSpeak)


@needs_server
def test_server_restart_mid_stream_gives_a_gap_and_text_after_it(speech_server):
    gaps: list[StreamGap] = []
    audio = read_rtsp_audio(
        speech_server.url, open_timeout=2, read_timeout=2, max_retries=100, backoff=0.05, max_backoff=0.2,
        on_gap=gaps.append,
    )  # fmt: skip

    def restart() -> None:  # the server goes away for 1.5 s; the reader keeps going as a live one would
        speech_server.stop()
        time.sleep(1.5)
        speech_server.start()

    restarter = threading.Thread(target=restart, daemon=True)

    def live_audio():
        for chunk in audio:
            yield chunk
            if chunk.t_end >= 4.0 and not restarter.ident:
                restarter.start()
            if gaps and chunk.t_end >= gaps[0].t_end + 6.0:  # six seconds of the replayed file
                break
        audio.close()

    chunks = list(transcribe_stream(live_audio(), load_backend()))
    restarter.join(timeout=30)
    assert len(gaps) == 1 and gaps[0].t_end - gaps[0].t_start >= 1.5
    after = [c for c in chunks if c.t_start >= gaps[0].t_end]
    assert after, "no text from after the reconnect"
    heard = " ".join(c.text for c in after).lower()
    assert any(w in heard for w in ("loaves", "loaf", "bread"))  # the server replays the story
    assert all(a.t_start <= b.t_start for a, b in zip(chunks, chunks[1:], strict=False))
