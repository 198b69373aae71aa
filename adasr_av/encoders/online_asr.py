"""The VAD policy: buffers bounded by speech, decoded after a prefix of their committed words.

- Silero VAD decides where speech is. Audio in silence is never decoded; an utterance buffer opens
  where speech starts (with `speech_pad_s` of the audio before it) and closes at a pause
  (`min_silence_s` without speech), where it is decoded once more and all its words are committed:
  a sentence is out about half a second after its speaker stops.
- While an utterance lasts, it is decoded every `min_step_seconds` of new audio. Its committed words
  are the decoder's forced prefix (read in one pass), so each decode writes only the words not yet
  committed; LocalAgreement-2 commits the words two decodes in a row agree on, but for the last
  of them, whose punctuation waits for a decode that heard the word after it (a sentence end
  there ends the reasoner's chunk); only then are word times computed (alignment).
- The encoder sees the utterance after up to `context_seconds` of the utterances before it (their
  pauses cut to `CONTEXT_GAP_S`; their committed text joins the forced prefix), padded with silence
  to `min_window_seconds` (not Whisper's 30 s). tiny.en on eSpeak stories: each sentence decoded
  alone had WER 0.33, the same sentences in one file 0.12; the context buys most of that back for
  an encoder pass over a few more seconds, as the decoder does not write it again.
  An utterance longer than `trim_seconds` is cut at its last committed word, whose text becomes part
  of the prompt; `max_buffer_seconds` of speech with nothing agreed is decoded and committed whole.
- Every decode passes the gates of `gates.py`; words that start after the end of speech are
  dropped. Speech the stream cut off gets half a second of silence after it before its last decode.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from adasr_av.encoders.asr_options import ASRCosts, Metered, StreamingASROptions
from adasr_av.encoders.gates import heard_words
from adasr_av.encoders.local_agreement import PrefixAgreement, ends_sentence, last_chars
from adasr_av.encoders.vad import SpeechGate, StreamingVAD
from adasr_av.encoders.whisper_backends import WhisperBackend
from adasr_av.media.audio import SAMPLE_RATE, samples_to_seconds, seconds_to_samples
from adasr_av.types import AudioChunk, Word

CONTEXT_GAP_S = 0.2  # silence between the utterances of the context
# A word that starts later than this after the end of speech is dropped. By its start, not its
# middle: the VAD's end of speech can fall inside the last word (eSpeak's "bag." at 13.4 s of a
# word that ran to 13.6 s), and the alignment stretches the last word to the buffer's end.
AFTER_SPEECH_S = 0.1
# Silence after speech that the stream cut off (a file that ends as its last word does, a stopped
# microphone): tiny.en drops the last words of a buffer that ends mid-sound ("How many apples does"
# for "... does Jack have now?"), as it was trained on segments with silence after speech.
END_PAD_S = 0.5


@dataclass
class Utterance:
    """The audio of one stretch of speech (and its pad), from stream time `start`."""

    audio: np.ndarray
    start: float
    speech_end: float | None = None  # set when a pause closed it

    @property
    def end(self) -> float:
        return self.start + samples_to_seconds(len(self.audio))


class OnlineASR:
    """Streaming Whisper with VAD-bounded buffers (see the module doc)."""

    def __init__(self, backend: WhisperBackend, options: StreamingASROptions, costs: ASRCosts):
        self.whisper, self.options, self.costs = Metered(backend, costs), options, costs
        self.agreement = PrefixAgreement()
        self.context: list[tuple[np.ndarray, str]] = []  # earlier utterances: audio, committed text
        self.text_before = ""  # the last `prompt_chars` of committed text before the open utterance
        self.open: Utterance | None = None
        self.closed: list[Utterance] = []  # ended by a pause, awaiting their final decode
        self.unprocessed_s = 0.0  # audio of the open utterance since its last decode
        self.stream_end: float | None = None  # None until the first chunk
        self._at_risk: tuple[float, float] | None = None  # what the step under way had held

    def restart(self, t: float) -> None:
        """Start listening at stream time `t` (the stream's start, or after a reconnect, once
        `finish` has committed what came before): fresh VAD state, no context."""
        self.context, self._stream_start = [], t
        self.vad, self.gate = StreamingVAD(), SpeechGate(self.options.vad, t0=t)
        self._recent = np.zeros(0, dtype=np.float32)  # the last `speech_pad_s` before now
        self.stream_end = t

    def insert_audio(self, chunk: AudioChunk) -> None:
        """Take a chunk; a hole before it is filled with silence."""
        if self.stream_end is None:
            self.restart(chunk.t_start)
        samples = chunk.samples
        gap = chunk.t_start - self.stream_end
        if gap > 1 / SAMPLE_RATE:
            samples = np.concatenate([np.zeros(seconds_to_samples(gap), dtype=np.float32), samples])
        t0 = time.perf_counter()
        transitions = self.gate.update(self.vad.push(samples))
        self.costs.vad_s += time.perf_counter() - t0
        start, pos = self.stream_end, 0
        for change in transitions:
            # speech is known where it starts; a pause only `min_silence_s` after it began
            known = change.t if change.speech else change.t + self.options.vad.min_silence_s
            k = min(max(seconds_to_samples(known - start), pos), len(samples))
            self._feed(samples[pos:k])
            pos = k
            if change.speech:
                # Speech from the very start of a stream has no audio before it: silence stands in,
                # as Whisper misheard a sentence whose first sound began its buffer ("A baker
                # makes" as "make a make").
                want = seconds_to_samples(self.options.vad.speech_pad_s)
                have = self._recent[max(len(self._recent) - want, 0) :]
                lead = np.zeros(want - len(have), dtype=np.float32)
                self.open = Utterance(np.concatenate([lead, have]), start + (k - want) / SAMPLE_RATE)
                self.unprocessed_s = 0.0
            elif self.open is not None:
                self.open.speech_end = change.t
                self.closed.append(self.open)
                self.open = None
        self._feed(samples[pos:])
        self.stream_end = start + samples_to_seconds(len(samples))

    def _feed(self, samples: np.ndarray) -> None:
        if self.open is not None:
            self.open.audio = np.concatenate([self.open.audio, samples])
            self.unprocessed_s += samples_to_seconds(len(samples))
        keep = seconds_to_samples(self.options.vad.speech_pad_s)
        self._recent = np.concatenate([self._recent, samples])[-keep:] if keep else self._recent[:0]

    def ready(self) -> bool:
        """A decode is due: a pause closed an utterance, or enough new speech came."""
        return bool(self.closed) or (
            self.open is not None and self.unprocessed_s >= self.options.min_step_seconds
        )

    def process_iter(self) -> list[Word]:
        """Run the decodes that are due; return the newly committed words (stream time)."""
        self._at_risk = self.pending()
        words: list[Word] = []
        for utterance in self.closed:
            words += self._final(utterance)
        self.closed = []
        if self.open is not None and self.unprocessed_s >= self.options.min_step_seconds:
            words += self._step(self.open)
        return words

    def quiet(self) -> bool:
        """The VAD hears a pause, and no speech is waiting to be decoded."""
        return self.stream_end is not None and self.open is None and not self.closed

    def pending(self) -> tuple[float, float] | None:
        """The stream span of the speech held and not yet committed (None when none is)."""
        held = [*self.closed, *([self.open] if self.open is not None else [])]
        if not held:
            return None
        committed = self.agreement.committed[-1].t_end if self.agreement.committed else held[0].start
        return max(held[0].start, committed), held[-1].end

    def drop(self) -> tuple[float, float] | None:
        """The step under way (`process_iter`, `finish`) failed: forget the speech held, words
        committed by the step included (they were never returned); returns the span of speech the
        step had held then. Listening goes on: speech still going on opens a fresh utterance where
        the audio taken ends."""
        self._to_prompt("".join(w.text for w in self.agreement.close()))
        self.closed, self.unprocessed_s = [], 0.0
        if self.open is not None:
            self.open = Utterance(np.zeros(0, dtype=np.float32), self.open.end)
        lost, self._at_risk = self._at_risk, None
        return lost

    def finish(self) -> list[Word]:
        """The stream ended: the open utterance ends here; every utterance is decoded and committed."""
        self._at_risk = self.pending()
        if self.open is not None:
            self.open.speech_end = self.open.end
            self.open.audio = np.concatenate(
                [self.open.audio, np.zeros(seconds_to_samples(END_PAD_S), np.float32)]
            )
            self.closed.append(self.open)
            self.open = None
        words = [w for utterance in self.closed for w in self._final(utterance)]
        self.closed, self.unprocessed_s = [], 0.0
        return words

    def _decode(self, utterance: Utterance):
        """Encode the context and the utterance, decode after their committed words: (encoded,
        decoding with only the words that pass the gates, stream time of the buffer's start)."""
        gap = np.zeros(seconds_to_samples(CONTEXT_GAP_S), dtype=np.float32)
        audio = np.concatenate([x for a, _ in self.context for x in (a, gap)] + [utterance.audio])
        t0 = utterance.start - samples_to_seconds(len(audio) - len(utterance.audio))
        encoded = self.whisper.encode(audio, self.options.min_window_seconds)
        committed_end = self.agreement.committed[-1].t_end if self.agreement.committed else utterance.start
        unconfirmed = max(utterance.end - committed_end, 0.0)
        limit = math.ceil(self.options.tokens_per_second * unconfirmed) + 4
        prefix = "".join(text for _, text in self.context) + self.agreement.prefix
        decoding = self.whisper.decode(encoded, self.text_before.strip(), prefix, limit)
        heard = heard_words(decoding, self.options)
        if len(heard) < len(decoding.new_words) or (decoding.new_words and not heard):
            self.costs.gated += 1
        n = decoding.prefix_words + len(heard)
        return encoded, replace(decoding, words=decoding.words[:n], tokens=decoding.tokens[:n]), t0

    def _timed(self, utterance: Utterance, encoded, decoding, t0: float, count: int) -> list[Word]:
        """Stream times of the first `count` new words (`t0`: stream time of the buffer's start,
        before the utterance: the context). The alignment is of the whole text, as its time warping
        spreads whatever text it is given over all of the audio."""
        aligned = self.whisper.align(encoded, decoding)
        new = aligned[decoding.prefix_words : decoding.prefix_words + count]
        floor = max(utterance.start, self._stream_start)  # no word before the stream began
        return [
            Word(text, max(start + t0, floor), max(end + t0, floor), p)
            for text, start, end, p in ((w.text, w.t_start, w.t_end, w.probability) for w in new)
        ]

    def _step(self, utterance: Utterance) -> list[Word]:
        self.unprocessed_s = 0.0
        encoded, decoding, t0 = self._decode(utterance)
        # The last agreed word waits for the next one: its punctuation (a sentence end, which ends
        # the reasoner's chunk) is only settled by a hypothesis that heard what follows it.
        agreed = max(self.agreement.agree(decoding.new_words) - 1, 0)
        if not agreed:
            return self._trim(utterance)
        timed = [w for w in self._timed(utterance, encoded, decoding, t0, agreed) if w.t_end <= utterance.end]
        return self.agreement.commit(timed) + self._trim(utterance)

    def _final(self, utterance: Utterance) -> list[Word]:
        encoded, decoding, t0 = self._decode(utterance)
        timed = self._timed(utterance, encoded, decoding, t0, len(decoding.new_words))
        end = utterance.speech_end if utterance.speech_end is not None else utterance.end
        # no word ends in the silence `finish` put after the stream's end
        last = self.stream_end if self.stream_end is not None else end
        timed = [replace(w, t_start=min(w.t_start, last), t_end=min(w.t_end, last)) for w in timed]
        words = self.agreement.flush([w for w in timed if w.t_start <= end + AFTER_SPEECH_S])
        self._remember(utterance, self.agreement.close())
        return words

    def _remember(self, utterance: Utterance, words: list[Word]) -> None:
        """The utterance joins the context; the oldest ones leave it, their text to the prompt."""
        self.context.append((utterance.audio, "".join(w.text for w in words)))
        while self.context and sum(len(a) for a, _ in self.context) > seconds_to_samples(
            self.options.context_seconds
        ):
            self._to_prompt(self.context.pop(0)[1])

    def _trim(self, utterance: Utterance) -> list[Word]:
        """Keep the open buffer short: past `trim_seconds`, cut at the last committed sentence end
        (or word); past `max_buffer_seconds` with nothing committed, commit it whole and start anew."""
        length = utterance.end - utterance.start
        committed = self.agreement.committed
        if length > self.options.trim_seconds and committed:
            sentences = [w.t_end for w in committed if ends_sentence(w.text)]
            cut = (
                sentences[-1]
                if sentences and sentences[-1] - utterance.start > length / 2
                else committed[-1].t_end
            )
            drop = min(len(utterance.audio), max(seconds_to_samples(cut - utterance.start), 0))
            utterance.audio, utterance.start = (
                utterance.audio[drop:],
                utterance.start + samples_to_seconds(drop),
            )
            self._leave(self.agreement.forget_before(utterance.start))
            return []
        if length > self.options.max_buffer_seconds - self.options.min_step_seconds:
            utterance.speech_end = utterance.end
            words = self._final(utterance)
            self.open = Utterance(np.zeros(0, dtype=np.float32), utterance.end)
            return words
        return []

    def _leave(self, words: list[Word]) -> None:
        """Committed words leave a long utterance's buffer, and the context (which came before them)
        leaves too."""
        for _, text in self.context:
            self._to_prompt(text)
        self.context = []
        self._to_prompt("".join(w.text for w in words))

    def _to_prompt(self, text: str) -> None:
        """Committed text that left the buffer: only what a prompt needs of it stays."""
        self.text_before = last_chars(self.text_before + text, self.options.prompt_chars)
