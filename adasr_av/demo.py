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

Live streams have limits (`DemoSettings`, the `adasr-av demo` flags): the microphone and an RTSP
camera alike end, and are answered, after `max_record_s` stream seconds or once no audio came
for `idle_s`; a closed page cancels its stream (`OpenPages`, on Gradio's unload event), which
frees the models. What a session shows is bounded (the latest transcript and thoughts, with a
note when earlier ones were cut), so a long stream costs the page what a short one does.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adasr_av.errors import AdasrError, first_line
from adasr_av.media.push import PushedAudio, as_float
from adasr_av.media.sources import LIVE_SCHEMES, redact, unsupported_type
from adasr_av.pipeline import PipelineModels, PipelineRun
from adasr_av.run_config import DemoSettings
from adasr_av.sinks import format_event
from adasr_av.types import AudioChunk, Event, TextChunk

log = logging.getLogger(__name__)

MIC_BLOCK_SECONDS = 0.5  # the browser sends microphone audio this often
REFRESH_SECONDS = 0.25  # how often a running stream refreshes the page
LATE_BLOCK_SECONDS = 1.5  # after the stop click, wait until no block came for this long
RTSP_RETRIES = 2  # failed connection attempts before an RTSP URL is reported (~1.5 s of backoff)
LOST_AUDIO_S = 0.4  # report microphone audio lost on the way from this much (a block is 0.5 s)


class MicrophoneBlocks:
    """Browser microphone blocks (any PCM, mono or [n, channels]) as mono float32 at one rate.

    Nothing is cut: the streaming ASR's voice activity detection (Silero) decides what is speech,
    so silence costs no decoding and stream time is the time the speaker spoke in. (An energy gate
    at -50 dBFS did this before; any noisy room defeated it.)"""

    def __init__(self):
        self.rate: int | None = None

    def __call__(self, block: np.ndarray, rate: int) -> np.ndarray:
        if self.rate is None:
            self.rate = int(rate)
        elif int(rate) != self.rate:
            raise AdasrError(f"audio changed rate mid-stream: {rate} Hz after {self.rate} Hz")
        samples = as_float(np.asarray(block))
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        return samples.astype(np.float32, copy=False)


@dataclass(frozen=True)
class View:
    """What the page shows of a session: Markdown status and answer, plain transcript and thoughts."""

    status: str
    transcript: str
    reasoning: str
    answer: str
    done: bool


EMPTY_VIEW = View("", "", "", "", done=True)


class LiveFeed:
    """A live source read on a thread of its own (an RTSP camera), so that `close()` ends the stream
    at once, after what was already received, even while the reader waits on the network: Stop, the
    idle and length limits and a closed page take effect without waiting for a read timeout. It
    holds at most `size` chunks (beyond that the reader waits: no buffer grows with the stream);
    `last_audio` is when a chunk last came (monotonic seconds). The reader's error is raised where
    the feed is read."""

    def __init__(self, records: Iterable[AudioChunk], size: int = 64):
        self.last_audio = time.monotonic()
        self._records = records
        self._queue: queue.Queue = queue.Queue(size)
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[AudioChunk]:
        """Connects now (not while the session waits for the model), then the received chunks."""
        self.last_audio = time.monotonic()
        threading.Thread(target=self._pump, name="demo-feed", daemon=True).start()
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            if item is _FEED_END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _pump(self) -> None:
        iterator = iter(self._records)
        try:
            for chunk in iterator:
                if isinstance(chunk, AudioChunk):  # frames keep no stream alive: idle means no sound
                    self.last_audio = time.monotonic()
                if not self._offer(chunk):
                    break
            self._offer(_FEED_END)
        except Exception as err:  # noqa: BLE001 - raised again where the feed is read
            self._offer(err)
        finally:
            close = getattr(iterator, "close", None)
            if close:
                close()

    def _offer(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


_FEED_END = object()


class BlockLateness:
    """How late each microphone block came, kept bounded: the first and the latest `window` blocks
    are all that `lost_audio_s` reads."""

    def __init__(self, window: int = 4):
        self.window, self.count = window, 0
        self.first: list[float] = []
        self.last: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, lateness: float) -> None:
        if len(self.first) < self.window:
            self.first.append(lateness)
        self.last.append(lateness)
        self.count += 1

    def lost_s(self) -> float:
        if self.count < 2 * self.window:
            return 0.0
        return lost_audio_s([*self.first, *self.last], self.window)


class DemoSession:
    """One stream through the pipeline, read on a background thread.

    Make one with `microphone` (then `push` blocks and `stop`), `from_file` or `from_rtsp` (runs on
    its own; `stop` ends it early, `cancel` abandons it). `view()` renders it at any time;
    `figure()` once it is done. A live stream (microphone, RTSP) ends, and is answered, after
    `settings.max_record_s` stream seconds or once no audio came for `settings.idle_s`.
    """

    def __init__(
        self,
        models: PipelineModels,
        audio: Iterable[AudioChunk],
        question: str = "",
        reference: str | None = None,
        label: str = "stream",
        settings: DemoSettings | None = None,
    ):
        self.label = label
        self.settings = settings or DemoSettings()
        self.pushed = audio if isinstance(audio, PushedAudio) else None
        self.feed = audio if isinstance(audio, LiveFeed) else None
        self.blocks = MicrophoneBlocks() if self.pushed is not None else None
        live = self.pushed is not None or self.feed is not None
        self.run = PipelineRun(
            models,
            audio,
            (question or "").strip(),
            (reference or "").strip() or None,
            max_seconds=self.settings.max_record_s if live else None,
        )
        self.error: str | None = None
        self.ended_why: str | None = None  # why a live stream ended on its own (idle)
        self._stop_called = False
        self.last_push = time.monotonic()
        self._received_s = 0.0  # microphone audio pushed so far
        self._lateness = BlockLateness()
        self._running = threading.Event()  # the run holds the models
        self._running_since = 0.0  # when it took them (monotonic seconds)
        self._done = threading.Event()
        threading.Thread(target=self._read, name=f"demo-{label}", daemon=True).start()
        if live:
            threading.Thread(target=self._watch_idle, name="demo-idle", daemon=True).start()

    # --- the ways in --------------------------------------------------------------------------

    @classmethod
    def microphone(
        cls,
        models: PipelineModels,
        question: str = "",
        reference: str | None = None,
        settings: DemoSettings | None = None,
    ):
        return cls(models, PushedAudio(), question, reference, label="microphone", settings=settings)

    @classmethod
    def from_file(
        cls,
        models: PipelineModels,
        path: str | Path,
        question: str = "",
        reference: str | None = None,
        realtime: bool = False,
        name: str | None = None,
        settings: DemoSettings | None = None,
    ):
        """A media file, its frames read (at `settings.fps`) when the models read frames and it has
        video; an unsupported type or an unreadable file raises AdasrError naming it."""
        from adasr_av.media.sources import check_upload, open_records, reads_frames

        name = name or Path(path).name
        if (unsupported := unsupported_type(name)) is not None:
            raise AdasrError(unsupported)
        settings = settings or DemoSettings()
        try:  # messages name the upload, not where the server keeps it
            streams = check_upload(path, settings.max_record_s)  # by content, before anything reads it
            frames = models.reads_frames and reads_frames(str(path), settings.video, streams)
            records = open_records(str(path), settings.fps if frames else None, realtime, streams)
        except AdasrError as err:
            raise AdasrError(str(err).replace(str(path), name)) from None
        return cls(models, records, question, reference, label=name)

    @classmethod
    def from_rtsp(
        cls,
        models: PipelineModels,
        url: str,
        question: str = "",
        reference: str | None = None,
        settings: DemoSettings | None = None,
    ):
        """An RTSP stream; a URL that does not answer ends the session with its message (in `view`)."""
        from adasr_av.media.rtsp import read_rtsp_audio, read_rtsp_frames
        from adasr_av.media.sources import as_they_arrive, reads_frames

        url = (url or "").strip()
        if not url.lower().startswith(LIVE_SCHEMES):
            raise AdasrError(f"{redact(url) or '(empty)'}: not an RTSP URL (rtsp://host[:port]/path)")
        settings = settings or DemoSettings()
        allowed = settings.rtsp_hosts()
        if allowed is not None:
            check_rtsp_host(url, allowed)
        records = read_rtsp_audio(url, max_retries=RTSP_RETRIES)  # it reports each gap
        if models.reads_frames and reads_frames(url, settings.video):  # auto: a camera's speech only
            frames = read_rtsp_frames(url, settings.fps, max_retries=RTSP_RETRIES)
            records = as_they_arrive([records, frames])
        if allowed is not None:  # exposed: one message for every failure, so no port scan via the page
            records = opaque_failures(records, redact(url))
        return cls(models, LiveFeed(records), question, reference, label=redact(url), settings=settings)

    # --- control ------------------------------------------------------------------------------

    def push(self, sample_rate: int, block: np.ndarray) -> None:
        """One block of browser microphone audio (as mono float32); blocks that come after
        `stop` (or the length limit) are dropped."""
        if self.pushed is None or self.stopped:
            return
        self.last_push = time.monotonic()
        self._lateness.add(self.last_push - self._received_s)
        self._received_s += len(block) / sample_rate
        samples = self.blocks(block, sample_rate)
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

    def cancel(self) -> None:
        """Abandon the stream (its page was closed): no answer; the models are free once every
        stage has stopped."""
        self._stop_called = True
        self.run.cancel()

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
        return self._lateness.lost_s()

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
        chunks, events = self.run.snapshot()
        return View(
            status=self._status(),
            transcript=transcript_view(chunks, self.run.n_chunks),
            reasoning=reasoning_view(events),
            answer=render_answer([self.run.summary] if self.run.summary else []),
            done=self.done,
        )

    def figure(self):
        """The run's timeline (matplotlib Figure) once it has ended with events, else None."""
        if not self.done or not self.run.timeline.events():
            return None
        return self.run.timeline.figure(f"{self.label}: stream timeline")

    def _status(self) -> str:
        heard = f"{self.run.t_end or 0.0:.1f} s of audio, {self.run.n_chunks} text chunks"
        if self.lost_s >= LOST_AUDIO_S:
            heard += f"; about {self.lost_s:.1f} s of microphone audio lost on the way (a busy server)"
        if self.run.reached_limit:
            heard += f"; stopped at the length limit ({self.settings.max_record_s} s)"
        elif self.ended_why:
            heard += f"; ended: {self.ended_why}"
        if self.error:
            return f"**Error:** {self.error}"
        if self.done:
            if self.run.cancelled:
                return f"Cancelled ({heard}): no answer."
            if self.run.summary is None:
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
            self._running_since = time.monotonic()
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

    def _last_audio(self) -> float:
        """When audio last came; waiting for the model does not count as idle."""
        last = self.feed.last_audio if self.feed is not None else self.last_push
        return max(last, self._running_since)

    def _watch_idle(self) -> None:
        """End a live stream that sends no audio (a closed tab, a lost connection, a silent camera)."""
        idle_s = self.settings.idle_s
        while not self.stopped and not self.done:
            if self._running.is_set() and time.monotonic() - self._last_audio() > idle_s:
                log.warning("no audio for %.0f s: ending the stream %s", idle_s, self.label)
                self.ended_why = f"no audio for {idle_s:g} s"
                self.stop()
            time.sleep(min(1.0, idle_s / 4))


TRANSCRIPT_CHARS = 4000  # the page shows the latest this many characters of the transcript
REASONING_LINES = 60  # and the latest this many thoughts, skips and deliberations


def transcript_view(chunks: Sequence[TextChunk], n_chunks: int, limit: int = TRANSCRIPT_CHARS) -> str:
    """The latest transcript text (at most `limit` characters, cut at a word), with a note when
    earlier text was cut: a stream of any length shows a page of the same size."""
    text = " ".join(c.text.strip() for c in chunks if c.text.strip())
    if len(text) <= limit and len(chunks) == n_chunks:
        return text
    tail = text[-limit:]
    tail = tail.split(" ", 1)[1] if " " in tail and len(text) > limit else tail
    return f"[… earlier text cut: the latest {len(tail)} characters of {n_chunks} chunks]\n{tail}"


def reasoning_view(events: Sequence[Event], limit: int = REASONING_LINES) -> str:
    """The latest thoughts, skips, compactions and the deliberation, one line each."""
    lines = [format_event(e).strip() for e in events if e.type in ("think", "skip", "context", "deep")]
    if len(lines) <= limit:
        return "\n".join(lines)
    return "\n".join(["[… earlier lines cut]", *lines[-limit:]])


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


class OpenPages:
    """The stream each open page runs, by Gradio session: a page that is closed (its tab, the
    browser, a lost connection) has its stream cancelled, so the models are free for the next page
    at once instead of after the stream's own limits."""

    def __init__(self):
        self._streams: dict[str, DemoSession] = {}
        self._lock = threading.Lock()

    def opened(self, page: str, session: DemoSession) -> DemoSession:
        with self._lock:
            self._streams[page] = session
        return session

    def closed(self, page: str) -> DemoSession | None:
        """Cancel the page's stream; returns it (None if it had none)."""
        with self._lock:
            session = self._streams.pop(page, None)
        if session is not None and not session.done:
            log.info("page closed: cancelling its stream %s", session.label)
            session.cancel()
        return session


def build_app(
    models: PipelineModels, settings: DemoSettings = DemoSettings(), pages: OpenPages | None = None
):
    """The Gradio Blocks page over loaded models; `pages` tracks each open page's stream."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    pages = pages if pages is not None else OpenPages()

    def with_request(handler):
        """Gradio passes the page's request to a parameter annotated gr.Request: the class itself,
        since this module's annotations are strings Gradio cannot resolve."""
        handler.__annotations__["request"] = gr.Request
        return handler

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

    def microphone(question, reference, request) -> DemoSession:
        session = DemoSession.microphone(models, question, reference, settings)
        return pages.opened(request.session_hash, session)

    @with_request
    def start_mic(question, reference, old, request):
        if old is not None:
            old.stop()
        return shown(microphone(question, reference, request))[:-1] + (None,)

    @with_request
    def on_block(block, question, reference, session, request):
        if block is None:
            return (session,) + (gr.skip(),) * 5
        if session is None:  # the start event has not run (or failed): start here
            session = microphone(question, reference, request)
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

    @with_request
    def run_file(file, question, reference, realtime, old, request):
        if old is not None:
            old.stop()
        if file is None:
            raise AdasrError(f"choose a file to upload first (at most {settings.max_upload_mb} MB)")
        path = Path(file)
        session = DemoSession.from_file(
            models, path, question, reference, realtime, name=path.name, settings=settings
        )
        yield from follow(pages.opened(request.session_hash, session))

    @with_request
    def run_rtsp(url, question, reference, old, request):
        if old is not None:
            old.stop()
        session = DemoSession.from_rtsp(models, url, question, reference, settings)
        yield from follow(pages.opened(request.session_hash, session))

    @with_request
    def page_closed(request):
        pages.closed(request.session_hash)

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
                url = gr.Textbox(
                    label=f"RTSP URL (answered after {settings.max_record_s} s, or after "
                    f"{settings.idle_s} s without audio)",
                    placeholder="rtsp://host:8554/stream",
                    elem_id="rtsp-url",
                )
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
        app.unload(page_closed)
    app.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    return app


def check_rtsp_host(url: str, allowed: Sequence[str]) -> None:
    """An exposed page connects only to the hosts it was started with (`--rtsp-allow`)."""
    from urllib.parse import urlsplit

    if not allowed:
        raise AdasrError(
            "the RTSP tab is off on a page served beyond this machine (start the demo with --rtsp-allow HOST)"
        )
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        host = ""
    if host not in allowed:
        raise AdasrError(f"{redact(url)}: this page may not connect to {host or 'that host'}")


def opaque_failures(records: Iterable, label: str) -> Iterator:
    """`records`, any failure to read them one and the same line (refused, timed out, no stream)."""
    try:
        yield from records
    except AdasrError:
        raise AdasrError(f"RTSP {label}: no stream could be read") from None


def launch(models: PipelineModels, settings: DemoSettings = DemoSettings()) -> None:
    """Serve the page until interrupted: on `settings.host` (127.0.0.1 unless told otherwise),
    behind a password when it is reachable from beyond this machine."""
    credentials = settings.credentials()  # an exposed page without them is refused here
    app = build_app(models, settings)
    app.launch(
        auth=[credentials] if credentials else None,
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        max_file_size=f"{settings.max_upload_mb}mb",
        show_error=False,  # a failure the handlers did not catch shows no stack trace either
        head=RAW_MICROPHONE,
    )
