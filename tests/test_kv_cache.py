"""The growing KV cache gives the same logits as transformers' concatenating cache."""

from __future__ import annotations

import contextlib
import os

import torch
from transformers import DynamicCache

from adasr_av.reasoner.kv_cache import (
    MIN_CAPACITY,
    GrowingLayer,
    StreamingCache,
    cache_argument,
    native_gqa_on_cpu,
)
from adasr_av.reasoner.scratch import build_model


def feed_in_pieces(model, cache, ids, sizes):
    outs, at = [], 0
    with torch.inference_mode():
        for size in sizes:
            outs.append(
                model(
                    input_ids=ids[:, at : at + size], use_cache=True, **{cache_argument(model): cache}
                ).logits
            )
            at += size
    return torch.cat(outs, dim=1)


def test_matches_dynamic_cache_across_buffer_growth(tokenizer, arch):
    model = build_model(tokenizer, arch, hidden=32, seed=2)
    ids = torch.randint(
        10, len(tokenizer), (1, 2 * MIN_CAPACITY + 40), generator=torch.Generator().manual_seed(0)
    )
    sizes = [50, *([1] * 30), 7, 300, 13, *([1] * 20)]
    sizes.append(ids.shape[1] - sum(sizes))
    cache = StreamingCache(model.config)
    got = feed_in_pieces(model, cache, ids, sizes)
    want = feed_in_pieces(model, DynamicCache(config=model.config), ids, sizes)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert cache.get_seq_length() == ids.shape[1]
    assert all(isinstance(layer, GrowingLayer) for layer in cache.layers)
    assert cache.layers[0]._key_buffer.shape[-2] >= ids.shape[1]


def test_crop_then_continue(tokenizer):
    model = build_model(tokenizer, "qwen3", hidden=32, seed=2)
    ids = torch.randint(10, len(tokenizer), (1, 60), generator=torch.Generator().manual_seed(1))
    cache = StreamingCache(model.config)
    feed_in_pieces(model, cache, ids, [40, 10])
    cache.crop(-10)
    assert cache.get_seq_length() == 40
    got = feed_in_pieces(model, cache, ids[:, 40:], [20])
    with torch.inference_mode():
        want = model(input_ids=ids).logits[:, 40:]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_native_gqa_prefill_matches_and_leaves_the_environment_alone(tokenizer, monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    model = build_model(tokenizer, "qwen3", hidden=64, seed=4)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    ids = torch.randint(10, len(tokenizer), (1, 40), generator=torch.Generator().manual_seed(3))
    results = []
    for native in (False, True):
        cache = StreamingCache(model.config)
        feed_in_pieces(model, cache, ids, [30])
        with native_gqa_on_cpu(torch.device("cpu")) if native else contextlib.nullcontext():
            assert (os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA") == "1") == native
            results.append(feed_in_pieces(model, cache, ids[:, 30:], [10]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ
