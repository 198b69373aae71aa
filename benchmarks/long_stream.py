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
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import Story, generate_long_story
from adasr_av.data.streamed import text_record
from adasr_av.data.tts import synthesize
from adasr_av.encoders.streaming_asr import StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.media.audio import Chunker, seconds_to_samples
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.session import ReasonerOptions, StreamingReasoner
from adasr_av.timing import SECONDS_PER_MINUTE, WallClock
from adasr_av.types import AudioChunk, Event, TextChunk

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


def spoken_blocks(story: Story) -> Iterator[AudioChunk]:
    """The story spoken by eSpeak (en-us, 150 wpm) sentence by sentence, as the audio blocks a
    live source would deliver: only the sentence being spoken is in memory."""
    chunker = Chunker()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, help="stream length (default: 60, or 20 with --audio)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-every", type=float, default=300.0, help="seconds of speech between updates")
    parser.add_argument("--audio", action="store_true", help="speak the story and stream it through Whisper")
    parser.add_argument("--model", default=str(default_model()))
    parser.add_argument("--context-tokens", type=int)
    args = parser.parse_args()
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

    print(f"{'minute':>6} {'median ms':>10} {'mean ms':>8} {'chunks':>6} {'RSS MB':>8}")
    for m, mb in rss.items():
        median, mean, n = minute_figures(costs, m - 1, m)
        print(f"{m:>6} {median * 1e3:>10.2f} {mean * 1e3:>8.2f} {n:>6} {mb:>8.1f}")
    last = max(rss)
    window = min(10.0, last / 3)  # minutes; per-chunk CPU times on a shared machine vary by 30 %
    early = minute_figures(costs, 1, 1 + window)[0]
    late = minute_figures(costs, last - window, last)[0]
    base = rss.get(10, rss[min(rss)])
    growth = (rss[last] - base) / base
    print(
        f"answer {summary['answer']} (reference {story.answer}); {summary['compactions']} compactions, "
        f"{summary['chunks_dropped']} chunks dropped, {summary['skips']} skips, "
        f"answer latency {summary['answer_latency_s']:.2f} s ({summary['clock']} clock)"
    )
    print(
        f"RESULT late_vs_early={late / early:.3f} rss_growth_10_60={growth:.4f} "
        f"compactions={summary['compactions']} correct={summary['correct']}"
    )


if __name__ == "__main__":
    main()
