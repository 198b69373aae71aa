"""Ship a trained model: 16-bit weights in safetensors shards small enough to commit.

The package carries the models users select by name; half-precision shards of at most 15 MB keep
the repository quick to clone and every file under the size a plain git host accepts. Loading on
CPU reads them back as float32 (reasoner.loading), so only the rounding of the weights changes.

    python -m adasr_av.training.export runs/tiny-sft/final adasr_av/models/tiny-streaming-sft
    python -m adasr_av.training.export runs/tiny-sft/checkpoints/step-900 runs/tiny-sft/step-900

A training checkpoint (a run's `checkpoints/step-N`) exports too, with the config and tokenizer of
the model its run started from, so that a long run can be evaluated while it trains.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from adasr_av.errors import AdasrError

MAX_SHARD = "15MB"
SHIPPED_DTYPE = torch.float16  # 11 mantissa bits: closer to the trained float32 than bfloat16's 8


def checkpoint_start(checkpoint: Path) -> Path:
    """The model folder a checkpoint's run started from: its `init` (scratch) or `model.init`."""
    run = checkpoint.parent.parent
    try:
        init = json.loads((run / "config.json").read_text())["model"]["init"]
    except (OSError, KeyError, json.JSONDecodeError):
        raise AdasrError(
            f"checkpoint {checkpoint}: no run config beside it ({run / 'config.json'})"
        ) from None
    if init != "scratch":
        from adasr_av.reasoner.loading import resolve_source

        return Path(resolve_source(init))
    return run / "init"


def load_for_export(source: Path):
    """(model, tokenizer) of a model folder or of a training checkpoint, in float32."""
    from safetensors.torch import load_file

    from adasr_av.reasoner.loading import load_reasoner_model

    if not (source / "trainer_state.json").is_file():
        return load_reasoner_model(str(source), dtype=torch.float32)
    model, tokenizer = load_reasoner_model(str(checkpoint_start(source)), dtype=torch.float32)
    weights = load_file(source / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if k not in model._tied_weights_keys]:
        raise AdasrError(f"checkpoint {source}: its weights do not fit the model it started from")
    model.tie_weights()
    return model, tokenizer


def export_model(source: str | Path, dest: str | Path, max_shard_size: str = MAX_SHARD) -> Path:
    """Write the model in `source` to `dest` (replaced whole) in 16 bits, sharded, with its tokenizer."""
    dest = Path(dest)
    model, tokenizer = load_for_export(Path(source))
    if any(p.abs().max() > torch.finfo(SHIPPED_DTYPE).max for p in model.parameters()):
        raise AdasrError(f"model {source}: a weight is too large for {SHIPPED_DTYPE}")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(SHIPPED_DTYPE).save_pretrained(tmp, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a trained model folder (runs/tiny-sft/final) or a checkpoint")
    parser.add_argument("dest", help="the folder to write (replaced), e.g. adasr_av/models/tiny-streaming")
    parser.add_argument("--max-shard-size", default=MAX_SHARD)
    args = parser.parse_args(argv)
    try:
        dest = export_model(args.source, args.dest, args.max_shard_size)
    except AdasrError as err:
        print(f"adasr-av: {err}")
        return 1
    sizes = sorted(p.stat().st_size for p in dest.glob("*.safetensors"))
    print(f"model written to {dest}: {len(sizes)} shard(s), largest {sizes[-1] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
