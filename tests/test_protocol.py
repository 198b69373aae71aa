"""The streaming protocol: span builders, parser, validator and tokenizer set-up (no trained model)."""

from __future__ import annotations

import warnings

import pytest

from adasr_av.reasoner.protocol import (
    ANSWER_END,
    CHUNK_END,
    DEFAULT_INSTRUCTION,
    PROTOCOL_TOKENS,
    QUESTION_END,
    REASON_END,
    SKIP,
    STREAM_END,
    THINK_END,
    ProtocolIds,
    Unit,
    add_protocol_tokens,
    chunk_span,
    deep_span,
    parse_stream,
    question_span,
    skip_unit,
    stream_end_span,
    thought_unit,
    validate_stream,
)

QUESTION = "How many apples does Tom have?"
CHUNK_TEXTS = ["Tom has 5 apples.", "The sky is blue.", "He buys 1 more."]  # as normalised

Q = question_span(QUESTION)
C0, C1, C2 = (chunk_span(t) for t in CHUNK_TEXTS)
T0 = thought_unit("Tom has 5.")
T2 = thought_unit("5 + 1 = 6.")
S = skip_unit()
END = stream_end_span()
DEEP = deep_span("He had 5 and bought 1, so 6.", "6")

VALID_STREAMING = Q + C0 + T0 + C1 + S + C2 + T2 + END + DEEP
VALID_READ_THEN_THINK = Q + C0 + C1 + C2 + END + DEEP


# --- span builders -------------------------------------------------------------------------------


def test_span_builders_write_the_exact_protocol_text():
    assert PROTOCOL_TOKENS == (
        "<|question_end|>",
        "<|chunk_end|>",
        "<|think_end|>",
        "<|skip|>",
        "<|stream_end|>",
        "<|reason_end|>",
        "<|answer_end|>",
    )
    assert question_span("  Why?  ", instruction="Listen.\n") == "Listen.\nWhy?<|question_end|>"
    assert question_span("Why?") == DEFAULT_INSTRUCTION + "Why?<|question_end|>"
    assert question_span("") == DEFAULT_INSTRUCTION + "<|question_end|>"
    assert chunk_span("  Tom has five apples. ") == "Tom has 5 apples.<|chunk_end|>"  # normalised
    assert thought_unit(" Tom has 5.\n") == "Tom has 5.<|think_end|>"
    assert skip_unit() == "<|skip|>"
    assert stream_end_span() == "<|stream_end|>"
    assert deep_span(" So 6. ", "6") == "So 6.<|reason_end|>\\boxed{6}<|answer_end|>"
    assert deep_span("r", "\\frac{1}{2}") == "r<|reason_end|>\\boxed{\\frac{1}{2}}<|answer_end|>"


# --- valid sequences -----------------------------------------------------------------------------


def test_valid_streaming_sequence_parses_into_its_parts():
    parsed = parse_stream(VALID_STREAMING)
    assert parsed.violations == []
    assert parsed.prompt == DEFAULT_INSTRUCTION + QUESTION
    assert parsed.chunks == CHUNK_TEXTS
    assert parsed.units == [
        Unit("think", "Tom has 5.", 0),
        Unit("skip", "", 1),
        Unit("think", "5 + 1 = 6.", 2),
    ]
    assert parsed.deep == "He had 5 and bought 1, so 6."
    assert parsed.answer_text == "\\boxed{6}"
    assert parsed.answer == "6"
    assert validate_stream(VALID_STREAMING) == []
    assert validate_stream(VALID_STREAMING, "streaming") == []


def test_valid_read_then_think_sequence_parses_into_its_parts():
    parsed = parse_stream(VALID_READ_THEN_THINK, "read-then-think")
    assert parsed.violations == []
    assert parsed.chunks == CHUNK_TEXTS
    assert parsed.units == []
    assert parsed.deep == "He had 5 and bought 1, so 6."
    assert parsed.answer == "6"


def test_empty_question_and_all_skips_are_valid():
    text = question_span("") + C0 + S + C1 + S + END + deep_span("Nothing to add.", "none")
    parsed = parse_stream(text)
    assert parsed.violations == []
    assert parsed.prompt == DEFAULT_INSTRUCTION
    assert parsed.units == [Unit("skip", "", 0), Unit("skip", "", 1)]
    assert parsed.answer == "none"


@pytest.mark.parametrize("mode", ["streaming", "read-then-think"])
def test_stream_with_no_chunks_is_valid(mode):
    parsed = parse_stream(Q + END + DEEP, mode)
    assert parsed.violations == []
    assert parsed.chunks == []
    assert parsed.units == []
    assert parsed.answer == "6"


def test_nested_boxed_answer_is_parsed_whole():
    parsed = parse_stream(Q + C0 + T0 + END + deep_span("Half.", "\\frac{1}{2}"))
    assert parsed.violations == []
    assert parsed.answer == "\\frac{1}{2}"


def test_modes_are_not_interchangeable():
    # A read-then-think sequence is missing every unit when read as a streaming one ...
    assert validate_stream(VALID_READ_THEN_THINK, "streaming") == [
        "chunk 0 has no unit",
        "chunk 1 has no unit",
        "chunk 2 has no unit",
    ]
    # ... and a streaming sequence has units where read-then-think allows none.
    assert validate_stream(VALID_STREAMING, "read-then-think") == [
        "unit after chunk 0 in a read-then-think stream",
        "unit after chunk 1 in a read-then-think stream",
        "unit after chunk 2 in a read-then-think stream",
    ]


# --- violations ----------------------------------------------------------------------------------

VIOLATIONS = {
    "missing question end, nothing else": (DEFAULT_INSTRUCTION + QUESTION, ["missing <|question_end|>"]),
    "missing question end, whole stream": (
        DEFAULT_INSTRUCTION + QUESTION + C0 + T0 + END + DEEP,
        [
            "<|chunk_end|> before <|question_end|>",
            "<|think_end|> before <|question_end|>",
            "<|stream_end|> before <|question_end|>",
            "<|reason_end|> before <|question_end|>",
            "<|answer_end|> before <|question_end|>",
            "missing <|question_end|>",
        ],
    ),
    "chunk without a unit, followed by a chunk": (Q + C0 + C1 + S + END + DEEP, ["chunk 0 has no unit"]),
    "last chunk without a unit": (Q + C0 + T0 + C1 + END + DEEP, ["chunk 1 has no unit"]),
    "unit closed twice by think_end": (
        Q + C0 + T0 + THINK_END + END + DEEP,
        ["<|think_end|> inside chunk 1"],
    ),
    "unit closed twice by skip": (Q + C0 + S + S + END + DEEP, ["<|skip|> inside chunk 1"]),
    "thought then skip": (Q + C0 + T0 + S + END + DEEP, ["<|skip|> inside chunk 1"]),
    "text before skip": (Q + C0 + "Hmm." + SKIP + END + DEEP, ["unit 0: text before <|skip|>"]),
    "empty thought": (Q + C0 + THINK_END + END + DEEP, ["unit 0: empty thought (use <|skip|>)"]),
    "blank thought": (Q + C0 + "  \n " + THINK_END + END + DEEP, ["unit 0: empty thought (use <|skip|>)"]),
    "unit not closed before stream end": (
        Q + C0 + "Tom has" + STREAM_END + DEEP,
        ["unit 0 is not closed"],
    ),
    "unit not closed at end of text": (
        Q + C0 + "Tom has",
        ["unit 0 is not closed", "missing <|stream_end|>"],
    ),
    "chunk not closed before stream end": (
        Q + C0 + T0 + "The sky" + STREAM_END + DEEP,
        ["chunk 1 is not closed by <|chunk_end|>"],
    ),
    "missing stream end, text stops after a unit": (Q + C0 + T0, ["missing <|stream_end|>"]),
    "missing stream end, text stops after a chunk": (Q + C0, ["missing <|stream_end|>"]),
    "missing stream end before the deep reasoning": (
        Q + C0 + T0 + DEEP,
        ["<|reason_end|> inside chunk 1", "<|answer_end|> inside chunk 1", "missing <|stream_end|>"],
    ),
    "missing reason end before the answer": (
        Q + C0 + T0 + END + "So \\boxed{6}" + ANSWER_END,
        ["missing <|reason_end|>"],
    ),
    "missing reason end at end of text": (
        Q + C0 + T0 + END + "He had 5",
        ["missing <|reason_end|>", "missing <|answer_end|>"],
    ),
    "missing answer end": (
        Q + C0 + T0 + END + "So 6." + REASON_END + "\\boxed{6}",
        ["missing <|answer_end|>"],
    ),
    "text after answer end": (VALID_STREAMING + " And more.", ["text after <|answer_end|>"]),
    "token after answer end": (VALID_STREAMING + CHUNK_END, ["<|chunk_end|> after <|answer_end|>"]),
    "answer with no boxed": (
        Q + C0 + T0 + END + "So 6." + REASON_END + "6" + ANSWER_END,
        ["answer has no \\boxed{...}"],
    ),
    "answer with an unbalanced box": (
        Q + C0 + T0 + END + "So 6." + REASON_END + "\\boxed{6" + ANSWER_END,
        ["answer has no \\boxed{...}"],
    ),
    "question end inside a unit": (
        Q + C0 + "Tom" + QUESTION_END + "has 5." + THINK_END + END + DEEP,
        ["<|question_end|> inside unit 0"],
    ),
    "chunk end inside the deep reasoning": (
        Q + C0 + T0 + END + "So" + CHUNK_END + "6." + REASON_END + "\\boxed{6}" + ANSWER_END,
        ["<|chunk_end|> inside the deep reasoning"],
    ),
    "skip inside the answer": (
        Q + C0 + T0 + END + "So 6." + REASON_END + SKIP + "\\boxed{6}" + ANSWER_END,
        ["<|skip|> inside the answer"],
    ),
}


@pytest.mark.parametrize("text, expected", list(VIOLATIONS.values()), ids=list(VIOLATIONS))
def test_each_violation_is_reported(text, expected):
    assert validate_stream(text) == expected
    assert parse_stream(text).violations == expected


RTT_VIOLATIONS = {
    "thought in read-then-think": (
        Q + C0 + T0 + C1 + END + DEEP,
        ["unit after chunk 0 in a read-then-think stream"],
    ),
    "skip in read-then-think": (
        Q + C0 + C1 + S + END + DEEP,
        ["unit after chunk 1 in a read-then-think stream"],
    ),
    "missing stream end in read-then-think": (Q + C0 + C1, ["missing <|stream_end|>"]),
    "chunk not closed in read-then-think": (
        Q + C0 + "The sky" + STREAM_END + DEEP,
        ["chunk 1 is not closed by <|chunk_end|>"],
    ),
}


@pytest.mark.parametrize("text, expected", list(RTT_VIOLATIONS.values()), ids=list(RTT_VIOLATIONS))
def test_each_read_then_think_violation_is_reported(text, expected):
    assert validate_stream(text, "read-then-think") == expected


def test_parts_are_still_recovered_around_violations():
    parsed = parse_stream(Q + C0 + C1 + S + END + DEEP)
    assert parsed.chunks == CHUNK_TEXTS[:2]
    assert parsed.units == [Unit("skip", "", 1)]  # the unit answers the last closed chunk
    assert parsed.answer == "6"

    parsed = parse_stream(Q + C0 + "Hmm." + SKIP + END + DEEP)
    assert parsed.units == [Unit("skip", "", 0)]

    parsed = parse_stream(Q + C0 + T0 + END + "So \\boxed{6}" + ANSWER_END)
    assert parsed.deep is None
    assert parsed.answer_text == "So \\boxed{6}"
    assert parsed.answer == "6"

    parsed = parse_stream(Q + C0 + T0 + END + "He had 5")
    assert parsed.deep == "He had 5"
    assert parsed.answer_text is None
    assert parsed.answer is None

    parsed = parse_stream(Q + C0 + T0 + END + "So 6." + REASON_END + "\\boxed{6}")
    assert parsed.deep == "So 6."
    assert parsed.answer == "6"

    parsed = parse_stream(Q + C0 + T0 + C1 + T0 + END + DEEP, "read-then-think")
    assert parsed.chunks == CHUNK_TEXTS[:2]
    assert parsed.units == []


def test_repeated_violations_are_collapsed_with_a_count():
    third = thought_unit("Still 5.")
    assert validate_stream(Q + C0 + T0 + T0 + third + END + DEEP) == ["<|think_end|> inside chunk 1 (x2)"]
    assert validate_stream(VALID_STREAMING + SKIP + SKIP + SKIP) == ["<|skip|> after <|answer_end|> (x3)"]
    # Counted per message, in order of first appearance.
    assert validate_stream(VALID_STREAMING + SKIP + CHUNK_END + SKIP) == [
        "<|skip|> after <|answer_end|> (x2)",
        "<|chunk_end|> after <|answer_end|>",
    ]
    # The same chunk-end misplaced in the prompt is counted too.
    assert validate_stream(DEFAULT_INSTRUCTION + C0 + C1 + C2) == [
        "<|chunk_end|> before <|question_end|> (x3)",
        "missing <|question_end|>",
    ]


def test_several_violations_in_one_sequence_are_all_reported():
    text = (
        Q
        + C0
        + C1  # chunk 0 has no unit
        + "Hmm."
        + SKIP  # text before skip (unit of chunk 1)
        + C2
        + THINK_END  # empty thought (unit of chunk 2)
        + STREAM_END
        + "So 6."
        + REASON_END
        + "6"  # no \boxed
        + ANSWER_END
        + " trailing"  # text after the answer
    )
    assert validate_stream(text) == [
        "chunk 0 has no unit",
        "unit 1: text before <|skip|>",
        "unit 2: empty thought (use <|skip|>)",
        "text after <|answer_end|>",
        "answer has no \\boxed{...}",
    ]
    parsed = parse_stream(text)
    assert parsed.chunks == CHUNK_TEXTS
    assert parsed.units == [Unit("skip", "", 1), Unit("think", "", 2)]
    assert parsed.deep == "So 6."
    assert parsed.answer_text == "6"
    assert parsed.answer is None


# --- tokenizer and model -------------------------------------------------------------------------


def _bare_tokenizer(extra_special: list[str] | None = None):
    """A byte-level BPE tokenizer trained without the protocol tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", *(extra_special or [])],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(["Tom has five apples. He buys one more. How many now?"] * 3, trainer)
    kwargs = {"additional_special_tokens": extra_special} if extra_special else {}
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", **kwargs)


@pytest.fixture(scope="module")
def protocol_tokenizer():
    from adasr_av.reasoner.scratch import train_tokenizer

    return train_tokenizer()


def test_add_protocol_tokens_is_a_no_op_when_present(protocol_tokenizer):
    from adasr_av.reasoner.scratch import build_model

    size = len(protocol_tokenizer)
    model = build_model(protocol_tokenizer, "qwen3", hidden=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert add_protocol_tokens(protocol_tokenizer) == []
        assert add_protocol_tokens(protocol_tokenizer, model) == []
    assert len(protocol_tokenizer) == size
    assert model.get_input_embeddings().num_embeddings == size


def test_add_protocol_tokens_adds_all_seven_and_resizes_the_model():
    from adasr_av.reasoner.scratch import build_model

    tokenizer = _bare_tokenizer()
    size = len(tokenizer)
    assert not set(PROTOCOL_TOKENS) & set(tokenizer.get_vocab())
    model = build_model(tokenizer, "qwen3", hidden=32)  # sized before the tokens exist
    assert model.get_input_embeddings().num_embeddings == size

    with pytest.warns(UserWarning, match="lacks the protocol tokens"):
        added = add_protocol_tokens(tokenizer, model)

    assert added == list(PROTOCOL_TOKENS)
    assert len(tokenizer) == size + 7
    rows = -(-(size + 7) // 64) * 64  # padded to a multiple of 64
    assert model.get_input_embeddings().num_embeddings == rows
    assert model.get_output_embeddings().weight.shape[0] == rows
    ids = []
    for token in PROTOCOL_TOKENS:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        assert len(encoded) == 1, token
        ids += encoded
    assert len(set(ids)) == 7
    assert all(size <= i < size + 7 for i in ids)
    # Inside text the token still comes out whole.
    assert tokenizer.encode("apples" + CHUNK_END + "Tom", add_special_tokens=False).count(ids[1]) == 1
    # A second call finds everything and changes nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert add_protocol_tokens(tokenizer, model) == []
    assert len(tokenizer) == size + 7


def _tiny_model(vocab_size: int, tied: bool):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=tied,
    )  # fmt: skip
    return Qwen3ForCausalLM(config).eval()


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("spare", [40, 0], ids=["spare-rows", "resized"])
def test_added_protocol_tokens_start_at_the_mean_embedding(tied, spare):
    """Like Qwen3 (151,936 rows for 151,669 tokens): spare rows mean no resize, and the added tokens
    must still get initialised rows, not whatever untrained values the spare rows hold."""
    import torch

    tokenizer = _bare_tokenizer()
    known = len(tokenizer)
    model = _tiny_model(known + spare, tied)
    before = model.get_input_embeddings().weight.detach().clone()
    with pytest.warns(UserWarning, match="lacks the protocol tokens"):
        add_protocol_tokens(tokenizer, model)
    rows = model.get_input_embeddings().num_embeddings
    assert rows == (known + spare if spare >= 7 else -(-(known + 7) // 64) * 64)
    ids = list(ProtocolIds.of(tokenizer).all)
    matrices = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    for weight in matrices:
        mean = weight[:known].mean(dim=0)
        assert torch.allclose(weight[ids], mean.expand(len(ids), -1), atol=1e-6)
    # The existing tokens' rows are untouched.
    assert torch.equal(model.get_input_embeddings().weight[:known], before[:known])


def test_add_protocol_tokens_adds_only_the_missing_ones():
    tokenizer = _bare_tokenizer(extra_special=[QUESTION_END, SKIP])
    size = len(tokenizer)
    with pytest.warns(UserWarning) as record:
        added = add_protocol_tokens(tokenizer)
    assert added == [CHUNK_END, THINK_END, STREAM_END, REASON_END, ANSWER_END]
    assert len(tokenizer) == size + 5
    message = str(record[0].message)
    assert CHUNK_END in message and QUESTION_END not in message
    ids = ProtocolIds.of(tokenizer)
    assert len(ids.all) == 7


def test_protocol_ids_of(protocol_tokenizer):
    ids = ProtocolIds.of(protocol_tokenizer)
    vocab = protocol_tokenizer.get_vocab()
    assert ids.question_end == vocab[QUESTION_END]
    assert ids.chunk_end == vocab[CHUNK_END]
    assert ids.think_end == vocab[THINK_END]
    assert ids.skip == vocab[SKIP]
    assert ids.stream_end == vocab[STREAM_END]
    assert ids.reason_end == vocab[REASON_END]
    assert ids.answer_end == vocab[ANSWER_END]
    assert ids.all == frozenset(vocab[t] for t in PROTOCOL_TOKENS)
    assert len(ids.all) == 7
    assert protocol_tokenizer.encode(S, add_special_tokens=False) == [ids.skip]


def test_protocol_ids_of_a_tokenizer_without_the_tokens_raises():
    with pytest.raises(ValueError, match="add_protocol_tokens"):
        ProtocolIds.of(_bare_tokenizer())


def test_a_chunk_span_says_what_was_seen_and_leaves_what_was_heard_as_it_was():
    from adasr_av.reasoner.protocol import CHUNK_END, SOURCE_TAGS, chunk_span

    heard = chunk_span("Tom has twenty-one dollars.")
    assert (
        heard == "Tom has 21 dollars." + CHUNK_END == chunk_span("Tom has twenty-one dollars.", source="asr")
    )
    assert chunk_span("Tom has 21 dollars.", source="ocr") == "On screen: Tom has 21 dollars." + CHUNK_END
    assert chunk_span("A man at a desk.", source="caption").startswith("Seen: ")
    assert set(SOURCE_TAGS) == {"asr", "text", "ocr", "caption"}
    with pytest.raises(ValueError, match="unknown chunk source"):
        chunk_span("x", source="radar")
