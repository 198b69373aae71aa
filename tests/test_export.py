"""Shipping a model: 16-bit safetensors shards under the size limit that load back as float32 and
answer as the trained model does."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from adasr_av.reasoner.loading import load_reasoner_model
from adasr_av.reasoner.scratch import build_model
from adasr_av.training.export import export_model, main


def test_export_writes_16_bit_shards_under_the_limit_that_load_as_float32(tokenizer, tmp_path):
    trained = build_model(tokenizer, "qwen3", seed=3, hidden=64, layers=4)  # about 0.3 M weights
    source = tmp_path / "trained"
    trained.save_pretrained(source)
    tokenizer.save_pretrained(source)
    dest = export_model(source, tmp_path / "shipped", max_shard_size="200KB")
    shards = sorted(dest.glob("*.safetensors"))
    assert len(shards) >= 2 and all(p.stat().st_size <= 200_000 for p in shards)
    index = json.loads((dest / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    assert all(t.dtype == torch.float16 for shard in shards for t in load_file(shard).values())
    model, shipped_tokenizer = load_reasoner_model(str(dest))
    assert next(model.parameters()).dtype == torch.float32
    assert shipped_tokenizer.get_vocab() == load_reasoner_model(str(source))[1].get_vocab()
    ids = torch.tensor([tokenizer("Tom has 5 apples. He buys 3 more.").input_ids])
    with torch.no_grad():
        before, after = trained.eval()(ids).logits, model(ids).logits
    assert torch.allclose(before, after, atol=2e-3) and not torch.equal(before, after)  # rounded, close


def test_export_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "nowhere" in out and not (tmp_path / "out").exists()
