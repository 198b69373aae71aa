"""Streaming Whisper against offline Whisper on synthesised speech with natural pauses.

Speaks the project's stories (several eSpeak voices and the Piper neural voice when installed, at
130-190 words per minute), one sentence at a time with pauses of 0.3-1.5 s between sentences and
1.5 s of silence before and after, writes each story as a media file, streams it through the
streaming ASR computation-aware (as if it arrived in real time; each step's compute delays its
words; `--unaware`: stream time stops while Whisper runs, so decodes fall at fixed points of the
audio and the transcript does not depend on the machine), and transcribes the same audio offline
in one call.

    python benchmarks/asr_stream.py [--minutes 3] [--step 1.0] [--model M] [--compare naive]
                                    [--asr-compute-type int8]
    python benchmarks/asr_stream.py --long-minutes 30   # one stream: is the per-step cost flat?

- word commit latency: a word's commit time minus its end, stream seconds; chunk latency: a
  chunk's emit time minus its last word's end (what the reasoner waits);
- real-time factor: compute seconds (VAD, encoder, decoder, alignment) per second of audio, with
  where they went;
- WER through Whisper's English normaliser ("forty" = "40"), streaming and offline;
- words in silence: committed words lying wholly in a known silence (no sentence within 0.3 s);
- `--compare naive`: the rolling-buffer policy (whisper_streaming's, this project's before) on the
  same audio in the same run; the ratios compare the two.

Last line: RESULT latency_p50_s=.. latency_p90_s=.. rtf=.. wer_stream=.. wer_offline=.. silence_words=..
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.data.stories import generate_story
from adasr_av.data.tts import synthesize, write_audio
from adasr_av.encoders.streaming_asr import ASRStats, StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import load_backend
from adasr_av.media.audio import SAMPLE_RATE, seconds_to_samples
from adasr_av.media.file import read_audio
from adasr_av.types import AudioChunk, TextChunk

ESPEAK_VOICES = ("en-us", "en-us+f3", "en+m7", "en-gb-x-rp")
LEAD_S = 1.5  # silence before the first and after the last sentence
PAUSE_RANGE_S = (0.3, 1.5)  # between sentences
SILENCE_MARGIN_S = 0.3  # a committed word this far from every sentence is in silence


def voices() -> tuple[str, ...]:
    try:
        from adasr_av.data.tts import PIPER_VOICE

        synthesize("Test.", PIPER_VOICE, 160)
        return (*ESPEAK_VOICES, PIPER_VOICE)
    except Exception as err:  # Piper not installed: eSpeak only, and say so
        print(f"no Piper voice ({err}); eSpeak voices only")
        return ESPEAK_VOICES


@dataclass
class Spoken:
    text: str
    voice: str
    wpm: int
    audio: np.ndarray
    spans: list[tuple[float, float]]  # where each sentence is


def speak(index: int, rng: random.Random, voice_list: tuple[str, ...]) -> Spoken:
    story = generate_story(1013, "valid", index)  # a seed of its own: not the reasoner's data
    voice, wpm = voice_list[index % len(voice_list)], rng.choice([130, 150, 170, 190])
    parts, spans, t = [np.zeros(seconds_to_samples(LEAD_S), np.float32)], [], LEAD_S
    for i, sentence in enumerate(story.sentences):
        if i:
            pause = np.zeros(seconds_to_samples(rng.uniform(*PAUSE_RANGE_S)), np.float32)
            parts.append(pause)
            t += len(pause) / SAMPLE_RATE
        speech = synthesize(sentence.text, voice, wpm)
        spans.append((t, t + len(speech) / SAMPLE_RATE))
        parts.append(speech)
        t += len(speech) / SAMPLE_RATE
    parts.append(np.zeros(seconds_to_samples(LEAD_S), np.float32))
    return Spoken(story.text, voice, wpm, np.concatenate(parts), spans)


@dataclass
class Run:
    """One policy's results over all the files."""

    name: str
    stats: ASRStats = field(default_factory=ASRStats)
    hypotheses: list[str] = field(default_factory=list)
    word_latencies: list[float] = field(default_factory=list)
    chunk_latencies: list[float] = field(default_factory=list)
    silence_words: list[str] = field(default_factory=list)

    def add(self, chunks: list[TextChunk], spoken: Spoken) -> None:
        self.hypotheses.append(" ".join(c.text for c in chunks))
        for chunk in chunks:
            self.chunk_latencies.append(chunk.t_emit - chunk.words[-1].t_end)
            self.word_latencies += [w.t_commit - w.t_end for w in chunk.words]
            self.silence_words += [
                w.text
                for w in chunk.words
                if all(
                    w.t_end < a - SILENCE_MARGIN_S or w.t_start > b + SILENCE_MARGIN_S
                    for a, b in spoken.spans
                )
            ]

    def report(self, refs: list[str], normalise) -> dict[str, float]:
        costs, audio = self.stats.costs, self.stats.audio_s
        p50, p90 = np.percentile(self.word_latencies, [50, 90])
        c50, c90 = np.percentile(self.chunk_latencies, [50, 90])
        wer = jiwer.wer(refs, [normalise(h) for h in self.hypotheses])
        name, words, chunks = self.name, len(self.word_latencies), len(self.chunk_latencies)
        print(f"[{name}] {words} words in {chunks} chunks, {self.stats.steps} steps")
        print(f"[{name}] word commit latency p50 {p50:.2f} s p90 {p90:.2f} s; "
              f"chunk latency p50 {c50:.2f} s p90 {c90:.2f} s")  # fmt: skip
        ms = {k: getattr(costs, k) / audio * 1000 for k in ("vad_s", "encode_s", "decode_s", "align_s")}
        window = costs.encoded_audio_s / max(costs.encodes, 1)
        print(f"[{name}] RTF {self.stats.real_time_factor:.3f}: per audio second VAD {ms['vad_s']:.1f} ms, "
              f"encoder {ms['encode_s']:.1f} ms ({costs.encodes} encodes of {window:.1f} s), "
              f"decoder {ms['decode_s']:.1f} ms ({costs.decoded_tokens} tokens), "
              f"alignment {ms['align_s']:.1f} ms")  # fmt: skip
        print(
            f"[{name}] WER {wer:.3f}; words in silence {len(self.silence_words)} "
            f"{self.silence_words[:10]}; gated decodes {costs.gated}"
        )
        return {
            "p50": p50,
            "p90": p90,
            "rtf": self.stats.real_time_factor,
            "wer": wer,
            "silence": len(self.silence_words),
        }


def stream(path: Path, backend, options: StreamingASROptions, stats: ASRStats) -> list[TextChunk]:
    return list(transcribe_stream(read_audio(path), backend, options, stats))


def long_stream(spoken: list[Spoken], minutes: float, backend, options: StreamingASROptions) -> None:
    """One stream of `minutes`, the stories over and over; by minute, the compute per audio second
    and the work behind it (encoder audio seconds, decoded tokens), which does not depend on how
    fast the machine is at the time."""
    stats = ASRStats()
    per_minute: list[tuple[float, float, int]] = []  # compute s, encoded audio s, decoded tokens
    total = minutes * 60

    def totals() -> tuple[float, float, int]:
        return stats.compute_s, stats.costs.encoded_audio_s, stats.costs.decoded_tokens

    def audio():
        t, i, mark, at_mark = 0.0, 0, 60.0, totals()
        while t < total:
            samples = spoken[i % len(spoken)].audio
            i += 1
            for k in range(0, len(samples), 1600):
                piece = samples[k : k + 1600]
                yield AudioChunk(piece, t, t + len(piece) / SAMPLE_RATE)
                t += len(piece) / SAMPLE_RATE
                if t >= mark:
                    now = totals()
                    per_minute.append(tuple(x - y for x, y in zip(now, at_mark, strict=True)))
                    at_mark, mark = now, mark + 60
                if t >= total:
                    return

    started = time.perf_counter()
    words = sum(len(c.words) for c in transcribe_stream(audio(), backend, options, stats))
    rtf = [c / 60 for c, _, _ in per_minute]
    first, last = np.mean(rtf[:5]), np.mean(rtf[-5:])
    work_first = np.mean([e for _, e, _ in per_minute[:5]]), np.mean([n for _, _, n in per_minute[:5]])
    work_last = np.mean([e for _, e, _ in per_minute[-5:]]), np.mean([n for _, _, n in per_minute[-5:]])
    print(
        f"{minutes:g} min stream: {words} words, {stats.steps} steps "
        f"in {time.perf_counter() - started:.0f} s wall"
    )
    print("compute per audio second, by minute: " + " ".join(f"{x:.3f}" for x in rtf))
    print("encoder audio seconds, by minute: " + " ".join(f"{e:.0f}" for _, e, _ in per_minute))
    print("decoded tokens, by minute: " + " ".join(str(n) for _, _, n in per_minute))
    print(f"RESULT minutes={minutes:g} rtf={stats.real_time_factor:.3f} rtf_first5={first:.3f} "
          f"rtf_last5={last:.3f} last_vs_first={last / first:.3f} "
          f"encoded_last_vs_first={work_last[0] / work_first[0]:.3f} "
          f"tokens_last_vs_first={work_last[1] / work_first[1]:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="speech to generate (at least)")
    parser.add_argument("--step", type=float, default=StreamingASROptions.min_step_seconds)
    parser.add_argument("--model", help="Whisper model (default: the bundled tiny.en)")
    parser.add_argument("--compare", choices=["naive"], help="also run the rolling-buffer baseline")
    parser.add_argument("--long-minutes", type=float, help="instead: one stream this long, cost by minute")
    parser.add_argument("--prompt-chars", type=int, default=StreamingASROptions.prompt_chars)
    parser.add_argument("--beam", type=int, default=5, help="beam size (faster-whisper)")
    parser.add_argument(
        "--unaware",
        action="store_true",
        help="stream time stops while Whisper runs (decodes at fixed points)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--asr-compute-type",
        default=None,
        help="faster-whisper weights (default: float32 on the CPU, as run)",
    )
    args = parser.parse_args()

    rng = random.Random(args.seed)
    backend = load_backend(model=args.model, compute_type=args.asr_compute_type)
    backend.beam_size = args.beam
    voice_list = voices()
    spoken: list[Spoken] = []
    speech_s = 0.0
    while speech_s < args.minutes * 60:
        spoken.append(speak(len(spoken), rng, voice_list))
        speech_s += sum(b - a for a, b in spoken[-1].spans)
    aware = not args.unaware
    options = StreamingASROptions(
        min_step_seconds=args.step, prompt_chars=args.prompt_chars, computation_aware=aware
    )
    if args.long_minutes:
        long_stream(spoken, args.long_minutes, backend, options)
        return
    normalise = EnglishTextNormalizer()
    runs = [
        Run(
            "vad",
        ),
        *([Run("naive")] if args.compare else []),
    ]
    policies = {
        "vad": options,
        "naive": StreamingASROptions.rolling(min_step_seconds=args.step, computation_aware=aware),
    }
    refs, offline = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, item in enumerate(spoken):
            path = write_audio(Path(tmp) / f"speech{i}.{['wav', 'mp3', 'ogg'][i % 3]}", item.audio)
            refs.append(normalise(item.text))
            for run in runs:
                run.add(stream(path, backend, policies[run.name], run.stats), item)
            heard = np.concatenate([c.samples for c in read_audio(path)])  # as decoded from the file
            offline.append(normalise("".join(w.text for w in backend.transcribe(heard).words)))
            print(
                f"{i:3d} {item.voice:<12} {item.wpm} wpm {len(item.audio) / SAMPLE_RATE:5.1f}s  "
                f"{runs[0].hypotheses[-1][:70]}",
                flush=True,
            )
    total = sum(len(s.audio) for s in spoken) / SAMPLE_RATE
    print(
        f"audio: {total:.1f} s in {len(spoken)} files ({speech_s:.1f} s of speech), "
        f"voices {', '.join(voice_list)}"
    )
    wer_offline = jiwer.wer(refs, offline)
    print(f"offline WER (one call per file, same model): {wer_offline:.3f}")
    result = runs[0].report(refs, normalise)
    extra = ""
    if args.compare:
        naive = runs[1].report(refs, normalise)
        extra = (f" naive_p50_s={naive['p50']:.2f} naive_rtf={naive['rtf']:.3f} naive_wer={naive['wer']:.3f} "
                 f"latency_gain={naive['p50'] / result['p50']:.2f} "
                 f"rtf_gain={naive['rtf'] / result['rtf']:.2f}")  # fmt: skip
    print(f"RESULT latency_p50_s={result['p50']:.2f} latency_p90_s={result['p90']:.2f} "
          f"rtf={result['rtf']:.3f} wer_stream={result['wer']:.3f} wer_offline={wer_offline:.3f} "
          f"silence_words={result['silence']}{extra}")  # fmt: skip


if __name__ == "__main__":
    main()
