"""Word error rate of streaming ASR option variants on the ASR benchmark's stories (valid split).

    python benchmarks/asr_variants.py default ctx10 fin30 ...

Each variant streams the same synthesised stories (`asr_stream.py`'s, raw samples, no media
codec) computation-unaware, so decodes fall at fixed points of the audio and the figures do not
depend on the machine. Variants: default, ctx4, ctx10, ctx15 (`context_seconds`), pause08
(`vad.min_silence_s` 0.8), noprompt (`prompt_chars` 0).

Last line: RESULT <variant>=<WER> ...
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import jiwer
from whisper.normalizers import EnglishTextNormalizer

sys.path.insert(0, str(Path(__file__).parent))
from asr_stream import speak, voices  # noqa: E402

from adasr_av.encoders.streaming_asr import StreamingASROptions, transcribe_stream  # noqa: E402
from adasr_av.encoders.vad import VADOptions  # noqa: E402
from adasr_av.encoders.whisper_backends import load_backend  # noqa: E402
from adasr_av.types import AudioChunk  # noqa: E402

VARIANTS = {
    "default": {},
    "ctx4": {"context_seconds": 4.0},
    "ctx10": {"context_seconds": 10.0},
    "ctx15": {"context_seconds": 15.0},
    "pause08": {"vad": VADOptions(min_silence_s=0.8)},
    "noprompt": {"prompt_chars": 0},
}


def main() -> None:
    names = sys.argv[1:] or ["default"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r} (choose from {', '.join(VARIANTS)})")
    normalise, backend, rng, voice_list = EnglishTextNormalizer(), load_backend(), random.Random(0), voices()
    stories = [speak(i, rng, voice_list) for i in range(10)]  # asr_stream.py's 3 minutes
    results = {}
    for name in names:
        refs, hyps = [], []
        for story in stories:
            a = story.audio
            chunks = [AudioChunk(a[k : k + 1600], k / 16000, min(len(a), k + 1600) / 16000)
                      for k in range(0, len(a), 1600)]  # fmt: skip
            options = StreamingASROptions(computation_aware=False, **VARIANTS[name])
            hyps.append(normalise(" ".join(c.text for c in transcribe_stream(chunks, backend, options))))
            refs.append(normalise(story.text))
        results[name] = jiwer.wer(refs, hyps)
        words = sum(len(r.split()) for r in refs)
        print(f"{name}: WER {results[name]:.3f} over {words} reference words", flush=True)
    print("RESULT " + " ".join(f"{name}={wer:.3f}" for name, wer in results.items()))


if __name__ == "__main__":
    main()
