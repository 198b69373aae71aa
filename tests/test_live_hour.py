"""The one-hour live check, 5 minutes of it (issue 16, point 8): the spoken story pushed in 0.5 s
blocks on the wall clock into the demo's pushed audio, through the full pipeline (Whisper tiny.en,
the bundled reasoner on the wall clock), as `benchmarks/long_stream.py --live` runs it for an hour.

It takes about 5 minutes of wall time and runs in the suite, as the issue asks;
`ADASR_LIVE_MINUTES` shortens it for a quick look (at least 3 for the memory check to mean
anything).

The bounds:
- an answer comes once the stream is closed (the demo's Stop);
- RSS from minute 2 to the end grows by at most 10 %, the hour's bound. Minute 2, not 1: by then
  Whisper has decoded with its full window and the reasoner's cache has grown for a while, so
  what is left to grow is what grows with the stream (a leak). The models alone are several
  hundred MB, so 10 % is tens of MB: far more than a bounded stream holds (the cache stops at
  the context budget; the run keeps bounded views), far less than a per-block or per-chunk leak
  would add in three minutes if it is to show in an hour;
- per-chunk reasoner cost is flat: the median of the last minute at most twice that of the first
  full minute (1-2). The context fills within the first minutes and the compaction policy then
  holds it under the budget, so cost cannot keep growing; twice leaves room for a cache that is
  fuller late than early and for wall-clock noise on a shared machine (a median over ~25 chunks);
- the feeder kept real time (no block pushed more than 2 s late), or the run was not live.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MINUTES = float(os.environ.get("ADASR_LIVE_MINUTES", "5"))


def test_five_live_minutes_are_answered_with_flat_memory_and_cost():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from long_stream import late_vs_early, live_stream, minute_figures, rss_growth
    finally:
        sys.path.remove(str(BENCHMARKS))

    marks = range(1, int(MINUTES) + 1)
    figures = live_stream(MINUTES, seed=0, marks=marks)
    last = max(figures.rss)
    print(f"RSS {figures.rss}; late_vs_early {late_vs_early(figures.costs, last):.3f}; {figures.summary}")

    assert figures.answered, figures.summary
    assert figures.minutes >= MINUTES * 0.9, "the story was spoken for about as long as asked"
    assert figures.max_push_late_s < 2.0, "the feeder fell behind the wall clock: not a live run"
    growth = rss_growth(figures.rss, base_min=2 if 2 in figures.rss else 1)
    assert growth <= 0.10, f"RSS grew {growth:.1%} after minute 2: {figures.rss}"
    first, _, n_first = minute_figures(figures.costs, 1, 2)
    final, _, n_final = minute_figures(figures.costs, last - 1, last)
    assert n_first and n_final, "chunks reached the reasoner in the first and the last minute"
    assert final <= 2 * first, (
        f"per-chunk cost grew: {final * 1e3:.1f} ms in the last minute, {first * 1e3:.1f} ms"
    )
