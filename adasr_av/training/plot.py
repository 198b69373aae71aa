"""Training curves: every numeric field of a JSON-lines log against the step, one panel each."""

from __future__ import annotations

import json
import math
from pathlib import Path

from adasr_av.errors import AdasrError

SKIPPED = {"step", "elapsed_s", "lr", "groups"}


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise AdasrError(f"log {path}: {err.strerror.lower()}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise AdasrError(f"log {path}, line {number}: not JSON") from None
    return records


def plot_log(path: str | Path, out: str | Path) -> Path:
    """Write a PNG of the log's curves; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_log(path) if "step" in r]
    keys = [
        k for k in dict.fromkeys(k for r in records for k in r)
        if k not in SKIPPED and any(_is_number(r.get(k)) for r in records)
    ]  # fmt: skip
    if not keys:
        raise AdasrError(f"log {path}: nothing to plot")
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        points = [(r["step"], r[key]) for r in records if _is_number(r.get(key))]
        ax.plot([p[0] for p in points], [p[1] for p in points], lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(Path(path).parent.name or str(path), fontsize=10)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
