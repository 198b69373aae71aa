"""Video through the pipeline: OCR speed at 720p, and the real-time factor of a narrated clip.

Builds a clip of `--seconds` (default 60) at 720p: the demo stories' speech (demos/media/*.mp3,
eSpeak and Piper voices, in turn until the clip is full) under slides that change every
`--slide-s` seconds, each slide a sentence of a story drawn by seed (the project's generator),
written as H.264 + AAC with PyAV. Then:

- OCR frames per second: RapidOCR (PP-OCR, bundled models) on every distinct 720p slide, with
  `--threads` onnxruntime threads (default 1, as `adasr-av run` reads), after one warm-up read;
- end to end: `adasr-av run`'s path on the clip (decode, ASR and OCR on their threads, the merge,
  the bundled reasoner on the cost-model clock, computation-aware encoders), wall seconds per
  second of clip; and where the compute went (Whisper, OCR reads).

    python benchmarks/video_stream.py [--seconds 60] [--slide-s 6] [--threads 1] [--asr-compute-type int8]

Last line: RESULT ocr_fps=.. rtf=.. asr_rtf=.. ocr_reads=.. clip_s=..
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from adasr_av.data.stories import generate_story
from adasr_av.data.video import Slide, render_slide, write_video
from adasr_av.encoders.contract import ASREncoder
from adasr_av.encoders.ocr import OCREncoder, OCROptions, RapidOCRReader
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.media.audio import SAMPLE_RATE
from adasr_av.media.file import read_audio
from adasr_av.media.sources import open_records
from adasr_av.pipeline import PipelineModels, PipelineRun
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.session import StreamingReasoner

DEMOS = Path(__file__).resolve().parent.parent / "demos" / "media"


def narration(seconds: float) -> np.ndarray:
    """The demo stories' audio end to end, repeated until `seconds`, cut there."""
    stories = [np.concatenate([c.samples for c in read_audio(p)]) for p in sorted(DEMOS.glob("*.mp3"))]
    parts, total, k = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        parts.append(stories[k % len(stories)])
        total, k = total + len(parts[-1]), k + 1
    return np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]


def slide_texts(n: int, seed: int) -> list[str]:
    sentences: list[str] = []
    index = 0
    while len(sentences) < n:
        sentences += [s.text for s in generate_story(seed, "test", index).sentences]
        index += 1
    return sentences[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--slide-s", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads for OCR (run: 1)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--asr-compute-type",
        default=None,
        help="faster-whisper weights (default: float32 on the CPU, as run)",
    )
    args = parser.parse_args()

    texts = slide_texts(int(args.seconds // args.slide_s), args.seed)
    slides = [Slide(t, k * args.slide_s, (k + 1) * args.slide_s) for k, t in enumerate(texts)]
    reader = RapidOCRReader(OCROptions(threads=args.threads))
    images = [render_slide(t) for t in texts]
    reader(images[0])  # warm-up: the first read loads the models
    started = time.perf_counter()
    for image in images:
        reader(image)
    ocr_fps = len(images) / (time.perf_counter() - started)
    print(f"OCR: {len(images)} distinct 720p slides, {ocr_fps:.2f} frames/s with {args.threads} threads")

    with tempfile.TemporaryDirectory() as folder:
        clip = write_video(Path(folder) / "clip.mp4", slides, args.seconds, narration(args.seconds))
        model, tokenizer = load_reasoner_model(str(default_model()))
        ocr = OCREncoder(OCROptions(threads=args.threads), reader=reader)
        models = PipelineModels(
            StreamingReasoner(model, tokenizer),
            [ASREncoder(load_backend(compute_type=args.asr_compute_type)), ocr],
        )
        started = time.perf_counter()
        run = PipelineRun(models, open_records(str(clip), fps=1.0))
        events = run.run()
        wall = time.perf_counter() - started
    asr, frames = run.encoder_stats["asr"], run.encoder_stats["ocr"]
    chunks = [e for e in events if e.type == "chunk"]
    by_source = {s: sum(e.info.get("source") == s for e in chunks) for s in ("asr", "ocr")}
    rtf = wall / args.seconds
    print(
        f"end to end: {args.seconds:.0f} s clip in {wall:.1f} s wall (RTF {rtf:.3f}); chunks {by_source}; "
        f"Whisper compute {asr.compute_s:.1f} s (RTF {asr.real_time_factor:.3f}); "
        f"OCR {frames.reads} reads of {frames.frames} frames, {frames.read_s:.1f} s, "
        f"{frames.busy} dropped while busy"
    )
    print(
        f"RESULT ocr_fps={ocr_fps:.2f} rtf={rtf:.3f} asr_rtf={asr.real_time_factor:.3f} "
        f"ocr_reads={frames.reads} clip_s={args.seconds:.0f}"
    )


if __name__ == "__main__":
    main()
