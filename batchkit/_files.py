"""File system steps shared by every reader and writer: opening input safely, durable writes (atomic
writes, fsync, sha256), and the wording of a failed write.

:func:`open_input` opens a file given by the user without ever waiting: a FIFO, a device or a socket is
refused (a FIFO without a writer would block forever, ``/dev/zero`` never ends), and so is a directory, a
symbolic link loop or an unreadable file, each with a message that says what it is and what to do.
:func:`read_input` reads a small input (a mapping, a schema) whole, within a byte budget.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from ._errors import InputError

__all__ = [
    "atomic_write",
    "deferred_interrupts",
    "describe_oserror",
    "file_sha256",
    "make_durable",
    "open_input",
    "read_input",
    "save",
    "sync_dir",
    "writing",
]

_BLOCK: Final = 4 << 20

#: The largest small input (mapping TOML, JSON Schema) read whole.
SMALL_INPUT_BYTES = 16 << 20

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def describe_oserror(exc: OSError) -> str:
    """What went wrong, in words (``No space left on device``), never a traceback's repr."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    return exc.strerror or " ".join(str(exc).split())[:200] or type(exc).__name__


def open_input(path: str | Path, *, what: str = "file") -> BinaryIO:
    """Open a regular file for reading, in binary mode; raise :class:`InputError` for anything else.

    The file is opened without blocking, so a FIFO is detected (and refused) instead of waited on.
    ``what`` names the input in messages (``schema``, ``mapping``, ``source``).
    """
    given = Path(path)
    try:
        fd = os.open(given, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            msg = f"no such {what}: {given}"
        elif exc.errno == errno.EISDIR:
            msg = f"{given} is a directory; give a {what} instead"
        else:
            msg = f"cannot read {what} {given}: {describe_oserror(exc)}"
        raise InputError(msg, path=given) from None
    try:
        mode = os.fstat(fd).st_mode
        for test, kind in _KINDS:
            if test(mode):
                msg = (
                    f"{given} is {kind}, not a regular file; batchkit reads regular files only (it never waits "
                    "on a pipe or reads a device): write the data to a file and give that"
                )
                raise InputError(msg, path=given)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: str | Path, *, what: str = "file", limit: int = SMALL_INPUT_BYTES) -> bytes:
    """The whole of a small regular file, refusing one larger than ``limit`` bytes."""
    with open_input(path, what=what) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            msg = f"cannot read {what} {path}: {describe_oserror(exc)}"
            raise InputError(msg, path=path) from None
    if len(data) > limit:
        msg = f"{what} {path} is larger than {limit:,} bytes; a {what} is a small text file: check the path"
        raise InputError(msg, path=path)
    return data


def sync_dir(folder: Path) -> None:
    """fsync a directory, so the renames into it survive a crash (a no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, sync it, then rename it over ``path``.

    The temporary file has a name of its own (two writers never share one) and is removed when anything
    fails, so ``path`` is either the old file or the whole new one. Raises :class:`OSError`.
    """
    while True:  # like mkstemp, but the file gets the usual permissions (0666 less the umask), not 0600
        name = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def save(path: Path, data: bytes) -> None:
    """:func:`atomic_write` for a file the user named (a page, a filled sheet): its folder made when
    missing, the rename made durable, and a failure worded as one :class:`InputError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError as exc:
        msg = f"cannot write {path}: {describe_oserror(exc)}; nothing half-written was left there"
        raise InputError(msg, path=path) from None
    sync_dir(path.parent)


def file_sha256(path: Path, *, count_lines: bool = False) -> tuple[str, int, int]:
    """sha256 hex digest, size in bytes, and (when asked) the number of ``\\n`` in the file."""
    digest = hashlib.sha256()
    size = lines = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            size += len(block)
            if count_lines:
                lines += block.count(b"\n")
    return digest.hexdigest(), size, lines


def make_durable(paths: list[Path]) -> None:
    """Flush written files to disk: one ``sync`` for all of them where the platform has it."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for path in paths:  # pragma: no cover (platforms without os.sync)
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Turn a failed write into ``folder`` (a full disk, a lost permission, a file too large) into one clear
    :class:`InputError`, whether it came from Python or from polars' native writers.

    Cleaning up is the job of whoever wrote: this only words the failure.
    """
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, OSError) and not type(exc).__module__.startswith("polars"):
            raise
        text = " ".join(str(exc).split())
        code = exc.errno if isinstance(exc, OSError) else None
        if code is None and ("os error 28" in text or "No space left" in text or _nearly_full(folder)):
            code = errno.ENOSPC  # polars words a full disk in many ways ("Invalid thrift: transport error")
        if code == errno.ENOSPC:
            reason = "No space left on device"
        else:
            reason = describe_oserror(exc) if isinstance(exc, OSError) else text[:200] or type(exc).__name__
        raise InputError(_cannot_write(folder, reason, code), path=folder) from None


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _cannot_write(folder: Path, reason: str, code: int | None) -> str:
    fix = (
        "free some space (or choose another directory) and run it again"
        if code in _FULL
        else "check the directory and run it again"
    )
    return f"cannot write into {folder}: {reason}; nothing half-written was left there, {fix}"


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until it ends, then raise it: for the few
    renames that must all happen or none (a build's files, manifest last). Outside the main thread, where
    Python delivers no signal anyway, this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
