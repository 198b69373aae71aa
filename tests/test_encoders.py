"""The encoder contract: encoders stamp their source; several streams merge by arrival, stably."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adasr_av.encoders.contract import ASREncoder, merge_by_arrival
from adasr_av.encoders.ocr import OCREncoder
from adasr_av.types import TextChunk


def chunk(text: str, t_emit: float, source: str) -> TextChunk:
    return TextChunk(text, max(t_emit - 1.0, 0.0), t_emit, t_emit, source=source)


def test_merge_orders_by_arrival_and_breaks_ties_by_encoder_order():
    speech = [chunk("Tom has 21 dollars.", 2.0, "asr"), chunk("He works twelve hours.", 6.0, "asr")]
    screen = [chunk("He earns 63 dollars every hour.", 2.0, "ocr"), chunk("How many now?", 5.0, "ocr")]
    merged = list(merge_by_arrival([speech, screen]))
    assert [(c.source, c.t_emit) for c in merged] == [("asr", 2.0), ("ocr", 2.0), ("ocr", 5.0), ("asr", 6.0)]
    assert [c.source for c in merge_by_arrival([screen, speech])][:2] == ["ocr", "asr"]


@given(st.lists(st.lists(st.integers(0, 20), max_size=8), min_size=1, max_size=4))
def test_merge_keeps_every_chunk_sorted_and_each_stream_in_its_order(times):
    streams = [
        [chunk(f"{i}-{k}", float(t), "asr") for k, t in enumerate(sorted(ts))] for i, ts in enumerate(times)
    ]
    merged = list(merge_by_arrival(streams))
    assert sorted(c.text for c in merged) == sorted(c.text for s in streams for c in s)
    keys = [(c.t_emit, int(c.text.split("-")[0])) for c in merged]
    assert keys == sorted(keys)  # by time, then by the stream listed first
    for i, stream in enumerate(streams):
        assert [c for c in merged if c.text.startswith(f"{i}-")] == stream


def test_encoders_say_what_they_take_and_stamp():
    assert (ASREncoder.source, ASREncoder.takes) == ("asr", "audio")
    assert (OCREncoder.source, OCREncoder.takes) == ("ocr", "video")
