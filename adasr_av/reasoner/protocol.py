"""The streaming token protocol: the one definition of its special tokens, spans and grammar.

One causal sequence; E spans are written by the environment, M spans by the model:

    E  {instruction}{question}<|question_end|>
    E  {chunk text}<|chunk_end|>
    M  {thought}<|think_end|>   or   <|skip|>          (exactly one unit per chunk)
    ...
    E  <|stream_end|>
    M  {deep reasoning}<|reason_end|>{answer with \\boxed{...}}<|answer_end|>

The read-then-think baseline uses the same tokens with no units between chunks.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Literal

from adasr_av.errors import AdasrError
from adasr_av.reasoner.answer import extract_boxed
from adasr_av.reasoner.normalize import normalize_text

QUESTION_END = "<|question_end|>"
CHUNK_END = "<|chunk_end|>"
THINK_END = "<|think_end|>"
SKIP = "<|skip|>"
STREAM_END = "<|stream_end|>"
REASON_END = "<|reason_end|>"
ANSWER_END = "<|answer_end|>"
PROTOCOL_TOKENS = (QUESTION_END, CHUNK_END, THINK_END, SKIP, STREAM_END, REASON_END, ANSWER_END)

DEFAULT_INSTRUCTION = (
    "Listen to the stream. After each chunk, think briefly or skip. "
    "When the stream ends, reason, then give the final answer in \\boxed{}.\n"
)

Mode = Literal["streaming", "read-then-think"]
MODES: tuple[Mode, ...] = ("streaming", "read-then-think")


# --- tokenizer and model -------------------------------------------------------------------------


# Embedding rows a resize adds come in multiples of this (tensor-core friendly shapes).
EMBEDDING_ROWS_MULTIPLE = 64


def add_protocol_tokens(tokenizer, model=None) -> list[str]:
    """Add the protocol tokens the tokenizer lacks (warning if any) and give `model` their rows.

    The model's embedding matrix grows (to a multiple of EMBEDDING_ROWS_MULTIPLE) only when it has
    no spare rows; either way each added token's input and output rows start at the mean of the
    tokenizer's existing tokens' rows, never at a spare row's untrained values (Qwen3's matrix has
    151,936 rows for 151,669 tokens). Returns the tokens that were added. Safe to call on a
    tokenizer that already has them.
    """
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in PROTOCOL_TOKENS if tok not in vocab]
    known = len(tokenizer)
    if missing:
        warnings.warn(
            f"tokenizer lacks the protocol tokens {', '.join(missing)}; adding them "
            "(their embeddings start at the mean of the others, untrained)",
            stacklevel=2,
        )
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    if model is None:
        return missing
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=EMBEDDING_ROWS_MULTIPLE)
    if missing:
        _init_rows(model, known, tokenizer.convert_tokens_to_ids(missing))
    return missing


def _init_rows(model, known: int, rows: list[int]) -> None:
    """Set `rows` of the input and output embeddings to the mean of their first `known` rows."""
    import torch

    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not matrices[0]:  # untied head
        matrices.append(output.weight)
    with torch.no_grad():
        for weight in matrices:
            weight[rows] = weight[:known].float().mean(dim=0).to(weight.dtype)


def eos_ids(model, tokenizer) -> frozenset[int]:
    """Every id that ends generation: the tokenizer's EOS and the model's `generation_config` EOS
    (one id or a list: Llama-3 instruct ends a turn with <|eot_id|>, not the tokenizer's EOS)."""
    ids = {tokenizer.eos_token_id}
    config = getattr(model, "generation_config", None)
    declared = getattr(config, "eos_token_id", None)
    ids |= set(declared) if isinstance(declared, (list, tuple)) else {declared}
    return frozenset(i for i in ids if i is not None)


@dataclass(frozen=True)
class ProtocolIds:
    """Token ids of the protocol tokens in one tokenizer."""

    question_end: int
    chunk_end: int
    think_end: int
    skip: int
    stream_end: int
    reason_end: int
    answer_end: int

    @classmethod
    def of(cls, tokenizer) -> ProtocolIds:
        ids = tokenizer.convert_tokens_to_ids(list(PROTOCOL_TOKENS))
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise ValueError("tokenizer lacks protocol tokens; call add_protocol_tokens first")
        return cls(*ids)

    @property
    def all(self) -> frozenset[int]:
        return frozenset(self.__dict__.values())


# --- spans ---------------------------------------------------------------------------------------


def environment_text(text: str) -> str:
    """`text` in the one written form (`normalize_text`), unable to write a protocol token (or any
    other `<|...|>` special token): what ASR, OCR or a user wrote can never end a span."""
    text = normalize_text(text)
    while "<|" in text:  # normalising can join "<(|" into "<|"; one pass can leave a new "<|"
        text = text.replace("<|", "<")
    return text


def question_span(question: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """Environment span that opens every stream; the question may be empty."""
    return f"{instruction}{environment_text(question)}{QUESTION_END}"


def prompt_ids(
    tokenizer, question: str, instruction: str = DEFAULT_INSTRUCTION, chat_template: bool = False
) -> list[int]:
    """The ids that open every sequence, gold or live: the one place that builds them.

    The question span, with the tokenizer's BOS in front when its `encode` adds one (Llama's do,
    Qwen's have none). With `chat_template` (for instruct models) the instruction and question are
    the user's turn in the tokenizer's chat template, followed by the assistant's generation prompt
    (thinking off where the template has the switch) and then <|question_end|>.
    """
    text = question_span(question, instruction)
    if chat_template:
        text = _chat_prompt(tokenizer, text.removesuffix(QUESTION_END)) + QUESTION_END
    ids = encode_span(tokenizer, text)
    bos = tokenizer.bos_token_id
    if bos is not None and tokenizer.encode("a")[:1] == [bos] and ids[:1] != [bos]:
        ids = [bos, *ids]
    return ids


def _chat_prompt(tokenizer, user: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise AdasrError("--chat-template: the tokenizer has no chat template (a base model?)")
    messages = [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


# How a chunk says where it came from: what was heard (ASR, or a text stream, which stands in for
# it in training) goes untagged, as the bundled models learnt it; what was seen is tagged first.
SOURCE_TAGS = {"asr": "", "text": "", "ocr": "On screen: ", "caption": "Seen: "}


def chunk_span(text: str, lag_s: float | None = None, source: str = "text") -> str:
    """Environment span of one chunk, its text in the one written form (`environment_text`) after
    its source's tag (`SOURCE_TAGS`); `lag_s` (HRPO's optional hint) says how long it waited."""
    if source not in SOURCE_TAGS:
        raise ValueError(f"unknown chunk source {source!r} (one of {', '.join(SOURCE_TAGS)})")
    hint = f" (lag {lag_s:.1f} s)" if lag_s is not None else ""
    return f"{SOURCE_TAGS[source]}{environment_text(text)}{hint}{CHUNK_END}"


def stream_end_span() -> str:
    return STREAM_END


def thought_unit(text: str) -> str:
    """Model span for a unit that thinks (gold data, tests)."""
    return f"{text.strip()}{THINK_END}"


def skip_unit() -> str:
    return SKIP


def deep_span(reasoning: str, answer: str) -> str:
    """Model span after the stream ends: deep reasoning, then the boxed answer."""
    return f"{reasoning.strip()}{REASON_END}\\boxed{{{answer}}}{ANSWER_END}"


def encode_span(tokenizer, text: str) -> list[int]:
    """Token ids of one span, encoded on its own so every span tokenizes the same way anywhere."""
    return tokenizer.encode(text, add_special_tokens=False)


# --- parsing and validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    kind: Literal["think", "skip"]
    text: str
    chunk_index: int


@dataclass
class ParsedStream:
    """A protocol sequence taken apart; `violations` lists everything wrong with it."""

    prompt: str = ""
    chunks: list[str] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    deep: str | None = None
    answer_text: str | None = None
    violations: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        return extract_boxed(self.answer_text) if self.answer_text is not None else None


_SPLIT = re.compile("(" + "|".join(re.escape(tok) for tok in PROTOCOL_TOKENS) + ")")


def parse_stream(text: str, mode: Mode = "streaming") -> ParsedStream:
    """Parse a whole protocol sequence (environment and model spans, decoded with special tokens)."""
    parsed = ParsedStream()
    bad = parsed.violations.append
    pieces = _SPLIT.split(text)
    state, carried = "prompt", ""
    for i in range(1, len(pieces), 2):
        body, token = pieces[i - 1], pieces[i]
        n = len(parsed.chunks)  # chunks closed so far; the current one is chunk n (0-based)
        if state == "prompt":
            if token == QUESTION_END:
                parsed.prompt, state = body, "chunk"
            else:
                bad(f"{token} before {QUESTION_END}")
        elif state == "chunk":
            if token == CHUNK_END:
                parsed.chunks.append(body.strip())
                state = "unit" if mode == "streaming" else "chunk"
            elif token == STREAM_END:
                if body.strip():
                    bad(f"chunk {n} is not closed by {CHUNK_END}")
                state = "deep"
            elif token in (THINK_END, SKIP) and mode == "read-then-think":
                bad(f"unit after chunk {n - 1} in a read-then-think stream")
            else:
                bad(f"{token} inside chunk {n}")
        elif state == "unit":
            k = n - 1  # the unit answers the last closed chunk
            if token == THINK_END:
                if not body.strip():
                    bad(f"unit {k}: empty thought (use {SKIP})")
                parsed.units.append(Unit("think", body.strip(), k))
                state = "chunk"
            elif token == SKIP:
                if body.strip():
                    bad(f"unit {k}: text before {SKIP}")
                parsed.units.append(Unit("skip", "", k))
                state = "chunk"
            elif token == CHUNK_END:
                bad(f"chunk {k} has no unit")
                parsed.chunks.append(body.strip())
            elif token == STREAM_END:
                bad(f"unit {k} is not closed" if body.strip() else f"chunk {k} has no unit")
                state = "deep"
            else:
                bad(f"{token} inside unit {k}")
        elif state == "deep":
            body, carried = carried + body, ""
            if token == REASON_END:
                parsed.deep, state = body.strip(), "answer"
            elif token == ANSWER_END:
                bad(f"missing {REASON_END}")
                parsed.answer_text, state = body.strip(), "done"
            else:
                bad(f"{token} inside the deep reasoning")
                carried = body + token  # keep the text: a misplaced token does not end the span
        elif state == "answer":
            body, carried = carried + body, ""
            if token == ANSWER_END:
                parsed.answer_text, state = body.strip(), "done"
            else:
                bad(f"{token} inside the answer")
                carried = body + token
        else:
            bad(f"{token} after {ANSWER_END}")
    tail = carried + pieces[-1]
    missing = {"prompt": QUESTION_END, "chunk": STREAM_END, "unit": STREAM_END}
    if state == "unit" and tail.strip():
        bad(f"unit {len(parsed.chunks) - 1} is not closed")
    if state in missing:
        bad(f"missing {missing[state]}")
    elif state == "deep":
        parsed.deep = tail.strip()
        bad(f"missing {REASON_END}")
        bad(f"missing {ANSWER_END}")
    elif state == "answer":
        parsed.answer_text = tail.strip()
        bad(f"missing {ANSWER_END}")
    elif tail.strip():
        bad(f"text after {ANSWER_END}")
    if state == "done" and parsed.answer is None:
        bad("answer has no \\boxed{...}")
    parsed.violations = _count_repeats(parsed.violations)
    return parsed


def _count_repeats(messages: list[str]) -> list[str]:
    """Collapse repeated messages (a degenerate model can repeat one mistake hundreds of times)."""
    counts = dict.fromkeys(messages, 0)
    for message in messages:
        counts[message] += 1
    return [m if n == 1 else f"{m} (x{n})" for m, n in counts.items()]


def validate_stream(text: str, mode: Mode = "streaming") -> list[str]:
    """Every protocol violation in a whole sequence; an empty list means it is valid."""
    return parse_stream(text, mode).violations
