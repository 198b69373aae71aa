"""Streaming Whisper on real synthesised speech (eSpeak NG) read back from real media files."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import jiwer
import numpy as np
import pytest
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.cli import main
from adasr_av.data.tts import write_audio
from adasr_av.encoders import streaming_asr
from adasr_av.encoders.asr_options import ASRCosts
from adasr_av.encoders.local_agreement import HypothesisBuffer, ends_sentence
from adasr_av.encoders.online_asr import OnlineASR
from adasr_av.encoders.streaming_asr import (
    LAG_BIN_S,
    ASRStats,
    ChunkGrouper,
    LagHistogram,
    StreamingASROptions,
    transcribe_stream,
)
from adasr_av.encoders.whisper_backends import FasterWhisperBackend, load_backend
from adasr_av.errors import AdasrError
from adasr_av.media.file import read_audio
from adasr_av.types import AudioChunk, Word

SPEECH = (
    "A baker makes forty loaves of bread every morning. He sells twenty five loaves before noon. "
    "In the afternoon he sells nine more. How many loaves are left at the end of the day?"
)
normalise = EnglishTextNormalizer()
UNAWARE = StreamingASROptions(computation_aware=False)


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis))


def synthesize_fresh(text: str, path: Path) -> np.ndarray:
    """eSpeak's output drifts slightly with what the process synthesised before; a fresh process
    makes the test audio the same on every run. en+m7 is the bundled voice tiny.en hears best."""
    code = "import sys; from adasr_av.data.tts import synthesize, write_audio; "
    code += "write_audio(sys.argv[2], synthesize(sys.argv[1], 'en+m7', 140))"
    subprocess.run([sys.executable, "-c", code, text, str(path)], check=True)
    return np.concatenate([c.samples for c in read_audio(path)])


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return synthesize_fresh(SPEECH, tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="module")
def whisper():
    return load_backend()


def words(*spec):
    return [Word(f" {text}", start, end) for text, start, end in spec]


class Recording:
    """The real backend, noting each decode's prompt and prefix, and how far the audio had arrived
    (`arrived` says) at each encode."""

    def __init__(self, backend, arrived=lambda: 0.0):
        self.backend, self.arrived = backend, arrived
        self.prompts: list[str] = []
        self.prefixes: list[str] = []
        self.arrivals: list[float] = []
        self.windows: list[float] = []  # seconds of audio per encode

    def encode(self, audio, min_window_s=0.0):
        self.arrivals.append(self.arrived())
        self.windows.append(len(audio) / 16000)
        return self.backend.encode(audio, min_window_s)

    def decode(self, encoded, prompt="", prefix="", max_new_tokens=224):
        self.prompts.append(prompt)
        self.prefixes.append(prefix)
        return self.backend.decode(encoded, prompt, prefix, max_new_tokens)

    def align(self, encoded, decoding):
        return self.backend.align(encoded, decoding)


def test_local_agreement_commits_what_two_hypotheses_share():
    buffer = HypothesisBuffer()
    assert buffer.insert(words(("Tom", 0.0, 0.3), ("has", 0.3, 0.5))) == []
    committed = buffer.insert(words(("tom,", 0.0, 0.3), ("has", 0.3, 0.5), ("five", 0.5, 0.9)))
    assert [w.text for w in committed] == [" tom,", " has"]
    # the next hypothesis repeats the committed tail; only "five apples" is new and must agree twice
    assert buffer.insert(words(("has", 0.32, 0.5), ("five", 0.5, 0.9), ("apples", 0.9, 1.3))) == [
        Word(" five", 0.5, 0.9)
    ]
    assert buffer.pending() == words(("apples", 0.9, 1.3))
    assert buffer.flush() == words(("apples", 0.9, 1.3))  # the stream ended: the tail is committed
    assert buffer.pending() == [] and buffer.last_committed_end == 1.3
    assert [w.text for w in buffer.forget_before(0.5)] == [" tom,", " has"]
    assert [w.text for w in buffer.committed] == [" five", " apples"]


def test_chunks_end_at_sentences_pauses_and_maximum_length():
    grouper = ChunkGrouper(StreamingASROptions(pause_seconds=0.8, max_chunk_seconds=3.0))
    chunks = grouper.add(words(("One", 0.0, 0.2), ("two.", 0.2, 0.5), ("Three", 0.6, 0.9)), t_commit=2.0)
    assert [(c.text, c.t_start, c.t_end, c.t_emit) for c in chunks] == [("One two.", 0.0, 0.5, 2.0)]
    chunks = grouper.add(words(("four", 2.0, 2.3)), t_commit=4.0)  # 1.1 s pause after "Three"
    assert [(c.text, c.t_emit) for c in chunks] == [("Three", 4.0)]
    chunks = grouper.add(words(("five", 2.3, 3.0), ("six", 3.0, 5.1)), t_commit=6.0)  # over 3 s
    assert [c.text for c in chunks] == ["four five"]
    assert [c.text for c in grouper.flush(7.0)] == ["six"]
    assert grouper.flush(8.0) == []


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg", ".mp4"])
def test_streaming_transcript_of_a_media_file(speech, whisper, tmp_path, suffix):
    path = write_audio(tmp_path / f"speech{suffix}", speech, video=suffix == ".mp4")
    stats = ASRStats()
    # Computation-unaware steps fall at fixed points of the audio, so the transcript does not
    # depend on how busy the machine is (computation-aware timing is tested below).
    chunks = list(transcribe_stream(read_audio(path), whisper, UNAWARE, stats))
    # as good as one offline call of the same model on the same audio (0.18: eSpeak's "loaves")
    offline = wer(SPEECH, "".join(w.text for w in whisper.transcribe(speech).words))
    assert wer(SPEECH, " ".join(c.text for c in chunks)) <= min(offline + 0.05, 0.25)
    duration = len(speech) / 16000
    assert stats.audio_s == pytest.approx(duration, abs=0.1)
    for chunk in chunks:
        assert chunk.source == "asr" and chunk.words
        assert chunk.t_start <= chunk.t_end <= chunk.t_emit
        assert all(chunk.t_start <= w.t_start <= w.t_end <= chunk.t_end + 1e-6 for w in chunk.words)
        assert all(w.t_commit is not None and w.t_commit >= w.t_end - 0.5 for w in chunk.words)
    assert [c.t_start for c in chunks] == sorted(c.t_start for c in chunks)
    assert chunks[-1].t_end <= duration + 0.5
    assert sum(c.text.rstrip().endswith((".", "?")) for c in chunks) >= 3  # sentence chunks


class Steps:
    """The policy `transcribe_stream` makes, noting for each committed word the audio that had
    arrived when its step ran, and each arrival at which the VAD was asked and heard a pause."""

    def __init__(self, policy, arrived):
        self.policy, self.arrived = policy, arrived
        self.committed: list[tuple[Word, float]] = []  # word, arrival of the step that committed it
        self.quiet_at: list[float] = []

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def process_iter(self):
        return self._note(self.policy.process_iter())

    def finish(self):
        return self._note(self.policy.finish())

    def quiet(self):
        heard = self.policy.quiet()
        if heard:
            self.quiet_at.append(self.arrived())
        return heard

    def _note(self, words):
        self.committed += [(w, self.arrived()) for w in words]
        return words


def test_computation_unaware_emits_when_the_audio_arrived(speech, whisper, monkeypatch):
    """Stream time stops while Whisper runs: a word is committed at the arrival of the audio of the
    step that decoded it, and a chunk goes out (DESIGN.md, streaming_asr's module doc) at the step
    that committed its sentence end; else at the step that brought the next word past a pause or
    the length limit, or when the VAD heard the pause after it, whichever came first; never before
    its last word's end (where Whisper timed a word past the audio)."""
    arrived = []

    def source():
        for chunk in read_audio_array(speech):
            arrived.append(chunk.t_end)
            yield chunk

    steps = []
    make_policy = streaming_asr.make_policy
    monkeypatch.setattr(
        streaming_asr,
        "make_policy",
        lambda *a: steps.append(Steps(make_policy(*a), lambda: arrived[-1])) or steps[-1],
    )
    backend = Recording(whisper, lambda: arrived[-1])
    options = replace(UNAWARE, max_chunk_seconds=2.5)  # long sentences also end at the next word
    chunks = list(transcribe_stream(source(), backend, options))
    (policy,) = steps
    assert min(backend.arrivals) >= options.min_step_seconds - 1e-6  # no decode before a second of speech
    assert len(chunks) >= 3
    sent = [w for chunk in chunks for w in chunk.words]
    assert [(w.text, w.t_start, w.t_end) for w in sent] == [
        (w.text, w.t_start, w.t_end) for w, _ in policy.committed
    ]
    step_of = [t for _, t in policy.committed]
    assert [w.t_commit for w in sent] == step_of  # every word, exactly once, stamped with its step
    assert set(step_of) <= {*backend.arrivals, arrived[-1]}  # a decode's arrival, or the stream's end
    first = 0  # index in `sent` of the chunk's first word
    for chunk in chunks:
        last = first + len(chunk.words) - 1
        if ends_sentence(chunk.words[-1].text):
            due = step_of[last]
        else:
            after_pause = chunk.words[-1].t_end + options.pause_seconds - 1e-9
            heard = [t for t in policy.quiet_at if t >= step_of[last] and t >= after_pause]
            next_word = step_of[last + 1] if last + 1 < len(sent) else arrived[-1]
            due = min([next_word, *heard])
        assert chunk.t_emit == max(due, chunk.t_end), chunk
        first = last + 1
    assert any(not ends_sentence(c.words[-1].text) for c in chunks[:-1])  # both rules were used


class Scripted:
    """A commit policy that commits `script[arrival]` at a step when that audio arrives (and
    `script["end"]` at the end) and hears a pause while the audio's end is in one of `quiet`."""

    def __init__(self, script, quiet):
        self.script, self.quiet_spans, self.now = dict(script), quiet, 0.0

    def insert_audio(self, chunk):
        self.now = round(chunk.t_end, 1)

    def ready(self):
        return self.now in self.script

    def process_iter(self):
        return self.script.pop(self.now)

    def finish(self):
        return self.script.pop("end")

    def quiet(self):
        return any(start <= self.now < end for start, end in self.quiet_spans)


@pytest.mark.parametrize(
    ("aware", "emitted"),
    [(False, [1.1, 2.1, 4.5, 5.5, 6.0]), (True, [1.25, 2.25, 4.75, 5.75, 6.25])],
    ids=["unaware", "aware"],
)
def test_each_chunk_goes_out_at_the_time_the_design_gives(monkeypatch, aware, emitted):
    """Six seconds of audio in 0.1 s chunks, a policy that commits scripted words, and each step
    taking 0.25 s. A word's commit time is the arrival of its step's last audio, plus the step's
    compute when computation-aware; a chunk goes out at the commit of its sentence end (not before
    its last word's end: "two." was timed past the audio), when the VAD has heard `pause_seconds`
    after its last word ("three four"), at the commit of the word that came after a pause the VAD
    did not hear ("five") or past `max_chunk_seconds` ("six seven"), or at the end of the stream."""
    script = {
        1.0: words(("One", 0.1, 0.4), ("two.", 0.4, 1.1)),
        2.0: words(("three", 1.0, 1.3), ("four", 1.3, 1.55)),
        3.5: words(("five", 3.0, 3.3)),
        4.5: words(("six", 3.9, 4.2), ("seven", 4.3, 5.0)),
        5.5: words(("eight", 5.0, 5.5)),
        "end": words(("nine.", 5.6, 5.9)),
    }
    committed_at = {1.0: 1.0, 2.0: 2.0, 3.5: 3.5, 4.5: 4.5, 5.5: 5.5, "end": 6.0}
    monkeypatch.setattr(streaming_asr, "make_policy", lambda *_: Scripted(script, quiet=[(2.0, 3.0)]))
    monkeypatch.setattr(
        streaming_asr, "time", SimpleNamespace(perf_counter=itertools.count(0.0, 0.25).__next__)
    )
    audio = [AudioChunk(np.zeros(1600, np.float32), k / 10, (k + 1) / 10) for k in range(60)]
    options = StreamingASROptions(computation_aware=aware, pause_seconds=0.5, max_chunk_seconds=1.5)
    stats = ASRStats()
    chunks = list(transcribe_stream(audio, None, options, stats))
    assert [c.text for c in chunks] == ["One two.", "three four", "five", "six seven", "eight nine."]
    assert [c.t_emit for c in chunks] == emitted
    compute = 0.25 if aware else 0.0
    expected = [committed_at[key] + compute for key, spoken in script.items() for _ in spoken]
    assert [w.t_commit for c in chunks for w in c.words] == expected
    assert stats.steps == 6 and stats.lags_s.max_s == compute


def read_audio_array(samples: np.ndarray, chunk: int = 1600):
    return [AudioChunk(samples[i : i + chunk], i / 16000, min(len(samples), i + chunk) / 16000)
            for i in range(0, len(samples), chunk)]  # fmt: skip


def held(asr: OnlineASR) -> tuple[list[Word], list[str], float]:
    """Every word and string OnlineASR keeps (its fields, its agreement's, its context's), and the
    seconds of audio it holds."""
    fields = [*vars(asr).values(), *vars(asr.agreement).values()]
    lists = [v for v in fields if isinstance(v, list)]
    words = [w for v in lists for w in v if isinstance(w, Word)]
    texts = [v for v in fields if isinstance(v, str)] + [text for _, text in asr.context]
    audio = sum(len(a) for a, _ in asr.context) + (len(asr.open.audio) if asr.open else 0)
    return words, texts, audio / 16000


def test_a_long_stream_keeps_bounded_state_and_emits_every_word(speech, whisper):
    """A hundred seconds of speech (the story eight times, with pauses) through the real model:
    OnlineASR keeps the words of the open utterance, the context's audio and text and the prompt's
    text, so what it holds does not grow with the stream, while every committed word goes out."""
    repeats = 8
    audio = np.tile(np.concatenate([speech, np.zeros(8000, dtype=np.float32)]), repeats)
    options = StreamingASROptions(computation_aware=False)
    backend = Recording(whisper)
    asr, emitted, kept = OnlineASR(backend, options, ASRCosts()), [], []
    for chunk in read_audio_array(audio):
        asr.insert_audio(chunk)
        if asr.ready():
            emitted += asr.process_iter()
        words, texts, seconds = held(asr)
        kept.append(len(words))
        assert all(len(text) <= options.prompt_chars for text in texts if text is not asr.agreement.prefix)
        assert seconds <= options.context_seconds + options.max_buffer_seconds + 1
    emitted += asr.finish()
    assert len(backend.prompts) >= 50
    assert max(len(p) for p in backend.prompts) <= options.prompt_chars
    longest = options.context_seconds + options.trim_seconds + 2 * options.min_step_seconds + 1
    assert max(backend.windows) <= longest
    assert max(kept) <= 60  # an utterance's words, not the stream's (about 400)
    reference = " ".join([SPEECH] * repeats)
    assert len(emitted) >= 0.9 * len(reference.split())
    assert wer(reference, "".join(w.text for w in emitted)) <= 0.25  # offline: 0.18 on one story


def test_lag_quantiles_agree_with_numpy_within_the_stated_resolution():
    rng = np.random.default_rng(0)
    lags = np.concatenate([rng.gamma(2.0, 0.15, 2000), [0.0, 0.03, 0.5, 0.5, 7.25]])  # ties, bin edges
    histogram = LagHistogram()
    for lag in lags:
        histogram.add(float(lag))
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert abs(histogram.quantile(q) - np.quantile(lags, q)) <= LAG_BIN_S / 2 + 1e-12, q
    assert histogram.count == len(lags) and histogram.max_s == lags.max()
    assert histogram.mean_s == pytest.approx(lags.mean())
    assert LagHistogram().quantile(0.5) == 0.0
    single = LagHistogram()
    single.add(0.123)
    assert single.quantile(0.5) == 0.123  # clamped to the lags seen: exact for one value
    size = single.counts.nbytes
    for lag in rng.uniform(0, 100, 10_000):  # past the histogram's range: memory stays the same
        single.add(float(lag))
    assert single.counts.nbytes == size and single.count == 10_001 and single.quantile(1.0) == single.max_s


def test_slower_than_real_time_coalesces_instead_of_falling_behind(speech, whisper):
    """Steps every 0.1 s cannot keep up (a Whisper step takes longer): audio that arrives during a
    step goes into the next one, so there are far fewer steps and the lag stays bounded."""
    stats = ASRStats()
    options = StreamingASROptions(min_step_seconds=0.1)
    chunks = list(transcribe_stream(read_audio_array(speech), whisper, options, stats))
    arrivals = len(speech) / 1600
    assert stats.steps < arrivals / 2
    # Audio waits for enough audio to start a step (the first step wants the most), for the step
    # running when it arrived, then rides in the next one: the longest wait is bounded by that,
    # however long the stream (a queue of pending steps would grow with every step instead).
    assert stats.lags_s.count == stats.steps
    # audio waits at most for a pause to be heard, or a step's worth of speech, then two steps
    wait = max(options.vad.min_silence_s, options.min_step_seconds)
    assert stats.max_lag_s <= wait + 2 * stats.lags_s.max_s + 0.3
    assert wer(SPEECH, " ".join(c.text for c in chunks)) <= 0.3


def test_bundled_model_loads_without_network(speech, monkeypatch):
    def no_network(*_, **__):
        raise OSError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    whisper = load_backend()
    assert isinstance(whisper, FasterWhisperBackend)
    heard = normalise("".join(w.text for w in whisper.transcribe(speech).words)).split()
    assert {"bread", "morning", "noon", "afternoon"} <= set(heard)


def test_bad_whisper_model_is_one_line(tmp_path):
    with pytest.raises(AdasrError, match="no CTranslate2 model"):
        load_backend("faster-whisper", str(tmp_path))
    with pytest.raises(AdasrError, match="not a Whisper"):
        load_backend("openai-whisper", str(tmp_path / "missing.pt"))
    with pytest.raises(AdasrError, match="unknown ASR backend"):
        load_backend("nope")


@pytest.mark.parametrize("fmt", ["jsonl", "srt", "vtt", "txt"])
def test_transcribe_command_writes_each_format(speech, tmp_path, capsys, fmt):
    path = write_audio(tmp_path / "speech.wav", speech)
    out = tmp_path / f"transcript.{fmt}"
    assert main(["transcribe", str(path), "--unaware", "--out", str(out)]) == 0
    text = out.read_text()
    printed = capsys.readouterr()
    assert "real-time factor" in printed.err and "committed" in printed.out
    if fmt == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        assert {"text", "t_start", "t_end", "t_emit", "words"} <= records[0].keys()
        assert {"text", "t_start", "t_end"} <= records[0]["words"][0].keys()
        text = " ".join(r["text"] for r in records)
    elif fmt == "srt":
        assert text.startswith("1\n00:00:0") and " --> " in text
    elif fmt == "vtt":
        assert text.startswith("WEBVTT\n\n00:00:0")
    cues = [line for line in text.splitlines() if line and "-->" not in line and not line.isdigit()]
    spoken = text if fmt in ("jsonl", "txt") else " ".join(line for line in cues if line != "WEBVTT")
    assert wer(SPEECH, spoken) <= 0.25


@pytest.mark.parametrize(
    ("source", "message"),
    [("{tmp}/missing.wav", "no such file"), ("http://example.org/a.wav", "unsupported URL scheme")],
)
def test_transcribe_bad_sources(source, message, tmp_path, capsys):
    assert main(["transcribe", source.format(tmp=tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize("policy", ["vad", "rolling"])
def test_a_hole_in_the_input_finishes_what_came_before_and_restarts(speech, whisper, policy):
    """A reconnect: the input jumps 5 s ahead. What was heard before is committed when the hole
    is seen (stream time stops while Whisper runs: at the last audio before it), no chunk spans
    the hole, and the speech after it is heard in its own time."""
    options = StreamingASROptions(computation_aware=False)
    if policy == "rolling":
        options = StreamingASROptions.rolling(computation_aware=False)
    half = len(speech) // 2
    before = read_audio_array(speech[:half])
    end = before[-1].t_end
    after = [
        AudioChunk(c.samples, c.t_start + end + 5.0, c.t_end + end + 5.0) for c in read_audio_array(speech)
    ]
    chunks = list(transcribe_stream([*before, *after], whisper, options))
    early = [c for c in chunks if c.t_end <= end + 0.5]
    late = [c for c in chunks if c.t_start >= end + 5.0]
    assert early and late and len(early) + len(late) == len(chunks)
    assert all(c.t_emit <= end + 1e-6 or c.t_emit == c.t_end for c in early)
    assert wer(SPEECH, " ".join(c.text for c in late)) <= 0.25
