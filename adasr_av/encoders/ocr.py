"""The OCR encoder: text on screen as timestamped chunks, each sentence once.

Frames (already sampled at the video rate, `--fps`) pass the change test of `frames.py`; a frame
that changed is read by RapidOCR (PP-OCR detection and recognition models bundled with the
`rapidocr-onnxruntime` package: offline). Lines are put in reading order (rows top to bottom, by
vertical overlap; left to right within a row), joined and split into sentences. A screen's text is
emitted once it has read the same in `stable_frames` sampled frames in a row (a slide being
drawn, a fade or a camera's noise is not read half-way), and only the sentences the previous
stable screen did not show: text that stays on screen is emitted once.

Times: a chunk covers the media from the first frame that showed its screen to the frame that
made it stable. Computation-aware (the default, as the ASR), OCR runs one frame at a time on the
stream's clock: a frame read takes its measured compute, a frame that comes while a read is still
running is not read (as a live encoder takes the latest frame), and a chunk's `t_emit` is when
its read finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from adasr_av.encoders.frames import FrameChangeOptions, FrameStats, read_when_free
from adasr_av.errors import AdasrError
from adasr_av.types import TextChunk, VideoFrame

SENTENCE = re.compile(r"[^.?!]*[.?!]+|[^.?!]+$")
# A number OCR read with a letter for a digit ("2l dollars", "1O0"): a token of digits and the
# letters that look like them, with at least one real digit.
CONFUSED_NUMBER = re.compile(r"\b(?=[\dlIO|]*\d)[\dlIO|]+\b")
DIGIT_FOR = str.maketrans({"l": "1", "I": "1", "|": "1", "O": "0"})


@dataclass(frozen=True)
class OCROptions:
    stable_frames: int = 2  # sampled frames in a row that must read the same before it is emitted
    min_score: float = 0.5  # recognised lines below this confidence are not read
    computation_aware: bool = True
    threads: int = 1  # onnxruntime threads for one read
    change: FrameChangeOptions = field(default_factory=FrameChangeOptions)

    def __post_init__(self):
        if self.stable_frames < 1:
            raise AdasrError(f"video.stable_frames must be at least 1, got {self.stable_frames}")
        if not 0 <= self.min_score <= 1:
            raise AdasrError(f"video.min_score must be within 0..1, got {self.min_score}")
        if self.threads < 1:
            raise AdasrError(f"video.ocr_threads must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class Line:
    """One recognised line: its box (x0, y0, x1, y1) in pixels and its text."""

    box: tuple[float, float, float, float]
    text: str


def reading_order(lines: Sequence[Line]) -> list[Line]:
    """Rows top to bottom (a line joins a row when it overlaps the row's first line vertically by
    half its height), each row left to right."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        if rows:
            head = rows[-1][0]
            overlap = min(head.box[3], line.box[3]) - max(head.box[1], line.box[1])
            if overlap >= 0.5 * min(head.box[3] - head.box[1], line.box[3] - line.box[1]):
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln.box[0])]


def screen_text(lines: Sequence[Line]) -> str:
    """The lines in reading order, joined, with OCR's letter-for-digit slips in numbers mended."""
    text = " ".join(" ".join(line.text.split()) for line in reading_order(lines))
    return CONFUSED_NUMBER.sub(lambda m: m.group().translate(DIGIT_FOR), text).strip()


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.findall(text) if s.strip()]


def sentence_key(sentence: str) -> str:
    """A sentence as two reads of one screen compare it: letters and digits, lower case."""
    return re.sub(r"[^0-9a-z]+", "", sentence.lower())


class RapidOCRReader:
    """Lines of text in an RGB image, by RapidOCR's bundled PP-OCR models."""

    def __init__(self, options: OCROptions):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise AdasrError("OCR needs rapidocr-onnxruntime (pip install rapidocr-onnxruntime)") from None
        self.min_score = options.min_score
        self.engine = RapidOCR(intra_op_num_threads=options.threads, inter_op_num_threads=1)

    def __call__(self, image: np.ndarray) -> list[Line]:
        found, _ = self.engine(np.ascontiguousarray(image[:, :, ::-1]))  # RapidOCR reads BGR
        lines = []
        for box, text, score in found or ():
            if float(score) >= self.min_score and text.strip():
                xs, ys = [p[0] for p in box], [p[1] for p in box]
                lines.append(Line((min(xs), min(ys), max(xs), max(ys)), text))
        return lines


class OCREncoder:
    """Video frames -> TextChunks of the text on screen (see the module doc)."""

    source = "ocr"
    takes = "video"

    def __init__(self, options: OCROptions = OCROptions(), reader=None):
        self.options = options
        self.reader = reader if reader is not None else RapidOCRReader(options)

    def new_stats(self) -> FrameStats:
        return FrameStats()

    def __call__(self, frames: Iterable[VideoFrame], stats: FrameStats | None = None) -> Iterator[TextChunk]:
        o, stats = self.options, stats if stats is not None else FrameStats()
        text = ""
        candidate, count, first_seen = None, 0, 0.0
        shown: set[str] = set()  # sentence keys of the last stable screen
        read = lambda image: screen_text(self.reader(image))  # noqa: E731
        for frame, read_text, t_done in read_when_free(frames, read, o.change, o.computation_aware, stats):
            if read_text is not None:
                text = read_text
            key = sentence_key(text)
            if key == candidate:
                count += 1
            else:
                candidate, count, first_seen = key, 1, frame.t
            if count != o.stable_frames:
                continue
            screen = sentences(text)
            for sentence in screen:
                if sentence_key(sentence) not in shown:
                    yield TextChunk(sentence, first_seen, frame.t, max(t_done, frame.t), source="ocr")
            shown = {sentence_key(s) for s in screen}
