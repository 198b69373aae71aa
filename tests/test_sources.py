"""The source registry: what a source is, which files are media, sidecars, and URLs without
their passwords; the same answers for run, batch and the demo."""

from __future__ import annotations

import json

import pytest

from adasr_av.errors import AdasrError
from adasr_av.media.sources import is_media_file, redact, sidecar_of, source_kind, unsupported_type


def test_source_kinds():
    assert source_kind("mic") == "mic"
    assert source_kind("rtsp://cam:8554/stream") == source_kind("RTSPS://cam/x") == "rtsp"
    assert source_kind("talk.mp4") == source_kind("mic.wav") == "file"
    with pytest.raises(AdasrError, match=r"^source http://me:\*\*\*@host/x: unsupported URL scheme"):
        source_kind("http://me:hunter2@host/x")


def test_one_list_of_media_suffixes_for_every_front_end():
    assert all(is_media_file(f"a{s}") for s in (".wav", ".MP3", ".mp4", ".avi", ".mkv", ".webm"))
    assert not is_media_file("notes.txt") and not is_media_file("README")
    assert unsupported_type("clip.avi") is None
    assert unsupported_type("notes.txt").startswith("notes.txt: unsupported file type .txt;")


def test_redact_hides_the_password_only():
    assert redact("rtsp://admin:s3cr3t@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert redact("rtsp://10.0.0.2:554/live") == "rtsp://10.0.0.2:554/live"


def test_sidecars_are_looked_up_for_files_only(tmp_path):
    media = tmp_path / "story.mp3"
    media.write_bytes(b"")
    (tmp_path / "story.json").write_text(json.dumps({"text": "Tom has 5.", "answer": 5}))
    assert sidecar_of(str(media)).answer == "5"
    assert sidecar_of("mic") is None and sidecar_of("rtsp://cam/stream") is None


def test_one_rule_decides_which_sources_frames_are_read():
    """The same answer for run, batch and the demo (each asks `reads_frames`)."""
    from adasr_av.media.sources import reads_frames
    from adasr_av.run_config import VideoSection

    slides, speech = "demos/media/slides-shopping.mp4", "demos/media/shopping.mp3"
    assert reads_frames(slides, "auto") and reads_frames(slides, "caption")
    assert not reads_frames(slides, "off") and not reads_frames(speech, "auto")
    assert not reads_frames("rtsp://cam/x", "auto") and reads_frames("rtsp://cam/x", "ocr")
    assert not reads_frames("mic", "ocr")
    assert VideoSection().mode_for(slides) == "ocr" and VideoSection().mode_for("rtsp://cam/x") == "off"
    assert VideoSection(video="caption").mode_for("rtsp://cam/x") == "caption"
    assert VideoSection().mode_for() == "ocr" and VideoSection(video="off").mode_for(slides) == "off"
    with pytest.raises(AdasrError, match="^source mic: no video stream for --video ocr$"):
        VideoSection(video="ocr").mode_for("mic")
