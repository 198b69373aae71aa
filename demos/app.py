"""The live demo in the browser: the same as `adasr-av demo`, with the same flags.

    python demos/app.py [--host H] [--port P] [--share] [--model tiny-streaming-sft] ...

The page (microphone, upload and RTSP tabs, question box, live transcript, thoughts and skips,
answer with its latency, timeline) is built by `adasr_av.demo.build_app`.
"""

from __future__ import annotations

import sys

from adasr_av.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
