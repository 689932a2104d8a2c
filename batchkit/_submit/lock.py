"""One writer per build directory: an exclusive OS-level lock on ``DIR/journal.lock``.

Everything that writes a directory's journal and may send a create (``submit``, ``wait``, ``retry --realtime``,
``resolve``, ``recover``, ``run``) holds this lock for as long as it works on the directory. A second process
is refused at once with :class:`~batchkit._errors.DirectoryLockedError`, whose message names the holder:
its pid, host and since when it holds the lock (written into the lock file by the holder, readable by anyone).

The lock is ``flock(2)`` (``fcntl`` from the standard library; ``msvcrt`` byte locking on Windows), so the
operating system releases it when its holder dies, ``kill -9`` included: a stale lock file never blocks
anyone, and its stale text is simply overwritten by the next holder. Within one thread the lock is
re-entrant (``run`` holds it while it calls ``submit`` and ``wait``); another thread of the same process is
refused like another process.

A lock on a network filesystem is only as good as that filesystem's ``flock``: keep build directories on a
local disk while submitting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from .._errors import DirectoryLockedError, InputError
from .._shard.builddir import LOCK

__all__ = ["Holder", "directory_lock", "holder", "try_directory_lock"]

log = logging.getLogger("batchkit")

_WINDOWS_OFFSET: Final = 1 << 30  # msvcrt locks a byte range: one far beyond the holder's text

_held = threading.local()


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a directory's lock, as the holder wrote it."""

    pid: int | None
    host: str | None
    since: str | None
    command: str | None

    def describe(self) -> str:
        if self.pid is None:
            return "another process (it has not written its name yet)"
        parts = [f"pid {self.pid}"]
        if self.host:
            parts.append(f"on {self.host}")
        if self.since:
            parts.append(f"since {self.since}")
        text = " ".join(parts)
        return f"{text} ({self.command})" if self.command else text


def holder(directory: str | Path) -> Holder | None:
    """What the lock file of ``directory`` says about its last holder (None when there is none)."""
    try:
        data = orjson.loads((Path(directory) / LOCK).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return Holder(
        pid=pid if isinstance(pid, int) else None,
        host=str(data["host"]) if data.get("host") else None,
        since=str(data["since"]) if data.get("since") else None,
        command=str(data["command"]) if data.get("command") else None,
    )


def _registry() -> dict[str, list[int]]:
    table: dict[str, list[int]] | None = getattr(_held, "table", None)
    if table is None:
        table = {}
        _held.table = table
    return table


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        os.lseek(fd, _WINDOWS_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _acquire(folder: Path, command: str) -> int | None:
    """The locked file descriptor, or None when another holder has it."""
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        msg = f"cannot create the lock file {path}: {exc.strerror or exc}; is {folder} writable?"
        raise InputError(msg, path=path) from exc
    if not _try_lock(fd):
        os.close(fd)
        return None
    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": command,
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, orjson.dumps(note) + b"\n")
    return fd


@contextlib.contextmanager
def try_directory_lock(directory: str | Path, command: str = "batchkit") -> Iterator[bool]:
    """Hold the lock if it is free (yield True), or go on without it (yield False); never raises for a holder."""
    folder = Path(directory)
    key = str(folder.resolve())
    table = _registry()
    if key in table:
        table[key][1] += 1
        try:
            yield True
        finally:
            table[key][1] -= 1
        return
    fd = _acquire(folder, command)
    if fd is None:
        yield False
        return
    table[key] = [fd, 1]
    try:
        yield True
    finally:
        del table[key]
        with contextlib.suppress(OSError):
            _unlock(fd)
        os.close(fd)


@contextlib.contextmanager
def directory_lock(directory: str | Path, command: str = "batchkit") -> Iterator[None]:
    """Hold ``DIR/journal.lock`` exclusively, or raise :class:`DirectoryLockedError` naming its holder."""
    folder = Path(directory)
    if not folder.is_dir():
        msg = f"{folder} is not a directory; give a build directory (made by `batchkit build`)"
        raise InputError(msg, path=folder)
    with try_directory_lock(folder, command) as held:
        if not held:
            who = holder(folder) or Holder(None, None, None, None)
            msg = (
                f"{folder} is in use by {who.describe()}: one batchkit process at a time may submit, wait for "
                "or settle a directory. Wait for it to end (or stop it), then run this again"
            )
            raise DirectoryLockedError(msg, pid=who.pid, host=who.host, since=who.since)
        log.debug("holding the lock of %s", folder)
        yield
