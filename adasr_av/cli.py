"""The `adasr-av` command: a thin layer over the package's functions."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from adasr_av.atomic import check_writable
from adasr_av.errors import AdasrError
from adasr_av.media.sources import redact
from adasr_av.sinks import TRANSCRIPT_FORMATS

SAMPLE_QUESTION = "How many apples does Tom have now?"
SAMPLE_STORY = (
    "Tom has five apples. He buys three more apples at the market. The sky is blue today. "
    "He gives two apples to Anna."
)
SAMPLE_ANSWER = "6"


ASKED = ("question", "reference")  # commands that ask their own questions (a story's, a CSV's)
PLAIN_ASR_FLAGS = {
    "backend": "--backend",
    "model": "--model",
    "device": "--device",
    "compute_type": "--compute-type",
}  # no reasoner beside


def _add_sections(
    p: argparse.ArgumentParser,
    *,
    source: bool = True,
    asr: bool = True,
    video: bool = True,
    reasoner_exclude: tuple[str, ...] = (),
    output: tuple[str, ...] | None = None,
) -> None:
    """The run config's flags (`run_config`), one group a section."""
    from adasr_av.options import add_flags
    from adasr_av.run_config import (
        ASRSection,
        OutputSection,
        ReasonerSection,
        SourceSection,
        VideoSection,
    )

    add_flags(p.add_argument_group("reasoner"), ReasonerSection, "reasoner", exclude=reasoner_exclude)
    if source:
        add_flags(p.add_argument_group("source"), SourceSection, "source")
    if asr:
        add_flags(p.add_argument_group("speech (Whisper)"), ASRSection, "asr")
    if video:
        add_flags(p.add_argument_group("video (frames to text)"), VideoSection, "video")
    if output is not None:
        add_flags(p.add_argument_group("output"), OutputSection, "output", only=output or None)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    from adasr_av.options import add_flags
    from adasr_av.run_config import MODEL_FIELDS, ReasonerSection

    add_flags(p, ReasonerSection, "reasoner", only=MODEL_FIELDS)


def _add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, help="pipeline config (pipelines/*.toml): any flag as a key; flags win"
    )


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (and where the help is), not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from adasr_av.options import add_flags
    from adasr_av.run_config import ASRSection, BatchOptions, DemoSettings, SourceSection

    parser = Parser(prog="adasr-av", description="Reason over audio and video while it streams.")
    sub = parser.add_subparsers(dest="command", required=True)

    reason = sub.add_parser("reason", help="stream text chunks into the reasoner and print the timeline")
    reason.add_argument("--question", help="the question (may be empty; default: the sample story's)")
    source = reason.add_mutually_exclusive_group()
    source.add_argument("--text", help='the stream as text, "S1. S2. ...", one chunk per sentence')
    source.add_argument("--chunks", type=Path, help="JSON-lines chunks: text, t_start, t_end[, t_emit]")
    reason.add_argument("--reference", help="reference answer; the summary then says if it was correct")
    reason.add_argument(
        "--wpm", type=float, default=150.0, help="speaking rate for --text (words per minute)"
    )
    reason.add_argument("--out", type=Path, help="write the events as JSON lines here")
    _add_sections(reason, source=False, asr=False, video=False, reasoner_exclude=ASKED)

    evaluate = sub.add_parser("eval", help="score the reasoner on a streamed-story dataset")
    evaluate.add_argument("--data", type=Path, required=True, help="dataset JSON lines (adasr-av synth)")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N stories")
    evaluate.add_argument(
        "--errors", action="store_true", help="also count why each wrong story went wrong (error_analysis)"
    )
    evaluate.add_argument("--out", type=Path, help="write the report and per-story results as JSON")
    evaluate.add_argument(
        "--batch",
        type=int,
        default=1,
        help="stories decoded together, each scored as alone (cost-model clock)",
    )
    evaluate.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="a bar on stderr: stories done, running accuracy, time left (default: when it is a terminal)",
    )
    _add_sections(evaluate, source=False, asr=False, video=False, reasoner_exclude=ASKED)

    transcribe = sub.add_parser("transcribe", help="stream audio through Whisper into timed text chunks")
    transcribe.add_argument("source", help="a media file, mic, or an rtsp:// URL")
    add_flags(transcribe, SourceSection, "source")
    add_flags(transcribe, ASRSection, "asr", rename=PLAIN_ASR_FLAGS)
    transcribe.add_argument(
        "--format", choices=TRANSCRIPT_FORMATS, help="output format (default: from --out)"
    )
    transcribe.add_argument("--out", type=Path, help="write the transcript here")

    run = sub.add_parser("run", help="stream audio through Whisper into the reasoner: live view and answer")
    run.add_argument(
        "source.source",
        nargs="?",
        metavar="SOURCE",
        default=argparse.SUPPRESS,
        help="a media file, mic, or an rtsp:// URL (or source.source in --config)",
    )
    _add_config_flag(run)
    _add_sections(run, output=())

    calibrate = sub.add_parser("calibrate", help="measure prefill and decode seconds per token")
    _add_model_flags(calibrate)
    calibrate.add_argument("--out", type=Path, required=True, help="cost profile JSON to write")
    calibrate.add_argument("--name", help="profile name (default: the model's folder name)")

    synth = sub.add_parser("synth", help="write streamed-story datasets (text or speech); resumable")
    synth.add_argument(
        "--mode",
        choices=["text", "speech", "video"],
        required=True,
        help="text chunks; speech through the streaming ASR; video: slides and speech as mp4, "
        "read back by the ASR and OCR",
    )
    synth.add_argument("--n", type=int, required=True, help="stories per split")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", type=Path, required=True, help="folder for <split>.jsonl (and audio/)")
    synth.add_argument("--splits", default="train,valid,test,ood", help="comma-separated splits")
    synth.add_argument("--workers", type=int, help="speech mode: processes (default: CPU count)")
    synth.add_argument(
        "--voices",
        help="speech and video modes: comma-separated voices, eSpeak NG or piper:joe (default: 4 eSpeak)",
    )
    synth.add_argument(
        "--wording",
        choices=("templates", "broad"),
        help="the generator's fixed templates (default), or broad: thousands of names, many nouns and forms",
    )
    synth.add_argument(
        "--clips", help="video mode: comma-separated kinds, slideshow,narrated,mixed (default: all three)"
    )
    synth.add_argument("--wpm", type=float, help="text mode: words per minute (default: 150)")
    synth.add_argument(
        "--step", type=float, help="speech and video modes: seconds of new audio per Whisper step"
    )
    synth.add_argument(
        "--aware", action="store_true", help="speech and video modes: computation-aware ASR (and OCR) timing"
    )
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")

    batch = sub.add_parser(
        "batch", help="run many media files through the pipeline: events, SRT and a summary CSV"
    )
    batch.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="media files, folders, globs or rtsp:// URLs"
    )
    asked = batch.add_mutually_exclusive_group()
    asked.add_argument("--question", help="one question for every file (default: each file's sidecar's)")
    asked.add_argument(
        "--questions", type=Path, metavar="FILE.csv", help="CSV with the columns file,question[,reference]"
    )
    batch.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for <name>.events.jsonl, <name>.srt (speech), <name>.ocr.srt (screen), summary.csv",
    )
    add_flags(batch, BatchOptions, "batch", only=("workers", "ray", "max_seconds"))
    _add_config_flag(batch)
    _add_sections(batch, reasoner_exclude=ASKED)

    train = sub.add_parser("train", help="train a streaming reasoner (sft, hrpo) or plot a training log")
    stage = train.add_subparsers(dest="stage", required=True)
    for name, what in (
        ("sft", "supervised warm-up on gold streaming sequences"),
        ("hrpo", "HRPO on sampled rollouts"),
    ):
        run_stage = stage.add_parser(name, help=what)
        run_stage.add_argument(
            "--config", type=Path, required=True, help=f"TOML config (see training/tiny/{name}.toml)"
        )
        run_stage.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config key, e.g. --set train.max_steps=100 (repeatable)",
        )  # fmt: skip
        run_stage.add_argument("--no-progress", action="store_true", help="no progress bar")
    plot = stage.add_parser("plot", help="plot a training log (log.jsonl) as a PNG of curves")
    plot.add_argument("log", type=Path, help="the run's log.jsonl")
    plot.add_argument("--out", type=Path, help="PNG to write (default: beside the log, log.png)")

    demo = sub.add_parser("demo", help="the live demo in the browser: microphone, upload or RTSP URL")
    add_flags(demo, DemoSettings, "demo", exclude=("realtime",))
    _add_config_flag(demo)
    _add_sections(demo, reasoner_exclude=ASKED)
    for name, command in sub.choices.items():
        command.set_defaults(parser_=command, command=name)
    return parser


def _reasoner_section(args):
    """The reasoner's section from the flags (commands without a pipeline file)."""
    from adasr_av.run_config import ReasonerSection, section_from_args

    return section_from_args(ReasonerSection, args, "reasoner")


def _chunks(args):
    from adasr_av.media.text import read_chunks_jsonl, text_stream

    if args.chunks is not None:
        chunks = list(read_chunks_jsonl(args.chunks))
        where = f"chunks file {args.chunks}"
    else:
        chunks = text_stream(SAMPLE_STORY if args.text is None else args.text, args.wpm)
        where = "--text"
    if not any(c.text.strip() for c in chunks):
        raise AdasrError(f"empty stream: {where} has no text")
    return chunks


def _show_events(events, out: Path | None) -> None:
    """Print the timeline as events happen; with --out also write them as JSON lines."""
    from adasr_av.sinks import EventWriter, print_event

    writer = EventWriter(out) if out else None
    try:
        for event in events:
            print_event(event)
            if writer:
                writer.write(event)
    finally:
        if writer:
            writer.close()
    if writer:
        print(f"events written to {out}")


def cmd_reason(args) -> None:
    from adasr_av.reasoner.session import reason_over_stream

    sample_story = args.text is None and args.chunks is None
    question = args.question if args.question is not None else (SAMPLE_QUESTION if sample_story else "")
    reference = args.reference if args.reference is not None else (SAMPLE_ANSWER if sample_story else None)
    section = _reasoner_section(args)  # bad flags fail before the model loads
    chunks = _chunks(args)
    if args.out:
        check_writable(args.out, "--out")
    reasoner = section.reasoner()
    print(f"question: {question or '(none: the stream carries it)'}", flush=True)
    _show_events(reason_over_stream(reasoner, chunks, question, reference), args.out)


def cmd_run(args) -> None:
    """Media -> encoders (speech, frames) -> reasoner on the pipeline's threads; Ctrl-C ends the
    stream and the reasoner still answers; T is where the stream ended."""
    from rich.console import Console

    from adasr_av.live_view import LiveView
    from adasr_av.media.sources import open_records, probe, sidecar_of
    from adasr_av.pipeline import PipelineRun
    from adasr_av.run_config import run_config
    from adasr_av.sinks import EventWriter, TranscriptsBySource

    config = run_config(args, args.parser_, "run")  # every bad flag or key fails here
    source, r, out = config.source.source, config.reasoner, config.output
    if not source:
        raise AdasrError("no source: give a file, mic or an rtsp:// URL (or source.source in --config)")
    name = redact(source)  # what every output shows; `source` itself only opens the stream
    out.check_writable()
    streams = probe(source)  # a bad source fails before models load
    video = config.video.mode_for(source, streams)
    records = open_records(
        source, config.video.fps if video != "off" else None, config.source.realtime, streams
    )
    sidecar = sidecar_of(source)
    question = r.question if r.question is not None else (sidecar.question if sidecar else "")
    reference = r.reference if r.reference is not None else (sidecar.answer if sidecar else None)
    models = config.pipeline_models(video)
    print(f"question: {question or '(none: the stream carries it)'}", flush=True)
    if r.reference is None and reference is not None:
        print(f"reference answer from {sidecar.path}", flush=True)
    transcripts = TranscriptsBySource({"asr": out.srt, "ocr": out.ocr})
    run = PipelineRun(models, records, question, reference, out.queue_size, on_chunk=transcripts.write)
    writer = EventWriter(out.out) if out.out else None
    console = Console(force_terminal=None if not out.plain else False)
    sinks = [sink for sink in (writer, transcripts) if sink]
    try:
        with LiveView(name, question, console) as view:
            for event in run:
                view.update(event, stopping=run.stopping)
                if writer:
                    writer.write(event)
        for sink in sinks:
            sink.close()
    except BaseException as err:
        for sink in sinks:  # a failed run leaves no half outputs; Ctrl-C closes the stream and answers
            sink.discard() if isinstance(err, Exception) else sink.close()
        raise
    if run.interrupted:
        print("adasr-av: interrupted: the stream was closed and answered", file=sys.stderr)
    if out.plot:
        run.timeline.save(out.plot, title=name)
    written = (
        (out.out, "events"),
        (out.srt, "transcript"),
        (out.ocr, "on-screen text"),
        (out.plot, "timeline"),
    )
    for path, what in written:
        if path:
            print(f"{what} written to {path}", file=sys.stderr)
    _print_asr_stats(run.stats)


def cmd_eval(args) -> None:
    from dataclasses import asdict
    from itertools import islice

    from rich.console import Console

    from adasr_av.data.dataset import read_dataset
    from adasr_av.evaluation import evaluate, report_table, save_evaluation, summarise

    if args.limit is not None and args.limit < 1:
        raise AdasrError("--limit must be at least 1")
    if args.batch < 1:
        raise AdasrError("--batch must be at least 1")
    if args.out:
        check_writable(args.out, "--out")
    section = _reasoner_section(args)
    clock, options = section.clock_(), section.options()
    stories = list(islice(read_dataset(args.data), args.limit))  # a bad line fails before any work
    if not stories:
        raise AdasrError(f"dataset {args.data}: no stories")
    model, tokenizer = section.load()
    results = evaluate(
        model, tokenizer, stories, section.mode, options, clock, progress=args.progress, batch=args.batch
    )
    name = section.model_name + (f" + {section.adapter}" if section.adapter else "")
    settings = asdict(options) | {"limit": args.limit}
    report = summarise(
        results, model=name, data=str(args.data), mode=section.mode, clock=clock, options=settings
    )
    Console().print(report_table(report))
    if args.errors:
        from adasr_av.error_analysis import cause_counts, causes_table

        Console().print(causes_table(str(args.data), cause_counts(stories, results)))
    if args.out:
        save_evaluation(args.out, report, results)
        print(f"report written to {args.out}")


def cmd_calibrate(args) -> None:
    from adasr_av.reasoner.calibration import measure_cost_profile

    section = _reasoner_section(args)
    if section.model is None:
        raise AdasrError("calibrate needs --model")
    check_writable(args.out, "--out")
    model, _ = section.load()
    name = args.name or Path(section.model.rstrip("/")).name
    profile = measure_cost_profile(model, name)
    profile.save(args.out)
    print(
        f"{name} on {profile.device}: prefill {profile.prefill_base_s * 1e3:.2f} ms + "
        f"{profile.prefill_per_token_s * 1e3:.3f} ms/token, "
        f"decode {profile.decode_per_token_s * 1e3:.2f} ms/token "
        f"({1 / profile.decode_per_token_s:.0f} tokens/s) -> {args.out}"
    )


def cmd_transcribe(args) -> None:
    from adasr_av.sinks import TranscriptWriter, format_chunk

    fmt = args.format or (args.out.suffix.lstrip(".") if args.out else "jsonl")
    if fmt not in TRANSCRIPT_FORMATS:
        raise AdasrError(
            f"--out {args.out}: unknown format {fmt!r} (use --format {'|'.join(TRANSCRIPT_FORMATS)})"
        )
    if args.out:
        check_writable(args.out, "--out")
    _, chunks, stats = _transcription(args)
    writer = TranscriptWriter(args.out, fmt) if args.out else None
    try:
        for chunk in chunks:
            print(format_chunk(chunk), flush=True)
            if writer:
                writer.write(chunk)
    finally:
        if writer:
            writer.close()
    _print_asr_stats(stats)


def _transcription(args):
    """(audio, text chunks, stats) from the source and ASR flags: the source opens now, so a bad one
    fails before any model loads; `audio.t_end` is where the audio ended once it has."""
    from adasr_av.encoders.streaming_asr import ASRStats, transcribe_stream
    from adasr_av.media.sources import EndTracker, open_audio, until_interrupted
    from adasr_av.run_config import ASRSection, SourceSection, section_from_args

    asr = section_from_args(ASRSection, args, "asr")
    realtime = section_from_args(SourceSection, args, "source").realtime
    options = asr.options()
    audio = EndTracker(until_interrupted(open_audio(args.source, realtime=realtime)))
    backend = asr.load()
    stats = ASRStats()
    return audio, transcribe_stream(audio, backend, options, stats), stats


def _print_asr_stats(stats) -> None:
    lags = stats.lags_s
    print(
        f"{stats.audio_s:.1f}s of audio in {stats.steps} Whisper steps: real-time factor "
        f"{stats.real_time_factor:.2f}, step lag p50 {lags.quantile(0.5):.2f}s "
        f"p90 {lags.quantile(0.9):.2f}s, longest wait for text {stats.max_lag_s:.2f}s",
        file=sys.stderr,
    )


def _overrides(pairs: list[str]) -> dict:
    """--set KEY=VALUE pairs; values are read as TOML (numbers, booleans, "strings")."""
    import tomllib

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AdasrError(f"--set {pair}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = value
    return overrides


def cmd_train(args) -> None:
    from adasr_av.training.config import load_config

    if args.stage == "plot":
        from adasr_av.training.plot import plot_log

        print(f"plot written to {plot_log(args.log, args.out or args.log.with_suffix('.png'))}")
        return
    if args.stage == "hrpo":
        from adasr_av.hrpo.trainer import HRPOConfig as config_class
        from adasr_av.hrpo.trainer import train_hrpo as train
    else:
        from adasr_av.training.sft import SFTConfig as config_class
        from adasr_av.training.sft import train_sft as train
    config = load_config(args.config, config_class, _overrides(args.set))
    final = train(config, progress=not args.no_progress)
    print(f"model written to {final}")


def cmd_synth(args) -> None:
    from adasr_av.data.synth import SynthOptions, run_synth

    def names(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))

    for flag, value, modes in (
        ("--wpm", args.wpm, ("text",)),
        ("--voices", args.voices, ("speech", "video")),
        ("--step", args.step, ("speech", "video")),
        ("--aware", args.aware or None, ("speech", "video")),
        ("--clips", args.clips, ("video",)),
    ):
        if value is not None and args.mode not in modes:
            raise AdasrError(f"{flag} is only for --mode {' or '.join(modes)}")
    given = {
        "seed": args.seed,
        "n": args.n,
        "splits": names(args.splits),
        "workers": args.workers,
        "voices": names(args.voices),
        "words_per_minute": args.wpm,
        "asr_step_s": args.step,
        "computation_aware": args.aware,
        "wording": args.wording,
        "clips": names(args.clips),
    }
    options = SynthOptions(args.mode, **{key: value for key, value in given.items() if value is not None})
    summary = run_synth(options, args.out, progress=not args.no_progress)
    per_story = f", {summary.item_s / summary.written:.3g}s per story" if summary.written else ""
    print(
        f"{summary.written} stories written, {summary.existing} already there, in {args.out} "
        f"({summary.wall_s:.1f}s{per_story})"
    )


def cmd_batch(args) -> None:
    """Files, folders and globs through the pipeline; per file events and SRT, and a summary CSV."""
    from adasr_av.batch import plan_batch, run_batch
    from adasr_av.options import given
    from adasr_av.run_config import BatchOptions, run_config

    if not args.inputs and args.questions is None:
        raise AdasrError("batch needs INPUT files, folders or globs, or --questions FILE.csv")
    config = run_config(args, args.parser_, "batch")  # bad flags fail before any file runs
    options = BatchOptions(
        **given(args, "batch"),
        realtime=config.source.realtime,
        progress=sys.stderr.isatty(),
        fps=config.video.fps,
        video=config.video.video,
        model=config.reasoner.model_name,
        settings=config.fingerprint(),
    )
    config.asr.resolved_model()  # Whisper base is assembled once, not by each worker
    video = config.video.mode_for(None)
    items = plan_batch(args.inputs, args.question, args.questions)
    report = run_batch(items, PipelineLoader(config, video), args.out, options)
    print(report.line())
    if report.failure():
        raise AdasrError(report.failure())


@dataclass(frozen=True)
class PipelineLoader:
    """Loads a run config's models in a batch worker (a picklable callable for processes and Ray)."""

    config: object
    video: str = "off"

    def __call__(self, threads: int | None = None):
        _quiet_libraries()
        return self.config.pipeline_models(self.video, threads)


def cmd_demo(args) -> None:
    """Load the encoders and the reasoner once, then serve the page until Ctrl-C."""
    import os

    from adasr_av.demo import launch
    from adasr_av.options import given
    from adasr_av.run_config import DemoSettings, run_config

    config = run_config(args, args.parser_, "demo")
    video = {"realtime": config.source.realtime, "fps": config.video.fps, "video": config.video.video}
    settings = DemoSettings(**given(args, "demo"), **video)  # checks its fields
    settings.credentials()  # an exposed page without a password is refused before models load
    whisper_threads = max(1, (os.cpu_count() or 1) - 1)  # a core for the server: no block is lost
    launch(config.pipeline_models(config.video.mode_for(None), threads=whisper_threads), settings)


COMMANDS = {
    "train": cmd_train,
    "run": cmd_run,
    "reason": cmd_reason,
    "eval": cmd_eval,
    "calibrate": cmd_calibrate,
    "transcribe": cmd_transcribe,
    "synth": cmd_synth,
    "batch": cmd_batch,
    "demo": cmd_demo,
}


def _quiet_libraries() -> None:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.formatwarning = lambda message, category, *a, **k: f"adasr-av: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _quiet_libraries()
        COMMANDS[args.command](args)
    except AdasrError as err:
        print(f"adasr-av: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("adasr-av: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
