"""`adasr-av run` on video: H.264 + AAC clips made here (PyAV), frames read by the real OCR, the
speech by the real Whisper, both merged into the stream the bundled reasoner reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_media_rtsp import RtspServer, needs_server

from adasr_av.cli import main
from adasr_av.data.video import Slide, write_video
from adasr_av.media.file import read_audio

DEMOS = Path(__file__).resolve().parent.parent / "demos" / "media"
SHOWN = "The shop opens at 9 o'clock."
STORY = ("Tom has 21 dollars.", "He earns 63 dollars every hour.", "He works for 12 hours.",
         "How many dollars does Tom have now?")  # fmt: skip


def events_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video")
    speech = np.concatenate([c.samples for c in read_audio(DEMOS / "wages.mp3")])
    mixed = write_video(folder / "mixed.mp4", [Slide(SHOWN, 1.0, 4.5)], len(speech) / 16000, speech)
    slides = [Slide(text, 3.0 * k, 3.0 * (k + 1)) for k, text in enumerate(STORY)]
    silent = write_video(folder / "slides.mp4", slides, 13.0)
    return {"mixed": mixed, "slides": silent}


def test_a_clip_with_narration_and_slides_gives_one_stream_of_both(clips, tmp_path, capsys):
    out, srt, ocr = tmp_path / "events.jsonl", tmp_path / "speech.srt", tmp_path / "screen.srt"
    flags = ["--unaware", "--plain", "--out", str(out), "--srt", str(srt), "--ocr", str(ocr)]
    assert main(["run", str(clips["mixed"]), *flags, "--plot", str(tmp_path / "t.png")]) == 0
    assert f"[ocr] {SHOWN}" in capsys.readouterr().out  # the timeline names the chunk's source
    events = events_of(out)
    chunks = [e for e in events if e["type"] == "chunk"]
    shown = [c for c in chunks if c["source"] == "ocr"]
    assert [c["text"] for c in shown] == [SHOWN]
    assert sum(c["source"] == "asr" for c in chunks) >= 3
    times = [c["t_avail"] for c in chunks]
    assert times == sorted(times)  # merged by arrival
    assert 1.0 <= shown[0]["t_avail"] <= 3.5  # read once stable: the second frame that showed it
    assert events[-1]["type"] == "summary" and events[-2]["type"] == "answer"
    assert "shop" not in srt.read_text().lower() and "dollars" in srt.read_text().lower()  # speech only
    assert SHOWN in ocr.read_text() and "dollars" not in ocr.read_text()  # the screen's own track


def test_a_slideshow_without_sound_is_read_and_answered(clips, tmp_path):
    out = tmp_path / "events.jsonl"
    assert main(["run", str(clips["slides"]), "--unaware", "--plain", "--out", str(out)]) == 0
    events = events_of(out)
    chunks = [e for e in events if e["type"] == "chunk"]
    assert [c["text"] for c in chunks] == list(STORY) and {c["source"] for c in chunks} == {"ocr"}
    assert events[-2]["type"] == "answer" and events[-1]["type"] == "summary"


def test_video_off_reads_only_the_speech(clips, tmp_path):
    out = tmp_path / "events.jsonl"
    assert (
        main(["run", str(clips["mixed"]), "--unaware", "--plain", "--video", "off", "--out", str(out)]) == 0
    )
    assert {e["source"] for e in events_of(out) if e["type"] == "chunk"} == {"asr"}


def test_asking_for_frames_of_an_audio_file_is_one_line(capsys):
    assert main(["run", str(DEMOS / "wages.mp3"), "--video", "ocr"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no video stream for --video ocr" in err


def test_batch_takes_video_files(clips, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", str(clips["slides"].parent), "--unaware", "--out", str(out)]) == 0
    for stem in ("mixed", "slides"):
        sources = {e["source"] for e in events_of(out / f"{stem}.events.jsonl") if e["type"] == "chunk"}
        assert sources == ({"asr", "ocr"} if stem == "mixed" else {"ocr"})
    assert "shop" not in (out / "mixed.srt").read_text().lower()  # the SRT is the speech
    assert SHOWN in (out / "mixed.ocr.srt").read_text()  # the screen text has its own SRT
    assert STORY[0] in (out / "slides.ocr.srt").read_text()


def test_the_demo_upload_reads_a_videos_frames(clips):
    from adasr_av.demo import DemoSession
    from adasr_av.encoders.contract import ASREncoder
    from adasr_av.encoders.ocr import OCREncoder, OCROptions
    from adasr_av.encoders.streaming_asr import StreamingASROptions
    from adasr_av.encoders.whisper_backends import load_backend
    from adasr_av.pipeline import PipelineModels
    from adasr_av.reasoner.loading import load_reasoner_model
    from adasr_av.reasoner.session import StreamingReasoner

    asr = ASREncoder(load_backend(), StreamingASROptions(computation_aware=False))
    ocr = OCREncoder(OCROptions(computation_aware=False))
    models = PipelineModels(StreamingReasoner(*load_reasoner_model("tiny-streaming-sft")), [asr, ocr])
    session = DemoSession.from_file(models, clips["slides"])
    assert session.wait(timeout=300) and session.view().done
    assert [c.text for c in session.run.recent_chunks] == list(STORY)
    assert {c.source for c in session.run.recent_chunks} == {"ocr"}


@needs_server
def test_an_rtsp_camera_with_a_microphone_gives_speech_and_screen_text(clips, tmp_path):
    """Two tracks over RTSP (H.264 and audio): `--video ocr` reads both, each over its own
    connection, for as long as --max-seconds lets it."""
    server = RtspServer("--av", str(clips["mixed"]))
    server.start()
    try:
        out = tmp_path / "out"
        flags = ["--video", "ocr", "--max-seconds", "6", "--unaware", "--out", str(out)]
        assert main(["batch", server.url, *flags]) == 0
    finally:
        server.stop()
    (events,) = out.glob("*.events.jsonl")
    chunks = [e for e in events_of(events) if e["type"] == "chunk"]
    assert SHOWN in [c["text"] for c in chunks if c["source"] == "ocr"]
    assert any(c["source"] == "asr" and "dollars" in c["text"].lower() for c in chunks)


@pytest.mark.parametrize("kind", ["truncated", "not-a-video"])
def test_an_undecodable_video_is_one_line_naming_it(kind, clips, tmp_path, capsys):
    path = tmp_path / f"{kind}.mp4"
    data = clips["slides"].read_bytes()
    path.write_bytes(data[: len(data) // 3] if kind == "truncated" else b"not a video")
    assert main(["run", str(path), "--plain"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "FFmpeg cannot read it" in err


def test_a_video_in_a_codec_ffmpeg_cannot_decode_is_one_line_before_models_load(clips, tmp_path, capsys):
    """The clip remuxed into Matroska, its codec id then rewritten to one no FFmpeg knows."""
    import av

    remuxed = tmp_path / "ok.mkv"
    with av.open(str(clips["slides"])) as source, av.open(str(remuxed), "w") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = remuxed.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path = tmp_path / "unknown-codec.mkv"
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"))
    assert main(["run", str(path), "--plain"]) == 1
    out, err = capsys.readouterr()
    assert (
        err.strip()
        == f"adasr-av: error: media file {path}: its video is in a codec FFmpeg cannot decode here"
    )
    assert "question:" not in out  # refused before the models load


@needs_server
def test_the_demo_rtsp_tab_reads_a_cameras_screen_when_video_is_asked_for(clips):
    from adasr_av.demo import DemoSession
    from adasr_av.encoders.contract import ASREncoder
    from adasr_av.encoders.ocr import OCREncoder, OCROptions
    from adasr_av.encoders.streaming_asr import StreamingASROptions
    from adasr_av.encoders.whisper_backends import load_backend
    from adasr_av.pipeline import PipelineModels
    from adasr_av.reasoner.loading import load_reasoner_model
    from adasr_av.reasoner.session import StreamingReasoner
    from adasr_av.run_config import DemoSettings

    asr = ASREncoder(load_backend(), StreamingASROptions(computation_aware=False))
    ocr = OCREncoder(OCROptions(computation_aware=False))
    models = PipelineModels(StreamingReasoner(*load_reasoner_model("tiny-streaming-sft")), [asr, ocr])
    server = RtspServer("--av", str(clips["mixed"]))
    server.start()
    try:
        settings = DemoSettings(max_record_s=6, video="ocr")
        session = DemoSession.from_rtsp(models, server.url, settings=settings)
        assert session.wait(timeout=120) and session.view().done
    finally:
        server.stop()
    chunks = list(session.run.recent_chunks)
    assert SHOWN in [c.text for c in chunks if c.source == "ocr"]
    assert any(c.source == "asr" for c in chunks)
