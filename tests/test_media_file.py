"""File source on real files written with PyAV: containers, resampling, timing, seeking, video, errors."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import av
import numpy as np
import pytest

from adasr_av.errors import AdasrError
from adasr_av.media.audio import CHUNK_SAMPLES, SAMPLE_RATE, Chunker
from adasr_av.media.file import read_audio, read_video_frames
from adasr_av.media.pacing import paced

SECONDS = 2.0
LOW, HIGH = 440.0, 880.0  # Hz: the tone in the first and in the second half
VIDEO_FPS = 10
VIDEO_SIZE = (48, 64)  # height, width


def tones(rate: int, seconds: float = SECONDS, first: float = LOW, second: float = HIGH) -> np.ndarray:
    """`first` Hz for the first half, `second` Hz after it, amplitude 0.5, float32 [n]."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * np.where(t < seconds / 2, first, second) * t)).astype(np.float32)


def shade(n: int) -> int:
    """Grey level of source video frame n, so a test can tell which frame it got."""
    return 20 + 10 * n


def write_media(
    path: Path,
    codec: str | None,
    tracks: list[np.ndarray],
    rate: int,
    layout: str = "stereo",
    video_seconds: float = 0.0,
) -> Path:
    """Write mono float tracks (copied to every channel of `layout`) and an optional grey-ramp video."""
    with av.open(str(path), "w") as out:
        audio = [out.add_stream(codec, rate=rate, layout=layout) for _ in tracks]
        video = None
        if video_seconds:
            video = out.add_stream("mpeg4", rate=VIDEO_FPS)
            video.height, video.width = VIDEO_SIZE
            video.pix_fmt = "yuv420p"
        for stream, track in zip(audio, tracks, strict=True):
            context = stream.codec_context
            resampler = av.AudioResampler(context.format, layout, rate, frame_size=context.frame_size or 1024)
            channels = len(av.AudioLayout(layout).channels)
            frame = av.AudioFrame.from_ndarray(np.tile(track, (channels, 1)), format="fltp", layout=layout)
            frame.sample_rate = rate
            for chunk in resampler.resample(frame) + resampler.resample(None):
                out.mux(stream.encode(chunk))
            out.mux(stream.encode(None))
        if video is not None:
            for n in range(int(video_seconds * VIDEO_FPS)):
                image = np.full((*VIDEO_SIZE, 3), shade(n), np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = n
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "wav": write_media(folder / "tones.wav", "pcm_s16le", [tones(44100)], 44100),
        "mp3": write_media(folder / "tones.mp3", "libmp3lame", [tones(44100)], 44100),
        "ogg": write_media(folder / "tones.ogg", "libopus", [tones(48000)], 48000),
        "mp4": write_media(folder / "tones.mp4", "aac", [tones(48000)], 48000, video_seconds=SECONDS),
        "two": write_media(
            folder / "two.mka", "pcm_s16le", [tones(22050), tones(22050, 2.0, 1000, 1000)], 22050
        ),
        "short": write_media(folder / "short.wav", "pcm_s16le", [tones(16000, 1.0)], 16000, "mono"),
        "video": write_media(folder / "video.mp4", None, [], 0, video_seconds=SECONDS),
    }


def peak_hz(samples: np.ndarray, t0: float, t1: float) -> float:
    """The strongest frequency in [t0, t1) seconds of 16 kHz audio."""
    window = samples[int(t0 * SAMPLE_RATE) : int(t1 * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    return float(np.fft.rfftfreq(len(window), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def joined(chunks) -> np.ndarray:
    return np.concatenate([chunk.samples for chunk in chunks])


@pytest.mark.parametrize("kind", ["wav", "mp3", "ogg", "mp4"])
def test_any_container_becomes_16k_mono_float_chunks(media, kind):
    chunks = list(read_audio(media[kind]))
    assert all(c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in chunks)
    assert all(len(c.samples) == CHUNK_SAMPLES for c in chunks[:-1])
    assert 0 < len(chunks[-1].samples) <= CHUNK_SAMPLES
    assert chunks[0].t_start == 0.0
    assert all(a.t_end == b.t_start for a, b in itertools.pairwise(chunks))
    assert all(c.t_end - c.t_start == pytest.approx(len(c.samples) / SAMPLE_RATE) for c in chunks)
    assert chunks[-1].t_end == pytest.approx(SECONDS, abs=0.1)
    samples = joined(chunks)
    assert peak_hz(samples, 0.2, 0.8) == pytest.approx(LOW, abs=5)
    assert peak_hz(samples, 1.2, 1.8) == pytest.approx(HIGH, abs=5)
    assert np.sqrt(np.mean(samples[SAMPLE_RATE // 5 : SAMPLE_RATE // 2] ** 2)) == pytest.approx(
        0.5 / np.sqrt(2), rel=0.1
    )


def test_resampler_tail_is_flushed(media):
    samples = joined(read_audio(media["wav"]))
    assert len(samples) == round(SECONDS * 44100 * SAMPLE_RATE / 44100)
    assert np.abs(samples[-50:-10]).max() > 0.1  # the tone lasts to the end: no dropped or zeroed tail


def test_chunk_size_is_configurable(media):
    chunks = list(read_audio(media["wav"], chunk_seconds=0.5))
    assert [len(c.samples) for c in chunks] == [8000] * 4
    assert [c.t_start for c in chunks] == [0.0, 0.5, 1.0, 1.5]


@pytest.mark.parametrize("kind", ["wav", "mp4"])
def test_start_at_seeks_and_keeps_media_time(media, kind):
    whole = joined(read_audio(media[kind]))
    chunks = list(read_audio(media[kind], start_at=1.25))
    assert chunks[0].t_start == 1.25
    assert all(a.t_end == b.t_start for a, b in itertools.pairwise(chunks))
    assert chunks[-1].t_end == pytest.approx(len(whole) / SAMPLE_RATE, abs=0.03)
    tail = joined(chunks)
    assert peak_hz(tail, 0.0, 0.5) == pytest.approx(HIGH, abs=5)
    # the samples are the whole file's from 1.25 s on, aligned to the sample (a lag of +-5 samples is
    # under half a period of the tone, so the best match is unambiguous)
    offset, piece = round(1.25 * SAMPLE_RATE), tail[1000:8000]
    errors = {
        lag: np.abs(whole[offset + lag + 1000 : offset + lag + 8000] - piece).max() for lag in range(-5, 6)
    }
    assert min(errors, key=errors.get) == 0
    assert errors[0] < (1e-3 if kind == "wav" else 0.1)  # mp4: the seek lands a third of a sample off


def test_start_past_the_end_gives_nothing(media):
    assert list(read_audio(media["wav"], start_at=5.0)) == []


def test_stream_index_picks_an_audio_stream(media):
    assert peak_hz(joined(read_audio(media["two"])), 0.2, 0.8) == pytest.approx(LOW, abs=5)
    assert peak_hz(joined(read_audio(media["two"], stream_index=1)), 0.2, 0.8) == pytest.approx(1000, abs=5)
    with pytest.raises(AdasrError, match=r"two\.mka: no audio stream 2 \(it has 2"):
        read_audio(media["two"], stream_index=2)


def test_realtime_paces_to_the_wall_clock(media):
    started = time.monotonic()
    chunks = list(read_audio(media["short"], realtime=True))
    elapsed = time.monotonic() - started
    assert chunks[-1].t_end == pytest.approx(1.0)
    assert 0.9 <= elapsed < 1.5


def test_paced_waits_for_each_record_end_and_never_for_late_ones():
    now, slept = [10.0], []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    records = [0.5, 1.0, 1.0, 2.5]
    out = list(paced(records, lambda t: t, start=0.0, clock=lambda: now[0], sleep=sleep))
    assert out == records
    assert slept == [0.5, 0.5, 1.5]


@pytest.mark.parametrize(("fps", "count"), [(4, 8), (10, 20), (25, 50)])
def test_video_frames_at_the_requested_rate(media, fps, count):
    frames = list(read_video_frames(media["mp4"], fps=fps))
    assert len(frames) == count
    assert [f.t for f in frames] == pytest.approx([k / fps for k in range(count)])
    for frame in frames:
        assert frame.image.shape == (*VIDEO_SIZE, 3) and frame.image.dtype == np.uint8
        shown = int(frame.t * VIDEO_FPS + 1e-6)  # the latest source frame at that moment
        assert frame.image.mean() == pytest.approx(shade(shown), abs=4)


def test_video_frames_from_start_at(media):
    frames = list(read_video_frames(media["video"], fps=4, start_at=1.0))
    assert [f.t for f in frames] == pytest.approx([1.0, 1.25, 1.5, 1.75])
    assert [round((f.image.mean() - 20) / 10) for f in frames] == [10, 12, 15, 17]


def test_missing_file(tmp_path):
    with pytest.raises(AdasrError, match="nothing.wav: no such file") as caught:
        read_audio(tmp_path / "nothing.wav")
    assert "\n" not in str(caught.value)


def test_text_file_named_wav(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("these are not samples\n" * 20)
    with pytest.raises(AdasrError, match="notes.wav: FFmpeg cannot read it") as caught:
        read_audio(fake)
    assert "\n" not in str(caught.value)


def test_video_only_file_has_no_audio(media):
    with pytest.raises(AdasrError, match=r"video\.mp4: no audio stream$"):
        read_audio(media["video"])
    with pytest.raises(AdasrError, match="tones.wav: no video stream"):
        read_video_frames(media["wav"], fps=5)


def test_chunker_keeps_times_exact_over_uneven_pushes():
    chunker = Chunker(chunk_samples=160, t_start=3.0)
    chunks = []
    for size in (50, 300, 7, 0, 500, 13):
        chunks += chunker.push(np.ones(size, np.float32))
    assert chunker.t_end == pytest.approx(3.0 + 870 / SAMPLE_RATE)
    chunks += chunker.flush()
    assert [len(c.samples) for c in chunks] == [160] * 5 + [70]
    assert chunks[0].t_start == 3.0 and chunks[-1].t_end == pytest.approx(3.0 + 870 / SAMPLE_RATE)
    assert all(a.t_end == b.t_start for a, b in itertools.pairwise(chunks))
