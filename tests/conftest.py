"""Tiny models built from configs inside the tests: nothing is downloaded.

`trained_reasoner` is a tiny model taught one gold protocol sequence by gradient descent, so the
session's behaviour (think, skip, deep reasoning, boxed answer) can be checked on a real model.
"""

from __future__ import annotations

import pytest
import torch

import adasr_av.encoders  # noqa: F401  (CTranslate2's numeric path, set before any test loads it)
from adasr_av.reasoner.protocol import (
    chunk_span,
    deep_span,
    encode_span,
    question_span,
    skip_unit,
    stream_end_span,
    thought_unit,
)
from adasr_av.reasoner.scratch import build_model, train_tokenizer
from adasr_av.types import TextChunk

QUESTION = "How many apples does Tom have now?"
CHUNKS = [
    TextChunk("Tom has five apples.", 0.0, 1.6, 1.6),
    TextChunk("The sky is blue today.", 1.6, 3.6, 3.6),
    TextChunk("He buys one more apple.", 3.6, 5.6, 5.6),
]
UNITS = [thought_unit("Tom has 5."), skip_unit(), thought_unit("5 + 1 = 6.")]
DEEP = ("Tom had 5 and bought 1, so 6.", "6")


def gold_spans() -> list[str]:
    spans = [question_span(QUESTION)]
    for chunk, unit in zip(CHUNKS, UNITS, strict=True):
        spans += [chunk_span(chunk.text), unit]
    return spans + [stream_end_span(), deep_span(*DEEP)]


def gold_ids(tokenizer) -> list[int]:
    return [i for span in gold_spans() for i in encode_span(tokenizer, span)]


def memorise(model, ids: list[int], steps: int = 300) -> float:
    """Teach `model` one sequence; returns the final loss."""
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = torch.tensor([ids])
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return loss.item()


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session", params=["qwen3", "gpt2"])
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def trained_models(tokenizer):
    """One memorising model per architecture, trained once per test session."""
    models = {}
    for name in ("qwen3", "gpt2"):
        model = build_model(tokenizer, name, hidden=64, layers=2)
        loss = memorise(model, gold_ids(tokenizer))
        assert loss < 0.05, f"{name} did not memorise the gold sequence (loss {loss:.3f})"
        models[name] = model
    return models


@pytest.fixture
def trained_model(trained_models, arch):
    return trained_models[arch]


@pytest.fixture(scope="session")
def trained_model_dir(trained_models, tokenizer, tmp_path_factory):
    """The memorising Qwen3-style model saved as a normal Hugging Face folder."""
    path = tmp_path_factory.mktemp("models") / "memorised-qwen3"
    trained_models["qwen3"].save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
