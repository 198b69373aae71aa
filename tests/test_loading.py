"""Loading models and tokenizers from folders (and LoRA adapters) the way users will."""

from __future__ import annotations

import pytest
from conftest import CHUNKS, QUESTION
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from adasr_av.errors import AdasrError
from adasr_av.reasoner.loading import load_reasoner_model
from adasr_av.reasoner.protocol import PROTOCOL_TOKENS, ProtocolIds
from adasr_av.reasoner.scratch import build_model
from adasr_av.reasoner.session import StreamingReasoner, reason_over_stream


def plain_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer that knows nothing of the protocol."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator([c.text for c in CHUNKS] + [QUESTION], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>")


def test_loads_a_saved_model_folder(trained_model_dir):
    model, tokenizer = load_reasoner_model(str(trained_model_dir))
    assert not model.training
    ProtocolIds.of(tokenizer)
    events = list(reason_over_stream(StreamingReasoner(model, tokenizer), CHUNKS, QUESTION, "6"))
    assert events[-1].info["correct"] is True


def test_tokenizer_without_protocol_tokens_gets_them_with_a_warning(tmp_path):
    tokenizer = plain_tokenizer()
    model = build_model(tokenizer, "qwen3", hidden=32)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="protocol tokens"):
        model, loaded = load_reasoner_model(str(tmp_path))
    assert len(loaded) == len(tokenizer) + len(PROTOCOL_TOKENS)
    assert model.get_input_embeddings().num_embeddings >= len(loaded)
    events = list(reason_over_stream(StreamingReasoner(model, loaded), CHUNKS, QUESTION))
    assert events[-1].type == "summary"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "no such folder"),
        (lambda p: p, "holds no model"),
        (lambda p: (p / "weights.bin").write_text("x") and p / "weights.bin", "not a folder"),
    ],
    ids=["missing", "empty-folder", "file"],
)
def test_bad_model_paths_name_the_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(AdasrError, match=message) as err:
        load_reasoner_model(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_broken_model_folder_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen3"}')
    with pytest.raises(AdasrError, match="cannot load") as err:
        load_reasoner_model(str(tmp_path))
    assert "\n" not in str(err.value)


def test_lora_adapter_changes_the_model(trained_model_dir, tmp_path):
    base, tokenizer = load_reasoner_model(str(trained_model_dir))
    config = LoraConfig(
        r=4,
        lora_alpha=32,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")

    plain, _ = load_reasoner_model(str(trained_model_dir))
    adapted, _ = load_reasoner_model(str(trained_model_dir), adapter=str(tmp_path / "adapter"))
    assert type(adapted).__name__ == "PeftModelForCausalLM"
    sequences = []
    for model in (plain, adapted):
        reasoner = StreamingReasoner(model, tokenizer)
        list(reason_over_stream(reasoner, CHUNKS, QUESTION))
        sequences.append(reasoner.sequence)
    assert sequences[0] != sequences[1]


def test_missing_adapter_is_refused(trained_model_dir, tmp_path):
    with pytest.raises(AdasrError, match="holds no adapter"):
        load_reasoner_model(str(trained_model_dir), adapter=str(tmp_path))


def test_corrupt_weights_are_one_line(trained_model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in trained_model_dir.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AdasrError, match="cannot load") as err:
        load_reasoner_model(str(broken))
    assert str(broken) in str(err.value) and "\n" not in str(err.value)
