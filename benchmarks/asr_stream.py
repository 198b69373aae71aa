"""Streaming Whisper against offline Whisper on synthesised speech.

Speaks spoken-style arithmetic sentences with eSpeak NG (several voices and rates, at least three
minutes in all), writes them as media files, streams each file through the project's streaming
ASR as if it arrived in real time, and transcribes the same audio offline in one call.

    python benchmarks/asr_stream.py [--minutes 3] [--step 1.0] [--backend faster-whisper] [--model M]

Word error rates go through Whisper's English normaliser ("forty" = "40"). Commit latency is
`t_emit` of the chunk holding a word minus the word's end (stream seconds); the word-level figure
(when LocalAgreement committed the word itself) is printed too, and the step lag (a step's emit
time minus the arrival of its last audio: its compute) from `ASRStats`' running histogram (quantiles
to 5 ms). Real-time factor: Whisper compute seconds per second of audio.

Last line: RESULT wer_stream=.. wer_offline=.. latency_p50_s=.. latency_p90_s=.. rtf=..
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import jiwer
import numpy as np
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.data.tts import VOICES, synthesize, write_audio
from adasr_av.encoders.streaming_asr import ASRStats, StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import FasterWhisperBackend, load_backend
from adasr_av.media.file import read_audio

NAMES = ["Maria", "Tom", "Anna", "David", "Sarah", "Peter", "Lucy", "Leo"]
THINGS = ["apples", "books", "loaves of bread", "tickets", "eggs", "pencils", "coins", "boxes"]
ACTIONS = [
    "{who} has {a} {what}.",
    "{who} buys {b} more {what} at the market.",
    "Then {who} gives {c} {what} to a friend.",
    "The weather is sunny and warm today.",
    "In the afternoon {who} sells {b} of them.",
    "Each box holds {c} {what}, and there are {d} boxes.",
    "How many {what} are left at the end of the day?",
]


def paragraph(rng: random.Random) -> str:
    who, what = rng.choice(NAMES), rng.choice(THINGS)
    numbers = {k: rng.randint(2, 60) for k in "abcd"}
    lines = rng.sample(ACTIONS[:-1], 4) + [ACTIONS[-1]]
    return " ".join(line.format(who=who, what=what, **numbers) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="total speech to generate")
    parser.add_argument("--step", type=float, default=1.0, help="seconds of new audio per Whisper step")
    parser.add_argument(
        "--trim", type=float, default=StreamingASROptions.trim_seconds, help="buffer seconds before a cut"
    )
    parser.add_argument("--backend", default="faster-whisper")
    parser.add_argument("--model", help="Whisper model (default: the bundled tiny.en)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    streaming = load_backend(args.backend, args.model)
    offline = (
        FasterWhisperBackend(args.model, window_margin_s=None)
        if args.backend == "faster-whisper"
        else streaming
    )
    normalise = EnglishTextNormalizer()
    refs, hyps_stream, hyps_offline, latencies, word_latencies = [], [], [], [], []
    stats = ASRStats()
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        i = 0
        while total < args.minutes * 60:
            text = paragraph(rng)
            voice, wpm = VOICES[i % len(VOICES)], rng.choice([130, 150, 170, 190])
            audio = synthesize(text, voice, wpm)
            path = write_audio(Path(tmp) / f"speech{i}.{['wav', 'mp3', 'ogg'][i % 3]}", audio)
            total += len(audio) / 16000
            chunks = list(
                transcribe_stream(
                    read_audio(path), streaming, StreamingASROptions(min_step_seconds=args.step), stats
                )
            )
            for chunk in chunks:
                latencies += [chunk.t_emit - w.t_end for w in chunk.words]
                word_latencies += [w.t_commit - w.t_end for w in chunk.words if w.t_commit is not None]
            offline_words = offline.transcribe(audio).words
            refs.append(normalise(text))
            hyps_stream.append(normalise(" ".join(c.text for c in chunks)))
            hyps_offline.append(normalise("".join(w.text for w in offline_words)))
            said = " ".join(c.text for c in chunks)
            print(f"{i:3d} {voice:<18} {wpm} wpm {len(audio) / 16000:5.1f}s  {said[:80]}", flush=True)
            i += 1
    wer_stream, wer_offline = jiwer.wer(refs, hyps_stream), jiwer.wer(refs, hyps_offline)
    p50, p90 = np.percentile(latencies, [50, 90])
    w50, w90 = np.percentile(word_latencies, [50, 90])
    print(f"audio: {total:.1f}s in {i} files; {stats.steps} Whisper steps, one per {args.step}s of new audio")
    print(f"word-level commit latency (LocalAgreement): p50 {w50:.2f}s p90 {w90:.2f}s")
    lags = stats.lags_s
    print(f"step lag: p50 {lags.quantile(0.5):.2f}s p90 {lags.quantile(0.9):.2f}s max {lags.max_s:.2f}s")
    print(f"max wait for a step: {stats.max_lag_s:.2f}s")
    print(f"RESULT wer_stream={wer_stream:.3f} wer_offline={wer_offline:.3f} latency_p50_s={p50:.2f} "
          f"latency_p90_s={p90:.2f} rtf={stats.real_time_factor:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
