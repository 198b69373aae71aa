"""The live demo: a browser microphone, an uploaded file or an RTSP URL streamed through the
pipeline, and the page that shows it (`adasr-av demo`).

A `DemoSession` is one stream: it owns a `PipelineRun`, reads its events on a thread of its own and
renders what has happened so far as a `View` (status, transcript, thoughts and skips, answer with
its latency, timeline figure), so the page's handlers only push audio, stop, and show views. Bad
input (a file that is not media, a URL that does not answer) ends a session with a one-line
message in the page; the app stays up. `build_app` lays the page out with Gradio; `launch` serves
it. The models are loaded once (`PipelineModels`) and run one stream at a time: the handlers that
feed the pipeline share a concurrency limit of 1, and a session waits for the model if another
stream holds it.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adasr_av.errors import AdasrError, first_line
from adasr_av.media.push import PushedAudio, as_float
from adasr_av.pipeline import PipelineModels, PipelineRun
from adasr_av.sinks import format_event
from adasr_av.types import AudioChunk, Event

log = logging.getLogger(__name__)

MIC_BLOCK_SECONDS = 0.5  # the browser sends microphone audio this often
REFRESH_SECONDS = 0.25  # how often a running stream refreshes the page
LATE_BLOCK_SECONDS = 1.5  # after the stop click, wait until no block came for this long
IDLE_SECONDS = 15.0  # a microphone stream that gets no audio for this long is ended (tab closed)
RTSP_RETRIES = 2  # failed connection attempts before an RTSP URL is reported (~1.5 s of backoff)
LOST_AUDIO_S = 0.4  # report microphone audio lost on the way from this much (a block is 0.5 s)
SILENCE_RMS = 0.003  # about -50 dBFS: a microphone frame quieter than this is silence
PAUSE_KEPT_S = 1.0  # of each pause, this much reaches Whisper (more than its 0.8 s chunk pause)
ONSET_KEPT_S = 0.3  # cut silence kept just before the speech that follows it (soft onsets)
GATE_FRAME_S = 0.1  # the silence gate decides frame by frame
MEDIA_SUFFIXES = (
    ".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".oga", ".opus", ".webm", ".mp4", ".mkv", ".mov",
)  # fmt: skip


@dataclass(frozen=True)
class DemoSettings:
    """How the page is served; the fields are `adasr-av demo`'s flags."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: Gradio's first free port from 7860
    share: bool = False
    max_upload_mb: int = 50
    max_record_s: int = 300  # one microphone recording is cut after this long
    queue_size: int = 16  # requests waiting beyond this are refused ("queue full")
    realtime: bool = False  # the upload tab's "real speed" box starts ticked


class SilenceGate:
    """Cuts the long silences out of microphone audio before Whisper, which makes words up in them
    (tiny.en loops "I'm sorry." over a few seconds of quiet, and mishears the first words after a
    long lead-in): nothing before the first word, at most PAUSE_KEPT_S of each pause. Stream time
    then counts the audio that went through, speech and short pauses."""

    def __init__(self):
        self.rate: int | None = None
        self.started = False  # a word was heard
        self.silent_s = 0.0  # length of the current pause
        self.cut_s = 0.0  # silence cut so far
        self._rest = np.zeros(0, np.float32)  # samples short of a whole frame
        self._onset: collections.deque = collections.deque(maxlen=round(ONSET_KEPT_S / GATE_FRAME_S))

    def __call__(self, block: np.ndarray, rate: int) -> np.ndarray:
        """Mono float32 samples of `block` (any PCM, mono or [n, channels]) that go through now."""
        if self.rate is None:
            self.rate = int(rate)
        elif int(rate) != self.rate:
            raise AdasrError(f"audio changed rate mid-stream: {rate} Hz after {self.rate} Hz")
        samples = as_float(np.asarray(block))
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        samples = np.concatenate([self._rest, samples.astype(np.float32, copy=False)])
        size = max(1, round(GATE_FRAME_S * self.rate))
        whole = len(samples) // size * size
        self._rest = samples[whole:]
        kept = []
        for frame in samples[:whole].reshape(-1, size):
            if float(np.sqrt(np.mean(frame**2))) >= SILENCE_RMS:
                kept += [*self._onset, frame]
                self._onset.clear()
                self.started, self.silent_s = True, 0.0
            elif self.started and self.silent_s < PAUSE_KEPT_S - 1e-9:
                kept.append(frame)
                self.silent_s += GATE_FRAME_S
            else:
                if len(self._onset) == self._onset.maxlen:
                    self.cut_s += GATE_FRAME_S
                self._onset.append(frame)
        return np.concatenate(kept) if kept else np.zeros(0, np.float32)


@dataclass(frozen=True)
class View:
    """What the page shows of a session: Markdown status and answer, plain transcript and thoughts."""

    status: str
    transcript: str
    reasoning: str
    answer: str
    done: bool


EMPTY_VIEW = View("", "", "", "", done=True)


class DemoSession:
    """One stream through the pipeline, read on a background thread.

    Make one with `microphone` (then `push` blocks and `stop`), `from_file` or `from_rtsp` (runs on
    its own; `stop` ends it early). `view()` renders it at any time; `figure()` once it is done.
    """

    def __init__(
        self,
        models: PipelineModels,
        audio: Iterable[AudioChunk],
        question: str = "",
        reference: str | None = None,
        label: str = "stream",
    ):
        self.label = label
        self.pushed = audio if isinstance(audio, PushedAudio) else None
        self.gate = SilenceGate() if self.pushed is not None else None
        self.run = PipelineRun(models, audio, (question or "").strip(), (reference or "").strip() or None)
        self.error: str | None = None
        self._stop_called = False
        self.last_push = time.monotonic()
        self._received_s = 0.0  # microphone audio pushed so far, before the silence gate
        self._lateness: list[float] = []  # per block: arrival time - audio before it (seconds)
        self._running = threading.Event()  # the run holds the models
        self._done = threading.Event()
        threading.Thread(target=self._read, name=f"demo-{label}", daemon=True).start()
        if self.pushed is not None:
            threading.Thread(target=self._watch_idle, name="demo-idle", daemon=True).start()

    # --- the ways in --------------------------------------------------------------------------

    @classmethod
    def microphone(cls, models: PipelineModels, question: str = "", reference: str | None = None):
        return cls(models, PushedAudio(), question, reference, label="microphone")

    @classmethod
    def from_file(
        cls,
        models: PipelineModels,
        path: str | Path,
        question: str = "",
        reference: str | None = None,
        realtime: bool = False,
        name: str | None = None,
    ):
        """A media file; an unsupported type or an unreadable file raises AdasrError naming it."""
        from adasr_av.media.file import read_audio

        name = name or Path(path).name
        suffix = Path(name).suffix.lower()
        if suffix not in MEDIA_SUFFIXES:
            raise AdasrError(
                f"{name}: unsupported file type {suffix or '(no extension)'}; "
                f"upload audio or video ({' '.join(MEDIA_SUFFIXES)})"
            )
        try:
            audio = read_audio(path, realtime=realtime)
        except AdasrError as err:
            raise AdasrError(str(err).replace(str(path), name)) from None
        return cls(models, audio, question, reference, label=name)

    @classmethod
    def from_rtsp(cls, models: PipelineModels, url: str, question: str = "", reference: str | None = None):
        """An RTSP stream; a URL that does not answer ends the session with its message (in `view`)."""
        from adasr_av.media.rtsp import read_rtsp_audio, redact

        url = (url or "").strip()
        if not url.lower().startswith(("rtsp://", "rtsps://")):
            raise AdasrError(f"{url or '(empty)'}: not an RTSP URL (rtsp://host[:port]/path)")
        audio = read_rtsp_audio(url, max_retries=RTSP_RETRIES, on_gap=lambda gap: log.warning("%s", gap))
        return cls(models, audio, question, reference, label=redact(url))

    # --- control ------------------------------------------------------------------------------

    def push(self, sample_rate: int, block: np.ndarray) -> None:
        """One block of browser microphone audio (through the silence gate); blocks that come after
        `stop` are dropped."""
        if self.pushed is None or self.stopped:
            return
        self.last_push = time.monotonic()
        self._lateness.append(self.last_push - self._received_s)
        self._received_s += len(block) / sample_rate
        samples = self.gate(block, sample_rate)
        if not len(samples):
            return
        try:
            self.pushed.push(samples, sample_rate)
        except AdasrError:
            if not self.stopped:
                raise

    def stop(self) -> None:
        """End the stream: what was heard still goes through, then the reasoner answers.

        Pushed audio ends after its last block (every block pushed is heard, however far behind
        Whisper is); a file or URL stops at once."""
        self._stop_called = True
        if self.pushed is not None:
            self.pushed.close()
        else:
            self.run.stop()

    def finish_recording(self, quiet_s: float = LATE_BLOCK_SECONDS, most_s: float = 10.0) -> None:
        """Stop a microphone stream once the page has sent what it still held: after a stop click
        the page may send the blocks it was holding back while the server was busy."""
        deadline = time.monotonic() + most_s
        while time.monotonic() - self.last_push < quiet_s and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop()

    @property
    def lost_s(self) -> float:
        """Microphone audio that never reached the server (see `lost_audio_s`)."""
        return lost_audio_s(self._lateness)

    @property
    def stopped(self) -> bool:
        return self._stop_called or self.run.stopping

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run has answered (or failed); True if it has."""
        return self._done.wait(timeout)

    # --- rendering ----------------------------------------------------------------------------

    def view(self) -> View:
        events = list(self.run.events)
        chunks = list(self.run.chunks)
        return View(
            status=self._status(events, len(chunks)),
            transcript=" ".join(c.text.strip() for c in chunks if c.text.strip()),
            reasoning="\n".join(
                format_event(e).strip() for e in events if e.type in ("think", "skip", "deep")
            ),
            answer=render_answer(events),
            done=self.done,
        )

    def figure(self):
        """The run's timeline (matplotlib Figure) once it has ended with events, else None."""
        from adasr_av.plots import timeline_figure

        if not self.done or not self.run.events:
            return None
        return timeline_figure(self.run.events, self.run.chunks, f"{self.label}: stream timeline")

    def _status(self, events: list[Event], n_chunks: int) -> str:
        cut = f" ({self.gate.cut_s:.1f} s of silence cut)" if self.gate and self.gate.cut_s else ""
        heard = f"{self.run.t_end or 0.0:.1f} s of audio{cut}, {n_chunks} text chunks"
        if self.lost_s >= LOST_AUDIO_S:
            heard += f"; about {self.lost_s:.1f} s of microphone audio lost on the way (a busy server)"
        if self.error:
            return f"**Error:** {self.error}"
        if self.done:
            if not any(e.type == "summary" for e in events):
                return f"Nothing was said ({heard}): no answer."
            return f"Done: {heard}."
        if not self._running.is_set():
            return "Waiting for the model: another stream is running."
        if self.stopped:
            return f"The stream has ended ({heard}): deliberating…"
        return f"Streaming {self.label}: {heard} so far."

    # --- threads ------------------------------------------------------------------------------

    def _read(self) -> None:
        try:
            self.run.start()  # waits while another stream holds the models
            self._running.set()
            for _ in self.run:
                pass
        except AdasrError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - shown in the page as one line, logged in full
            log.exception("demo stream %s failed", self.label)
            self.error = f"{type(err).__name__}: {first_line(err)}"
        finally:
            self._running.set()
            self._done.set()

    def _watch_idle(self) -> None:
        """End a microphone stream whose page stopped sending audio (closed tab, lost connection)."""
        while not self.stopped and not self.done:
            if time.monotonic() - self.last_push > IDLE_SECONDS:
                log.warning("no microphone audio for %.0f s: ending the stream", IDLE_SECONDS)
                self.stop()
            time.sleep(1.0)


def lost_audio_s(lateness: list[float], window: int = 4) -> float:
    """Audio lost between the page and the server, from each block's lateness (arrival time minus
    the audio pushed before it): a block comes one block length after the one before plus a delay
    that is never negative, and a lost block makes every later one later by its length. Gradio keeps
    only the newest block when the server is slower than the page (a busy machine), so blocks can
    be lost. The least lateness of the last `window` blocks less that of the first ones."""
    if len(lateness) < 2 * window:
        return 0.0
    return max(0.0, min(lateness[-window:]) - min(lateness[:window]))


def render_answer(events: list[Event]) -> str:
    """The answer as Markdown: the value, its latency after the stream end, and the verdict."""
    summary = next((e for e in events if e.type == "summary"), None)
    if summary is None:
        return ""
    info = summary.info
    answer = info.get("answer")
    clock = info.get("clock", "") + (f":{info['cost_profile']}" if info.get("cost_profile") else "")
    lines = [
        f"### Answer: {answer if answer not in (None, '') else '(none)'}",
        f"{info.get('answer_latency_s', 0.0):.2f} s after the stream ended at {summary.t_avail:.2f} s "
        f"(stream time, clock {clock}); {info.get('deep_tokens', 0)} deep tokens",
    ]
    if "correct" in info:
        lines.append("correct" if info["correct"] else f"wrong: the reference is {info.get('reference')}")
    return "\n\n".join(lines)


# --- the page ------------------------------------------------------------------------------------

# The browser's call-audio processing (gain control, noise suppression, echo cancellation) is made
# for people listening, not for Whisper: its gain control pushed a story to clipping and Whisper
# misheard words. The page asks for the microphone's own signal instead.
RAW_MICROPHONE = """<script>
(() => {
  const devices = navigator.mediaDevices;
  if (!devices || !devices.getUserMedia) return;
  const getUserMedia = devices.getUserMedia.bind(devices);
  const raw = {autoGainControl: false, noiseSuppression: false, echoCancellation: false};
  devices.getUserMedia = (constraints) => {
    if (constraints && constraints.audio) {
      const audio = constraints.audio === true ? {} : constraints.audio;
      constraints = {...constraints, audio: {...raw, ...audio}};
    }
    return getUserMedia(constraints);
  };
})();
</script>"""

INTRO = """# adasr-av: reasoning while the audio streams
Record a spoken question story (numbers, a holder, a question at the end), upload one, or give an
RTSP URL. Whisper turns the audio into text chunks as it arrives; the reasoner thinks or skips
after each chunk, and when the stream ends (stop the recording) it deliberates and answers."""


def build_app(models: PipelineModels, settings: DemoSettings = DemoSettings()):
    """The Gradio Blocks page over loaded models."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    def shown(session: DemoSession | None, final: bool = False) -> tuple:
        """Values for [state, status, transcript, reasoning, answer, plot]."""
        view = session.view() if session is not None else EMPTY_VIEW
        plot = (session.figure() if session is not None else None) if final else gr.skip()
        return session, view.status, view.transcript, view.reasoning, view.answer, plot

    def failed(message: str) -> tuple:
        return None, f"**Error:** {message}", "", "", "", None

    def message(err: Exception) -> str:
        if isinstance(err, AdasrError):
            return str(err)
        log.exception("demo handler failed")  # in full on the server; one line in the page
        return f"{type(err).__name__}: {first_line(err)}"

    def guarded(handler):
        """Bad input or a failure becomes a message in the page, never a stack trace."""
        if inspect.isgeneratorfunction(handler):

            @functools.wraps(handler)
            def wrapper(*args):
                try:
                    yield from handler(*args)
                except Exception as err:  # noqa: BLE001
                    yield failed(message(err))

        else:

            @functools.wraps(handler)
            def wrapper(*args):
                try:
                    return handler(*args)
                except Exception as err:  # noqa: BLE001
                    return failed(message(err))

        return wrapper

    def follow(session: DemoSession):
        """Refresh the page while the run goes on, then show the answer and the timeline."""
        while not session.wait(REFRESH_SECONDS):
            yield shown(session)
        yield shown(session, final=True)

    def start_mic(question, reference, old):
        if old is not None:
            old.stop()
        session = DemoSession.microphone(models, question, reference)
        return shown(session)[:-1] + (None,)

    def on_block(block, question, reference, session):
        if block is None:
            return (session,) + (gr.skip(),) * 5
        if session is None:  # the start event has not run (or failed): start here
            session = DemoSession.microphone(models, question, reference)
        if session.pushed is None or session.stopped:  # late blocks of a stopped recording
            return (session,) + (gr.skip(),) * 5
        sample_rate, samples = block
        session.push(sample_rate, samples)
        return shown(session)

    def stop_mic(session):
        if session is None or session.pushed is None:
            yield shown(session, final=True)
            return
        yield shown(session)
        session.finish_recording()
        yield from follow(session)

    def run_file(file, question, reference, realtime, old):
        if old is not None:
            old.stop()
        if file is None:
            raise AdasrError(f"choose a file to upload first (at most {settings.max_upload_mb} MB)")
        path = Path(file)
        session = DemoSession.from_file(models, path, question, reference, realtime, name=path.name)
        yield from follow(session)

    def run_rtsp(url, question, reference, old):
        if old is not None:
            old.stop()
        yield from follow(DemoSession.from_rtsp(models, url, question, reference))

    def stop(session):
        if session is not None:
            session.stop()

    with gr.Blocks(title="adasr-av live demo") as app:
        gr.Markdown(INTRO)
        state = gr.State(None)
        with gr.Row():
            question = gr.Textbox(
                label="Question (optional: the sample stories ask theirs at the end)", elem_id="question"
            )
            reference = gr.Textbox(label="Expected answer (optional)", elem_id="reference", max_lines=1)
        with gr.Tabs():
            with gr.Tab("Microphone", elem_id="tab-mic"):
                mic = gr.Audio(
                    sources=["microphone"],
                    streaming=True,
                    type="numpy",
                    label="Record, speak, then stop: the answer follows",
                    elem_id="mic",
                )
            with gr.Tab("Upload", elem_id="tab-upload"):
                upload = gr.File(
                    label=f"Audio or video file (at most {settings.max_upload_mb} MB)",
                    elem_id="upload",
                    type="filepath",
                )
                realtime = gr.Checkbox(label="Play at its real speed", value=settings.realtime)
                with gr.Row():
                    upload_run = gr.Button("Run", variant="primary", elem_id="upload-run")
                    upload_stop = gr.Button("Stop and answer", elem_id="upload-stop")
            with gr.Tab("RTSP", elem_id="tab-rtsp"):
                url = gr.Textbox(label="RTSP URL", placeholder="rtsp://host:8554/stream", elem_id="rtsp-url")
                with gr.Row():
                    rtsp_run = gr.Button("Start", variant="primary", elem_id="rtsp-run")
                    rtsp_stop = gr.Button("Stop and answer", elem_id="rtsp-stop")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            transcript = gr.Textbox(label="Transcript", lines=8, interactive=False, elem_id="transcript")
            reasoning = gr.Textbox(
                label="Thoughts and skips", lines=8, interactive=False, elem_id="reasoning"
            )
        answer = gr.Markdown(elem_id="answer")
        plot = gr.Plot(label="Timeline", elem_id="timeline")

        outputs = [state, status, transcript, reasoning, answer, plot]
        pipeline = {"concurrency_id": "pipeline", "concurrency_limit": 1}
        control = {"concurrency_limit": None, "show_progress": "hidden"}
        mic.start_recording(guarded(start_mic), [question, reference, state], outputs, **control)
        mic.stream(
            guarded(on_block),
            [mic, question, reference, state],
            outputs,
            stream_every=MIC_BLOCK_SECONDS,
            time_limit=settings.max_record_s,
            show_progress="hidden",
            **pipeline,
        )
        mic.stop_recording(guarded(stop_mic), [state], outputs, **control)
        upload_run.click(
            guarded(run_file), [upload, question, reference, realtime, state], outputs, **pipeline
        )
        rtsp_run.click(guarded(run_rtsp), [url, question, reference, state], outputs, **pipeline)
        for button in (upload_stop, rtsp_stop):
            button.click(stop, [state], None, queue=False)
    app.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    return app


def launch(models: PipelineModels, settings: DemoSettings = DemoSettings()) -> None:
    """Serve the page until interrupted: on `settings.host` (127.0.0.1 unless told otherwise)."""
    app = build_app(models, settings)
    app.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        max_file_size=f"{settings.max_upload_mb}mb",
        show_error=False,  # a failure the handlers did not catch shows no stack trace either
        head=RAW_MICROPHONE,
    )
