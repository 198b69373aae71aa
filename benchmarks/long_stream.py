"""An hour-long stream through the bundled reasoner: cost per chunk and memory stay flat.

The stream is `generate_long_story`: one holder whose amount is set first and changes every few
minutes of speech (`--update-every`, 300 s) among distractors, with the question last, at 150 words
per minute. Each chunk goes to the streaming session as it arrives; the session compacts its
context by its policy (budget, latest thought, skip window), so neither the cost of a chunk nor
the memory should grow with the stream. The session runs on the wall clock; the cost of a chunk
printed here is the CPU time of this process while the session worked on it, which other load on
the machine does not inflate (run it pinned to one core with OMP_NUM_THREADS=1).

    python benchmarks/long_stream.py [--minutes 60] [--seed 0] [--audio] [--context-tokens N]

`--audio` speaks the story with eSpeak NG (en-us, 150 wpm) and streams it through the bundled
Whisper tiny.en first, as `adasr-av run` would (ASR chunks, not sentences, reach the reasoner).

Printed at minutes 1, 5, 10, 20, 30 and 60 of the stream (those it reaches): the median and mean
reasoner cost of the chunks in the minute before, and the process RSS. `late_vs_early` is the
median per-chunk cost over the last ten minutes over that of minutes 1-11 (after the first, in
which the context is still filling; a third of the stream each when it is shorter than 33 min);
`rss_growth_10_60` is the RSS growth from minute 10 (or the first mark) to the last mark.

Last line: RESULT late_vs_early=.. rss_growth_10_60=.. compactions=.. correct=..

`--live` is the demo's path on the wall clock, for an hour if need be (issue 16, point 8): the
story spoken by eSpeak NG is pushed in 0.5 s blocks (`MIC_BLOCK_SECONDS`, as the browser sends the
microphone) into the demo's `PushedAudio` by a feeder thread that keeps real time (it sleeps until
each block is due; a block is due once its last sample has been "recorded"), and runs through the
full `PipelineRun`: the models are built as `adasr-av demo` builds them (`RunConfig.pipeline_models`,
bundled Whisper tiny.en computation-aware with a core left free, the bundled reasoner) with the
reasoner on the wall clock. The audio is synthesised a sentence at a time as the feeder needs it,
so an hour costs no more memory up front than a minute. When the story has been pushed the source
is closed, as the demo's Stop does, and the run deliberates and answers.

    python benchmarks/long_stream.py --live [--minutes 60] [--seed 0] [--context-tokens N]

Measured, from the events and on the wall clock: the per-chunk reasoner cost (the wall seconds of
the chunk's prefill, any compaction it caused and its unit: `t_done - t_begin` of its chunk,
context and think/skip events; a wall figure, so a loaded machine inflates it), its median per
marked minute; the process RSS when the feeder reaches minutes 1, 5, 10, 20, 30 and 60 of the
stream (the last taken when the story ends); `rss_growth_10_60` and `late_vs_early` as above;
whether an answer came and whether it is right; `max_push_late_s`, how far behind its schedule the
feeder ever pushed a block; `max_asr_lag_s`, the longest wall time between the end of the audio a
text chunk covers and its commit by the ASR (`WallLag`; a chunk is committed after a pause, so
half a second of it is by design); the reasoner's lag and the answer latency (the summary's).
Pass marks: RSS growth at most 10 %, late_vs_early near 1 (per-chunk cost flat: the context
policy of the context-length issue), an answer. `tests/test_live_hour.py` runs `live_stream` for
5 minutes (`-m slow`).

Last line: RESULT live=1 minutes=.. rss_growth_10_60=.. late_vs_early=.. answered=.. correct=..
max_push_late_s=.. max_asr_lag_s=..
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import Story, generate_long_story
from adasr_av.data.streamed import text_record
from adasr_av.data.tts import synthesize
from adasr_av.demo import MIC_BLOCK_SECONDS
from adasr_av.encoders.contract import Encoder
from adasr_av.encoders.streaming_asr import StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.media.audio import SAMPLE_RATE, Chunker, seconds_to_samples
from adasr_av.media.push import PushedAudio
from adasr_av.pipeline import PipelineModels, PipelineRun
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.session import ReasonerOptions, StreamingReasoner
from adasr_av.run_config import ReasonerSection, RunConfig
from adasr_av.timing import SECONDS_PER_MINUTE, WallClock
from adasr_av.types import AudioChunk, Event, Record, TextChunk

MARKS_MIN = (1, 5, 10, 20, 30, 60)


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


PAUSE_S = 0.35  # silence between the spoken sentences


def text_chunks(story: Story) -> Iterator[TextChunk]:
    yield from parse_record(text_record(story), story.id).chunks


def spoken_blocks(story: Story, block_samples: int | None = None) -> Iterator[AudioChunk]:
    """The story spoken by eSpeak (en-us, 150 wpm) sentence by sentence, as the audio blocks a
    live source would deliver (`block_samples` each; default: the file reader's chunks): only the
    sentence being spoken is in memory."""
    chunker = Chunker(block_samples) if block_samples else Chunker()
    pause = np.zeros(seconds_to_samples(PAUSE_S), dtype=np.float32)
    for i, sentence in enumerate(story.sentences):
        speech = synthesize(sentence.text, "en-us", 150)
        yield from chunker.push(np.concatenate([pause, speech]) if i else speech)
    yield from chunker.flush()


def audio_chunks(story: Story) -> Iterator[TextChunk]:
    """The spoken story heard by the streaming Whisper (bundled tiny.en), chunk by chunk."""
    yield from transcribe_stream(spoken_blocks(story), load_backend(), StreamingASROptions())


def updates_right(story: Story, events: list[Event]) -> tuple[int, int, bool]:
    """Text mode: the updates whose thought is the gold one, their number, and whether the answer
    is the state the model's own last update wrote (the state carried however wrong)."""
    thoughts = {e.chunk_index: e.text for e in events if e.type == "think"}
    gold = [(i, s.thought) for i, s in enumerate(story.sentences) if s.role == "state"]
    right = sum(thoughts.get(i) == thought for i, thought in gold)
    last = next((thoughts[i] for i, _ in reversed(gold) if i in thoughts), "")
    answer = next(e.info.get("answer") for e in events if e.type == "summary")
    return right, len(gold), bool(last) and last.rsplit("= ", 1)[-1] == answer


def minute_figures(
    costs: list[tuple[float, float]], lo_min: float, hi_min: float
) -> tuple[float, float, int]:
    """Median and mean cost (s) of the chunks that arrived in (lo, hi] minutes, and their count."""
    window = [c for t, c in costs if lo_min * SECONDS_PER_MINUTE < t <= hi_min * SECONDS_PER_MINUTE]
    if not window:
        return float("nan"), float("nan"), 0
    return statistics.median(window), statistics.fmean(window), len(window)


def late_vs_early(costs: list[tuple[float, float]], last_min: float) -> float:
    """Median per-chunk cost of the last ten minutes over that of minutes 1-11 (a third of the
    stream each when it is shorter than 33 minutes; nan under 3 minutes, where they would overlap)."""
    if last_min < 3:
        return float("nan")
    window = min(10.0, last_min / 3)  # minutes; per-chunk CPU times on a shared machine vary by 30 %
    early = minute_figures(costs, 1, 1 + window)[0]
    late = minute_figures(costs, last_min - window, last_min)[0]
    return late / early


def rss_growth(rss: dict[float, float], base_min: float = 10) -> float:
    """RSS growth from minute `base_min` (or the first mark) to the last mark, as a fraction."""
    base = rss.get(base_min, rss[min(rss)])
    return (rss[max(rss)] - base) / base


def print_minutes(costs: list[tuple[float, float]], rss: dict[float, float]) -> None:
    print(f"{'minute':>6} {'median ms':>10} {'mean ms':>8} {'chunks':>6} {'RSS MB':>8}")
    for m, mb in rss.items():
        median, mean, n = minute_figures(costs, m - 1, m)
        print(f"{m:>6g} {median * 1e3:>10.2f} {mean * 1e3:>8.2f} {n:>6} {mb:>8.1f}")


# --- live: the demo's path on the wall clock ---------------------------------------------------

BLOCK_SAMPLES = seconds_to_samples(MIC_BLOCK_SECONDS)  # one pushed block, at 16 kHz


class Feeder:
    """Pushes audio blocks into `audio` on the wall clock, on a thread of its own: block k is pushed
    once it is due (`t0 + (k + 1) * block length`), as a microphone delivers it; the next block is
    synthesised while waiting. Takes the RSS when the stream reaches each of `marks` minutes (the
    marks it does not reach when the stream ends), and closes `audio` at the end."""

    def __init__(self, blocks: Iterable[AudioChunk], audio: PushedAudio, marks: Iterable[float]):
        self.blocks, self.audio = blocks, audio
        self.marks = sorted(marks)
        self.rss: dict[float, float] = {}
        self.max_late_s = 0.0  # the furthest behind its due time a block was pushed
        self.pushed_s = 0.0  # stream seconds pushed
        self.t0 = 0.0  # monotonic seconds at stream time 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-feeder", daemon=True)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread.start()

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error

    def now(self) -> float:
        """Wall seconds since the stream started."""
        return time.monotonic() - self.t0

    def _run(self) -> None:
        try:
            for block in self.blocks:
                self._mark(self.pushed_s)
                due = block.t_end
                time.sleep(max(0.0, due - self.now()))
                self.audio.push(block.samples, SAMPLE_RATE)
                self.max_late_s = max(self.max_late_s, self.now() - due)
                self.pushed_s = block.t_end
            self._mark(float("inf"))
        except BaseException as err:  # noqa: BLE001 - raised again in join
            self.error = err
        finally:
            self.audio.close()  # the demo's Stop: what was pushed goes through, then the answer

    def _mark(self, stream_s: float) -> None:
        while self.marks and stream_s >= self.marks[0] * SECONDS_PER_MINUTE:
            minute = self.marks.pop(0)
            self.rss[minute] = rss_mb()
            late = f"{self.max_late_s:.2f}"
            print(
                f"minute {minute:g}: RSS {self.rss[minute]:.1f} MB, pushed at most {late} s late",
                file=sys.stderr,
            )


@dataclass
class ChunkCosts:
    """The reasoner's wall seconds on each chunk, read from the events as they come: its chunk
    event (the prefill), the compaction it caused (a context event) and its unit (think or skip)."""

    work: dict[int, float] = field(default_factory=dict)  # chunk index -> seconds
    arrival: dict[int, float] = field(default_factory=dict)  # chunk index -> stream seconds

    def add(self, event: Event) -> None:
        if event.chunk_index is None or event.type not in ("chunk", "context", "think", "skip"):
            return
        i = event.chunk_index
        self.work[i] = self.work.get(i, 0.0) + (event.t_done - event.t_begin)
        if event.type == "chunk":
            self.arrival[i] = event.t_avail

    def costs(self) -> list[tuple[float, float]]:
        """(arrival, cost) of every chunk with text (empty chunks cost nothing and are left out)."""
        return [(self.arrival[i], c) for i, c in sorted(self.work.items()) if i in self.arrival and c > 0]


class WallLag:
    """An encoder, watched: for each chunk it commits, the wall seconds since the end of the audio
    the chunk covers (stream time is wall time since the feeder's start); `max_lag_s` the longest."""

    def __init__(self, encoder: Encoder, now: Callable[[], float]):
        self.encoder, self.now = encoder, now
        self.source, self.takes = encoder.source, encoder.takes
        self.max_lag_s = 0.0

    def new_stats(self):
        return self.encoder.new_stats()

    def __call__(self, records: Iterable[Record], stats=None) -> Iterator[TextChunk]:
        for chunk in self.encoder(records, stats):
            self.max_lag_s = max(self.max_lag_s, self.now() - chunk.t_end)
            yield chunk


@dataclass
class LiveFigures:
    """What a live run measured (see the module docstring)."""

    story: Story
    minutes: float  # stream minutes pushed
    costs: list[tuple[float, float]]  # (arrival, wall seconds of the reasoner's work on the chunk)
    rss: dict[float, float]  # MB when the stream reached each marked minute
    summary: dict | None  # the summary event's info; None when no answer came
    max_push_late_s: float
    max_asr_lag_s: float
    answer_wall_s: float  # wall seconds from the last block pushed to the end of the run

    @property
    def answered(self) -> bool:
        return self.summary is not None and self.summary.get("answer") not in (None, "")

    @property
    def correct(self) -> bool:
        return bool(self.summary and self.summary.get("correct"))


def live_models(model: str | None = None, context_tokens: int | None = None):
    """The pipeline's models as `adasr-av demo` loads them, the reasoner on the wall clock."""
    import os

    reasoner = ReasonerSection(model=model, clock="wall", context_tokens=context_tokens)
    whisper_threads = max(1, (os.cpu_count() or 1) - 1)  # as the demo: a core for the rest
    return RunConfig(reasoner=reasoner).pipeline_models("off", threads=whisper_threads)


def live_stream(
    minutes: float,
    seed: int = 0,
    update_every_s: float = 300.0,
    models=None,
    marks: Iterable[float] = MARKS_MIN,
) -> LiveFigures:
    """The story of `minutes` spoken and pushed on the wall clock through the full pipeline."""
    story = generate_long_story(seed, minutes, update_every_s)
    models = models or live_models()
    audio = PushedAudio()
    feeder = Feeder(
        spoken_blocks(story, BLOCK_SAMPLES), audio, [m for m in marks if m <= minutes] or [minutes]
    )
    encoders = [WallLag(encoder, feeder.now) for encoder in models.encoders]
    run = PipelineRun(PipelineModels(models.reasoner, encoders, models.lock), audio, "", str(story.answer))
    costs = ChunkCosts()
    feeder.start()
    for event in run:
        costs.add(event)
    t_done = feeder.now()
    feeder.join()
    return LiveFigures(
        story=story,
        minutes=feeder.pushed_s / SECONDS_PER_MINUTE,
        costs=costs.costs(),
        rss=feeder.rss,
        summary=run.summary.info if run.summary else None,
        max_push_late_s=feeder.max_late_s,
        max_asr_lag_s=max(encoder.max_lag_s for encoder in encoders),
        answer_wall_s=t_done - feeder.pushed_s,
    )


def report_live(figures: LiveFigures) -> None:
    print_minutes(figures.costs, figures.rss)
    summary = figures.summary or {}
    print(
        f"answer {summary.get('answer')} (reference {figures.story.answer}); "
        f"{summary.get('compactions')} compactions, {summary.get('chunks_dropped')} chunks dropped, "
        f"{summary.get('skips')} skips; {len(figures.costs)} chunks; reasoner lag at most "
        f"{summary.get('max_lag_s')} s; answer latency {summary.get('answer_latency_s')} s (wall clock), "
        f"the run over {figures.answer_wall_s:.2f} s after the last block"
    )
    print(
        f"RESULT live=1 minutes={figures.minutes:.2f} rss_growth_10_60={rss_growth(figures.rss):.4f} "
        f"late_vs_early={late_vs_early(figures.costs, max(figures.rss)):.3f} answered={figures.answered} "
        f"correct={figures.correct} max_push_late_s={figures.max_push_late_s:.3f} "
        f"max_asr_lag_s={figures.max_asr_lag_s:.2f}"
    )


# --- text and --audio: the reasoner alone, as fast as it goes ----------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, help="stream length (default: 60, or 20 with --audio)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-every", type=float, default=300.0, help="seconds of speech between updates")
    parser.add_argument("--audio", action="store_true", help="speak the story and stream it through Whisper")
    parser.add_argument(
        "--live", action="store_true", help="push the spoken story in real time through the demo's pipeline"
    )
    parser.add_argument("--model", default=str(default_model()))
    parser.add_argument("--context-tokens", type=int)
    args = parser.parse_args()
    if args.live:
        models = live_models(args.model, args.context_tokens)
        print(f"live: {args.minutes or 60.0:g} minutes on the wall clock; budget {models.reasoner.policy}")
        report_live(live_stream(args.minutes or 60.0, args.seed, args.update_every, models))
        return
    minutes = args.minutes or (20.0 if args.audio else 60.0)

    story = generate_long_story(args.seed, minutes, args.update_every)
    model, tokenizer = load_reasoner_model(args.model)
    reasoner = StreamingReasoner(
        model, tokenizer, ReasonerOptions(context_tokens=args.context_tokens), WallClock()
    )
    print(f"{story.id}: {len(story.sentences)} sentences, answer {story.answer}; budget {reasoner.policy}")
    chunks = audio_chunks(story) if args.audio else text_chunks(story)

    costs: list[tuple[float, float]] = []  # (arrival, CPU seconds of the reasoner's work on it)
    rss: dict[int, float] = {}
    marks = [m for m in MARKS_MIN if m <= minutes] or [minutes]
    t_end = 0.0
    reasoner.start("", str(story.answer))
    for chunk in tqdm(chunks, desc="chunks", unit="chunk", mininterval=5):
        while marks and chunk.t_emit > marks[0] * SECONDS_PER_MINUTE:
            rss[marks.pop(0)] = rss_mb()
        t0 = time.process_time()
        reasoner.feed(chunk)
        costs.append((chunk.t_emit, time.process_time() - t0))
        t_end = max(t_end, chunk.t_end)
    for m in marks:
        rss[m] = rss_mb()
    summary = reasoner.finish(t_end)[-1].info
    if not args.audio:
        right, n, carried = updates_right(story, reasoner.events)
        print(f"updates the model wrote right: {right} of {n}; answer is its own last state: {carried}")

    print_minutes(costs, rss)
    print(
        f"answer {summary['answer']} (reference {story.answer}); {summary['compactions']} compactions, "
        f"{summary['chunks_dropped']} chunks dropped, {summary['skips']} skips, "
        f"answer latency {summary['answer_latency_s']:.2f} s ({summary['clock']} clock)"
    )
    print(
        f"RESULT late_vs_early={late_vs_early(costs, max(rss)):.3f} rss_growth_10_60={rss_growth(rss):.4f} "
        f"compactions={summary['compactions']} correct={summary['correct']}"
    )


if __name__ == "__main__":
    main()
