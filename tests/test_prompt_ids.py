"""One builder of the prompt ids (BOS, chat template) for gold sequences and the live session, and
the stop ids the session takes from the model as well as the tokenizer."""

from __future__ import annotations

import warnings

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from adasr_av.data.dataset import parse_record
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.errors import AdasrError
from adasr_av.reasoner.protocol import (
    QUESTION_END,
    add_protocol_tokens,
    encode_span,
    parse_stream,
    prompt_ids,
    question_span,
)
from adasr_av.reasoner.session import ReasonerOptions, make_reasoner, reason_over_stream
from adasr_av.training.sequences import IGNORE, encode_story

# A Qwen3-like template: the user's turn, the assistant's generation prompt, and an empty think
# block when thinking is switched off.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def _story(i: int = 0):
    return parse_record(text_record(generate_story(1, "train", i)), f"story {i}", need_gold=True)


def _tokenizer(style: str) -> PreTrainedTokenizerFast:
    """Byte-level BPE with the protocol and chat tokens: "llama" has a BOS its `encode` prepends,
    "qwen" has none (its EOS is <|endoftext|>)."""
    story = _story()
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>"] if style == "llama" else ["<|endoftext|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials + CHAT_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([story.question, *(c.text for c in story.chunks)] * 3, trainer)
    if style == "llama":
        bos = core.token_to_id("<s>")
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
        kwargs = {"bos_token": "<s>", "eos_token": "</s>"}
    else:
        kwargs = {"eos_token": "<|endoftext|>"}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, additional_special_tokens=CHAT_TOKENS, chat_template=CHAT_TEMPLATE, **kwargs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        add_protocol_tokens(tokenizer)
    return tokenizer


def _model(tokenizer, style: str):
    sizes = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
    )  # fmt: skip
    if style == "llama":
        config = LlamaConfig(
            **sizes, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
        )
        return LlamaForCausalLM(config).eval()
    return Qwen3ForCausalLM(Qwen3Config(**sizes, eos_token_id=tokenizer.eos_token_id)).eval()


@pytest.fixture(scope="module", params=["llama", "qwen"])
def tokenizer_and_model(request):
    tokenizer = _tokenizer(request.param)
    return request.param, tokenizer, _model(tokenizer, request.param)


def _session_sequence(model, tokenizer, story, mode: str, chat_template: bool = False) -> list[int]:
    options = ReasonerOptions(
        max_unit_tokens=4, max_deep_tokens=4, max_answer_tokens=4, chat_template=chat_template
    )
    reasoner = make_reasoner(model, tokenizer, mode, options=options)
    for _ in reason_over_stream(reasoner, story.chunks, story.question, story.answer, story.t_stream_end):
        pass
    return list(reasoner.sequence)


@pytest.mark.parametrize("chat_template", [False, True], ids=["plain", "chat"])
def test_sft_and_session_see_the_same_environment_tokens(tokenizer_and_model, chat_template):
    style, tokenizer, model = tokenizer_and_model
    story = _story()
    gold = encode_story(tokenizer, story, "uniform", "read-then-think", chat_template=chat_template)
    environment = gold.labels.index(next(label for label in gold.labels if label != IGNORE))
    # Read-then-think: everything before the deep phase is the environment's, token for token.
    live = _session_sequence(model, tokenizer, story, "read-then-think", chat_template)
    assert live[:environment] == gold.input_ids[:environment]
    # Streaming: the same prompt opens both, and the environment's spans are the same tokens.
    gold = encode_story(tokenizer, story, "uniform", chat_template=chat_template)
    prompt = prompt_ids(tokenizer, story.question, chat_template=chat_template)
    live = _session_sequence(model, tokenizer, story, "streaming", chat_template)
    assert live[: len(prompt)] == gold.input_ids[: len(prompt)] == prompt
    if style == "llama":
        assert prompt[0] == tokenizer.bos_token_id and prompt.count(tokenizer.bos_token_id) == 1
    else:
        assert tokenizer.bos_token_id is None


def test_the_prompt_starts_with_bos_only_where_the_tokenizer_adds_one():
    for style in ("llama", "qwen"):
        tokenizer = _tokenizer(style)
        span = encode_span(tokenizer, question_span("How many?"))
        bos = [tokenizer.bos_token_id] if style == "llama" else []
        assert prompt_ids(tokenizer, "How many?") == [*bos, *span]


def test_chat_template_wraps_the_question_with_thinking_off():
    tokenizer = _tokenizer("qwen")
    text = tokenizer.decode(prompt_ids(tokenizer, "How many apples?", chat_template=True))
    assert text.startswith("<|im_start|>user\nListen to the stream.")
    assert text.endswith(
        "How many apples?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" + QUESTION_END
    )
    parsed = parse_stream(text + "<|stream_end|>", "read-then-think")
    assert parsed.prompt.startswith("<|im_start|>user") and not parsed.chunks
    # Off by default: the plain span.
    assert "<|im_start|>" not in tokenizer.decode(prompt_ids(tokenizer, "How many apples?"))


def test_chat_template_on_a_tokenizer_without_one_names_the_option():
    tokenizer = _tokenizer("qwen")
    tokenizer.chat_template = None
    with pytest.raises(AdasrError, match="--chat-template"):
        prompt_ids(tokenizer, "How many?", chat_template=True)


def test_the_session_stops_on_the_generation_config_eos_too():
    tokenizer = _tokenizer("qwen")
    model = _model(tokenizer, "qwen")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, im_end]
    reasoner = make_reasoner(model, tokenizer)
    assert reasoner.backend.eos_ids == {tokenizer.eos_token_id, im_end}
    model.generation_config.eos_token_id = im_end  # one id, not a list
    assert make_reasoner(model, tokenizer).backend.eos_ids == {tokenizer.eos_token_id, im_end}


def test_the_training_configs_build_the_prompt_the_session_reads():
    """`model.chat_template` in an SFT config reaches every example's prompt (and HRPO's session)."""
    from adasr_av.training.sft import DataConfig, build_examples

    tokenizer = _tokenizer("qwen")
    story = _story()
    for chat in (False, True):
        (example,) = build_examples(tokenizer, [story], DataConfig(), 0, chat_template=chat)
        prompt = prompt_ids(tokenizer, story.question, chat_template=chat)
        assert example.input_ids[: len(prompt)] == prompt
    assert build_examples(tokenizer, [story], DataConfig(), 0, True) != build_examples(
        tokenizer, [story], DataConfig(), 0, False
    )
