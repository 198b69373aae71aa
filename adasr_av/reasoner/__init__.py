"""The streaming reasoner: protocol, session, baseline, model loading."""

from adasr_av.reasoner.session import (
    ReadThenThinkReasoner,
    ReasonerOptions,
    StreamingReasoner,
    make_reasoner,
    reason_over_stream,
)

__all__ = [
    "ReadThenThinkReasoner",
    "ReasonerOptions",
    "StreamingReasoner",
    "make_reasoner",
    "reason_over_stream",
]
