"""Streams of any length: the context policy, compaction in the lone and the group session, and the
cache the model is handed."""

from __future__ import annotations

import warnings
from functools import cache

import pytest
import torch
from conftest import CHUNKS, QUESTION
from hypothesis import given, settings
from hypothesis import strategies as st

from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_long_story
from adasr_av.data.streamed import text_record
from adasr_av.errors import AdasrError
from adasr_av.reasoner.context import ContextPolicy, Piece
from adasr_av.reasoner.kv_cache import cache_argument
from adasr_av.reasoner.protocol import chunk_span, encode_span
from adasr_av.reasoner.sampling import SamplingOptions
from adasr_av.reasoner.scratch import build_model
from adasr_av.reasoner.session import (
    ReadThenThinkReasoner,
    ReasonerOptions,
    StreamingReasoner,
    reason_over_stream,
)
from adasr_av.timing import PAPER_PROFILE, CostModelClock
from adasr_av.types import TextChunk


@cache
def bundled():
    from adasr_av.reasoner.loading import load_reasoner_model

    return load_reasoner_model("tiny-streaming", dtype="float32")


@cache
def long_story(minutes: float = 6, seed: int = 0, update_every_s: float = 25.0):
    """Updates every 25 s of speech: some arrive right after a compaction."""
    return parse_record(text_record(generate_long_story(seed, minutes, update_every_s)), f"long story {seed}")


def many_chunks(n: int) -> list[TextChunk]:
    """`n` chunks cycling through the memorised story's sentences, 2 s apart."""
    return [TextChunk(CHUNKS[i % len(CHUNKS)].text, 2.0 * i, 2.0 * i + 2, 2.0 * i + 2) for i in range(n)]


# --- the policy on its own -------------------------------------------------------------------------

pieces_strategy = st.lists(st.tuples(st.integers(1, 40), st.booleans()), min_size=1, max_size=60)


def as_pieces(prompt: int, sizes: list[tuple[int, bool]]) -> list[Piece]:
    pieces, at = [Piece(0, prompt)], prompt
    for i, (size, thinks) in enumerate(sizes):
        pieces.append(Piece(at, at + size, i, thinks))
        at += size
    return pieces


@settings(max_examples=300, deadline=None)
@given(
    sizes=pieces_strategy,
    prompt=st.integers(1, 60),
    budget=st.integers(150, 600),
    retain=st.floats(0.1, 0.9),
    keep=st.integers(0, 3),
    incoming=st.integers(1, 40),
)
def test_kept_pieces_hold_the_prompt_the_latest_thoughts_and_fit(
    sizes, prompt, budget, retain, keep, incoming
):
    policy = ContextPolicy(budget, retain, keep)
    pieces = as_pieces(prompt, sizes)
    kept = policy.kept(pieces, incoming)
    assert kept[0] == pieces[0], "the prompt is always kept"
    assert [p.chunk_index for p in kept[1:]] == sorted({p.chunk_index for p in kept[1:]}), "order kept"
    size = sum(p.size for p in kept)
    assert size + incoming <= budget or kept == pieces[:1], "what is kept leaves room for the chunk"
    thoughts = [p for p in pieces[1:] if p.thinks][-keep:] if keep else []
    for thought in thoughts:  # pinned however old, as long as the chunk still fits beside them
        room = (
            budget - incoming - prompt - sum(t.size for t in thoughts if t.chunk_index > thought.chunk_index)
        )
        if thought.size <= room:
            assert thought in kept
    recent = [p for p in kept[1:] if p not in thoughts]
    if recent:  # the most recent pieces: a suffix of the stream, within the retain budget
        newest = [p for p in pieces[1:] if p not in thoughts]
        assert recent == newest[len(newest) - len(recent) :]
        assert sum(p.size for p in kept) <= max(int(retain * budget), prompt + sum(t.size for t in thoughts))


def test_plain_recency_forgets_an_old_thought_and_the_state_policy_keeps_it():
    pieces = as_pieces(40, [(20, True)] + [(10, False)] * 30)
    assert pieces[1] not in ContextPolicy(200, 0.5, keep_thoughts=0).kept(pieces, 10)
    kept = ContextPolicy(200, 0.5, keep_thoughts=1).kept(pieces, 10)
    assert pieces[1] in kept and pieces[-1] in kept and sum(p.size for p in kept) <= 100


# --- the session -----------------------------------------------------------------------------------


def stream_long(reasoner, story, question=""):
    """Feed the story chunk by chunk; returns [(chunk index, context ids after the feed, events)]."""
    reasoner.start(question, story.answer)
    steps = []
    for chunk in story.chunks:
        n = len(reasoner.events)
        reasoner.feed(chunk)
        steps.append((chunk, list(reasoner.rollouts[0].context), reasoner.events[n:]))
    return steps, reasoner.finish(story.t_stream_end)


def greedy_unit(model, ids: list[int], stops: frozenset[int], cap: int) -> list[int]:
    """The unit a fresh model gives after `ids`: full forwards, no cache, no session."""
    written = []
    with torch.inference_mode():
        while len(written) < cap:
            token = int(model(input_ids=torch.tensor([ids + written])).logits[0, -1].argmax())
            written.append(token)
            if token in stops:
                break
    return written


def test_after_a_compaction_the_next_unit_is_a_fresh_sessions_on_the_kept_text():
    model, tokenizer = bundled()
    reasoner = StreamingReasoner(model, tokenizer, ReasonerOptions())
    steps, _ = stream_long(reasoner, long_story())
    compacted = [(chunk, ctx, events) for chunk, ctx, events in steps if events[0].type == "context"]
    assert len(compacted) >= 5, "no compaction to test"
    thoughts_checked = 0
    for chunk, context, events in compacted:
        chunk_ids = encode_span(tokenizer, chunk_span(chunk.text))
        kept = context[: events[0].info["tokens_after"]]
        assert context[len(kept) : len(kept) + len(chunk_ids)] == chunk_ids
        unit = context[len(kept) + len(chunk_ids) :]
        fresh = greedy_unit(model, kept + chunk_ids, reasoner.ids.all, reasoner.options.max_unit_tokens)
        assert unit == fresh, f"chunk {events[0].chunk_index}: {tokenizer.decode(unit)!r}"
        thoughts_checked += events[-1].type == "think"
    assert thoughts_checked >= 1, "every unit after a compaction was a skip: a thought was not tested"


def test_the_question_and_the_latest_thought_survive_every_compaction():
    model, tokenizer = bundled()
    question = "How many apples does the holder have at the end?"
    reasoner = StreamingReasoner(model, tokenizer, ReasonerOptions())
    steps, _ = stream_long(reasoner, long_story(), question)
    prompt = tokenizer.decode(reasoner.rollouts[0].context[: reasoner.rollouts[0].pieces[0].end])
    assert question in prompt
    latest_thought = None
    compactions = 0
    for _, context, events in steps:
        text = tokenizer.decode(context)
        if events[0].type == "context":
            compactions += 1
            assert text.startswith(prompt)
            assert latest_thought is not None and f"{latest_thought}<|think_end|>" in text.replace(
                " <|think_end|>", "<|think_end|>"
            )
        latest_thought = next((e.text for e in events if e.type == "think"), latest_thought)
    assert compactions >= 5


def test_compactions_are_events_that_cost_stream_seconds_and_are_rare():
    model, tokenizer = bundled()
    clock = CostModelClock(PAPER_PROFILE)
    reasoner = StreamingReasoner(model, tokenizer, ReasonerOptions(), clock)
    steps, final = stream_long(reasoner, long_story())
    events = reasoner.events
    contexts = [e for e in events if e.type == "context"]
    assert contexts and final[-1].info["compactions"] == len(contexts)
    assert final[-1].info["chunks_dropped"] == sum(e.info["chunks_dropped"] for e in contexts)
    for e in contexts:
        info = e.info
        assert info["tokens_after"] < info["tokens_before"] and info["chunks_dropped"] >= 1
        assert info["tokens_after"] <= reasoner.policy.budget and e.tokens == info["tokens_after"]
        assert info["cost_s"] == pytest.approx(PAPER_PROFILE.prefill(info["tokens_after"]), abs=1e-4)
        assert e.t_done - e.t_begin == pytest.approx(info["cost_s"], abs=1e-4) and e.t_begin >= e.t_avail
        chunk = events[events.index(e) + 1]
        assert chunk.type == "chunk" and chunk.chunk_index == e.chunk_index
        assert chunk.t_begin == pytest.approx(e.t_done), "the chunk waits for the compaction"
    indices = [e.chunk_index for e in contexts]
    assert all(b - a > 1 for a, b in zip(indices, indices[1:], strict=False)), (
        "compacted on consecutive chunks"
    )


@pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
def test_a_256_position_model_streams_200_chunks_to_an_answer(tokenizer, arch):
    model = build_model(tokenizer, arch, hidden=32, max_positions=256)
    options = ReasonerOptions(max_unit_tokens=8, max_deep_tokens=24, max_answer_tokens=8)
    positions = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: positions.append(
            kwargs["cache"].get_seq_length() + kwargs["input_ids"].shape[1]
        ),
        with_kwargs=True,
    )
    try:
        events = list(
            reason_over_stream(StreamingReasoner(model, tokenizer, options), many_chunks(200), QUESTION)
        )
    finally:
        hook.remove()
    summary = events[-1]
    assert summary.type == "summary" and sum(e.type == "chunk" for e in events) == 200
    assert summary.info["compactions"] >= 5 and max(positions) <= 256


def test_read_then_think_reports_the_truncation_instead_of_failing(tokenizer):
    model = build_model(tokenizer, "gpt2", hidden=32, max_positions=256)
    options = ReasonerOptions(max_deep_tokens=24, max_answer_tokens=8)
    events = list(
        reason_over_stream(ReadThenThinkReasoner(model, tokenizer, options), many_chunks(60), QUESTION)
    )
    summary = events[-1]
    assert summary.info["mode"] == "read-then-think" and summary.info["truncated"] is True
    assert summary.info["chunks_dropped"] > 0 and any(e.type == "deep" for e in events)
    short = list(
        reason_over_stream(ReadThenThinkReasoner(model, tokenizer, options), many_chunks(3), QUESTION)
    )
    assert short[-1].info["truncated"] is False and short[-1].info["chunks_dropped"] == 0


# --- the group session -----------------------------------------------------------------------------


def sampled_group(model, tokenizer, group_size, options, chunks):
    reasoner = StreamingReasoner(model, tokenizer, options, group_size=group_size)
    seen = []
    reasoner.start(QUESTION, "6")
    sampler = reasoner.sampler

    def recording(logits, rows=None, of=None):  # {row: logits} of the rows still writing
        seen.append(dict(zip(rows if rows is not None else range(len(logits)), logits.clone(), strict=True)))
        return sampler(logits, rows, of)

    reasoner.sampler = recording
    for chunk in chunks:
        reasoner.feed(chunk)
    reasoner.finish()
    return reasoner, seen


def test_each_group_row_compacts_and_samples_as_a_lone_session_would(trained_model, tokenizer):
    """Sampled rows write units of different lengths, so they compact at different chunks; every
    token a row wrote was drawn from the logits a full pass over that row's own context gives."""
    options = ReasonerOptions(
        sampling=SamplingOptions(do_sample=True, temperature=2.0, seed=3),
        max_unit_tokens=12,
        max_deep_tokens=8,
        context_tokens=110,
    )
    reasoner, seen = sampled_group(trained_model, tokenizer, 4, options, many_chunks(30))
    at = [tuple(e.chunk_index for e in r.events if e.type == "context") for r in reasoner.rollouts]
    assert all(at) and len(set(at)) > 1, f"rows compacted at the same chunks {at}: nothing tested"
    for r, row in enumerate(reasoner.rollouts):
        assert len(row.segments) == 1 + len(at[r])
        steps = iter(seen)
        bounds = [s.start for s in row.segments[1:]] + [len(row.sequence)]
        for segment, end in zip(row.segments, bounds, strict=True):
            view = list(segment.prefix) + row.sequence[segment.start : end]
            with torch.inference_mode():
                logits = trained_model(input_ids=torch.tensor([view])).logits[0]
            shift = len(segment.prefix) - segment.start
            for span in row.spans:
                for p in range(max(span.start, segment.start), min(span.end, end)):
                    if span.role == "model":
                        target = logits[p + shift - 1]
                        assert any(r in s and torch.allclose(s[r], target, atol=1e-4) for s in steps), (
                            f"row {r} at {p}"
                        )


def test_a_greedy_group_compacts_exactly_as_the_lone_session(trained_model, tokenizer):
    options = ReasonerOptions(max_unit_tokens=8, max_deep_tokens=8, context_tokens=100)
    lone, _ = sampled_group(trained_model, tokenizer, 1, options, many_chunks(40))
    group, _ = sampled_group(trained_model, tokenizer, 3, options, many_chunks(40))

    def strip(row):
        return [
            (e.type, e.text, e.tokens, e.t_begin, e.t_done, e.info.get("tokens_before")) for e in row.events
        ]

    assert any(e.type == "context" for e in lone.events)
    for row in group.rollouts:
        assert row.sequence == lone.sequence and row.context == lone.rollouts[0].context
        assert strip(row) == strip(lone.rollouts[0])


# --- the cache and bad budgets ---------------------------------------------------------------------


def test_the_cache_goes_under_the_name_the_model_takes(tokenizer, arch):
    import inspect

    model = build_model(tokenizer, arch, hidden=32)
    name = cache_argument(model)
    assert name in inspect.signature(type(model).forward).parameters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(
            reason_over_stream(
                StreamingReasoner(model, tokenizer, ReasonerOptions(max_deep_tokens=4)), CHUNKS
            )
        )
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_a_forward_that_ignores_the_cache_is_an_error(tokenizer):
    """A wrong cache keyword is the real fault: transformers takes it into **kwargs and runs with an
    empty cache, so the model would see only the newest chunk."""
    reasoner = StreamingReasoner(build_model(tokenizer, "qwen3", hidden=32), tokenizer)
    reasoner.backend.cache_argument = "cache_by_another_name"
    with pytest.raises(AdasrError, match="ignored its KV cache: 0 tokens cached after"):
        reasoner.start(QUESTION)


def test_a_budget_too_small_or_too_large_is_one_clear_error(tokenizer):
    model = build_model(tokenizer, "qwen3", hidden=32, max_positions=1024)
    with pytest.raises(AdasrError, match=r"--context-tokens 30 is too small: .* the minimum is \d+"):
        StreamingReasoner(model, tokenizer, ReasonerOptions(context_tokens=30)).start(QUESTION)
    with pytest.raises(AdasrError, match="--context-tokens 2000 does not fit the model: of its 1024"):
        StreamingReasoner(model, tokenizer, ReasonerOptions(context_tokens=2000))
    with pytest.raises(AdasrError, match="--retain must be between 0 and 1"):
        ReasonerOptions(retain=1.0)


def test_hrpo_recomputes_log_probs_on_the_contexts_the_rollout_was_sampled_in():
    """Greedy tokens are the argmax of the context they were written in: after compactions that is
    each segment's view (kept text, then what followed), not the rollout's whole sequence."""
    from adasr_av.hrpo.loss import policy_batch
    from adasr_av.hrpo.rollouts import sample_group

    model, tokenizer = bundled()
    story = long_story(minutes=3)
    (rollout,) = sample_group(StreamingReasoner(model, tokenizer, ReasonerOptions()), story)
    views = rollout.model_views([1.0] * len(rollout.tokens))
    assert len(views) == len(rollout.segments) > 2
    written = sum(p != "env" for p in rollout.labels.phase)
    assert sum(sum(mask) for _, mask, _ in views) == written, "every model token trained exactly once"

    def argmax_misses(sequences, masks) -> int:
        batch = policy_batch(sequences, masks, [[0.0] * len(s) for s in sequences], 0)
        with torch.inference_mode():
            best = (
                model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
                .logits[:, :-1]
                .argmax(-1)
            )
        hit = (best == batch.input_ids[:, 1:]).float()
        return int(((1 - hit) * batch.loss_mask).sum())

    assert argmax_misses([v[0] for v in views], [v[1] for v in views]) == 0
    whole = [[p != "env" for p in rollout.labels.phase]]
    assert argmax_misses([rollout.tokens], whole) > 0, "the whole sequence is not what the model saw"


@settings(max_examples=200, deadline=None)
@given(sizes=pieces_strategy, window=st.integers(2, 12))
def test_a_skip_window_keeps_half_of_it_and_every_recent_thought(sizes, window):
    policy = ContextPolicy(10**6, 0.9, keep_thoughts=1, skip_window=window)
    pieces = as_pieces(30, sizes)
    skips = sum(not thinks for _, thinks in sizes)
    assert policy.needs_compaction(pieces, 1) == (skips > window)
    kept = policy.kept(pieces, 1)
    assert sum(not p.thinks for p in kept[1:]) <= window // 2
    assert not policy.needs_compaction(kept, 1), "a compaction that does not end the need would repeat"
    newest_skip = max((p.chunk_index for p in pieces[1:] if not p.thinks), default=None)
    later_thoughts = [
        p for p in pieces[1:] if p.thinks and (newest_skip is None or p.chunk_index > newest_skip)
    ]
    assert all(p in kept for p in later_thoughts), "thoughts after the newest skip are recent: kept"


def test_the_bundled_model_declares_its_skip_window_and_read_then_think_has_none():
    model, tokenizer = bundled()
    assert StreamingReasoner(model, tokenizer).policy.skip_window == 6
    assert StreamingReasoner(model, tokenizer, ReasonerOptions(skip_window=0)).policy.skip_window is None
    assert ReadThenThinkReasoner(model, tokenizer).policy.skip_window is None


@pytest.mark.slow
def test_a_20_minute_text_stream_through_adasr_av_reason_is_answered_right(capsys, tmp_path):
    """Four updates of one holder, five minutes of small talk apart (about 100 compactions). Seed 0
    of this stream; seed 1 is answered wrong by a slip of the model's arithmetic (99 - 97 = 1),
    not by the context: the state it wrote is carried to the end either way."""
    from adasr_av.cli import main

    story = generate_long_story(0, 20, update_every_s=300)
    out = tmp_path / "events.jsonl"
    assert main(["reason", "--text", story.text, "--reference", str(story.answer), "--out", str(out)]) == 0
    assert f"answer: {story.answer}  correct=True" in capsys.readouterr().out
    import json

    summary = json.loads(out.read_text().splitlines()[-1])
    assert summary["compactions"] >= 50 and summary["violations"] == []


def test_a_chunk_longer_than_the_budget_is_cut_to_its_end_and_the_stream_goes_on(tokenizer):
    model = build_model(tokenizer, "qwen3", hidden=32, max_positions=1024)
    options = ReasonerOptions(max_unit_tokens=4, max_deep_tokens=4, max_answer_tokens=4, context_tokens=120)
    long_text = " ".join(["Tom walks to the market and back again."] * 30)
    chunks = [
        CHUNKS[0],
        TextChunk(long_text, 2.0, 60.0, 60.0),
        TextChunk("He buys one more apple.", 60, 62, 62),
    ]
    events = list(reason_over_stream(StreamingReasoner(model, tokenizer, options), chunks, QUESTION))
    cut = [e for e in events if e.type == "chunk" and "truncated_tokens" in e.info]
    assert len(cut) == 1 and cut[0].chunk_index == 1 and cut[0].info["truncated_tokens"] > 0
    assert events[-1].type == "summary" and events[-1].info["compactions"] >= 1
