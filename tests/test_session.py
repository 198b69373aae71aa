"""The streaming session on real (tiny) Qwen3- and GPT-2-style models."""

from __future__ import annotations

import pytest
import torch
from conftest import CHUNKS, DEEP, QUESTION

from adasr_av.errors import AdasrError
from adasr_av.reasoner.normalize import normalize_text
from adasr_av.reasoner.protocol import ProtocolIds, parse_stream
from adasr_av.reasoner.sampling import SamplingOptions
from adasr_av.reasoner.scratch import build_model
from adasr_av.reasoner.session import (
    ReadThenThinkReasoner,
    ReasonerOptions,
    StreamingReasoner,
    reason_over_stream,
)
from adasr_av.timing import CostModel, CostModelClock
from adasr_av.types import TextChunk


def run(reasoner, chunks=CHUNKS, question=QUESTION, reference="6"):
    return list(reason_over_stream(reasoner, chunks, question, reference))


def types(events):
    return [e.type for e in events]


def test_memorised_model_thinks_skips_and_answers(trained_model, tokenizer):
    events = run(StreamingReasoner(trained_model, tokenizer))
    assert types(events) == ["chunk", "think", "chunk", "skip", "chunk", "think", "deep", "answer", "summary"]
    assert [e.text for e in events if e.type in ("think", "skip")] == ["Tom has 5.", "", "5 + 1 = 6."]
    assert [e.chunk_index for e in events if e.type in ("think", "skip")] == [0, 1, 2]
    assert events[6].text == DEEP[0]
    assert events[7].info["answer"] == "6"
    summary = events[-1].info
    assert summary["correct"] is True and summary["violations"] == []
    assert summary["skips"] == 1
    # units: 5 + 1 tokens ... counted from the events themselves
    assert summary["stream_tokens"] == sum(e.tokens for e in events if e.type in ("think", "skip"))
    assert summary["deep_tokens"] == events[6].tokens + events[7].tokens


def test_cache_is_never_reencoded(trained_model, tokenizer):
    seen = []
    hook = trained_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        reasoner = StreamingReasoner(trained_model, tokenizer)
        run(reasoner)
    finally:
        hook.remove()
    backend = reasoner.backend
    in_cache = len(reasoner.sequence) - 1  # only the final <|answer_end|> was never needed as input
    assert sum(seen) == backend.encoded_tokens == in_cache == backend.cache.get_seq_length()


@pytest.mark.parametrize("trained", [True, False], ids=["memorised", "random"])
def test_incremental_choices_match_full_reencoding(trained, trained_model, arch, tokenizer):
    """Greedy tokens chosen on the incremental cache are the argmax of one full forward pass."""
    model = trained_model if trained else build_model(tokenizer, arch, seed=3)
    reasoner = StreamingReasoner(model, tokenizer, ReasonerOptions(max_unit_tokens=6, max_deep_tokens=12))
    run(reasoner)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([reasoner.sequence])).logits[0]
    model_positions = [p for s in reasoner.spans if s.role == "model" for p in range(s.start, s.end)]
    assert model_positions, "the model wrote nothing"
    for p in model_positions:
        assert logits[p - 1].argmax().item() == reasoner.sequence[p], f"position {p}"


def test_unit_cap_closes_the_unit_and_flags_it(trained_model, tokenizer):
    reasoner = StreamingReasoner(trained_model, tokenizer, ReasonerOptions(max_unit_tokens=2))
    events = run(reasoner)
    thinks = [e for e in events if e.type == "think"]
    assert thinks[0].chunk_index == 0 and thinks[0].info["capped"]  # the gold thought is longer
    capped = [e for e in events if e.info.get("capped")]
    assert all(e.type == "think" and e.tokens == 2 for e in capped if e.type != "deep")
    ids = ProtocolIds.of(tokenizer)
    runtime = [s for s in reasoner.spans if s.role == "runtime" and s.phase == "stream"]
    assert [s.unit for s in runtime] == [e.chunk_index for e in capped if e.type == "think"]
    assert all(reasoner.sequence[s.start : s.end] == [ids.think_end] for s in runtime)


def test_total_cap_forces_skips_and_limits_deep(trained_model, tokenizer):
    first_unit = len(tokenizer.encode("Tom has 5.<|think_end|>"))
    options = ReasonerOptions(max_total_tokens=first_unit + 1)
    events = run(StreamingReasoner(trained_model, tokenizer, options))
    units = [e for e in events if e.type in ("think", "skip")]
    assert units[0].type == "think" and not units[0].info["capped"]
    assert units[1].type == "skip" and not units[1].info["capped"]  # the model's own skip: 1 token
    assert units[2].type == "skip" and units[2].info["capped"] and units[2].tokens == 0
    deep = next(e for e in events if e.type == "deep")
    assert deep.tokens == 0 and deep.info["capped"]
    assert events[-1].info["stream_tokens"] + deep.tokens == options.max_total_tokens


def test_empty_chunk_gives_a_chunk_event_and_no_unit(trained_model, tokenizer):
    reasoner = StreamingReasoner(trained_model, tokenizer)
    reasoner.start(QUESTION)
    reasoner.feed(CHUNKS[0])
    before = list(reasoner.sequence)
    event = reasoner.feed(TextChunk("   ", 1.6, 1.7, 1.7))
    assert event.type == "chunk" and event.tokens == 0 and event.info["empty"]
    assert reasoner.sequence == before
    assert reasoner.events[-1] is event


def test_stream_of_empty_chunks_is_refused(trained_model, tokenizer):
    reasoner = StreamingReasoner(trained_model, tokenizer)
    reasoner.start(QUESTION)
    reasoner.feed(TextChunk("", 0.0, 1.0, 1.0))
    with pytest.raises(AdasrError, match="empty stream"):
        reasoner.finish()


def test_feed_before_start_is_an_error(trained_model, tokenizer):
    with pytest.raises(RuntimeError, match="start"):
        StreamingReasoner(trained_model, tokenizer).feed(CHUNKS[0])


def test_read_then_think_reads_everything_first(trained_model, tokenizer):
    reasoner = ReadThenThinkReasoner(trained_model, tokenizer, ReasonerOptions(max_deep_tokens=20))
    events = run(reasoner)
    assert types(events) == ["chunk", "chunk", "chunk", "deep", "answer", "summary"]
    summary = events[-1].info
    assert summary["mode"] == "read-then-think" and summary["stream_tokens"] == 0
    stream_end = tokenizer.convert_tokens_to_ids("<|stream_end|>")
    end = reasoner.sequence.index(stream_end)
    assert all(s.role == "env" for s in reasoner.spans if s.start < end)
    parsed = parse_stream(reasoner.text, "read-then-think")
    assert parsed.chunks == [normalize_text(c.text) for c in CHUNKS] and parsed.units == []


def test_event_times_follow_the_cost_model(trained_model, tokenizer):
    cost = CostModel("test", prefill_base_s=0.1, prefill_per_token_s=0.01, decode_per_token_s=0.5)
    events = run(StreamingReasoner(trained_model, tokenizer, clock=CostModelClock(cost)))
    busy = None
    for e in events[:-1]:
        if e.type == "chunk":
            assert e.t_avail == next(c.t_emit for c in CHUNKS if c.text == e.text)
            if busy is not None:
                assert e.t_begin == pytest.approx(max(e.t_avail, busy))
            assert e.t_done == pytest.approx(e.t_begin + 0.1 + 0.01 * e.tokens)
        elif e.type in ("think", "skip", "answer"):
            assert e.t_begin == pytest.approx(busy)
            assert e.t_done == pytest.approx(e.t_begin + 0.5 * e.tokens)
        elif e.type == "deep":  # prefill of <|stream_end|> (1 token), then the deep tokens
            assert e.t_begin == pytest.approx(max(CHUNKS[-1].t_emit, busy))
            assert e.t_done == pytest.approx(e.t_begin + 0.11 + 0.5 * e.tokens)
        busy = e.t_done
    summary, answer = events[-1], events[-2]
    assert summary.info["answer_latency_s"] == pytest.approx(answer.t_done - CHUNKS[-1].t_emit, abs=1e-3)
    chunk_events = [e for e in events if e.type == "chunk"]
    lags = [e.t_begin - e.t_avail for e in chunk_events]
    assert max(lags) > 0, "0.5 s per decoded token must make the reasoner fall behind"
    assert summary.info["max_lag_s"] == pytest.approx(max(lags), abs=1e-3)
    unit_done = {e.chunk_index: e.t_done for e in events if e.type in ("think", "skip")}
    overflow = sum(max(0.0, unit_done[i] - chunk_events[i + 1].t_avail) for i in range(2))
    assert summary.info["overflow_s"] == pytest.approx(overflow, abs=1e-3)
    assert summary.info["clock"] == "cost-model" and summary.info["cost_profile"] == "test"


def test_sampling_is_seeded(tokenizer):
    model = build_model(tokenizer, "qwen3", seed=1, hidden=32)

    def sample(seed, **kw):
        options = ReasonerOptions(SamplingOptions(do_sample=True, seed=seed, **kw), max_unit_tokens=8)
        reasoner = StreamingReasoner(model, tokenizer, options)
        run(reasoner)
        return reasoner.sequence

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)
    greedy = StreamingReasoner(model, tokenizer, ReasonerOptions(max_unit_tokens=8))
    run(greedy)
    assert sample(5, top_k=1) == greedy.sequence


def test_a_model_too_short_for_the_question_is_refused_before_streaming(tokenizer):
    """80 positions: half are kept for the deep phase and answer, and the prompt alone takes more
    than the 40 left (longer streams on a model that fits are compacted: test_context.py)."""
    model = build_model(tokenizer, "gpt2", hidden=32, max_positions=80)
    reasoner = StreamingReasoner(model, tokenizer)
    with pytest.raises(AdasrError, match=r"--context-tokens 40 is too small: .* the minimum is \d+"):
        run(reasoner, chunks=CHUNKS * 10)


def test_generation_is_capped_by_the_positions_left(tokenizer):
    """A model that never closes its spans stops where its positions run out, and still answers."""
    model = build_model(tokenizer, "qwen3", hidden=32, max_positions=200)
    reasoner = StreamingReasoner(model, tokenizer, ReasonerOptions(max_unit_tokens=8, max_deep_tokens=512))
    events = run(reasoner)
    assert events[-1].type == "summary" and len(reasoner.sequence) <= 200
    deep = next(e for e in events if e.type == "deep")
    assert deep.info["capped"] and 0 < deep.tokens < 512
