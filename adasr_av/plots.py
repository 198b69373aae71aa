"""The stream timeline as a matplotlib figure on one stream-time axis: when each chunk's media
played and when it arrived, what the reasoner did with it (prefill, thought or skip), the stream
end, the deep phase and the answer with its latency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from adasr_av.types import Event, TextChunk

SOURCE_COLOURS = {"asr": "#d7dde4", "ocr": "#f2d59b", "caption": "#c5e3c0"}  # a chunk's media span
COLOURS = {"chunk": "#9aa5b1", "think": "#2f6fdf", "skip": "#b0b0b0", "deep": "#e8893a", "answer": "#2e9e5b"}


def timeline_figure(events: Sequence[Event], chunks: Sequence[TextChunk] = (), title: str = ""):
    """A figure of the run's events (and, if given, the media span of each text chunk)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.8), layout="constrained")
    ax = fig.add_subplot()
    lanes = {"media": 2, "arrival": 1, "reasoner": 0}
    for chunk in chunks:  # the media span, coloured by where the text came from
        colour = SOURCE_COLOURS.get(chunk.source, SOURCE_COLOURS["asr"])
        ax.barh(
            lanes["media"],
            max(chunk.t_end - chunk.t_start, 0.05),
            left=chunk.t_start,
            height=0.5,
            color=colour,
        )
    for event in events:
        width = max(event.t_done - event.t_begin, 0.02)
        if event.type == "chunk" and event.tokens:
            ax.plot([event.t_avail], [lanes["arrival"]], "v", color=COLOURS["chunk"], ms=6)
            ax.barh(lanes["reasoner"], width, left=event.t_begin, height=0.5, color=COLOURS["chunk"])
        elif event.type in ("think", "skip", "deep", "answer"):
            ax.barh(lanes["reasoner"], width, left=event.t_begin, height=0.5, color=COLOURS[event.type])
    summary = next((e for e in events if e.type == "summary"), None)
    if summary is not None:
        ax.axvline(summary.t_avail, color="black", lw=0.8, ls="--")
        answer = summary.info.get("answer")
        label = f"answer {answer}" if answer is not None else "no answer"
        label += f", {summary.info.get('answer_latency_s', 0):.2f} s after the stream end"
        ax.annotate(label, (summary.t_done, lanes["reasoner"] + 0.35), fontsize=8, ha="right", va="bottom")
    ax.set_yticks(list(lanes.values()), list(lanes))
    ax.set_ylim(-0.6, 2.6)
    ax.set_xlim(left=0)
    ax.set_xlabel("stream time (s)")
    sources = [source for source in SOURCE_COLOURS if any(c.source == source for c in chunks)]
    legend = {**{f"{s} text": SOURCE_COLOURS[s] for s in sources}, **COLOURS}
    handles = [matplotlib.patches.Patch(color=c, label=k) for k, c in legend.items()]
    ax.legend(handles=handles, loc="upper left", fontsize=7, ncols=8, frameon=False, bbox_to_anchor=(0, 1.18))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def save_timeline(
    path: str | Path, events: Sequence[Event], chunks: Sequence[TextChunk] = (), title: str = ""
) -> Path:
    """Write the timeline figure to `path` (PNG, SVG or PDF by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeline_figure(events, chunks, title).savefig(path, dpi=120)
    return path
