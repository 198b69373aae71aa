"""The caption encoder on a tiny BLIP built from a config in the test and taught two captions:
loading by folder, captions in words, one chunk per change, and one line for a model that is
not an image-to-text model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adasr_av.encoders.caption import CaptionEncoder, CaptionOptions, load_captioner
from adasr_av.errors import AdasrError
from adasr_av.types import VideoFrame

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "square", "blue", "circle", "on", "white"]
CAPTIONS = {"red": "a red square on white", "blue": "a blue circle on white"}


def picture(kind: str) -> np.ndarray:
    image = np.full((64, 64, 3), 255, np.uint8)
    if kind == "red":
        image[16:48, 16:48] = (220, 20, 20)
    else:
        yy, xx = np.mgrid[:64, :64]
        image[(yy - 32) ** 2 + (xx - 32) ** 2 < 256] = (20, 20, 220)
    return image


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    """A BLIP of two one-layer towers (about 60 k weights) that has learnt the two captions."""
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder = tmp_path_factory.mktemp("blip")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"))
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    tower = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    text = tower | {"vocab_size": len(VOCAB), "max_position_embeddings": 16, "bos_token_id": 2,
                    "sep_token_id": 3, "eos_token_id": 3, "pad_token_id": 0}  # fmt: skip
    config = BlipConfig(
        text_config=text, vision_config=tower | {"image_size": 32, "patch_size": 8}, projection_dim=32
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    batch = processor(
        images=[picture(k) for k in CAPTIONS], text=list(CAPTIONS.values()), return_tensors="pt"
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.1, loss.item()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_captions_come_out_in_words_one_chunk_per_change(captioner):
    encoder = CaptionEncoder(CaptionOptions(model=str(captioner), computation_aware=False))
    assert encoder.caption(picture("red")) == CAPTIONS["red"]
    kinds = ["red", "red", "blue", "blue", "blue", "red"]
    frames = [VideoFrame(picture(kind), float(t)) for t, kind in enumerate(kinds)]
    chunks = list(encoder(frames))
    assert [c.text for c in chunks] == [CAPTIONS["red"], CAPTIONS["blue"], CAPTIONS["red"]]
    assert [(c.t_start, c.t_emit) for c in chunks] == [(0.0, 0.0), (2.0, 2.0), (5.0, 5.0)]
    assert {c.source for c in chunks} == {"caption"}


def test_computation_aware_captions_are_out_after_their_compute(captioner):
    encoder = CaptionEncoder(CaptionOptions(model=str(captioner)))
    stats = encoder.new_stats()
    (chunk,) = encoder([VideoFrame(picture("blue"), 3.0)], stats)
    assert stats.reads == 1 and stats.read_s > 0
    assert chunk.text == CAPTIONS["blue"] and chunk.t_start == 3.0
    assert chunk.t_emit == 3.0 + stats.read_s  # the frame's time plus its read


def test_a_model_that_is_not_image_to_text_is_one_line(trained_model_dir, tmp_path):
    with pytest.raises(AdasrError, match=r"not an image-to-text model \(it is a qwen3 model\)"):
        load_captioner(str(trained_model_dir))
    with pytest.raises(AdasrError, match="no such folder"):
        load_captioner(str(tmp_path / "nowhere"))
    with pytest.raises(AdasrError, match="caption_tokens"):
        CaptionOptions(max_new_tokens=0)
