"""The demo under load: four `gradio_client` sessions upload spoken stories to `adasr-av demo` on
loopback, each sending its next story as soon as its last one is answered, for two minutes.

The pipeline runs one stream at a time (the upload handler's concurrency limit of 1), so the other
sessions wait in Gradio's queue, and the page shows a waiting session its place ("queue: 2/3", from
the queue's estimation messages: the same messages a `Job`'s status carries as `rank` and
`queue_size`). No job may fail, every one must end with an answer, every one that waited must have
been told its place, and that place may only move forward. Each job's latency (submit to final
output) and its wait in the queue are printed as a table (pytest -s) and recorded as properties.

ADASR_LOAD_S shortens the two minutes (a quick run on a busy machine).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from demo_server import served_demo

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.utils import Status  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STORIES = [ROOT / "demos" / "media" / f"{name}.mp3" for name in ("money", "wages", "cooking", "shopping")]
LOAD_S = float(os.environ.get("ADASR_LOAD_S", "120"))  # wall time during which sessions submit
JOB_S = 900  # one job, from submit to its answer, behind the three other sessions
POLL_S = 0.05  # how often a session looks at its job's status
BUSY_MARGIN_S = 0.5  # a job sent this long before another's answer came found the pipeline busy


@dataclass
class JobRecord:
    """One upload as its session saw it: monotonic seconds, and the queue places it was told."""

    session: int
    story: str
    submitted: float
    started: float | None = None  # first PROCESSING (or later) status
    finished: float | None = None  # the final output received
    places: list[tuple[int, int | None]] = field(default_factory=list)  # (rank, queue_size) seen
    outputs: tuple = ()
    error: str | None = None

    @property
    def latency_s(self) -> float:
        return (self.finished or 0.0) - self.submitted

    @property
    def queued_s(self) -> float:
        return (self.started or self.finished or self.submitted) - self.submitted

    def answer(self) -> str:
        return next((o for o in self.outputs if isinstance(o, str) and o.startswith("### Answer:")), "")

    def status(self) -> str:
        return self.outputs[0] if self.outputs and isinstance(self.outputs[0], str) else ""

    def shown_places(self) -> str:
        """The distinct places as the page shows them ("queue: 2/3"), in order."""
        shown = []
        for rank, size in self.places:
            text = f"{rank + 1}/{size}"
            if not shown or shown[-1] != text:
                shown.append(text)
        return " ".join(shown) or "-"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """`adasr-av demo` as a user starts it, in a subprocess on a free 127.0.0.1 port: (url, log)."""
    with served_demo(tmp_path_factory.mktemp("app")) as demo:
        yield demo.url, demo.log


def run_session(client: Client, session: int, until: float, records: list[JobRecord], lock) -> None:
    """Upload this session's story, follow the job to its answer, and again until `until`."""
    story = STORIES[session % len(STORIES)]
    sidecar = json.loads(story.with_suffix(".json").read_text())
    while time.monotonic() < until:
        record = JobRecord(session, story.stem, time.monotonic())
        with lock:
            records.append(record)
        try:
            job = client.submit(
                handle_file(str(story)),
                sidecar["question"],
                sidecar["answer"],
                False,  # not at real speed: a story takes a few seconds
                api_name="/run_file",
            )
            while not job.done():
                update = job.status()
                now = time.monotonic()
                if update.code == Status.IN_QUEUE and update.rank is not None:
                    record.places.append((update.rank, update.queue_size))
                elif record.started is None and update.code in (Status.PROCESSING, Status.ITERATING):
                    record.started = now
                if now - record.submitted > JOB_S:
                    job.cancel()
                    raise TimeoutError(f"no answer within {JOB_S} s")
                time.sleep(POLL_S)
            record.outputs = tuple(job.result(timeout=60))
            record.finished = time.monotonic()
        except Exception as err:  # noqa: BLE001 - reported by the test, with the others
            record.error = f"{type(err).__name__}: {err}"
            return


def waited(record: JobRecord, records: list[JobRecord]) -> bool:
    """Another session's job held the pipeline when this one was sent, so it had to queue."""
    return any(
        other is not record
        and other.started is not None
        and other.finished is not None
        and other.started <= record.submitted < other.finished - BUSY_MARGIN_S
        for other in records
    )


def table(records: list[JobRecord], t0: float) -> str:
    lines = [
        f"{'session':>7} {'story':<9} {'sent_s':>7} {'queued_s':>8} {'run_s':>6} {'latency_s':>9} "
        f"{'answer':<7} {'correct':<7} places shown (queue: n/size)"
    ]
    for r in sorted(records, key=lambda r: r.submitted):
        found = re.search(r"Answer: (\S+)", r.answer())
        correct = "correct" in r.answer().split("\n\n")[-1] and "wrong" not in r.answer()
        lines.append(
            f"{r.session:>7} {r.story:<9} {r.submitted - t0:>7.1f} {r.queued_s:>8.1f} "
            f"{r.latency_s - r.queued_s:>6.1f} {r.latency_s:>9.1f} "
            f"{found.group(1) if found else '-':<7} {'yes' if correct else 'no':<7} {r.shown_places()}"
            + (f"  ERROR {r.error}" if r.error else "")
        )
    return "\n".join(lines)


def test_four_sessions_under_load_are_all_answered_and_told_their_place(app, record_property):
    url, log_path = app
    sessions = len(STORIES)
    clients = [
        Client(url, verbose=False, analytics_enabled=False, download_files=False) for _ in range(sessions)
    ]
    names = clients[0].view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/run_file" in names, sorted(names)

    records: list[JobRecord] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=run_session, args=(client, i, t0 + LOAD_S, records, lock), daemon=True)
        for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOAD_S + JOB_S + 120)
    wall_s = time.monotonic() - t0
    for client in clients:
        client.close()

    report = table(records, t0)
    latencies = sorted(r.latency_s for r in records if r.finished is not None) or [0.0]
    queued = sorted(r.queued_s for r in records if r.finished is not None) or [0.0]
    summary = (
        f"{len(records)} jobs from {sessions} sessions in {wall_s:.0f} s (sending for {LOAD_S:.0f} s); "
        f"latency median {latencies[len(latencies) // 2]:.1f} s, max {latencies[-1]:.1f} s; "
        f"queued median {queued[len(queued) // 2]:.1f} s, max {queued[-1]:.1f} s"
    )
    print(f"\n{report}\n{summary}")
    record_property("demo_load_summary", summary)
    record_property("demo_load_table", report)
    for r in records:
        record_property(
            f"job_{r.session}_{r.submitted - t0:.0f}s",
            f"queued {r.queued_s:.1f} s, latency {r.latency_s:.1f} s",
        )

    assert not any(t.is_alive() for t in threads), f"a session never ended\n{report}"
    assert not [r for r in records if r.error], f"jobs failed\n{report}"
    assert {r.session for r in records} == set(range(sessions)), f"a session sent nothing\n{report}"
    for r in records:
        assert r.status().startswith("Done: "), (
            f"job {r.story}@{r.submitted - t0:.1f}s: {r.status()!r}\n{report}"
        )
        assert re.search(r"### Answer: \S+", r.answer()), (
            f"job {r.story}: no answer in {r.outputs!r}\n{report}"
        )
        assert re.search(r"\d+\.\d\d s after the stream ended", r.answer()), f"{r.answer()}\n{report}"

    waiting = [r for r in records if waited(r, records)]
    assert waiting, f"no job had to wait: the load test loaded nothing\n{report}"
    for r in waiting:
        assert r.places, (
            f"job {r.story}@{r.submitted - t0:.1f}s waited {r.queued_s:.1f} s, never told its place\n{report}"
        )
    for r in records:
        for rank, size in r.places:
            assert size is not None and 0 <= rank < size <= sessions, f"place {rank + 1}/{size}\n{report}"
        ranks = [rank for rank, _ in r.places]
        assert ranks == sorted(ranks, reverse=True), f"job {r.story}: its place went back {ranks}\n{report}"

    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
