"""Measure a cost profile: prefill and decode seconds per token for one model on this device."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from transformers import DynamicCache

from adasr_av.reasoner.kv_cache import cache_argument
from adasr_av.timing import CostModel


def _timed_forward(model, ids: torch.Tensor, cache: DynamicCache) -> float:
    kwargs = {cache_argument(model): cache}  # looked up before the clock starts
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(input_ids=ids, use_cache=True, **kwargs)
    if ids.device.type == "cuda":
        torch.cuda.synchronize(ids.device)
    return time.perf_counter() - t0


def measure_cost_profile(
    model,
    name: str,
    context_tokens: int = 256,
    prefill_sizes: tuple[int, ...] = (8, 32, 128),
    decode_tokens: int = 64,
    repeats: int = 5,
    seed: int = 0,
) -> CostModel:
    """Fit prefill(n) = c_p + n*s_p over chunk-sized prefills onto a warm cache of
    `context_tokens`, and s_d as the mean time of single-token steps on that cache."""
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    rng = torch.Generator().manual_seed(seed)
    cache = DynamicCache(config=model.config)
    context = torch.randint(vocab, (1, context_tokens), generator=rng).to(device)
    _timed_forward(model, context, cache)

    sizes, seconds = [], []
    for n in (*prefill_sizes, *prefill_sizes):  # first pass warms up, second is kept
        ids = torch.randint(vocab, (1, n), generator=rng).to(device)
        runs = []
        for _ in range(repeats):
            runs.append(_timed_forward(model, ids, cache))
            cache.crop(-n)  # transformers 5: a negative value drops that many tokens
        sizes.append(n)
        seconds.append(statistics.median(runs))
    sizes, seconds = sizes[len(prefill_sizes) :], seconds[len(prefill_sizes) :]
    s_p, c_p = np.polyfit(sizes, seconds, 1)

    steps = []
    token = torch.randint(vocab, (1, 1), generator=rng).to(device)
    for _ in range(decode_tokens):
        steps.append(_timed_forward(model, token, cache))
    s_d = statistics.median(steps)
    return CostModel(
        name=name,
        prefill_base_s=max(0.0, float(c_p)),
        prefill_per_token_s=max(0.0, float(s_p)),
        decode_per_token_s=float(s_d),
        model=name,
        device=str(device),
        notes=f"measured by adasr-av calibrate on a {context_tokens}-token context",
    )
