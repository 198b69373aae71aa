"""The threaded pipeline on real media, the real Whisper tiny.en and the bundled reasoner: events,
back-pressure, stop and cancel, failures (no deliberation after one; the models free only once
every stage thread has ended), the length limit and the bounded views."""

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

from adasr_av import pipeline as pipeline_module
from adasr_av.cli import build_parser, main
from adasr_av.encoders.contract import ASREncoder
from adasr_av.encoders.streaming_asr import StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.errors import AdasrError
from adasr_av.media.file import read_audio
from adasr_av.media.push import PushedAudio
from adasr_av.pipeline import PipelineModels, PipelineRun
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.session import StreamingReasoner, reason_over_stream
from adasr_av.run_config import run_config

STORY = "demos/media/cooking.mp3"
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
        PipelineModels(StreamingReasoner(model, tokenizer), [ASREncoder(asr, UNAWARE)]),
        read_audio(STORY),
        "Q?",
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
    """A reasoner slower than the ASR (a sleep stands in for a big model on a small machine): 3 s a
    chunk, well above the ASR's time for one even on a loaded machine (1.5 s was not, there)."""

    def feed(self, chunk):
        time.sleep(3.0)
        return super().feed(chunk)


def test_a_slow_reasoner_makes_chunks_wait_in_order_none_dropped(asr, reasoner_model):
    committed = []
    run = PipelineRun(
        PipelineModels(SlowReasoner(*reasoner_model), [ASREncoder(asr, UNAWARE)]),
        read_audio(STORY),
        queue_size=1,
        on_chunk=committed.append,
    )
    events = run.run()
    fed = [e for e in events if e.type == "chunk"]
    assert [e.text for e in fed] == [c.text for c in committed] and len(fed) >= 4
    assert run.n_chunks == len(committed)
    assert [e.chunk_index for e in fed] == list(range(len(fed)))
    assert max(e.info["queued"] for e in fed) == 1  # one chunk waited behind the one being read
    assert events[-1].type == "summary"


def test_stop_closes_a_live_source_and_still_answers(asr, reasoner_model):
    """A pushed (browser-style) source that never ends by itself: stop() ends it, the answer comes."""
    audio = PushedAudio()
    run = PipelineRun(
        PipelineModels(StreamingReasoner(*reasoner_model), [ASREncoder(asr, UNAWARE)]),
        audio,
        "How many cookies?",
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


class CountingReasoner(StreamingReasoner):
    """The bundled reasoner, counting the chunks it was fed and its deliberations (finish calls)."""

    fed = finished = 0

    def feed(self, chunk):
        self.fed += 1
        return super().feed(chunk)

    def finish(self, t_stream_end=None):
        self.finished += 1
        return super().finish(t_stream_end)


def read_events(run: PipelineRun, seen: list) -> BaseException | None:
    """Iterate the run as a reader does, keeping its events; the error it raised, if any."""
    try:
        for event in run:
            seen.append(event)
    except Exception as err:  # noqa: BLE001 - returned for the test to look at
        return err
    return None


def assert_ended_cleanly(run: PipelineRun, seen: list) -> None:
    """No deliberation after a failure, and the models free only with every stage thread gone."""
    assert not {"deep", "answer", "summary"} & {e.type for e in seen}
    assert run.models.reasoner.finished == 0
    assert run.threads_alive == 0 and not any(t.is_alive() for t in run._threads)
    assert not run.models.lock.locked()  # the models are free for the next run


def test_a_failing_source_ends_the_run_with_its_error_and_no_deliberation(asr, reasoner_model):
    def breaks_once_streaming():  # small queues: the source is read just ahead of the encoder
        for chunk in read_audio(STORY):
            if reasoner.fed >= 2:
                raise AdasrError(f"camera.mp4: decoding failed at {chunk.t_start:.1f}s")
            yield chunk

    reasoner = CountingReasoner(*reasoner_model)
    run = PipelineRun(
        PipelineModels(reasoner, [ASREncoder(asr, UNAWARE)]), breaks_once_streaming(), queue_size=4
    )
    seen: list = []
    error = read_events(run, seen)
    assert isinstance(error, AdasrError) and "camera.mp4: decoding failed at" in str(error)
    assert any(e.type == "chunk" and e.tokens for e in seen)  # it was streaming when the source broke
    assert run.failure.stage == "capture"
    assert_ended_cleanly(run, seen)


class BrokenWhisper:
    """The real Whisper that fails from its third step on, as a GPU whose context is lost does: a
    fault injected (the test cannot make the real model fail on demand), the rest of the pipeline
    real. (One failed step is survived: tests/test_faults.py.)"""

    def __init__(self, backend):
        self.backend, self.calls = backend, 0

    def encode(self, audio, min_window_s=0.0):
        return self.backend.encode(audio, min_window_s)

    def decode(self, encoded, prompt="", prefix="", max_new_tokens=224):
        self.calls += 1
        if self.calls >= 3:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.backend.decode(encoded, prompt, prefix, max_new_tokens)

    def align(self, encoded, decoding):
        return self.backend.align(encoded, decoding)


def test_an_encoder_failing_mid_stream_ends_the_run_with_its_error_and_no_deliberation(asr, reasoner_model):
    models = PipelineModels(CountingReasoner(*reasoner_model), [ASREncoder(BrokenWhisper(asr), UNAWARE)])
    run = PipelineRun(models, read_audio(STORY))
    seen: list = []
    error = read_events(run, seen)
    assert isinstance(error, RuntimeError) and "illegal memory access" in str(error)
    # the ASR survives a failed step or two; the third in a row ends the stream with the error
    assert run.failure.stage == "encoder" and models.encoders[0].backend.calls == 2 + UNAWARE.max_failed_steps
    assert_ended_cleanly(run, seen)
    models.encoders = (
        ASREncoder(asr, UNAWARE),
    )  # the next run on the same models takes them at once and answers
    assert PipelineRun(models, read_audio(STORY)).run()[-1].type == "summary"


class BusyReasoner(CountingReasoner):
    """A reasoner whose first chunk takes as long as the test says: a big model's slow step (the
    real one is too fast on this machine to hold a stage busy on purpose)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.busy, self.release = threading.Event(), threading.Event()

    def feed(self, chunk):
        if self.fed == 0:
            self.busy.set()
            self.release.wait()
        return super().feed(chunk)


def test_the_models_stay_held_while_a_stage_still_works_after_a_failure(asr, reasoner_model):
    """The source fails while the reasoner is busy: the error waits for the reasoner, the models
    stay held until it has ended, and it deliberates nothing afterwards."""
    broken = threading.Event()

    def breaks_once_the_reasoner_is_busy():
        for chunk in read_audio(STORY):
            if reasoner.busy.is_set():
                broken.set()
                raise AdasrError("camera.mp4: decoding failed")
            yield chunk

    reasoner = BusyReasoner(*reasoner_model)
    run = PipelineRun(
        PipelineModels(reasoner, [ASREncoder(asr, UNAWARE)]), breaks_once_the_reasoner_is_busy(), queue_size=4
    )
    seen: list = []
    result: list = []
    reader = threading.Thread(target=lambda: result.append(read_events(run, seen)), daemon=True)
    reader.start()
    assert broken.wait(timeout=300)
    capture, encoder, busy = run._threads
    capture.join(timeout=60)  # ended with the failure
    encoder.join(timeout=60)  # stopped on the cancel
    assert not capture.is_alive() and not encoder.is_alive()
    assert busy.is_alive() and run.models.lock.locked()  # the reasoner still works: the models are held
    assert reader.is_alive()  # the reader waits for it before raising
    reasoner.release.set()
    reader.join(timeout=120)
    assert not reader.is_alive() and isinstance(result[0], AdasrError)
    assert_ended_cleanly(run, seen)


def test_cancel_ends_every_stage_without_an_answer(asr, reasoner_model):
    """A closed page: the run is abandoned mid-stream; nothing is deliberated; the models are free."""
    audio = PushedAudio()
    for block in [c.samples for c in read_audio(STORY)]:
        audio.push(block, 16000)  # the page keeps the stream open: it never closes it
    run = PipelineRun(PipelineModels(CountingReasoner(*reasoner_model), [ASREncoder(asr, UNAWARE)]), audio)
    seen: list = []
    for event in run:
        seen.append(event)
        if event.type == "chunk" and event.tokens:
            run.cancel()
    assert run.cancelled and run.failure is None
    assert_ended_cleanly(run, seen)


def test_max_seconds_ends_the_stream_there_and_it_is_answered(asr, reasoner_model):
    audio = PushedAudio()  # a live source that would go on for ever
    for block in [c.samples for c in read_audio(STORY)]:
        audio.push(block, 16000)
    run = PipelineRun(
        PipelineModels(StreamingReasoner(*reasoner_model), [ASREncoder(asr, UNAWARE)]),
        audio,
        max_seconds=6.25,
    )
    events = run.run()
    assert run.reached_limit and run.t_end == pytest.approx(6.25)
    assert events[-1].type == "summary" and events[-1].t_avail == pytest.approx(6.25, abs=1e-3)
    assert all(e.t_avail <= 6.25 + 1e-6 for e in events if e.type == "chunk")
    with pytest.raises(ValueError, match="max_seconds"):
        PipelineRun(run.models, audio, max_seconds=0)


def test_the_views_are_bounded_and_the_counts_run_on(asr, reasoner_model, monkeypatch):
    """What a run keeps does not grow with the stream: the latest chunks and events, counts and the
    summary (the bounds made small here, so a short story crosses them)."""
    monkeypatch.setattr(pipeline_module, "RECENT_CHUNKS", 2)
    monkeypatch.setattr(pipeline_module, "RECENT_EVENTS", 3)
    committed = []
    run = PipelineRun(
        PipelineModels(StreamingReasoner(*reasoner_model), [ASREncoder(asr, UNAWARE)]),
        read_audio(STORY),
        on_chunk=committed.append,
    )
    events = run.run()
    chunks, recent = run.snapshot()
    assert len(committed) > 2 and run.n_chunks == len(committed)
    assert [c.text for c in chunks] == [c.text for c in committed[-2:]]
    assert recent == events[-3:] and run.summary is events[-1]
    kept = [(e.type, e.t_begin, e.t_done) for e in run.timeline.events()]
    assert kept == [(e.type, e.t_begin, e.t_done) for e in events]
    assert all(e.text == "" for e in run.timeline.events()[:-1])  # the figure's record keeps no text


def test_ctrl_c_closes_the_stream_and_the_reasoner_answers(tmp_path):
    """A real SIGINT to `adasr-av run --realtime` part-way through a file."""
    out = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "adasr_av.cli", "run", "demos/media/shopping.mp3", "--realtime", "--plain",
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
    time.sleep(4.0)  # --realtime: about 4 s of the 22.7 s story have been played
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
    assert srt.startswith("1\n00:00:0") and "cookies" in srt.lower()
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert main(["run", "--config", str(config), "--plain", "--mode", "streaming"]) == 0
    events = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert any(e["type"] in ("think", "skip") for e in events)  # the flag won


def test_shipped_pipeline_configs_load():
    paths = sorted(Path("pipelines").glob("*.toml"))
    assert {"mic.toml", "recorded.toml", "rtsp.toml"} <= {p.name for p in paths}

    def config(path):
        args = build_parser().parse_args(["run", "--config", str(path)])
        return run_config(args, args.parser_, "run")

    assert config("pipelines/mic.toml").source.source == "mic"
    assert config("pipelines/recorded.toml").asr.unaware is True
    for path in paths:
        config(path)


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
    run = PipelineRun(PipelineModels(StreamingReasoner(*reasoner_model), [ASREncoder(asr, UNAWARE)]), audio)
    samples = [c.samples for c in read_audio(STORY)]
    for block in samples:
        audio.push(block, 16000)
    run.start()
    run.stop()
    events = run.run()
    assert events[-1].type == "summary"
    assert run.t_end == pytest.approx(sum(len(s) for s in samples) / 16000, abs=0.05)
