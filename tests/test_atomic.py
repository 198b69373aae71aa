"""adasr_av.atomic: a target appears whole or not at all, and concurrent writers never collide."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from adasr_av.atomic import PART_SUFFIX, atomic_open, atomic_path, write_atomically


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_target_appears_only_when_the_write_is_complete(tmp_path):
    target = tmp_path / "report.json"
    with atomic_open(target, "w") as handle:
        handle.write("first half, ")
        handle.flush()
        assert not target.exists()  # nothing at the target while the write is under way
        (part,) = tmp_path.iterdir()
        assert part.name.startswith(".report.json.") and part.name.endswith(PART_SUFFIX)
        handle.write("second half")
    assert target.read_text(encoding="utf-8") == "first half, second half"
    assert _leftovers(tmp_path) == []


def test_a_rewrite_replaces_the_old_file_in_one_step(tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("old\n", encoding="utf-8")
    with atomic_open(target, "w", newline="") as handle:
        handle.write("new\r\n")
        assert target.read_text(encoding="utf-8") == "old\n"  # the old file stays whole meanwhile
    assert target.read_bytes() == b"new\r\n"  # newline="" kept the line end as written


def test_write_atomically_takes_text_and_bytes(tmp_path):
    assert write_atomically(tmp_path / "a.txt", "héllo\n").read_bytes() == "héllo\n".encode()
    assert write_atomically(tmp_path / "b.bin", b"\x00\xff").read_bytes() == b"\x00\xff"
    assert _leftovers(tmp_path) == []


def test_the_part_is_made_with_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_atomically(tmp_path / "shared.json", "{}")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: others may read results


@pytest.mark.parametrize("old", [None, "old content"], ids=["no-file", "old-file"])
def test_an_exception_mid_write_leaves_the_old_state_and_no_part(tmp_path, old):
    target = tmp_path / "out.json"
    if old is not None:
        target.write_text(old, encoding="utf-8")
    with pytest.raises(RuntimeError, match="encoder died"), atomic_open(target, "w") as handle:
        handle.write("half a fi")
        raise RuntimeError("encoder died")
    assert (target.read_text(encoding="utf-8") if target.exists() else None) == old
    assert _leftovers(tmp_path) == []


def test_a_writer_given_the_path_that_fails_leaves_nothing(tmp_path):
    target = tmp_path / "clip.mp3"
    with pytest.raises(OSError), atomic_path(target) as part:
        part.write_bytes(b"ID3 half")
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_the_path_form_yields_a_fresh_empty_file_beside_the_target(tmp_path):
    target = tmp_path / "clip.mp3"
    with atomic_path(target) as part:
        assert part.parent == tmp_path and part.exists() and part.stat().st_size == 0
        part.write_bytes(b"whole clip")
    assert target.read_bytes() == b"whole clip"
    assert _leftovers(tmp_path) == []


def test_only_new_files_are_written():
    with pytest.raises(ValueError, match="mode"), atomic_open("x", "a"):
        pass


def _write_many(target: str, content: bytes, rounds: int) -> None:
    for _ in range(rounds):
        write_atomically(target, content)


CONTENTS = (b"A" * 200_000, b"B" * 300_000)  # large enough that a torn write would show


def test_two_threads_writing_one_target_never_collide(tmp_path):
    target = tmp_path / "result.bin"
    errors, seen = [], set()

    def writer(content):
        try:
            _write_many(str(target), content, 30)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(c,)) for c in CONTENTS]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        if target.exists():
            seen.add(target.read_bytes())  # a reader meanwhile sees one whole content, never a mix
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen <= set(CONTENTS)
    assert target.read_bytes() in CONTENTS
    assert _leftovers(tmp_path) == []


def test_two_processes_writing_one_target_never_collide(tmp_path):
    target = tmp_path / "result.bin"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(str(target), c, 20)) for c in CONTENTS]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert target.read_bytes() in CONTENTS
    assert _leftovers(tmp_path) == []
