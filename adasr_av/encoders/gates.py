"""Gates against invented text: what of a decode the streaming ASR believes was said.

Whisper writes text where there is none: "Thank you." in silence, and on a short window it loops,
repeating a word or a whole sentence until its token limit. Voice activity detection keeps silence
from being decoded at all; these gates catch the rest, on each decode's new words:

- no speech: Whisper's own rule, no-speech probability above a threshold with a low average
  log-probability, hears nothing;
- loops: from the first place where a block of words repeats at once (four words or more twice,
  shorter blocks three times in a row), the rest is dropped; a text that still compresses like a
  loop (gzip ratio above Whisper's 2.4) hears nothing;
- echoes: an unfinished fragment after the last sentence end that begins with four words said
  earlier in the decode (its prefix included) is dropped: at a stream's end Whisper writes the
  context's words again ("... together now? Adam has 71 cookies", the last words of a sentence
  spoken before the question). Said for real, it comes back once its sentence ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from faster_whisper.transcribe import get_compression_ratio

from adasr_av.encoders.asr_options import StreamingASROptions
from adasr_av.encoders.local_agreement import ends_sentence, word_key
from adasr_av.encoders.whisper_backends import Decoding

LONG_BLOCK = 4  # a block of this many words repeated once is a loop
MAX_BLOCK = 12
ECHO_WORDS = 4


def loop_start(words: Sequence[str], first: int = 0) -> int | None:
    """Index of the first repeat of a looping block of words that runs past index `first` (not
    before `first`); None: no loop. A decode's loop may begin in its forced prefix (the words
    already committed: "Ruby lives 47 kilometres from the city." committed, then written again)."""
    keys = [word_key(w) for w in words]
    n = len(keys)
    for i in range(n):
        for size in range(1, min(MAX_BLOCK, (n - i) // 2) + 1):
            block = keys[i : i + size]
            times = 1
            while keys[i + times * size : i + (times + 1) * size] == block:
                times += 1
            if times >= (2 if size >= LONG_BLOCK else 3) and any(block) and i + times * size > first:
                return max(i + size, first)
    return None


def echo_start(words: Sequence[str], first: int = 0) -> int | None:
    """Index of an echo among the words from index `first` (see the module doc); None: no echo."""
    ends = [i for i in range(first, len(words)) if ends_sentence(words[i])]
    start = ends[-1] + 1 if ends else first
    keys = [word_key(w) for w in words]
    head = keys[start : start + ECHO_WORDS]
    if len(head) < ECHO_WORDS:
        return None
    repeats = any(keys[i : i + ECHO_WORDS] == head for i in range(start - ECHO_WORDS + 1))
    return start if repeats else None


def heard_words(decoding: Decoding, options: StreamingASROptions) -> tuple[str, ...]:
    """The new words of `decoding` that pass the gates (possibly none)."""
    if (
        decoding.no_speech_prob > options.no_speech_threshold
        and decoding.avg_logprob < options.logprob_threshold
    ):
        return ()
    cut = loop_start(decoding.words, decoding.prefix_words)
    kept = decoding.words[:cut]
    echo = echo_start(kept, decoding.prefix_words)
    words = kept[decoding.prefix_words : echo]
    if get_compression_ratio("".join(words).strip()) > options.compression_ratio_threshold:
        return ()
    return tuple(words)
