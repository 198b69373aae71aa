"""Load any Hugging Face causal LM and its tokenizer (local folder or hub id), optionally with LoRA."""

from __future__ import annotations

from pathlib import Path

import torch

from adasr_av.errors import AdasrError, first_line
from adasr_av.reasoner.protocol import add_protocol_tokens

BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "tiny-streaming"


def bundled_model(name: str = DEFAULT_MODEL) -> Path | None:
    """Folder of a model shipped inside the package, or None when this build does not have it."""
    path = BUNDLED_MODELS / name
    return path if (path / "config.json").is_file() else None


def default_model() -> Path:
    """The model used when no --model is given: the bundled one, else an untrained placeholder."""
    path = bundled_model()
    if path is None:
        import sys

        from adasr_av.reasoner.scratch import placeholder_model

        print("adasr-av: no bundled model in this build: using an untrained placeholder", file=sys.stderr)
        return placeholder_model()
    return path


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def resolve_source(name_or_path: str, what: str = "model", marker: str = "config.json") -> str:
    """A checked local folder holding `marker`, a bundled model's name (`tiny-streaming-sft`), or a
    hub id passed on; AdasrError for a bad folder."""
    path = Path(name_or_path).expanduser()
    bundled = bundled_model(name_or_path) if what == "model" and "/" not in name_or_path else None
    if bundled is not None and not path.exists():
        return str(bundled)
    if path.exists():
        if not path.is_dir():
            raise AdasrError(f"{what} {name_or_path}: not a folder")
        if not (path / marker).is_file():
            raise AdasrError(f"{what} {name_or_path}: folder holds no {what} (no {marker})")
        return str(path)
    if _looks_like_path(name_or_path):
        raise AdasrError(f"{what} {name_or_path}: no such folder")
    return name_or_path


def load_reasoner_model(
    name_or_path: str,
    adapter: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype | str = "auto",
):
    """(model, tokenizer) ready for streaming: protocol tokens present, embeddings sized, eval mode.

    `adapter` is a peft LoRA folder (or hub id) applied on top of the base model. `dtype="auto"`
    keeps the checkpoint's precision on an accelerator and reads float32 on CPU, where 16-bit
    matrix products are slow and inexact (the bundled models ship in 16 bits).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype == "auto" and str(device).startswith("cpu"):
        dtype = torch.float32
    source = resolve_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except Exception as err:  # a broken folder fails in many library-specific ways; name the folder
        raise AdasrError(f"model {name_or_path}: cannot load ({first_line(err)})") from None
    add_protocol_tokens(tokenizer, model)
    if adapter is not None:
        from peft import PeftModel

        adapter_source = resolve_source(adapter, "adapter", "adapter_config.json")
        try:
            model = PeftModel.from_pretrained(model, adapter_source)
        except Exception as err:
            raise AdasrError(f"adapter {adapter}: cannot load ({first_line(err)})") from None
    return model.to(device).eval(), tokenizer
