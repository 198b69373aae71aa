"""The rolling-buffer policy (whisper_streaming's, and this project's before the VAD policy): one
buffer of everything heard re-decoded whole on every step, LocalAgreement-2 commits, the buffer cut
at a committed sentence once it passes `trim_seconds`. No voice activity detection: silence is
decoded like speech. Kept as the baseline the benchmark's `--compare naive` runs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from adasr_av.encoders.asr_options import ASRCosts, Metered, StreamingASROptions
from adasr_av.encoders.gates import heard_words
from adasr_av.encoders.local_agreement import HypothesisBuffer, ends_sentence, last_chars
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.media.audio import SAMPLE_RATE, samples_to_seconds, seconds_to_samples
from adasr_av.types import AudioChunk, Word


class RollingASR:
    """A rolling buffer of audio, re-transcribed on every step; commits what two steps agree on."""

    def __init__(self, backend: WhisperBackend, options: StreamingASROptions, costs: ASRCosts):
        self.whisper, self.options = Metered(backend, costs), options
        self.audio = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0  # stream time of audio[0]
        self.hypothesis = HypothesisBuffer()  # also holds the committed words still in the buffer
        self.text_before = ""  # the last `prompt_chars` of committed text that has left the buffer
        self.unprocessed_s = 0.0
        self.steps = 0
        self._started = False

    @property
    def buffer_end(self) -> float:
        return self.buffer_start + samples_to_seconds(len(self.audio))

    def restart(self, t: float) -> None:
        """Start the buffer at stream time `t` (after a reconnect, once `finish` has committed
        what came before)."""
        self.audio, self.buffer_start = np.zeros(0, dtype=np.float32), t
        self._forget_before(t)

    def insert_audio(self, chunk: AudioChunk) -> None:
        """Append a chunk; a hole before it is filled with silence."""
        if not self._started:
            self.buffer_start, self._started = chunk.t_start, True
        gap = chunk.t_start - self.buffer_end
        if gap > 1 / SAMPLE_RATE:
            self.audio = np.concatenate([self.audio, np.zeros(seconds_to_samples(gap), dtype=np.float32)])
        self.audio = np.concatenate([self.audio, chunk.samples])
        self.unprocessed_s += chunk.t_end - chunk.t_start

    def ready(self) -> bool:
        first = self.options.first_step_seconds if self.steps == 0 else 0.0
        return self.unprocessed_s >= max(self.options.min_step_seconds, first)

    def process_iter(self) -> list[Word]:
        """Transcribe the buffer; return the newly committed words (stream time)."""
        encoded = self.whisper.encode(self.audio, self.options.min_window_seconds)
        decoding = self.whisper.decode(encoded, self._prompt(), "", 224)
        heard = heard_words(decoding, self.options)
        decoding = replace(decoding, words=heard, tokens=decoding.tokens[: len(heard)])
        timed = self.whisper.align(encoded, decoding) if heard else []
        offset = self.buffer_start
        words = [Word(w.text, w.t_start + offset, w.t_end + offset, w.probability) for w in timed]
        new = self.hypothesis.insert(words)
        self.unprocessed_s, self.steps = 0.0, self.steps + 1
        self._trim()
        return new

    def finish(self) -> list[Word]:
        """The stream ended: decode the audio no step has seen, then commit the words heard but
        not yet agreed on."""
        new = self.process_iter() if self.unprocessed_s > 0 else []
        return new + self.hypothesis.flush()

    def pending(self) -> tuple[float, float] | None:
        """The stream span of the audio held and not yet committed (None when none is)."""
        start = max(self.buffer_start, self.hypothesis.last_committed_end)
        return (start, self.buffer_end) if self.buffer_end > start else None

    def drop(self) -> tuple[float, float] | None:
        """A step's decode failed: forget the buffer's audio and the words not yet agreed on;
        returns the span of audio lost."""
        lost = self.pending()
        self.hypothesis.drop_pending()
        self._cut(self.buffer_end)
        self.unprocessed_s = 0.0
        return lost

    def quiet(self) -> bool:
        """No voice activity detection: never known to be quiet."""
        return False

    def _prompt(self) -> str:
        """The last `prompt_chars` of committed text before the buffer: the text that left it, then
        any committed word still in the buffer that ends at its very start (a zero-length word)."""
        edge = "".join(w.text for w in self.hypothesis.committed if w.t_end <= self.buffer_start)
        return last_chars(self.text_before + edge, self.options.prompt_chars).strip()

    def _forget_before(self, t: float) -> None:
        """Committed words before `t` leave the buffer; of their text, only what a prompt needs stays."""
        gone = "".join(w.text for w in self.hypothesis.forget_before(t))
        self.text_before = last_chars(self.text_before + gone, self.options.prompt_chars)

    def _trim(self) -> None:
        """Keep the buffer short: cut at the last committed sentence end once it is longer than
        `trim_seconds`, and at the last committed word if it would pass the maximum."""
        if not self.hypothesis.committed:
            if self.buffer_end - self.buffer_start > self.options.max_buffer_seconds:
                self._cut(self.buffer_end - self.options.max_buffer_seconds)
            return
        last = self.hypothesis.last_committed_end
        if self.buffer_end - self.buffer_start > self.options.trim_seconds:
            cuts = [
                w.t_end
                for w in self.hypothesis.committed
                if ends_sentence(w.text) and self.buffer_start < w.t_end <= last
            ]
            if cuts:
                self._cut(max(cuts))
        if (
            self.buffer_end - self.buffer_start
            > self.options.max_buffer_seconds - self.options.min_step_seconds
        ):
            self._cut(
                max(last, self.buffer_end - self.options.max_buffer_seconds + self.options.min_step_seconds)
            )

    def _cut(self, t: float) -> None:
        drop = min(len(self.audio), seconds_to_samples(t - self.buffer_start))
        self.audio = self.audio[drop:]
        self.buffer_start += samples_to_seconds(drop)
        self._forget_before(self.buffer_start)
