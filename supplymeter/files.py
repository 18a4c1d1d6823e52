"""Files that survive a crash or a full disk: append-only logs of whole records, state files
replaced atomically, and a lock that lets one process at a time change shared state.

A write can be torn by ``kill -9``, a power cut or a full disk. The rules here:

* an append-only log (JSON lines) is appended **whole records or nothing**: a failed append is
  cut back, and a partial last record left by an earlier crash is cut off before the next
  append; readers skip (and report) such a trailing partial record instead of failing;
* a state file is written beside itself and renamed over the old one, so a reader sees the
  old or the new file, never half of one;
* a full or read-only disk is a :class:`StorageError` that names the file and what to do,
  and the next run after space returns succeeds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from supplymeter.errors import SupplymeterError

log = logging.getLogger(__name__)


class StorageError(SupplymeterError):
    """A file could not be written (full disk, read-only file system, permissions): nothing of
    the write took effect. Retrying after the cause is fixed succeeds."""

    retryable = True


def whole_lines_size(f: IO[bytes]) -> int:
    """The byte length of the binary file ``f`` up to and including its last newline."""
    pos = f.seek(0, os.SEEK_END)
    while pos > 0:
        step = min(65536, pos)
        f.seek(pos - step)
        cut = f.read(step).rfind(b"\n")
        if cut >= 0:
            return pos - step + cut + 1
        pos -= step
    return 0


def append_lines(path: Path, lines: Iterable[str], *, fsync: bool = True) -> None:
    """Append ``lines`` (each without its newline) to ``path``: all of them or none.

    A partial last line left by an earlier interrupted write is removed first."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if not data:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: a failed write must not leave bytes in a buffer that a later flush
        # (even the truncate's) would try to write again.
        with path.open("a+b", buffering=0) as f:
            end = f.seek(0, os.SEEK_END)
            size = whole_lines_size(f)  # type: ignore[arg-type]
            if size != end:
                log.warning("%s: removing a partial last record (%d bytes) left by an "
                            "interrupted write", path, end - size)  # fmt: skip
            try:
                os.ftruncate(f.fileno(), size)
                view = memoryview(data)
                while view:
                    written = os.pwrite(f.fileno(), view, size + len(data) - len(view))
                    view = view[written:]
                if fsync:
                    os.fsync(f.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(f.fileno(), size)
                raise
    except OSError as exc:
        raise StorageError(f"{path}: could not append {len(data)} bytes "
                           f"({exc.strerror or exc}); nothing was written — free space or fix "
                           "the permissions and run again") from exc  # fmt: skip


def append_json(path: Path, records: Iterable[object], *, fsync: bool = True) -> None:
    """Append JSON records, one per line, whole or not at all (see :func:`append_lines`)."""
    append_lines(path, (json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records),
                 fsync=fsync)  # fmt: skip


def read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, record) of a JSON-lines log; a partial last line (no newline: a torn
    write) is skipped with a warning. A malformed *complete* line raises ``ValueError`` naming
    the file and line: that is damage, not an interrupted write."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n"):
                    log.warning("%s:%d: skipping a partial last record (%d bytes) left by an "
                                "interrupted write; the next append removes it", path, n,
                                len(line.encode()))  # fmt: skip
                    return
                raise ValueError(f"{path}:{n}: not JSON ({exc})") from exc


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` atomically: readers see the old or the new file."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"{path}: could not write ({exc.strerror or exc}); the previous "
                           "version is kept — free space or fix the permissions and run "
                           "again") from exc  # fmt: skip


def write_json_atomic(path: Path, data: object, indent: int | None = None) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=indent, sort_keys=True))


@contextlib.contextmanager
def _lock_file(path: Path) -> Iterator[int]:
    """The open descriptor of a lock file (created if missing). Closing it releases any
    ``flock`` taken on it — also when the process dies, so no lock is ever left stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path, *, timeout_s: float | None = None, what: str = "") -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block: one
    process at a time changes what it guards. Waits for the holder; ``timeout_s`` bounds the
    wait (``None``: no bound) and then raises :class:`StorageError`. The kernel releases the
    lock when its holder dies, so a killed process never leaves it held."""
    with _lock_file(path) as fd:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise StorageError(f"{path}: held by another process "
                                       f"{what}".rstrip()) from None  # fmt: skip
                if not told and timeout_s is None:
                    log.info("%s is held by another process %s", path, what)
                    told = True
                time.sleep(0.05)
        yield


def cell(row: dict[str, str], column: str, parse: Any = str) -> Any:
    """``parse(row[column])`` for a row of an input file; a failure names the column and the
    text found (``column value: could not read 'ten' (could not convert ...)``)."""
    text = row.get(column)
    if text is None:
        raise ValueError(f"column {column}: missing")
    try:
        return parse(text.strip())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {column}: cannot read {text!r} ({exc})") from exc


class AlreadyRunning(SupplymeterError):
    """Another process holds the single-instance lock of this service."""


@contextlib.contextmanager
def single_instance(path: Path, what: str) -> Iterator[None]:
    """Hold ``path``'s lock for the block, or raise :class:`AlreadyRunning` at once naming the
    process that holds it. The kernel drops the lock when its holder dies (no stale locks)."""
    with _lock_file(path) as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AlreadyRunning(f"{what} already runs (pid {holder}; lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
