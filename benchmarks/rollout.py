"""Rollout throughput: generated tokens per second for a group of G sampled streaming rollouts on
the bundled model, all G advancing together in one batched forward per step, against the same G
rollouts run one at a time.

Stories are the generator's test split (seed 0), in text mode; sampling at temperature 1 as in
HRPO; both ways run the same stories with the same caps. Threads: torch's default unless
`--threads` is given.

    python benchmarks/rollout.py [--group 8] [--stories 4] [--threads 2]

Last line: RESULT batched_tok_s=.. sequential_tok_s=.. speedup=..
"""

from __future__ import annotations

import argparse
import time

import torch

from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.reasoner.loading import default_model, load_reasoner_model
from adasr_av.reasoner.sampling import SamplingOptions
from adasr_av.reasoner.session import ReasonerOptions, StreamingReasoner, reason_over_stream


def generated_tokens(reasoner: StreamingReasoner) -> int:
    return sum(s.end - s.start for row in reasoner.rollouts for s in row.spans if s.role == "model")


def run(model, tokenizer, stories, group: int, batched: bool) -> tuple[int, float]:
    """(tokens generated, seconds) for every story's group of rollouts."""
    tokens, seconds = 0, 0.0
    for k, story in enumerate(stories):
        for r in range(1 if batched else group):
            seed = 1000 * k + r
            options = ReasonerOptions(
                sampling=SamplingOptions(do_sample=True, seed=seed), max_deep_tokens=256
            )
            reasoner = StreamingReasoner(model, tokenizer, options, group_size=group if batched else 1)
            t0 = time.perf_counter()
            for _ in reason_over_stream(
                reasoner, story.chunks, story.question, story.answer, story.t_stream_end
            ):
                pass
            seconds += time.perf_counter() - t0
            tokens += generated_tokens(reasoner)
    return tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--stories", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_reasoner_model(str(default_model()))
    stories = [
        parse_record(text_record(generate_story(0, "test", 2000 + i)), f"story {i}")
        for i in range(args.stories)
    ]
    run(model, tokenizer, stories[:1], 2, batched=True)  # warm-up
    b_tokens, b_s = run(model, tokenizer, stories, args.group, batched=True)
    s_tokens, s_s = run(model, tokenizer, stories, args.group, batched=False)
    batched, sequential = b_tokens / b_s, s_tokens / s_s
    threads = torch.get_num_threads()
    print(f"model {default_model()}, G = {args.group}, {args.stories} stories, {threads} threads")
    print(f"batched:    {b_tokens} tokens in {b_s:.1f} s")
    print(f"sequential: {s_tokens} tokens in {s_s:.1f} s")
    speedup = batched / sequential
    print(f"RESULT batched_tok_s={batched:.1f} sequential_tok_s={sequential:.1f} speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
