"""Cost of ingesting one more chunk (prefill plus a short unit) early and late in a long stream.

The incremental session prefills each chunk onto its KV cache; a naive session re-encodes the
whole prefix whenever a chunk arrives (as calling `generate` on the full text each time would).
Both use the real `StreamingReasoner`; the model is a randomly initialised Qwen3 decoder whose
protocol tokens are masked out of its logits, so every unit runs to the same length cap. Even
without re-encoding, a step late in the stream costs more than an early one, because attention
reads the whole cache: how much more depends on the ratio of KV-cache size to weights in one
layer, so the model is one layer shaped like a layer of the paper's models (`--shape`).

    python benchmarks/kv_cache.py [--shape qwen3-4b|qwen3-1.7b|tiny] [--chunks 200] [--repeats 3]

Last line: RESULT incremental_growth=<t200/t1> naive_growth=<t200/t1>
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from adasr_av.reasoner.kv_cache import StreamingCache
from adasr_av.reasoner.protocol import PROTOCOL_TOKENS
from adasr_av.reasoner.scratch import train_tokenizer
from adasr_av.reasoner.session import ReasonerOptions, StreamingReasoner
from adasr_av.timing import WallClock
from adasr_av.types import TextChunk

SENTENCES = [
    "Tom buys three more apples at the market.",
    "The bus leaves the station at nine.",
    "Anna gives him two of her twelve pencils.",
    "It rained a little on the way home.",
]


# One decoder layer of the paper's models (hidden, MLP width, query heads, KV heads, head size):
# what a step costs is weights plus attention over the cache, and their ratio is set per layer.
LAYER_SHAPES = {
    "qwen3-1.7b": (2048, 6144, 16, 8, 128),
    "qwen3-4b": (2560, 9728, 32, 8, 128),
    "tiny": (256, 768, 16, 8, 16),
}


class ReencodingReasoner(StreamingReasoner):
    """The naive baseline: while `reencode` is on, each prefill throws the cache away and runs the
    whole sequence through the model again. Decoding inside a unit still uses the cache."""

    reencode = False

    def _prefill(self, spans, phase):
        if self.reencode:
            row = self.rollouts[0]
            row.append(spans[0], "env", phase)
            self.cache = StreamingCache(self.model.config)
            self.encoded_tokens = 0
            self._positions.zero_()
            row.pending[:] = row.context
            return self._forward()
        return super()._prefill(spans, phase)


def mask_protocol_tokens(model, tokenizer) -> None:
    """Make the model never write a protocol token or EOS, so units always reach the cap."""
    banned = tokenizer.convert_tokens_to_ids(list(PROTOCOL_TOKENS)) + [tokenizer.eos_token_id]

    def hook(module, inputs, logits):
        logits[..., banned] = float("-inf")
        return logits

    model.get_output_embeddings().register_forward_hook(hook)


def chunk(i: int) -> TextChunk:
    t = 2.0 * i
    return TextChunk(SENTENCES[i % len(SENTENCES)], t, t + 2.0, t + 2.0)


def timed_feed(reasoner: StreamingReasoner, c: TextChunk) -> float:
    t0 = time.perf_counter()
    reasoner.feed(c)
    return time.perf_counter() - t0


def ingest_times(model, tokenizer, n_chunks: int, unit_tokens: int, naive: bool, checkpoints: list[int]):
    """Seconds to ingest chunk k (1-based) for each k in `checkpoints`; the prefix up to k-1 is
    built incrementally (it is not what is measured)."""
    options = ReasonerOptions(max_unit_tokens=unit_tokens, max_total_tokens=10**9)
    reasoner = ReencodingReasoner(model, tokenizer, options, clock=WallClock())
    reasoner.start("How many apples does Tom have?")
    times = {}
    for i in range(n_chunks):
        reasoner.reencode = naive and (i + 1) in checkpoints
        elapsed = timed_feed(reasoner, chunk(i))
        if (i + 1) in checkpoints:
            times[i + 1] = elapsed
    return times, len(reasoner.sequence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--unit-tokens", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=3, help="chunks averaged at each end (median)")
    parser.add_argument(
        "--shape",
        choices=sorted(LAYER_SHAPES),
        default="qwen3-4b",
        help="proportions of one decoder layer (growth depends on them, not on the depth)",
    )
    parser.add_argument("--layers", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = train_tokenizer()
    hidden, mlp, heads, kv_heads, head_dim = LAYER_SHAPES[args.shape]
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=32768,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    mask_protocol_tokens(model, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    n, w = args.chunks, args.window
    first, last = list(range(1, w + 1)), list(range(n - w + 1, n + 1))
    checkpoints = sorted({*first, n // 4, n // 2, 3 * n // 4, *last})
    print(
        f"model: {args.layers} Qwen3 decoder layer(s) shaped like {args.shape} (hidden {hidden}, "
        f"{heads} heads, {kv_heads} KV heads of {head_dim}), {n_params / 1e6:.1f} M parameters, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"stream: {n} chunks, units of {args.unit_tokens} tokens; t1 and t{n} are medians over chunks "
        f"{first[0]}-{first[-1]} and {last[0]}-{last[-1]} of {args.repeats} runs"
    )

    ingest_times(model, tokenizer, 8, args.unit_tokens, False, [1])  # warm-up
    times: dict[bool, dict[int, list[float]]] = {}
    for naive in (False, True):
        times[naive] = {k: [] for k in checkpoints}
        for _ in range(args.repeats):
            run, prefix = ingest_times(model, tokenizer, n, args.unit_tokens, naive, checkpoints)
            for k, seconds in run.items():
                times[naive][k].append(seconds)
    print(f"tokens in the stream at chunk {n}: {prefix}")
    print(f"{'chunk':>6} {'incremental ms':>15} {'naive ms':>10}")
    for k in checkpoints:
        row = [statistics.median(times[naive][k]) * 1e3 for naive in (False, True)]
        print(f"{k:>6} {row[0]:>15.2f} {row[1]:>10.2f}")
    growth = {}
    for naive in (False, True):
        early = statistics.median(t for k in first for t in times[naive][k])
        late = statistics.median(t for k in last for t in times[naive][k])
        growth[naive] = late / early
    print(f"RESULT incremental_growth={growth[False]:.2f} naive_growth={growth[True]:.2f}")


if __name__ == "__main__":
    main()
