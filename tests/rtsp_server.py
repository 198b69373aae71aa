"""A real RTSP server on loopback for the tests: GStreamer's rtsp-server serving one media file.

Run with Debian's system python (it has `gi`): `/usr/bin/python3 tests/rtsp_server.py FILE PORT`.
Prints "READY" once it listens; serves rtsp://127.0.0.1:PORT/stream until killed. Every client
session plays FILE from its start, the way a camera's stream restarts when the camera does.
`--video` serves a test pattern (H.264) instead of FILE's audio; `--av` serves an mp4 FILE's
H.264 video and its audio as two tracks, as a camera with a microphone does.
"""

from __future__ import annotations

import argparse
import signal

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# L16 (raw 16-bit PCM) at 16 kHz: lossless, so a test can compare samples with the file.
AUDIO_PIPELINE = (
    '( filesrc location="{path}" ! decodebin ! audioconvert ! audioresample '
    "! audio/x-raw,rate=16000,channels=1 ! rtpL16pay name=pay0 pt=96 )"
)
VIDEO_PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! rtph264pay name=pay0 pt=96 )"
)

AV_PIPELINE = (
    '( filesrc location="{path}" ! qtdemux name=d '
    "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 "
    "d.audio_0 ! queue ! decodebin ! audioconvert ! audioresample "
    "! audio/x-raw,rate=16000,channels=1 ! rtpL16pay name=pay1 pt=97 )"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", default="")
    parser.add_argument("port", type=int)
    parser.add_argument("--video", action="store_true")
    parser.add_argument("--av", action="store_true")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    pipeline = VIDEO_PIPELINE if args.video else AV_PIPELINE if args.av else AUDIO_PIPELINE
    factory.set_launch(pipeline.format(path=args.path))
    factory.set_shared(False)
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"rtsp server: cannot listen on 127.0.0.1:{args.port}")

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("READY", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
