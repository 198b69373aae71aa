"""Real-time pacing: a recorded source replayed as if it were live."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Record = TypeVar("Record")


def paced(
    records: Iterable[Record],
    time_of: Callable[[Record], float],
    start: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Record]:
    """Yield each record no earlier than `time_of(record) - start` wall seconds after the first pull.

    `time_of` should give the moment the record is complete (an audio chunk's t_end, a frame's t): a
    live source cannot hand out a chunk before its last sample has been spoken. A slow consumer is
    never waited for twice: records that are already late go out at once.
    """
    wall_start = clock()
    for record in records:
        delay = wall_start + (time_of(record) - start) - clock()
        if delay > 0:
            sleep(delay)
        yield record
