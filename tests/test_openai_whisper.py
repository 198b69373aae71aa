"""The openai-whisper backend on a checkpoint built from `ModelDimensions` in the test (no download)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
import whisper
from whisper.model import ModelDimensions

from adasr_av.data.tts import synthesize
from adasr_av.encoders.streaming_asr import ASRStats, StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import OpenAIWhisperBackend, Transcript, load_backend
from adasr_av.types import AudioChunk

# A short text context: an untrained model talks until the context is full.
DIMS = ModelDimensions(
    n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
    n_vocab=51864, n_text_ctx=64, n_text_state=64, n_text_head=2, n_text_layer=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = whisper.model.Whisper(DIMS)
    path = tmp_path_factory.mktemp("whisper") / "tiny-random.pt"
    torch.save({"dims": asdict(DIMS), "model_state_dict": model.state_dict()}, path)
    return path


def test_checkpoint_loads_and_gives_timed_words(checkpoint):
    backend = load_backend("openai-whisper", str(checkpoint))
    assert isinstance(backend, OpenAIWhisperBackend) and not backend.model.is_multilingual
    audio = synthesize("Tom has five apples.", "en-us", 150)
    transcript = backend.transcribe(audio, prompt="Counting apples.")
    assert isinstance(transcript, Transcript)
    duration = len(audio) / 16000
    for word in transcript.words:  # an untrained model says anything, but in the audio's time frame
        assert 0.0 <= word.t_start <= word.t_end <= 30.0
    assert all(end <= 30.0 for end in transcript.segment_ends)
    assert duration > 0.5


def test_streams_through_the_same_policy(checkpoint):
    backend = OpenAIWhisperBackend(str(checkpoint))
    audio = np.concatenate([synthesize("Tom has five apples. He buys three more.", "en-us", 150)])
    chunks = [AudioChunk(audio[i : i + 1600], i / 16000, min(len(audio), i + 1600) / 16000)
              for i in range(0, len(audio), 1600)]  # fmt: skip
    stats = ASRStats()
    out = list(transcribe_stream(chunks, backend, StreamingASROptions(min_step_seconds=1.0), stats))
    assert stats.steps >= 2
    assert all(c.source == "asr" and c.t_emit >= c.t_end for c in out)
