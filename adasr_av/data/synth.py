"""Streamed-story datasets on disk: `<out>/<split>.jsonl`, written record by record, resumable.

Item i of split s is always `generate_story(seed, s, i)` with id `<s>-<i:06d>`, so a rerun into
the same folder reads the ids already written, cuts off a line torn by a kill, and makes only the
rest. `<out>/synth.json` holds the settings that decide the records' content; a rerun with other
settings is refused instead of mixing two datasets in one file.

Text mode runs in-process (under a millisecond a story). Speech mode (see `speech_mode.py`) runs
in a pool of spawned processes, each making ONE story and exiting (`maxtasksperchild=1`): eSpeak
NG's output drifts with what its process synthesised before, so only a fresh process makes a
story's audio, and hence its computation-unaware transcript, the same on every run and on a
resumed run. That costs a process start and a Whisper tiny load (~1 s) against ~15 s of CPU for
the ASR of a typical story (20-30 s of audio).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from adasr_av.atomic import write_atomically
from adasr_av.data import espeak, piper
from adasr_av.data.speech_mode import (
    PAUSE_RANGE_S,
    SPEECH_VOICES,
    SPEECH_WPM_RANGE,
    draw_speaker,
    speak_story,
    speech_record,
    transcribe_samples,
)
from adasr_av.data.stories import SPLITS, WORDINGS, generate_story
from adasr_av.data.streamed import text_record
from adasr_av.data.tts import write_audio
from adasr_av.data.video_mode import CLIP_KINDS, clip_chunks, draw_kind, lay_out, make_clip, video_record
from adasr_av.encoders.streaming_asr import StreamingASROptions
from adasr_av.encoders.whisper_backends import FasterWhisperBackend
from adasr_av.errors import AdasrError
from adasr_av.timing import DEFAULT_WORDS_PER_MINUTE

MODES = ("text", "speech", "video")
SETTINGS_FILE = "synth.json"
AUDIO_FOLDER = "audio"
VIDEO_FOLDER = "video"
OCR_MODEL = "rapidocr PP-OCR (bundled), 1 frame/s"
ASR_MODEL = "faster-whisper, bundled tiny.en"


@dataclass(frozen=True)
class SynthOptions:
    mode: str
    seed: int = 0
    n: int = 100  # stories per split
    splits: tuple[str, ...] = SPLITS
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # speech mode
    voices: tuple[str, ...] = SPEECH_VOICES  # speech mode: each story draws one
    words_per_minute: float = DEFAULT_WORDS_PER_MINUTE  # text mode
    asr_step_s: float = 1.0  # speech mode: new audio per Whisper step
    computation_aware: bool = False  # speech mode: False keeps t_emit independent of machine load
    wording: str = "templates"  # the generator's wording: the fixed templates, or "broad" (wording.py)
    clips: tuple[str, ...] = CLIP_KINDS  # video mode: each story draws one kind of clip

    def content(self) -> dict:
        """The settings that decide what a record holds (n, splits and workers do not)."""
        if self.mode == "text":
            text = {"mode": "text", "seed": self.seed, "words_per_minute": self.words_per_minute}
            return text | self._wording()
        video = {"clips": list(self.clips), "ocr": OCR_MODEL} if self.mode == "video" else {}
        return (
            self._wording()
            | {
                "mode": self.mode,
                "seed": self.seed,
                "voices": list(self.voices),
                "words_per_minute_range": list(SPEECH_WPM_RANGE),
                "sentence_pause_s": list(PAUSE_RANGE_S),
                "asr": ASR_MODEL,
                "asr_policy": StreamingASROptions.policy,
                "asr_step_s": self.asr_step_s,
                "computation_aware": self.computation_aware,
            }
            | video
        )

    def _wording(self) -> dict:
        """Only a broad wording is named, so folders made before it existed still match."""
        return {"wording": self.wording} if self.wording != "templates" else {}


@dataclass
class SynthSummary:
    written: int = 0  # records made by this run
    existing: int = 0  # records a previous run had made
    wall_s: float = 0.0
    item_s: float = 0.0  # summed time of the items (in workers: process start, TTS, ASR, writing)


def check_options(options: SynthOptions) -> None:
    if options.mode not in MODES:
        raise AdasrError(f"unknown mode {options.mode!r} (use {' or '.join(MODES)})")
    if options.n < 1:
        raise AdasrError(f"--n must be at least 1, got {options.n}")
    if not options.splits:
        raise AdasrError(f"no split given (use some of {', '.join(SPLITS)})")
    for split in options.splits:
        if split not in SPLITS:
            raise AdasrError(f"unknown split {split!r} (use some of {', '.join(SPLITS)})")
    if options.workers < 1:
        raise AdasrError(f"--workers must be at least 1, got {options.workers}")
    if not options.voices:
        raise AdasrError(f"no voice given (the default ones: {', '.join(SPEECH_VOICES)})")
    for voice in options.voices:
        if voice.startswith(piper.PREFIX):
            if voice not in piper.VOICES:
                raise AdasrError(f"unknown Piper voice {voice!r} (Piper voices: {', '.join(piper.VOICES)})")
            continue
        try:
            espeak.check_voice(voice)
        except AdasrError as err:
            raise AdasrError(f"{err}; the default voices: {', '.join(SPEECH_VOICES)}") from None
    for kind in options.clips:
        if kind not in CLIP_KINDS:
            raise AdasrError(f"unknown clip kind {kind!r} (use some of {', '.join(CLIP_KINDS)})")
    if options.wording not in WORDINGS:
        raise AdasrError(f"unknown wording {options.wording!r} (use {', '.join(WORDINGS)})")
    if options.words_per_minute <= 0:
        raise AdasrError(f"words per minute must be positive, got {options.words_per_minute}")
    if options.asr_step_s <= 0:
        raise AdasrError(f"the ASR step must be positive, got {options.asr_step_s}")


def story_id(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def completed_ids(path: Path) -> set[str]:
    """Ids of the records in `path`; a last line without its newline (torn by a kill) is cut off."""
    if not path.exists():
        return set()
    ids, kept = set(), 0
    with path.open("r+b") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                handle.truncate(kept)
                break
            kept += len(line)
            if not line.strip():
                continue
            try:
                ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                raise AdasrError(
                    f"{path}, line {number}: not a synth record (no JSON object with an id)"
                ) from None
    return ids


def _check_settings(out: Path, content: dict) -> None:
    """Refuse a folder made with other content settings; record them in a new folder."""
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if not isinstance(old, dict):
            raise AdasrError(f"{path}: not a JSON object; remove it or use another output folder")
        differ = [key for key in sorted(set(old) | set(content)) if old.get(key) != content.get(key)]
        if differ:
            was = ", ".join(f"{key}={old.get(key)}" for key in differ)
            now = ", ".join(f"{key}={content.get(key)}" for key in differ)
            raise AdasrError(f"{out} was made with {was}, not {now}: use another folder or the same settings")
        return
    write_atomically(path, json.dumps(content, indent=2) + "\n")


def run_synth(options: SynthOptions, out: str | Path, progress: bool = True) -> SynthSummary:
    """Write the records `options` asks for that `out` does not hold yet."""
    check_options(options)
    out, started = Path(out), time.perf_counter()
    summary = SynthSummary()
    try:
        out.mkdir(parents=True, exist_ok=True)
        _check_settings(out, options.content())
        done = {split: completed_ids(out / f"{split}.jsonl") for split in options.splits}
        if options.mode != "text":
            (out / (AUDIO_FOLDER if options.mode == "speech" else VIDEO_FOLDER)).mkdir(exist_ok=True)
        files = {split: (out / f"{split}.jsonl").open("a", encoding="utf-8") for split in options.splits}
    except OSError as err:
        raise AdasrError(f"cannot write to {out}: {err.strerror or err}") from None
    todo = [
        (split, index)
        for split in options.splits
        for index in range(options.n)
        if story_id(split, index) not in done[split]
    ]
    summary.existing = options.n * len(options.splits) - len(todo)
    items = _text_items(options, todo) if options.mode == "text" else _speech_items(options, out, todo)
    bar = tqdm(
        total=options.n * len(options.splits),
        initial=summary.existing,
        unit="story",
        desc=f"synth {options.mode}",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for record, seconds in items:
            files[record["split"]].write(json.dumps(record, ensure_ascii=False) + "\n")
            files[record["split"]].flush()
            summary.written += 1
            summary.item_s += seconds
            bar.update()
    finally:
        items.close()  # speech mode: its finally block stops the pool
        bar.close()
        for handle in files.values():
            handle.close()
    summary.wall_s = time.perf_counter() - started
    return summary


def _text_items(options: SynthOptions, todo: list[tuple[str, int]]) -> Iterator[tuple[dict, float]]:
    for split, index in todo:
        started = time.perf_counter()
        story = generate_story(options.seed, split, index, options.wording)
        record = text_record(story, options.words_per_minute)
        yield record, time.perf_counter() - started


def _speech_items(
    options: SynthOptions, out: Path, todo: list[tuple[str, int]]
) -> Iterator[tuple[dict, float]]:
    if not todo:
        return
    workers = min(options.workers, len(todo))
    # Whisper threads per worker: no oversubscription, and the same on a resumed run with fewer items
    threads = max(1, (os.cpu_count() or 1) // options.workers)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing inherited from this one
    pool = context.Pool(
        workers, initializer=_start_worker, initargs=(options, str(out), threads), maxtasksperchild=1
    )
    try:
        yield from pool.imap_unordered(_speech_item if options.mode == "speech" else _video_item, todo)
        pool.close()
    finally:
        pool.terminate()  # a no-op after close(); stops the workers on an error or Ctrl-C
        pool.join()


# --- speech workers: module globals, set once per process -----------------------------------------

_worker: dict = {}


def _start_worker(options: SynthOptions, out: str, threads: int) -> None:
    """Ctrl-C is the parent's to handle (it terminates the pool); remember the run's settings.

    faster-whisper makes a (disabled) tqdm bar per call; tqdm's default lock is a named semaphore
    that a spawned worker leaves behind ("leaked semaphore" warnings at exit): use a thread lock.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())
    _worker.update(options=options, out=Path(out), threads=threads)


def _speech_item(task: tuple[str, int]) -> tuple[dict, float]:
    """Speak, write, transcribe and label one story (in a worker process)."""
    started = time.perf_counter()
    options: SynthOptions = _worker["options"]
    if "backend" not in _worker:  # loaded here, not in the initializer: a failure then reaches the parent
        _worker["backend"] = FasterWhisperBackend(None, cpu_threads=_worker["threads"])
    split, index = task
    story = generate_story(options.seed, split, index, options.wording)
    speaker = draw_speaker(options.seed, story.id, options.voices)
    samples, spans = speak_story(story, speaker)
    audio = f"{AUDIO_FOLDER}/{story.id}.wav"
    write_audio(_worker["out"] / audio, samples)
    asr = StreamingASROptions(
        min_step_seconds=options.asr_step_s, computation_aware=options.computation_aware
    )
    chunks = transcribe_samples(samples, _worker["backend"], asr)
    return speech_record(story, speaker, audio, spans, chunks), time.perf_counter() - started


def _video_item(task: tuple[str, int]) -> tuple[dict, float]:
    """Lay out, render, encode and read back one story as a clip (in a worker process)."""
    started = time.perf_counter()
    options: SynthOptions = _worker["options"]
    if "ocr" not in _worker:
        from adasr_av.encoders.ocr import OCREncoder, OCROptions

        _worker["backend"] = FasterWhisperBackend(None, cpu_threads=_worker["threads"])
        ocr = OCROptions(computation_aware=options.computation_aware, threads=_worker["threads"])
        _worker["ocr"] = OCREncoder(ocr)
    split, index = task
    story = generate_story(options.seed, split, index, options.wording)
    speaker = draw_speaker(options.seed, story.id, options.voices)
    kind = draw_kind(options.seed, story.id, options.clips)
    layout, samples, slides = lay_out(story, kind, speaker, options.seed)
    video = f"{VIDEO_FOLDER}/{story.id}.mp4"
    make_clip(_worker["out"] / video, layout, samples, slides)
    asr = StreamingASROptions(
        min_step_seconds=options.asr_step_s, computation_aware=options.computation_aware
    )
    chunks = clip_chunks(_worker["out"] / video, layout, samples, _worker["backend"], asr, _worker["ocr"])
    return video_record(story, kind, speaker, video, layout, chunks), time.perf_counter() - started
