"""Streaming Whisper on real synthesised speech (eSpeak NG) read back from real media files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.cli import main
from adasr_av.data.tts import write_audio
from adasr_av.encoders.asr_options import ASRCosts
from adasr_av.encoders.local_agreement import HypothesisBuffer
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


def test_computation_unaware_emits_when_the_audio_arrived(speech, whisper):
    """Each chunk goes out when the audio of the step that committed it had arrived (or at its
    last word's end, where Whisper timed a word past the audio), not at any later time."""
    arrived = []

    def source():
        for chunk in read_audio_array(speech):
            arrived.append(chunk.t_end)
            yield chunk

    backend = Recording(whisper, lambda: arrived[-1])
    chunks = list(transcribe_stream(source(), backend, UNAWARE))
    steps = sorted(set(backend.arrivals))
    assert steps[0] >= UNAWARE.min_step_seconds - 1e-6  # no decode before a second of speech
    assert len(chunks) >= 3
    for chunk in chunks:
        assert any(abs(chunk.t_emit - t) < 1e-9 for t in steps) or chunk.t_emit == chunk.t_end


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


def test_bundled_model_loads_without_network(whisper):
    assert isinstance(whisper, FasterWhisperBackend)
    transcript = whisper.transcribe(np.zeros(16000, dtype=np.float32))
    assert transcript.words == [] or all(w.t_end <= 2.0 for w in transcript.words)


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
