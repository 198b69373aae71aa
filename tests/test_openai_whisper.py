"""The openai-whisper backend on a real model with no download: the bundled tiny.en (CTranslate2
format) turned back into an openai-whisper checkpoint here, so what it hears can be checked."""

from __future__ import annotations

import struct
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
from whisper.model import ModelDimensions
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.data.tts import synthesize
from adasr_av.encoders.streaming_asr import ASRStats, StreamingASROptions, transcribe_stream
from adasr_av.encoders.whisper_backends import OpenAIWhisperBackend, Transcript, load_backend
from adasr_av.encoders.whisper_models import bundled_model_path
from adasr_av.types import AudioChunk

# tiny.en, as the bundled model's shapes say (4 layers of 384 with 6 heads, English vocabulary)
DIMS = ModelDimensions(
    n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
    n_vocab=51864, n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4,
)  # fmt: skip
CT2_DTYPES = {0: np.float32, 4: np.float16}  # CTranslate2 type ids of the weights it may hold
normalise = EnglishTextNormalizer()


def read_ctranslate2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (binary version 6: name, shape, type, bytes)."""
    data, pos = path.read_bytes(), 0

    def take(fmt):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string():
        nonlocal pos
        n = take("H")
        pos += n
        return data[pos - n : pos - 1].decode()

    assert take("I") == 6 and string() == "WhisperSpec"
    take("I")  # revision
    variables = {}
    for _ in range(take("I")):
        name, shape = string(), [take("I") for _ in range(take("B"))]
        dtype, size = take("B"), take("I")
        if dtype in CT2_DTYPES:
            variables[name] = np.frombuffer(
                data, CT2_DTYPES[dtype], size // 2 if dtype == 4 else size // 4, pos
            )
            variables[name] = variables[name].reshape(shape).astype(np.float32)
        pos += size
    return variables


def openai_state_dict(ct2: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """CTranslate2's Whisper names to openai-whisper's (fused q/k/v split, keys without bias)."""
    state, n = {}, DIMS.n_audio_state

    def linear(to, source):
        state[f"{to}.weight"], state[f"{to}.bias"] = ct2[f"{source}/weight"], ct2[f"{source}/bias"]

    def norm(to, source):
        state[f"{to}.weight"], state[f"{to}.bias"] = ct2[f"{source}/gamma"], ct2[f"{source}/beta"]

    def attention(to, weight, bias, parts):
        for i, part in enumerate(parts):
            state[f"{to}.{part}.weight"] = weight[i * n : (i + 1) * n]
            if part != "key":
                state[f"{to}.{part}.bias"] = bias[i * n : (i + 1) * n]

    def block(to, source, cross):
        for mine, theirs in [("attn", "self_attention")] + [("cross_attn", "attention")] * cross:
            norm(f"{to}.{mine}_ln", f"{source}/{theirs}/layer_norm")
            fused = f"{source}/{theirs}/linear_{1 if mine == 'cross_attn' else 0}"
            parts = ("key", "value") if mine == "cross_attn" else ("query", "key", "value")
            attention(f"{to}.{mine}", ct2[f"{fused}/weight"], ct2[f"{fused}/bias"], parts)
            if mine == "cross_attn":
                linear(f"{to}.{mine}.query", f"{source}/{theirs}/linear_0")
            linear(f"{to}.{mine}.out", f"{source}/{theirs}/linear_{2 if mine == 'cross_attn' else 1}")
        norm(f"{to}.mlp_ln", f"{source}/ffn/layer_norm")
        linear(f"{to}.mlp.0", f"{source}/ffn/linear_0")
        linear(f"{to}.mlp.2", f"{source}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    state["encoder.positional_embedding"] = ct2["encoder/position_encodings/encodings"]
    state["decoder.positional_embedding"] = ct2["decoder/position_encodings/encodings"]
    state["decoder.token_embedding.weight"] = ct2["decoder/embeddings/weight"]
    for i in range(DIMS.n_audio_layer):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    norm("encoder.ln_post", "encoder/layer_norm")
    norm("decoder.ln", "decoder/layer_norm")
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    state = openai_state_dict(read_ctranslate2(bundled_model_path() / "model.bin"))
    whisper.model.Whisper(DIMS).load_state_dict(state, strict=True)  # every weight named, none left
    path = tmp_path_factory.mktemp("whisper") / "tiny.en.pt"
    torch.save({"dims": asdict(DIMS), "model_state_dict": state}, path)
    return path


def heard(words) -> list[str]:
    return normalise("".join(w.text for w in words)).split()


def test_checkpoint_loads_and_hears_the_words_in_their_time(checkpoint):
    backend = load_backend("openai-whisper", str(checkpoint))
    assert isinstance(backend, OpenAIWhisperBackend) and not backend.model.is_multilingual
    audio = synthesize("Tom has five apples.", "en+m7", 140)
    transcript = backend.transcribe(audio, prompt="Counting apples.")
    assert isinstance(transcript, Transcript)
    assert {"tom", "5", "apples"} <= set(heard(transcript.words)), transcript.words
    duration = len(audio) / 16000
    for word in transcript.words:
        assert 0.0 <= word.t_start <= word.t_end <= duration + 0.5
    assert [w.t_start for w in transcript.words] == sorted(w.t_start for w in transcript.words)
    assert transcript.segment_ends and transcript.segment_ends[-1] <= duration + 0.5


def test_streams_through_the_same_policy(checkpoint):
    backend = OpenAIWhisperBackend(str(checkpoint))
    audio = synthesize("Tom has five apples. He buys three more.", "en+m7", 140)
    chunks = [AudioChunk(audio[i : i + 1600], i / 16000, min(len(audio), i + 1600) / 16000)
              for i in range(0, len(audio), 1600)]  # fmt: skip
    stats = ASRStats()
    out = list(transcribe_stream(chunks, backend, StreamingASROptions(min_step_seconds=1.0), stats))
    assert stats.steps >= 2
    assert out and all(c.source == "asr" and c.t_start <= c.t_end <= c.t_emit for c in out)
    words = heard(w for c in out for w in c.words)
    assert {"tom", "apples", "buys", "3", "more"} <= set(words)
    assert words.index("tom") < words.index("apples") < words.index("buys")
