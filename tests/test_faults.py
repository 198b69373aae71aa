"""Faults survived, each with real components: the real Whisper tiny.en, the bundled reasoner, real
media files, GStreamer's RTSP server (test_media_rtsp.py) and a real small file system.

- the RTSP server restarted 5 times during one stream: each reconnect reported with its gap (on_gap
  and the log), the speech after each restart transcribed;
- a media file truncated while it is read: the audio up to the cut, then one AdasrError naming the
  file, in every container (WAV, MP3, MP4);
- an ASR exception on one buffer: logged, that speech reported lost, the stream goes on to the answer;
- a reasoner exception: the run's error, the models free, the next run and the next demo session
  answer;
- the output disk full during `adasr-av batch` (a 64 KiB tmpfs mounted here): the failed file's row
  says no space left on device, the finished file's outputs are intact, the failed one leaves nothing;
  `adasr-av run --out` on a full disk is one line naming the file, and leaves no partial output.

Two faults cannot be caused for real on this machine, so a real component is wrapped to raise once
(said where it is done): a Whisper decode that fails (a CUDA error, a bad kernel) and a reasoner
forward pass that fails (out of GPU memory).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_media_rtsp import RtspServer, needs_server, write_wav

from adasr_av.cli import main
from adasr_av.demo import DemoSession
from adasr_av.encoders.contract import ASREncoder
from adasr_av.encoders.streaming_asr import ASRStats, StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.errors import AdasrError
from adasr_av.media.file import read_audio
from adasr_av.media.rtsp import StreamGap, read_rtsp_audio
from adasr_av.pipeline import PipelineModels, PipelineRun
from adasr_av.reasoner.loading import load_reasoner_model
from adasr_av.reasoner.session import StreamingReasoner
from adasr_av.types import Event

MEDIA = Path(__file__).resolve().parent.parent / "demos" / "media"
STORY = MEDIA / "wages.mp3"  # "Tom has 21 dollars. He earns 63 dollars every hour. ..." (11.5 s)
UNAWARE = StreamingASROptions(computation_aware=False)  # the same steps however loaded the machine


@pytest.fixture(scope="module")
def whisper():
    return load_backend()


@pytest.fixture(scope="module")
def reasoner_model():
    return load_reasoner_model("tiny-streaming-sft")


def story_samples(path: Path = STORY) -> np.ndarray:
    return np.concatenate([chunk.samples for chunk in read_audio(path)])


# --- the RTSP server restarted five times ---------------------------------------------------------

RESTARTS = 5
SESSION_S = 4.0  # stream seconds heard from each connection: a story's first sentence or two
OUTAGE_S = 0.5  # the server is down this long, then takes its start-up time to listen again
# A camera that restarts goes on with new speech, so each connection serves another story (the same
# sentence replayed verbatim after its own text would be taken for a Whisper loop, and gated), and
# what each story's first seconds say is what must be heard after that restart.
SESSIONS = {
    "wages": "dollars",  # "Tom has 21 dollars."
    "money": "sara",  # "Sara has sixteen dollars."
    "cooking": "cookies",  # "Emma has 69 cookies in a jar."
    "shopping": "apples",  # "Jack has seventy apples."
    "school": "stickers",  # "Ivan collects one stickers."
    "free-eggs": "eggs",  # "A farmer put forty eggs in his basket."
}


@needs_server
def test_rtsp_server_restarted_five_times_each_gap_reported_and_the_speech_after_it_heard(
    whisper, tmp_path, caplog
):
    stories = [
        str(write_wav(tmp_path / f"{name}.wav", story_samples(MEDIA / f"{name}.mp3"))) for name in SESSIONS
    ]
    server = RtspServer(stories[0])
    server.start()
    gaps: list[StreamGap] = []
    outages: list[tuple[float, float]] = []  # wall clock: the server killed, listening again
    restarts: list[threading.Thread] = []
    audio = read_rtsp_audio(
        server.url, open_timeout=2, read_timeout=2, max_retries=100, backoff=0.05, max_backoff=0.2,
        on_gap=gaps.append,
    )  # fmt: skip

    def restart(story: str) -> None:  # in the background: the reader keeps reading, as a live one does
        down = time.monotonic()
        server.stop()
        time.sleep(OUTAGE_S)
        server.args = (story,)
        server.start()
        outages.append((down, time.monotonic()))

    def live_audio():
        """The stream, with a restart once SESSION_S seconds came from the connection since the last
        reconnect, and the end SESSION_S seconds after the fifth."""
        for chunk in audio:
            yield chunk
            heard = chunk.t_end - (gaps[-1].t_end if gaps else 0.0)
            if heard < SESSION_S or len(gaps) < len(restarts):  # this connection is not done yet
                continue
            if len(restarts) == RESTARTS:
                break
            restarts.append(threading.Thread(target=restart, args=(stories[len(restarts) + 1],), daemon=True))
            restarts[-1].start()
        audio.close()

    caplog.set_level(logging.WARNING, logger="adasr_av.media.rtsp")
    started = time.monotonic()
    try:
        chunks = list(transcribe_stream(live_audio(), whisper))
    finally:
        for thread in restarts:
            thread.join(timeout=30)
        server.stop()
    assert time.monotonic() - started < 90

    assert len(gaps) == RESTARTS and len(outages) == RESTARTS
    reconnects = [r.getMessage() for r in caplog.records if "reconnected after" in r.getMessage()]
    assert len(reconnects) == RESTARTS
    for gap, (down, up), line in zip(gaps, outages, reconnects, strict=True):
        # the outage in stream time: from the last audio read to the reconnect, which waits for the
        # reader's backoff (up to 0.2 s) and for the ASR's step under way (the reader is its input);
        # audio the socket had buffered before the server went away shortens it on a busy machine
        assert 0 < gap.t_end - gap.t_start <= up - down + 1.5
        assert f"after a {gap.t_end - gap.t_start:.2f} s gap" in line
        assert gap.reason == "the server ended the stream"
    # every connection's speech is transcribed, and placed after its reconnect
    starts = [0.0] + [gap.t_end for gap in gaps]
    ends = [gap.t_start for gap in gaps] + [float("inf")]
    for (start, end), story in zip(zip(starts, ends, strict=True), SESSIONS, strict=True):
        heard = set(
            re.findall(r"[a-z]{4,}", " ".join(c.text for c in chunks if start <= c.t_start < end).lower())
        )
        script = json.loads((MEDIA / f"{story}.json").read_text())["text"].lower()
        # this connection's own story, heard after its reconnect (on a loaded machine a session's
        # first sentence can fall in the gap, so any of its words, not its first one)
        assert heard & set(re.findall(r"[a-z]{4,}", script)) - {"have", "many", "does", "dollars"}, (
            story, start, end, [(round(c.t_start, 2), c.text) for c in chunks],
        )  # fmt: skip
    assert all(a.t_start <= b.t_start for a, b in zip(chunks, chunks[1:], strict=False))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{4,}", text.lower()))


# --- a media file truncated while it is read -------------------------------------------------------


def _encoded(path: Path, codec: str, samples: np.ndarray) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (samples * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


@pytest.mark.parametrize("name", ["story.wav", "story.mp3", "story.m4a"])
@pytest.mark.parametrize("left", [0.5, 0.0])
def test_a_file_cut_short_while_read_gives_the_audio_up_to_the_cut_then_one_error(tmp_path, name, left):
    """Another program truncates the file half-way through the read (to half its size, or to
    nothing). Expected, in every container: the chunks up to the cut, contiguous, then one
    AdasrError naming the file and where its audio ended; no hang. (FFmpeg alone ends a cut WAV or
    MP3 as if it were whole, silently, and a cut MP4 with "invalid data".)"""
    samples = np.tile(story_samples(), 6)  # 69 s: far more than FFmpeg reads ahead
    codec = {"wav": "pcm_s16le", "mp3": "mp3", "m4a": "aac"}[name.rsplit(".", 1)[1]]
    path = _encoded(tmp_path / name, codec, samples)
    size = path.stat().st_size
    chunks = []
    started = time.monotonic()
    with pytest.raises(AdasrError) as caught:
        for chunk in read_audio(path, chunk_seconds=0.5):
            chunks.append(chunk)
            if len(chunks) == 20:  # 10 s in
                os.truncate(path, int(size * left))
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert message.startswith(f"media file {path}: cut short while it was read ({size} bytes when opened, ")
    assert message.endswith(f"its audio ends at {chunks[-1].t_end:.2f} s") and "\n" not in message
    assert all(a.t_end == b.t_start for a, b in zip(chunks, chunks[1:], strict=False))
    # up to about the cut (and what FFmpeg had read ahead: a few seconds)
    assert 10.0 <= chunks[-1].t_end <= max(len(samples) / 16_000 * left, 10.0) + 6.0
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # one line, no chain


def test_a_file_read_whole_is_not_taken_for_a_cut_one(tmp_path):
    """The check reads sizes only: a file that grows while read (a copy still going on) or that is
    removed meanwhile (its data stays readable) reads as it did."""
    path = write_wav(tmp_path / "story.wav", story_samples())
    grown = list(read_audio(path))
    with path.open("ab") as handle:  # grows after it was opened
        reader = read_audio(path)
        handle.write(b"\0" * 1000)
    assert len(list(reader)) >= len(grown)
    reader = read_audio(path)
    path.unlink()
    assert len(list(reader)) == len(grown)


# --- an ASR exception on one buffer ----------------------------------------------------------------


class WhisperFailingOnce:
    """The real Whisper whose `fail_at`-th decode raises, once: a fault injected, as this machine
    cannot make a real model fail on one buffer (a CUDA error, a bad kernel) on demand."""

    def __init__(self, backend, fail_at: int):
        self.backend, self.fail_at, self.calls = backend, fail_at, 0

    def encode(self, audio, min_window_s=0.0):
        return self.backend.encode(audio, min_window_s)

    def decode(self, encoded, prompt="", prefix="", max_new_tokens=224):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("CUDA error: an illegal instruction was encountered\nCUDA kernel errors ...")
        return self.backend.decode(encoded, prompt, prefix, max_new_tokens)

    def align(self, encoded, decoding):
        return self.backend.align(encoded, decoding)


def test_an_asr_exception_on_one_buffer_loses_that_speech_and_the_stream_goes_on(
    whisper, reasoner_model, caplog
):
    clean = list(transcribe_stream(read_audio(STORY), whisper, UNAWARE))
    assert [c.text for c in clean][:2] == ["Tom has 21 dollars.", "He earns 63 dollars every hour."]
    # the 4th decode is of "He earns 63 ...", the second sentence, while it is being spoken
    asr = ASREncoder(WhisperFailingOnce(whisper, fail_at=4), UNAWARE)
    run = PipelineRun(PipelineModels(StreamingReasoner(*reasoner_model), [asr]), read_audio(STORY))
    caplog.set_level(logging.WARNING, logger="adasr_av.encoders.streaming_asr")
    events = run.run()  # no exception: the run answers

    assert events[-1].type == "summary" and run.failure is None
    stats: ASRStats = run.stats
    assert stats.failed_steps == 1 and asr.backend.calls > 4  # it went on decoding
    [warning] = [r for r in caplog.records if "ASR step failed" in r.getMessage()]
    message = warning.getMessage()
    assert warning.levelno == logging.WARNING and "\n" not in message
    assert message.startswith("ASR step failed (RuntimeError: CUDA error: an illegal instruction")
    lost_from, lost_to = map(float, re.search(r"speech from (\S+) s to (\S+) s lost", message).groups())
    assert f"lost ({stats.lost_s:.2f} s)" in message and lost_to - lost_from == pytest.approx(
        stats.lost_s, abs=0.01
    )
    assert 2.0 < lost_from < lost_to < 5.5  # inside the second sentence (3.1 s to 5.5 s)
    # the words of the lost buffer are gone, and nothing else: every other sentence is still heard
    texts = [c.text for c in run.recent_chunks]
    assert texts[0] == "Tom has 21 dollars." and "earns" not in " ".join(texts)
    assert texts[-2:] == [c.text for c in clean][-2:]  # "He works for 12 hours." and the question
    words = [w for c in run.recent_chunks for w in c.words]
    assert all(w.t_end <= lost_from + 0.05 or w.t_start >= lost_to - 0.05 for w in words)


def test_the_rolling_policy_too_loses_only_the_failed_buffer(whisper, caplog):
    """The rolling-buffer baseline holds everything since its last commit: that is what is lost."""
    stats = ASRStats()
    caplog.set_level(logging.WARNING, logger="adasr_av.encoders.streaming_asr")
    options = StreamingASROptions.rolling(computation_aware=False)
    chunks = list(transcribe_stream(read_audio(STORY), WhisperFailingOnce(whisper, 4), options, stats))
    [warning] = [r.getMessage() for r in caplog.records if "ASR step failed" in r.getMessage()]
    lost_from, lost_to = map(float, re.search(r"speech from (\S+) s to (\S+) s lost", warning).groups())
    assert stats.failed_steps == 1 and stats.lost_s == pytest.approx(lost_to - lost_from, abs=0.01)
    assert all(w.t_end <= lost_from + 0.05 or w.t_start >= lost_to - 0.05 for c in chunks for w in c.words)
    assert "how many dollars" in chunks[-1].text.lower()  # the stream went on to its end


def test_an_asr_failing_on_every_step_still_ends_the_stream_with_its_error(whisper):
    """A model that keeps failing (a GPU whose context is lost) is not survived: after
    `max_failed_steps` failures in a row the error ends the stream (no endless lost audio)."""

    class AlwaysFailing(WhisperFailingOnce):
        def decode(self, encoded, prompt="", prefix="", max_new_tokens=224):
            self.calls += 1
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    backend = AlwaysFailing(whisper, fail_at=1)
    stats = ASRStats()
    with pytest.raises(RuntimeError, match="illegal memory access"):
        list(transcribe_stream(read_audio(STORY), backend, UNAWARE, stats))
    assert backend.calls == UNAWARE.max_failed_steps and stats.failed_steps == UNAWARE.max_failed_steps - 1
    with pytest.raises(AdasrError, match="max_failed_steps"):
        StreamingASROptions(max_failed_steps=0)


# --- a reasoner exception --------------------------------------------------------------------------


@contextlib.contextmanager
def forward_failing_once(reasoner: StreamingReasoner, at_chunk: int = 2):
    """The real reasoner whose model raises once, on its first forward pass for chunk `at_chunk`
    (from 1): a fault injected, as this machine cannot run a model out of GPU memory on demand. It
    raises inside `feed`, mid-stream, as a real failure would."""
    raised: list[int] = []

    def hook(module, args, kwargs):
        if not raised and reasoner.n_chunks == at_chunk:
            raised.append(reasoner.n_chunks)
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(see the allocator docs)")

    handle = reasoner.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield raised
    finally:
        handle.remove()


def test_a_reasoner_exception_ends_that_run_with_its_error_and_the_next_run_answers(whisper, reasoner_model):
    reasoner = StreamingReasoner(*reasoner_model)
    models = PipelineModels(reasoner, [ASREncoder(whisper, UNAWARE)])
    seen: list[Event] = []
    run = PipelineRun(models, read_audio(STORY))
    with forward_failing_once(reasoner) as raised, pytest.raises(RuntimeError) as caught:
        for event in run:  # mid-stream: the first chunk and its unit went through
            seen.append(event)
    assert raised == [2] and "CUDA out of memory" in str(caught.value)
    assert run.failure is not None and run.failure.stage == "reasoner" and run.failure.error is caught.value
    assert any(e.type == "chunk" for e in seen) and not {"answer", "summary"} & {e.type for e in seen}
    assert run.threads_alive == 0 and not models.lock.locked()  # every stage ended: the models are free

    again = PipelineRun(models, read_audio(STORY)).run()  # the same loaded models, a fresh stream
    assert again[-1].type == "summary" and again[-1].info["answer"]


def test_the_demo_stays_up_after_a_reasoner_exception(whisper, reasoner_model):
    reasoner = StreamingReasoner(*reasoner_model)
    models = PipelineModels(reasoner, [ASREncoder(whisper, UNAWARE)])
    with forward_failing_once(reasoner) as raised:
        failed = DemoSession.from_file(models, STORY)
        assert failed.wait(timeout=120)
    assert raised == [2]
    status = failed.view().status
    assert status.startswith("**Error:** RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "\n" not in status and "Traceback" not in status and failed.view().answer == ""
    assert not models.lock.locked()

    answered = DemoSession.from_file(models, STORY, reference="777")
    assert answered.wait(timeout=120)
    view = answered.view()
    assert view.status.startswith("Done: ") and view.answer.startswith("### Answer:")


# --- the output disk full --------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "64k"):
    """A tmpfs of `size` mounted at `folder` (we run as root), unmounted at the end; skips the test
    where mounting is not permitted (not root, no CAP_SYS_ADMIN, a container without mounts)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"a disk-full fault needs a small file system, and mount cannot run here ({err})")
    if done.returncode:
        pytest.skip(
            f"a disk-full fault needs a small file system; mount is not permitted here: {done.stderr.strip()}"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(folder: Path, leave: int) -> None:
    """Take all the free space of `folder`'s file system but `leave` bytes."""
    stats = os.statvfs(folder)
    (folder / "filler").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - leave))


def test_the_output_disk_filling_up_during_a_batch(tmp_path, capsys):
    """The first file's outputs are written; then the disk is filled (all but one 4 KiB page): the
    second file's outputs no longer fit. Expected: its row and its line say no space left on device,
    it leaves no file, the first file's outputs are untouched and load, the batch fails (exit 1)."""
    first, second = MEDIA / "wages.mp3", MEDIA / "money.mp3"
    with small_disk(tmp_path / "disk") as disk:
        out = disk / "out"
        kept: dict[str, bytes] = {}

        def fill_after_the_first() -> None:
            summary = out / "summary.csv"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if ",ok," in summary.read_text():
                        break
                time.sleep(0.005)
            kept.update({p.name: p.read_bytes() for p in out.iterdir()})
            fill(disk, leave=4096)

        filler = threading.Thread(target=fill_after_the_first, daemon=True)
        filler.start()
        code = main(["batch", str(first), str(second), "--out", str(out)])
        filler.join(timeout=10)
        said = capsys.readouterr()
        names = sorted(p.name for p in out.iterdir())
        outputs = {name: (out / name).read_bytes() for name in names}

    assert code == 1
    assert names == ["summary.csv", "wages.events.jsonl", "wages.srt"]  # nothing of money, no part file
    # the finished file's outputs, as they were before the disk filled, and whole
    assert outputs["wages.events.jsonl"] == kept["wages.events.jsonl"]
    assert outputs["wages.srt"] == kept["wages.srt"]
    events = [
        Event.from_dict(json.loads(line)) for line in outputs["wages.events.jsonl"].decode().splitlines()
    ]
    assert events[-1].type == "summary" and events[-1].info["answer"] == "777"
    assert "Tom has 21 dollars." in outputs["wages.srt"].decode()
    # the failed file: one line in the summary, one in the output, and the batch's error
    # (today: "OSError: [Errno 28] No space left on device", naming the input but not the output
    # file it could not write: see the xfail below)
    rows = list(csv.DictReader(io.StringIO(outputs["summary.csv"].decode())))
    assert [(r["file"], r["status"]) for r in rows] == [(str(first), "ok"), (str(second), "error")]
    assert "no space left on device" in rows[1]["error"].lower()
    [line] = [line for line in said.out.splitlines() + said.err.splitlines() if "[2/2]" in line]
    assert f"error   {second}: " in line and "no space left on device" in line.lower()
    assert f"adasr-av: error: 1 of 2 files failed: {second}" in said.err and "Traceback" not in said.err


def test_run_out_on_a_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_file(tmp_path, capsys):
    """`adasr-av run --out` onto a full disk: expected one line naming the file it could not write,
    exit 1, and no partial output (as a batch leaves none)."""
    with small_disk(tmp_path / "disk", size="8k") as disk:
        fill(disk, leave=4096)
        events, srt = disk / "events.jsonl", disk / "story.srt"
        code = main(["run", str(STORY), "--out", str(events), "--srt", str(srt)])
        left = sorted(p.name for p in disk.iterdir())
    said = capsys.readouterr().err
    assert code == 1 and left == ["filler"]
    [line] = [line for line in said.splitlines() if line.startswith("adasr-av: error:")]
    assert str(disk) in line and "no space left on device" in line.lower()
