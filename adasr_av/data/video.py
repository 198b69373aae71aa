"""Synthetic video: slides of text rendered with a plain font, written with narration as an mp4.

A slide is white with black text (DejaVu Sans, from matplotlib's fonts), wrapped to the frame and
centred on it. `write_video` encodes H.264 (yuv420p) and AAC with PyAV; each slide stays on screen
over its time span, blank frames fill the rest.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from adasr_av.atomic import atomic_path
from adasr_av.media.audio import SAMPLE_RATE

SIZE = (1280, 720)  # width, height: 720p
FONT_PX = 48
VIDEO_FPS = 5  # enough for slides; the encoders read 1 frame a second by default


@dataclass(frozen=True)
class Slide:
    text: str
    t_start: float
    t_end: float


@cache
def _font(size: int):
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf", size)


def render_slide(text: str, size: tuple[int, int] = SIZE, font_px: int = FONT_PX) -> np.ndarray:
    """An RGB frame with `text` wrapped and centred; "" gives a blank frame."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    if text:
        draw, font = ImageDraw.Draw(image), _font(font_px)
        lines = textwrap.wrap(text, width=max(8, int(size[0] / (0.55 * font_px)) - 4))
        step = int(font_px * 1.5)
        top = (size[1] - step * len(lines)) // 2
        for row, line in enumerate(lines):
            width = draw.textlength(line, font=font)
            draw.text(((size[0] - width) / 2, top + row * step), line, fill="black", font=font)
    return np.asarray(image)


def write_video(
    path: str | Path,
    slides: list[Slide],
    duration_s: float,
    audio: np.ndarray | None = None,
    fps: int = VIDEO_FPS,
    size: tuple[int, int] = SIZE,
) -> Path:
    """An mp4 of `duration_s` showing each slide over its span, with 16 kHz mono `audio` (AAC)."""
    import av

    path = Path(path)
    frames = {}
    with atomic_path(path) as part, av.open(str(part), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio is not None else None
        for k in range(int(round(duration_s * fps))):
            t = k / fps
            text = next((s.text for s in slides if s.t_start <= t < s.t_end), "")
            if text not in frames:
                frames[text] = render_slide(text, size)
            frame = av.VideoFrame.from_ndarray(frames[text], format="rgb24")
            frame.pts = k
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            samples = np.clip(audio, -1, 1).astype(np.float32)
            step = 1024
            for start in range(0, len(samples), step):
                block = av.AudioFrame.from_ndarray(
                    samples[None, start : start + step], format="flt", layout="mono"
                )
                block.sample_rate, block.pts = SAMPLE_RATE, start
                container.mux(sound.encode(block))
            container.mux(sound.encode())
    return path
