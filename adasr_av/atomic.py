"""Files that appear whole or not at all: every writer of results goes through here.

A write goes to a fresh hidden file beside the target, `.<name>.<8 hex>.part` (created with
O_EXCL, so two writers of one target never share it), is flushed to disk, and is renamed onto the
target (`os.replace`, atomic on one file system). A reader, or a run killed half-way, sees the old
file or the new one, never a half-written one; an exception removes the part and leaves the target
as it was. Of two concurrent writers of one target, the last rename wins and both succeed.

    with atomic_path(out / "clip.mp3") as part:   # a library that wants a path (PyAV)
        av.open(str(part), "w", format="mp3") ...
    with atomic_open(out / "summary.csv", "w", newline="") as handle:
        csv.writer(handle) ...
    write_atomically(out / "report.json", text)    # str or bytes
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PART_SUFFIX = ".part"  # what a file being written is called: .<name>.<8 hex>.part
_ATTEMPTS = 100  # fresh names tried before giving up (a clash needs 32 equal random bits)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new empty part file beside `path` to write by name; on a clean exit it is synced and
    renamed onto `path`, on an exception it is removed and `path` is left as it was."""
    path = Path(path)
    part = _new_part(path)
    try:
        yield part
        _sync(part)
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    _sync_folder(path.parent)


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", encoding: str | None = None, newline: str | None = None
) -> Iterator[IO[Any]]:
    """`open(path, mode)` through a part file: "w" or "wb" (text defaults to UTF-8); the file
    appears at `path` when the block ends without an exception."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode 'w' or 'wb', not {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as part, open(part, mode, encoding=encoding, newline=newline) as handle:
        yield handle


def write_atomically(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write `data` (text as `encoding`, or bytes) to `path` whole; returns the path."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding=encoding) as handle:
            handle.write(data)
    else:
        with atomic_open(path, "wb") as handle:
            handle.write(data)
    return Path(path)


def _new_part(path: Path) -> Path:
    """Create `.<name>.<8 hex>.part` beside `path` (mode 0666 less the umask, as `open` would)."""
    for _ in range(_ATTEMPTS):
        part = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PART_SUFFIX}")
        try:
            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return part
    raise FileExistsError(f"no free part-file name beside {path}")


def _sync(path: Path) -> None:
    """Flush `path`'s content to disk (a writer given the name has closed it by now)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort (some platforms cannot open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(path: str | Path, flag: str) -> None:
    """Fail before a run starts when `path` cannot be written (one line naming the flag and the
    path): its folder is made if missing and a file is tried there; no output file is left."""
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise _unwritable(flag, path, "is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise _unwritable(flag, path, (err.strerror or str(err)).lower()) from None


def _unwritable(flag: str, path: Path, why: str):
    from adasr_av.errors import AdasrError

    return AdasrError(f"{flag} {path}: cannot write there ({why})")
