"""Build small causal LMs from a config: a byte-level BPE tokenizer with the protocol tokens and a
randomly initialised Qwen3- or GPT-2-style model.

Tests use these so that nothing is downloaded; `placeholder_model()` is the untrained default the
CLI uses until a trained bundled model ships.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import torch

from adasr_av.errors import AdasrError
from adasr_av.reasoner.protocol import DEFAULT_INSTRUCTION, PROTOCOL_TOKENS

Architecture = Literal["qwen3", "gpt2"]
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

SAMPLE_CORPUS = [
    DEFAULT_INSTRUCTION,
    "Tom has five apples. He buys three more at the market. The sky is blue today.",
    "He gives two apples to Anna. How many apples does Tom have now? 0 1 2 3 4 5 6 7 8 9",
    "A bus carries 12 people and 4 get off at the first stop, then 7 get on.",
    "She saves 20 dollars each week for 6 weeks and spends half of it on books.",
    "Add, remove, share, double: the total is \\boxed{42}. So the answer is six.",
]


def train_tokenizer(texts: Iterable[str] = SAMPLE_CORPUS, vocab_size: int = 384):
    """A byte-level BPE tokenizer trained on `texts`, with EOS, padding and the protocol tokens.

    Digits are split one by one, so every number is spelled digit by digit: that is what makes
    arithmetic learnable for a small model (no "1866" token to memorise). Every span gets a leading
    space, so a word is the same token at the start of a chunk or thought as inside it ("Lucy has"
    and "question: Lucy" share " Lucy"), which a small model would otherwise have to learn twice.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.ByteLevel(add_prefix_space=True), pre_tokenizers.Digits(individual_digits=True)]
    )
    core.decoder = decoders.ByteLevel()
    special = [EOS_TOKEN, PAD_TOKEN, *PROTOCOL_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(PROTOCOL_TOKENS),
    )


def everyday_english(words: int, words_in_corpus: int = 3_000_000) -> Iterator[str]:
    """Lines of the `words` most frequent English words (wordfreq), each used in proportion to its
    frequency (at least twice), a quarter of the uses capitalised: with it the BPE learns the merges
    of ordinary words, not only the stories' own, so that a word a person says is a token or two
    the model can copy, not a row of byte pieces. (A flatter weighting spends the vocabulary on
    pieces of rare words: "picked" and "nine" stop being tokens.)"""
    try:
        import wordfreq
    except ImportError:
        raise AdasrError("tokenizer: the English word list needs wordfreq (pip install wordfreq)") from None
    vocabulary = wordfreq.top_n_list("en", words, wordlist="best")
    frequencies = [wordfreq.word_frequency(w, "en", wordlist="best") for w in vocabulary]
    scale = words_in_corpus / sum(frequencies)
    line: list[str] = []
    for word, frequency in zip(vocabulary, frequencies, strict=True):
        uses = max(2, round(frequency * scale))
        line += [word] * (uses - uses // 4) + [word[:1].upper() + word[1:]] * max(1, uses // 4)
        if len(line) >= 1000:
            yield " ".join(line)
            line = []
    if line:
        yield " ".join(line)


def model_config(
    arch: Architecture,
    vocab_size: int,
    hidden: int = 64,
    layers: int = 2,
    max_positions: int = 8192,
    head_dim: int = 16,
):
    """A small config of the given architecture: heads of `head_dim`, two query heads per KV head
    (Qwen3), an MLP three times as wide as the residual stream."""
    from transformers import GPT2Config, Qwen3Config

    heads = max(1, hidden // head_dim)
    if arch == "qwen3":
        return Qwen3Config(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=hidden * 3,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            head_dim=head_dim,
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
        )
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=max_positions,
            bos_token_id=None,
            eos_token_id=None,
        )
    raise ValueError(f"unknown architecture {arch!r} (qwen3 or gpt2)")


def build_model(tokenizer, arch: Architecture = "qwen3", seed: int = 0, **config_kwargs):
    """A randomly initialised causal LM sized to `tokenizer`, deterministic in `seed`."""
    from transformers import AutoModelForCausalLM

    config = model_config(arch, len(tokenizer), **config_kwargs)
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def save_scratch_model(
    out_dir: str | Path, arch: Architecture = "qwen3", seed: int = 0, **config_kwargs
) -> Path:
    """Train a tokenizer, build a model and save both as a normal Hugging Face model folder."""
    out = Path(out_dir)
    tokenizer = train_tokenizer()
    model = build_model(tokenizer, arch, seed, **config_kwargs)
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(out) if not out.exists() else None
    return out


def cache_home() -> Path:
    return Path(os.environ.get("ADASR_AV_HOME", Path.home() / ".cache" / "adasr-av"))


def placeholder_model() -> Path:
    """Folder of the untrained default model, built (in seconds) on first use."""
    path = cache_home() / "models" / "placeholder-qwen3"
    if not (path / "config.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_scratch_model(path, "qwen3", hidden=128, layers=4)
    return path
