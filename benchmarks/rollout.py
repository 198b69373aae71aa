"""Rollout throughput: generated tokens per second of HRPO's sampled streaming rollouts.

Two comparisons, the same stories and caps on both sides, sampling at temperature 1 as in HRPO:

- `--compare group` (default): a group of G rollouts of one story advancing together in one batched
  forward per step, against the same G rollouts run one at a time.
- `--compare step`: a whole HRPO step (`--stories` groups of G) as the trainer decodes it now, all
  groups as the rows of one session, rows with nothing to do (a story that has ended, a span that
  closed) out of the batch once half are idle, asking the model only for the logits it samples
  from, LoRA merged into the weights; against the step as it was decoded before issue 18: one
  group after another, every row in every forward, every column's logits, LoRA applied unmerged
  at every layer.

`--shape qwen3-1.7b` runs a layer-accurate proxy of Qwen3-1.7B (28 layers, 16 query and 8 KV heads,
its 151,936-entry vocabulary; narrow widths so that it runs on a CPU) with random weights and the
bundled tokenizer (the proxy's extra ids decode to nothing); `bundled` (default) the bundled model.
`--lora` wraps the model with rank-16 adapters on q/k/v/o (random B, so the merge changes weights).
Threads: torch's default unless `--threads` is given.

    python benchmarks/rollout.py [--compare step] [--shape qwen3-1.7b] [--lora] [--group 8] [--stories 4]

Last line: RESULT <after>_tok_s=.. <before>_tok_s=.. speedup=.. (plus decode_ms per step in `step`)
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.hrpo.rollouts import sample_groups
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.sampling import SamplingOptions
from adasr_av.reasoner.session import ReasonerOptions, StreamingReasoner, reason_over_stream
from adasr_av.training.model_setup import ModelConfig, merged_lora, with_lora

SHAPES = {  # a proxy keeps depth, heads and vocabulary; widths are narrow
    "qwen3-1.7b": dict(
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=16,
        hidden_size=256,
        intermediate_size=768,
        vocab_size=151936,
        max_position_embeddings=1024,
    ),
}


def model_and_tokenizer(shape: str, lora: bool):
    model, tokenizer = load_reasoner_model(str(default_model()))
    if shape != "bundled":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        torch.manual_seed(0)
        config = Qwen3Config(**SHAPES[shape], tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id)
        model = Qwen3ForCausalLM(config).eval()
    if lora:
        model = with_lora(model, tokenizer, ModelConfig(lora=True, lora_train_protocol_tokens=False)).eval()
        torch.manual_seed(1)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
    return model, tokenizer


def generated_tokens(reasoner: StreamingReasoner) -> int:
    return sum(s.end - s.start for row in reasoner.rollouts for s in row.spans if s.role == "model")


def options(seed: int) -> ReasonerOptions:
    return ReasonerOptions(sampling=SamplingOptions(do_sample=True, seed=seed), max_deep_tokens=256)


def run_group_compare(model, tokenizer, stories, group: int, batched: bool) -> tuple[int, float]:
    """(tokens generated, seconds): each story's group together, or its rollouts one at a time."""
    tokens, seconds = 0, 0.0
    for k, story in enumerate(stories):
        for r in range(1 if batched else group):
            reasoner = StreamingReasoner(
                model, tokenizer, options(1000 * k + r), group_size=group if batched else 1
            )
            t0 = time.perf_counter()
            for _ in reason_over_stream(
                reasoner, story.chunks, story.question, story.answer, story.t_stream_end
            ):
                pass
            seconds += time.perf_counter() - t0
            tokens += generated_tokens(reasoner)
    return tokens, seconds


class DecodeTimer:
    """Wall time of the forwards that decode one token per row."""

    def __init__(self, model):
        self.times: list[float] = []
        self._t0 = 0.0
        self.hooks = [
            model.register_forward_pre_hook(self._start, with_kwargs=True),
            model.register_forward_hook(self._stop, with_kwargs=True),
        ]

    def _start(self, module, args, kwargs):
        self._width = kwargs["input_ids"].shape[1]
        self._t0 = time.perf_counter()

    def _stop(self, module, args, kwargs, out):
        if self._width == 1:
            self.times.append(time.perf_counter() - self._t0)

    def ms(self) -> float:
        for hook in self.hooks:
            hook.remove()
        return 1000 * sum(self.times) / max(len(self.times), 1)


def run_step_compare(model, tokenizer, stories, group: int, now: bool) -> tuple[int, float, float]:
    """(tokens generated, seconds, decode ms per step) of one HRPO step's rollouts."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    timer = DecodeTimer(inner)
    t0 = time.perf_counter()
    tokens = 0
    if now:
        with merged_lora(model):
            reasoner = StreamingReasoner(model, tokenizer, options(0), group_size=group)
            sample_groups(reasoner, stories)
            tokens = generated_tokens(reasoner)
    else:
        for k, story in enumerate(stories):
            reasoner = StreamingReasoner(model, tokenizer, options(k), group_size=group)
            reasoner.backend.keeps_logits = False
            reasoner.backend.compacts = False
            for _ in reason_over_stream(
                reasoner, story.chunks, story.question, story.answer, story.t_stream_end
            ):
                pass
            tokens += generated_tokens(reasoner)
    return tokens, time.perf_counter() - t0, timer.ms()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", choices=["group", "step"], default="group")
    parser.add_argument("--shape", choices=["bundled", *SHAPES], default="bundled")
    parser.add_argument("--lora", action="store_true", help="rank-16 LoRA on q/k/v/o")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--stories", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = model_and_tokenizer(args.shape, args.lora)
    stories = [
        parse_record(text_record(generate_story(0, "test", 2000 + i)), f"story {i}")
        for i in range(args.stories)
    ]
    threads = torch.get_num_threads()
    print(
        f"model {args.shape}{' + LoRA' if args.lora else ''}, G = {args.group}, {args.stories} stories, "
        f"{threads} threads"
    )
    with torch.inference_mode() if not args.lora else nullcontext():
        if args.compare == "group":
            run_group_compare(model, tokenizer, stories[:1], 2, batched=True)  # warm-up
            b_tokens, b_s = run_group_compare(model, tokenizer, stories, args.group, batched=True)
            s_tokens, s_s = run_group_compare(model, tokenizer, stories, args.group, batched=False)
            print(f"batched:    {b_tokens} tokens in {b_s:.1f} s")
            print(f"sequential: {s_tokens} tokens in {s_s:.1f} s")
            batched, sequential = b_tokens / b_s, s_tokens / s_s
            print(
                f"RESULT batched_tok_s={batched:.1f} sequential_tok_s={sequential:.1f} "
                f"speedup={batched / sequential:.2f}"
            )
            return
        run_step_compare(model, tokenizer, stories[:1], 2, now=True)  # warm-up
        n_tokens, n_s, n_ms = run_step_compare(model, tokenizer, stories, args.group, now=True)
        o_tokens, o_s, o_ms = run_step_compare(model, tokenizer, stories, args.group, now=False)
    print(
        f"now:    {n_tokens} tokens in {n_s:.1f} s, {n_ms:.1f} ms per decode step "
        f"({args.stories * args.group} rows)"
    )
    print(f"before: {o_tokens} tokens in {o_s:.1f} s, {o_ms:.1f} ms per decode step ({args.group} rows)")
    now, before = n_tokens / n_s, o_tokens / o_s
    print(
        f"RESULT now_tok_s={now:.1f} before_tok_s={before:.1f} speedup={now / before:.2f} "
        f"now_decode_ms={n_ms:.1f} before_decode_ms={o_ms:.1f}"
    )


if __name__ == "__main__":
    main()
