"""The threaded pipeline on real media, the real Whisper tiny.en and the bundled reasoner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adasr_av.cli import main
from adasr_av.encoders.streaming_asr import StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.errors import AdasrError
from adasr_av.media.file import read_audio
from adasr_av.media.push import PushedAudio
from adasr_av.pipeline import PipelineModels, PipelineRun
from adasr_av.pipeline_config import run_defaults
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.session import StreamingReasoner, reason_over_stream

STORY = "demos/media/points.mp3"
UNAWARE = StreamingASROptions(computation_aware=False)  # chunk times independent of machine load


@pytest.fixture(scope="module")
def asr():
    return load_backend("faster-whisper")


@pytest.fixture(scope="module")
def reasoner_model():
    return load_reasoner_model(str(default_model()))


def strip(event) -> dict:
    record = event.to_dict()
    record.pop("queued", None)
    return record


def test_threads_give_the_events_of_the_sequential_run(asr, reasoner_model):
    model, tokenizer = reasoner_model
    run = PipelineRun(
        PipelineModels(asr, StreamingReasoner(model, tokenizer), UNAWARE), read_audio(STORY), "Q?"
    )
    threaded = run.run()
    audio = list(read_audio(STORY))
    chunks = transcribe_stream(audio, asr, UNAWARE)
    sequential = list(
        reason_over_stream(StreamingReasoner(model, tokenizer), chunks, "Q?", None, audio[-1].t_end)
    )
    assert [strip(e) for e in threaded] == [strip(e) for e in sequential]
    assert threaded[-1].type == "summary" and run.t_end == pytest.approx(audio[-1].t_end)
    assert all("queued" in e.info for e in threaded if e.type == "chunk")


class SlowReasoner(StreamingReasoner):
    """A reasoner slower than the ASR (a sleep stands in for a big model on a small machine)."""

    def feed(self, chunk):
        time.sleep(1.5)
        return super().feed(chunk)


def test_a_slow_reasoner_makes_chunks_wait_in_order_none_dropped(asr, reasoner_model):
    run = PipelineRun(
        PipelineModels(asr, SlowReasoner(*reasoner_model), UNAWARE), read_audio(STORY), queue_size=1
    )
    events = run.run()
    fed = [e for e in events if e.type == "chunk"]
    assert [e.text for e in fed] == [c.text for c in run.chunks] and len(fed) >= 4
    assert [e.chunk_index for e in fed] == list(range(len(fed)))
    assert max(e.info["queued"] for e in fed) == 1  # one chunk waited behind the one being read
    assert events[-1].type == "summary"


def test_stop_closes_a_live_source_and_still_answers(asr, reasoner_model):
    """A pushed (browser-style) source that never ends by itself: stop() ends it, the answer comes."""
    audio = PushedAudio()
    run = PipelineRun(
        PipelineModels(asr, StreamingReasoner(*reasoner_model), UNAWARE), audio, "How many points?"
    )
    samples = [c.samples for c in read_audio(STORY)]
    half = len(samples) // 2

    def speak_then_stop():
        for block in samples[:half]:
            audio.push(block, 16000)
        time.sleep(1.0)
        run.stop()  # the speaker stops; nothing more will be pushed

    threading.Thread(target=speak_then_stop, daemon=True).start()
    seen = run.run()
    assert any(e.type == "chunk" and e.tokens for e in seen)
    assert [e.type for e in seen][-3:] == ["deep", "answer", "summary"]
    assert seen[-1].t_avail <= sum(len(s) for s in samples[:half]) / 16000 + 1e-6


def test_a_failing_source_ends_the_run_with_its_error(asr, reasoner_model):
    def breaks_after_two_seconds():
        for chunk in read_audio(STORY):
            if chunk.t_start >= 2.0:
                raise AdasrError("camera.mp4: decoding failed at 2.0s")
            yield chunk

    run = PipelineRun(
        PipelineModels(asr, StreamingReasoner(*reasoner_model), UNAWARE), breaks_after_two_seconds()
    )
    t0 = time.time()
    with pytest.raises(AdasrError, match="decoding failed"):
        run.run()
    assert time.time() - t0 < 30
    assert not run.models.lock.locked()  # the models are free for the next run


def test_ctrl_c_closes_the_stream_and_the_reasoner_answers(tmp_path):
    """A real SIGINT to `adasr-av run --realtime` part-way through a file."""
    out = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "adasr_av.cli", "run", "demos/media/buses.mp3", "--realtime", "--plain",
           "--out", str(out)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    # a shell's background jobs start with SIGINT ignored (CI runs so); give the child Ctrl-C back
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    deadline = time.time() + 120
    while time.time() < deadline and not out.exists():  # created once the models are loaded
        time.sleep(0.1)
    time.sleep(4.0)  # --realtime: about 4 s of the 15.7 s story have been played
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in events][-3:] == ["deep", "answer", "summary"]
    assert events[-1]["t_avail"] < 12.0  # the stream was cut part-way, then answered
    assert "interrupted: the stream was closed and answered" in stderr and "Traceback" not in stderr
    assert "answer:" in stdout


def test_run_with_outputs_and_a_config_that_flags_override(tmp_path, capsys):
    config = tmp_path / "p.toml"
    config.write_text(
        f'[source]\nsource = "{STORY}"\n[asr]\nunaware = true\n[reasoner]\nmode = "read-then-think"\n'
        f'[output]\nout = "{tmp_path / "a.jsonl"}"\nsrt = "{tmp_path / "a.srt"}"\n'
        f'plot = "{tmp_path / "a.png"}"\n'
    )
    assert main(["run", "--config", str(config), "--plain"]) == 0
    events = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert not any(e["type"] in ("think", "skip") for e in events)  # read-then-think, from the config
    srt = (tmp_path / "a.srt").read_text()
    assert srt.startswith("1\n00:00:0") and "points" in srt.lower()
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert main(["run", "--config", str(config), "--plain", "--mode", "streaming"]) == 0
    events = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert any(e["type"] in ("think", "skip") for e in events)  # the flag won


def test_shipped_pipeline_configs_load():
    paths = sorted(Path("pipelines").glob("*.toml"))
    assert {"mic.toml", "recorded.toml", "rtsp.toml"} <= {p.name for p in paths}
    assert run_defaults("pipelines/mic.toml")["source"] == "mic"
    for path in paths:
        run_defaults(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[asr]\nstep = "fast"\n', "key 'asr.step' must be a number"),
        ("[output]\nsrt_file = 1\n", "unknown key"),
    ],
)
def test_bad_pipeline_config_names_the_key(tmp_path, capsys, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["run", STORY, "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and str(config) in err and "\n" not in err


def test_run_without_a_source_says_so(capsys):
    assert main(["run"]) == 1
    assert "no source" in capsys.readouterr().err


def test_stop_keeps_the_audio_a_live_source_already_received(asr, reasoner_model):
    """Everything pushed before stop() is heard: stopping a recording loses none of it."""
    audio = PushedAudio()
    run = PipelineRun(PipelineModels(asr, StreamingReasoner(*reasoner_model), UNAWARE), audio)
    samples = [c.samples for c in read_audio(STORY)]
    for block in samples:
        audio.push(block, 16000)
    run.start()
    run.stop()
    events = run.run()
    assert events[-1].type == "summary"
    assert run.t_end == pytest.approx(sum(len(s) for s in samples) / 16000, abs=0.05)
