"""A group of G rollouts in one session: one batched forward per step, and every row sees exactly
what a single session on its own sequence would (padding holes masked, positions per row)."""

from __future__ import annotations

import torch
from conftest import CHUNKS, QUESTION

from adasr_av.reasoner.sampling import SamplingOptions
from adasr_av.reasoner.session import ReasonerOptions, StreamingReasoner, reason_over_stream

SAMPLED = ReasonerOptions(
    sampling=SamplingOptions(do_sample=True, temperature=2.5, seed=1), max_unit_tokens=8, max_deep_tokens=16
)


def run_group(model, tokenizer, group_size, options=SAMPLED, chunks=CHUNKS, question=QUESTION, answer="6"):
    reasoner = StreamingReasoner(model, tokenizer, options, group_size=group_size)
    seen = []  # the logits each sampling step read: {row: logits} of the rows in the step
    sampler = None

    def recording_sampler(logits, rows=None, of=None):
        seen.append(by_row(logits, rows))
        return sampler(logits, rows, of)

    reasoner_start = reasoner.start

    def start(*args, **kwargs):
        nonlocal sampler
        reasoner_start(*args, **kwargs)
        sampler, reasoner.sampler = reasoner.sampler, recording_sampler

    reasoner.start = start
    list(reason_over_stream(reasoner, chunks, question, answer))
    reasoner.backend.widen()  # the whole batch's cache and mask, for the tests that read them
    return reasoner, seen


def by_row(logits, rows) -> dict[int, torch.Tensor]:
    """A sampling step's logits keyed by row (a step holds only the rows still writing)."""
    return dict(zip(rows if rows is not None else range(len(logits)), logits.clone(), strict=True))


def waited_then_went_on(reasoner, r: int) -> bool:
    """Row r has a masked pad in the cache with real tokens after it."""
    mask = reasoner.backend._mask
    return mask is not None and bool(((mask[r] == 0).cumsum(0) > 0)[mask[r] == 1].any())


def test_rows_are_scored_as_if_each_ran_alone(trained_model, tokenizer):
    reasoner, _ = run_group(trained_model, tokenizer, group_size=4)
    rows = reasoner.rollouts
    assert len({tuple(r.sequence) for r in rows}) > 1, "sampling gave four identical rollouts"
    assert reasoner.backend._mask is not None and (reasoner.backend._mask == 0).any(), (
        "no row ever waited: no holes to test"
    )
    assert [e.type for e in rows[0].events][-1] == "summary"
    assert all(r.events[-1].type == "summary" for r in rows)


def assert_each_row_sampled_from_its_own_logits(model, reasoner, seen) -> None:
    """The logits each written token was sampled from equal a full forward's on that row alone."""
    for r, row in enumerate(reasoner.rollouts):
        with torch.inference_mode():
            full = model(input_ids=torch.tensor([row.sequence])).logits[0]
        written = [p for s in row.spans if s.role == "model" for p in range(s.start, s.end)]
        # the k-th token a row wrote was sampled at some step; find the step by matching logits
        steps = iter(seen)
        for p in written:
            target = full[p - 1]
            assert any(r in step and torch.allclose(step[r], target, atol=1e-4) for step in steps), (
                f"row {r} position {p}"
            )


def test_sampling_logits_match_a_full_pass_on_each_row(trained_model, tokenizer):
    reasoner, seen = run_group(trained_model, tokenizer, group_size=4)
    assert any(waited_then_went_on(reasoner, r) for r in range(4)), (
        "no row wrote after a hole: nothing tested"
    )
    assert_each_row_sampled_from_its_own_logits(trained_model, reasoner, seen)


def test_a_row_whose_deep_phase_ends_first_answers_from_its_own_logits():
    """The bundled model, sampled: rows close their deep reasoning at different steps, and the
    early ones must start their answer from the logits after their own reason_end (a regression:
    they once read a pad's logits and wrote a second reasoning span inside the answer)."""
    from adasr_av.data.dataset import parse_record
    from adasr_av.data.stories import generate_story
    from adasr_av.data.streamed import text_record
    from adasr_av.reasoner.loading import load_reasoner_model

    model, tokenizer = load_reasoner_model("tiny-streaming-sft", dtype="float32")
    story = parse_record(text_record(generate_story(0, "train", 3)), "story 3")
    options = ReasonerOptions(sampling=SamplingOptions(do_sample=True, temperature=0.7, seed=0))
    reasoner, seen = run_group(model, tokenizer, 6, options, story.chunks, story.question, story.answer)
    ends = [r.spans[-1].end for r in reasoner.rollouts]
    deep_lengths = {e.tokens for r in reasoner.rollouts for e in r.events if e.type == "deep"}
    assert len(deep_lengths) > 1, f"every deep phase had the same length ({ends}): nothing tested"
    assert all(r.events[-1].info["violations"] == [] for r in reasoner.rollouts)
    assert_each_row_sampled_from_its_own_logits(model, reasoner, seen)


def test_one_batched_forward_per_step(trained_model, tokenizer):
    shapes = []
    hook = trained_model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        reasoner, _ = run_group(trained_model, tokenizer, group_size=5)
    finally:
        hook.remove()
    assert all(batch == 5 for batch, width in shapes if width > 1)
    assert all(batch <= 5 for batch, _ in shapes)
    longest = max(sum(s.end - s.start for s in r.spans if s.role == "model") for r in reasoner.rollouts)
    prefills = 1 + len(CHUNKS) + 1
    assert len(shapes) <= prefills + longest + 1  # not one loop per rollout
    backend = reasoner.backend
    assert backend.cache.get_seq_length() == backend.encoded_tokens == backend._mask.shape[1]


def test_greedy_group_rows_equal_the_single_session(trained_model, tokenizer):
    greedy = ReasonerOptions(max_unit_tokens=8, max_deep_tokens=16)
    single, _ = run_group(trained_model, tokenizer, 1, greedy)
    group, _ = run_group(trained_model, tokenizer, 3, greedy)
    assert all(row.sequence == single.sequence for row in group.rollouts)
    strip = [(e.type, e.text, e.tokens, e.t_begin, e.t_done) for e in single.events]
    assert all(
        [(e.type, e.text, e.tokens, e.t_begin, e.t_done) for e in row.events] == strip
        for row in group.rollouts
    )


def test_lag_hint_tells_each_row_its_own_lag(trained_model, tokenizer):
    """With a slow clock the chunks wait; the hint puts each row's lag into its chunk span."""
    from adasr_av.timing import CostModel, CostModelClock

    slow = CostModelClock(CostModel("slow", 0.0, 0.0, 0.5))  # half a second per generated token
    options = ReasonerOptions(sampling=SAMPLED.sampling, max_unit_tokens=8, max_deep_tokens=4, lag_hint=True)
    reasoner = StreamingReasoner(trained_model, tokenizer, options, slow, group_size=3)
    list(reason_over_stream(reasoner, CHUNKS, QUESTION, "6"))
    for row in reasoner.rollouts:
        text = reasoner._text(row.sequence)
        chunk_lags = [e.info["lag_s"] for e in row.events if e.type == "chunk"]
        assert chunk_lags[0] == 0 and max(chunk_lags) > 0
        for lag_s in chunk_lags:
            assert f"(lag {lag_s:.1f} s)<|chunk_end|>" in text
    plain = StreamingReasoner(trained_model, tokenizer, SAMPLED, slow)
    list(reason_over_stream(plain, CHUNKS, QUESTION, "6"))
    assert "(lag" not in plain.text


def stories_of_different_lengths():
    from adasr_av.data.dataset import parse_record
    from adasr_av.data.stories import generate_story
    from adasr_av.data.streamed import text_record

    stories = [parse_record(text_record(generate_story(5, "valid", i)), f"s{i}") for i in range(6)]
    stories = sorted(stories, key=lambda s: len(s.chunks))[::2]  # three stories, different lengths
    assert len({len(s.chunks) for s in stories}) == 3
    return stories


def test_groups_of_different_stories_decode_together_as_each_alone(trained_models, tokenizer):
    """A step's groups (three stories of different lengths, two greedy rollouts each) as the six rows
    of one session: rows with nothing to do leave the batch, only the last position's logits are
    asked for while decoding, and each row writes what its story's group writes alone."""
    from adasr_av.hrpo.rollouts import sample_group, sample_groups

    model = trained_models["qwen3"]
    options = ReasonerOptions(max_unit_tokens=8, max_deep_tokens=16)
    stories = stories_of_different_lengths()
    calls = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs["input_ids"].shape, kwargs.get("logits_to_keep"))),
        with_kwargs=True,
    )
    try:
        together = sample_groups(StreamingReasoner(model, tokenizer, options, group_size=2), stories)
    finally:
        hook.remove()
    assert calls[0][0][0] == 6 and calls[-1][0][0] <= 6  # the questions, the answers' last step
    assert all(keep == 1 for shape, keep in calls if shape[1] == 1)  # decode steps: one column
    # once at most half the rows have work (the longest story's chunks, a span closed early on
    # most rows) the batch narrows to them; the others come back later behind masked holes
    assert {shape[0] for shape, _ in calls if shape[1] > 1} > {6}  # narrowed prefills
    assert {shape[0] for shape, _ in calls if shape[1] == 1} > {6}  # narrowed decode steps
    for story, group in zip(stories, together, strict=True):
        alone = sample_group(StreamingReasoner(model, tokenizer, options, group_size=2), story)
        assert [r.tokens for r in group] == [r.tokens for r in alone]
        assert [r.result for r in group] == [r.result for r in alone]
        assert [r.labels for r in group] == [r.labels for r in alone]


def test_logits_of_the_last_columns_only_change_no_choice(trained_models, tokenizer):
    """With and without `logits_to_keep` (a backend that asks the model for every column) the same
    greedy stream comes out, token for token."""
    from adasr_av.reasoner.backend import CacheBackend

    model = trained_models["qwen3"]
    options = ReasonerOptions(max_unit_tokens=8, max_deep_tokens=16)
    keeping = StreamingReasoner(model, tokenizer, options, group_size=3)
    full = StreamingReasoner(model, tokenizer, options, group_size=3)
    assert keeping.backend.keeps_logits
    full.backend = CacheBackend(model, full.backend.pad_id, full.backend.eos_ids, full.max_positions)
    full.backend.keeps_logits = False
    for reasoner in (keeping, full):
        for _ in reason_over_stream(reasoner, CHUNKS, QUESTION, "6"):
            pass
    assert [r.sequence for r in keeping.rollouts] == [r.sequence for r in full.rollouts]


def test_narrowed_batches_with_holes_of_their_own_read_as_each_row_alone(trained_models, tokenizer):
    """Caps chosen so the batch narrows and the narrowed batch has holes of its own: eight rows,
    five stop after one token (8 -> 3 rows), one of the three after two more (a hole inside the
    3-row batch: 2 of 3 writing do not narrow it again), then every row gets a span again (the
    batch widens back) and writes on. The logits each token was sampled from must equal a full
    forward of its row alone."""
    from adasr_av.reasoner.backend import CacheBackend
    from adasr_av.reasoner.sampling import TokenSampler

    model = trained_models["qwen3"]
    backend = CacheBackend(model, tokenizer.pad_token_id or 0, frozenset(), None)
    backend.reset(8)
    sequences = [tokenizer.encode(f"{QUESTION}{' apple' * r}") for r in range(8)]
    written: list[list[int]] = [[] for _ in range(8)]  # positions of each row's sampled tokens
    greedy = TokenSampler(SamplingOptions())
    seen = []

    def sampler(logits, rows=None, of=None):
        seen.append(by_row(logits, rows))
        return greedy(logits, rows, of)

    shapes = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        backend.run(sequences)
        for k, caps in enumerate([[1, 1, 1, 1, 1, 6, 3, 6], [4] * 8]):
            if k:
                more = [tokenizer.encode(CHUNKS[r % 3].text) for r in range(8)]
                for seq, ids in zip(sequences, more, strict=True):
                    seq.extend(ids)
                backend.run(more)
            for r, gen in enumerate(backend.generate(caps, set(), sampler)):
                written[r] += range(len(sequences[r]), len(sequences[r]) + len(gen.tokens))
                sequences[r].extend(gen.tokens)
    finally:
        hook.remove()
    assert set(shapes) == {8, 3}, f"the batch did not narrow as planned: {sorted(set(shapes))}"
    assert [len(w) for w in written] == [5, 5, 5, 5, 5, 10, 7, 10]
    backend.widen()
    assert backend.cache.get_seq_length() == backend.encoded_tokens == backend._mask.shape[1]
    assert (backend._mask == 0).any()
    for r, seq in enumerate(sequences):
        with torch.inference_mode():
            full = model(input_ids=torch.tensor([seq])).logits[0]
        steps = iter(seen)
        for p in written[r]:
            target = full[p - 1]
            assert any(r in step and torch.allclose(step[r], target, atol=1e-4) for step in steps), (
                f"row {r} position {p}"
            )


def test_a_seed_samples_the_same_rollouts_whether_or_not_rows_leave_the_batch():
    """The bundled model sampled on three stories of different lengths, two rows each: the rows of
    the stories that end first leave the batch (narrowing on), or wait in it (off); each row draws
    its own random numbers either way, so both runs write the same tokens."""
    from adasr_av.hrpo.rollouts import sample_groups
    from adasr_av.reasoner.loading import load_reasoner_model

    model, tokenizer = load_reasoner_model("tiny-streaming-sft", dtype="float32")
    options = ReasonerOptions(sampling=SamplingOptions(do_sample=True, temperature=1.0, seed=4))
    stories = stories_of_different_lengths()
    runs, shapes = [], []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        for compacts in (True, False):
            reasoner = StreamingReasoner(model, tokenizer, options, group_size=2)
            reasoner.backend.compacts = compacts
            runs.append([[r.tokens for r in group] for group in sample_groups(reasoner, stories)])
            shapes.append(None)
    finally:
        hook.remove()
    narrowed = shapes[: shapes.index(None)]
    assert min(narrowed) < 6 and set(shapes[len(narrowed) + 1 : -1]) == {6}
    assert runs[0] == runs[1]


def test_inverse_cdf_sampling_follows_the_distribution_and_skips_filtered_tokens():
    from adasr_av.reasoner.sampling import TokenSampler

    probs = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])
    logits = probs.log().expand(20000, -1)
    counts = torch.bincount(TokenSampler(SamplingOptions(do_sample=True, seed=0))(logits), minlength=5)
    assert counts[4] == 0
    # four binomial proportions of n = 20,000: 4.5 standard errors is under 0.016 for each
    assert torch.allclose(counts[:4] / 20000, probs[:4], atol=0.016), counts
    top2 = TokenSampler(SamplingOptions(do_sample=True, top_k=2, seed=0))(logits)
    assert set(top2.tolist()) == {2, 3}
    # a row's draws do not depend on the other rows in the call
    one = TokenSampler(SamplingOptions(do_sample=True, seed=5))
    all_rows = TokenSampler(SamplingOptions(do_sample=True, seed=5))
    uniform = torch.zeros(6, 50)
    assert one(uniform[[1, 4]], [1, 4], 6).tolist() == all_rows(uniform)[[1, 4]].tolist()
