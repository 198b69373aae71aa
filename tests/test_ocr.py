"""The OCR encoder on rendered slides, through the real RapidOCR models: reading order, the change
test, each sentence emitted once it is stable, and times on the stream's clock."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from adasr_av.encoders.frames import FrameChangeOptions, changed_frames, thumbnail
from adasr_av.encoders.ocr import Line, OCREncoder, OCROptions, RapidOCRReader, reading_order, screen_text
from adasr_av.errors import AdasrError
from adasr_av.types import VideoFrame

FONT = ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf", 44)
FIRST = "Tom has 21 dollars."
SECOND = "He earns 63 dollars every hour."


def slide(*lines: str, size=(1280, 720), noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A white 720p slide with `lines` in black, one under the other."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for row, text in enumerate(lines):
        draw.text((80, 160 + 90 * row), text, fill="black", font=FONT)
    pixels = np.asarray(image).astype(np.float32)
    if noise:
        pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reader():
    return RapidOCRReader(OCROptions())


class CountingReader:
    """The real reader, counting its calls (how many frames the change test let through)."""

    def __init__(self, reader):
        self.reader, self.calls = reader, 0

    def __call__(self, image):
        self.calls += 1
        return self.reader(image)


def frames(images: list[np.ndarray], fps: float = 1.0) -> list[VideoFrame]:
    return [VideoFrame(image, k / fps) for k, image in enumerate(images)]


def words(text: str) -> list[str]:
    return text.lower().replace(".", "").split()


def test_reading_order_is_rows_top_to_bottom_then_left_to_right():
    right = Line((600, 100, 900, 140), "every hour.")
    left = Line((80, 104, 560, 146), "He earns 63 dollars")  # the same row, a little lower
    top = Line((80, 20, 500, 60), "Tom has 21 dollars.")
    bottom = Line((80, 200, 400, 240), "How much now?")
    assert reading_order([bottom, right, top, left]) == [top, left, right, bottom]
    text = screen_text([bottom, right, top, left])
    assert text == "Tom has 21 dollars. He earns 63 dollars every hour. How much now?"


def test_screen_text_mends_letters_read_for_digits_in_numbers_only():
    lines = [Line((0, 0, 10, 10), "Tom has 2l dollars and lO0 coins; I have l apple and 6O pens.")]
    assert screen_text(lines) == "Tom has 21 dollars and 100 coins; I have l apple and 60 pens."


def test_change_test_drops_near_duplicates_and_keeps_a_new_line():
    a, a_noisy, ab = slide(FIRST), slide(FIRST, noise=3.0, seed=1), slide(FIRST, SECOND)
    assert thumbnail(a).shape == (36, 64)
    kept = [changed for _, changed in changed_frames(frames([a, a_noisy, a, ab, ab]))]
    assert kept == [True, False, False, True, False]
    assert all(c for _, c in changed_frames(frames([a, a_noisy]), FrameChangeOptions(threshold=0.0)))
    with pytest.raises(AdasrError, match="change_threshold"):
        FrameChangeOptions(threshold=-1)


def test_a_slide_read_by_rapidocr(reader):
    text = screen_text(reader(slide(FIRST, SECOND)))
    assert words(text) == words(f"{FIRST} {SECOND}")


def test_each_sentence_is_emitted_once_when_its_screen_is_stable(reader):
    """Blank, one line (3 s), a second line added (3 s), a flicker of other text for one frame,
    the two lines again, blank: the first line once, the second once, the flicker never."""
    blank, a, ab, flicker = slide(), slide(FIRST), slide(FIRST, SECOND), slide("Something else entirely.")
    images = [blank, a, a, a, ab, ab, ab, flicker, ab, ab, blank, blank]
    counting = CountingReader(reader)
    encoder = OCREncoder(OCROptions(computation_aware=False), reader=counting)
    chunks = list(encoder(frames(images)))
    assert [words(c.text) for c in chunks] == [words(FIRST), words(SECOND)]
    assert [(c.t_start, c.t_end, c.t_emit) for c in chunks] == [(1.0, 2.0, 2.0), (4.0, 5.0, 5.0)]
    assert all(c.source == "ocr" for c in chunks)
    assert counting.calls == 6  # blank, a, ab, flicker, ab, blank: the repeats were not read


def test_text_shown_again_after_a_blank_is_emitted_again(reader):
    a, blank = slide(FIRST), slide()
    chunks = list(
        OCREncoder(OCROptions(computation_aware=False), reader=reader)(frames([a, a, blank, blank, a, a]))
    )
    assert [c.t_end for c in chunks] == [1.0, 5.0]


def test_computation_aware_times_count_the_reads(reader):
    """On the stream's clock a read takes its measured compute: the chunk is out after the frame
    that made it stable plus that read, and frames that come while a read runs are not read."""
    a = slide(FIRST)
    images = [a, a, a, slide(FIRST, SECOND), slide(FIRST, SECOND), slide(FIRST, SECOND)]
    encoder = OCREncoder(OCROptions(stable_frames=1), reader=reader)
    stats = encoder.new_stats()
    chunks = list(encoder(frames(images, fps=10.0), stats))  # 0.1 s apart: shorter than one 720p read
    assert stats.reads >= 1 and stats.read_s > 0.1 and stats.busy >= 1 and stats.frames == len(images)
    first = chunks[0]
    assert first.t_start == 0.0 and first.t_emit > first.t_end + 0.1
    assert all(c.t_emit >= c.t_end for c in chunks)


def test_options_name_the_field():
    with pytest.raises(AdasrError, match="stable_frames"):
        OCROptions(stable_frames=0)
    with pytest.raises(AdasrError, match="min_score"):
        OCROptions(min_score=2)


def test_a_frame_the_reader_fails_on_is_skipped_with_a_warning_and_the_stream_goes_on(reader, caplog):
    """A reader that raises on one frame stands in for a frame OCR cannot read (a fault no real
    frame of ours causes on demand): the warning names the frame's time, later frames are read."""
    calls = []

    def flaky(image):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("bad frame")
        return reader(image)

    a = slide(FIRST)
    encoder = OCREncoder(OCROptions(computation_aware=False), reader=flaky)
    stats = encoder.new_stats()
    with caplog.at_level("WARNING"):
        chunks = list(encoder(frames([a, slide(), a, a]), stats))
    assert [c.text for c in chunks] == [FIRST] and stats.bad == 1
    assert "frame at 0.00s skipped: bad frame" in caplog.text
