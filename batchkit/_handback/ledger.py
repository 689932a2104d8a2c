"""The fetch ledger: which output videos are already safe at their destination, so no one is fetched twice.

The ledger is a Parquet file (``fetched.parquet`` in a build directory) with one row per file fetched:
``request_id, name, destination, bytes, sha256, fetched_at, source, generation_id``; ``destination`` is the
full target (a local path or an fsspec URL, so one ledger can serve several destinations), ``source`` the
output URL the results gave, without its query (signed URLs carry secrets and change on every renewal).

Durable and never corrupt, even under ``kill -9``:

* while a fetch runs, each file is recorded the moment it is renamed into place, as one JSON line appended
  to a journal beside the ledger (``.fetched.parquet.journal``): one unbuffered ``write`` per line, which is
  in the kernel at once and so survives the process being killed. It is not fsync'd line by line: on a
  busy disk an fsync waits for the writeback of the videos written before it and would stall the fetch;
  a line lost to a power cut only means that file is fetched again. A line torn by a crash is ignored;
* when the fetch ends (normally, on an error or on Ctrl-C) the ledger and the journal are merged into a new
  Parquet file written beside the old one, fsync'd and renamed over it; only then is the journal removed.
  A run that fetched nothing writes nothing.

The ledger is never trusted alone: a row counts only while its file is still at its destination with the
same size (and, when asked, the same sha256), so a row for a file since deleted or replaced only means that
file is fetched again. A ledger that cannot be read, or lacks its columns (edited by hand into another
shape), is refused with :class:`~batchkit._errors.InputError` saying how to start over; rows with empty or
impossible values are ignored (those files are fetched again).

One fetch at a time uses a ledger: an OS lock on ``.fetched.parquet.lock`` (released when the process ends,
however it ends) makes a second one stop with a clear error instead of racing the first.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import secrets
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

import orjson
import polars as pl

from .._errors import InputError
from .._files import sync_dir

__all__ = ["LEDGER_COLUMNS", "FetchLedger", "LedgerEntry", "journal_path", "lock_path"]

log = logging.getLogger("batchkit")

LEDGER_COLUMNS: Final[dict[str, Any]] = {
    "request_id": pl.String,
    "name": pl.String,
    "destination": pl.String,
    "bytes": pl.Int64,
    "sha256": pl.String,
    "fetched_at": pl.Datetime("us", "UTC"),
    "source": pl.String,
    "generation_id": pl.String,
}
_REQUIRED: Final = ("request_id", "destination", "bytes", "sha256")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One fetched file: which request, where it is, how big, its sha256, when, and from which URL."""

    request_id: str
    name: str
    destination: str
    bytes: int
    sha256: str
    fetched_at: datetime
    source: str
    generation_id: str | None = None

    def to_json(self) -> builtins.bytes:
        data = asdict(self)
        data["fetched_at"] = self.fetched_at.astimezone(UTC).isoformat()
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: builtins.bytes) -> LedgerEntry | None:
        """An entry from a journal line, or None when the line is not one (torn by a crash, or edited)."""
        try:
            data = orjson.loads(raw)
            return _entry(data, datetime.fromisoformat(data["fetched_at"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def _entry(data: dict[str, Any], fetched_at: datetime | None) -> LedgerEntry | None:
    if any(data.get(name) is None for name in _REQUIRED):
        return None
    size, digest = data["bytes"], data["sha256"]
    if not isinstance(size, int) or size <= 0 or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        return None
    return LedgerEntry(
        request_id=str(data["request_id"]),
        name=str(data.get("name") or ""),
        destination=str(data["destination"]),
        bytes=size,
        sha256=digest,
        fetched_at=fetched_at or datetime.fromtimestamp(0, UTC),
        source=str(data.get("source") or ""),
        generation_id=None if data.get("generation_id") is None else str(data["generation_id"]),
    )


def journal_path(ledger: Path) -> Path:
    """Where a ledger's journal of files fetched since its last compaction lives."""
    return ledger.with_name(f".{ledger.name}.journal")


def lock_path(ledger: Path) -> Path:
    return ledger.with_name(f".{ledger.name}.lock")


@contextlib.contextmanager
def _locked(path: Path, ledger: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on ``path``; :class:`InputError` when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        msg = f"cannot open the fetch ledger's lock {path} ({exc.strerror or exc}): is {ledger.parent} writable?"
        raise InputError(msg, path=path) from None
    try:
        try:
            _lock(fd)
        except OSError:
            msg = (
                f"another fetch is using the ledger {ledger} (its lock {path.name} is held): "
                "wait for it to finish, or give this fetch another ledger"
            )
            raise InputError(msg, path=ledger) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_parquet(path: Path) -> list[LedgerEntry]:
    how = "move it aside (or delete it) and fetch again: every file is then fetched anew and replaced atomically"
    try:
        frame = pl.read_parquet(path)
    except FileNotFoundError:
        return []
    except Exception as exc:  # polars raises several kinds for a damaged file
        msg = f"{path} is not a readable fetch ledger ({type(exc).__name__}: {str(exc)[:160]}); {how}"
        raise InputError(msg, path=path) from None
    missing = [name for name in _REQUIRED if name not in frame.columns]
    if missing:
        msg = f"{path} is not a fetch ledger: it has no {', '.join(missing)} column; {how}"
        raise InputError(msg, path=path)
    try:
        frame = frame.select(
            pl.col(name).cast(dtype, strict=True)
            if name in frame.columns
            else pl.lit(None, dtype).alias(name)
            for name, dtype in LEDGER_COLUMNS.items()
        )
    except Exception as exc:
        msg = f"{path}: a column of the fetch ledger has values of the wrong type ({str(exc)[:160]}); {how}"
        raise InputError(msg, path=path) from None
    entries = []
    for row in frame.iter_rows(named=True):
        entry = _entry(row, row["fetched_at"])
        if entry is None:
            log.warning("%s: ignoring a ledger row with empty or impossible values: %r", path, row)
            continue
        entries.append(entry)
    return entries


def _read_journal(path: Path) -> list[LedgerEntry]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        msg = f"cannot read the fetch journal {path} ({exc.strerror or exc})"
        raise InputError(msg, path=path) from None
    entries = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        entry = LedgerEntry.from_json(line)
        if entry is None:
            log.warning("%s:%d: ignoring a journal line that is not a complete entry", path, number)
            continue
        entries.append(entry)
    return entries


class FetchLedger:
    """The ledger of one fetch run: read at open, appended to as files land, compacted at close.

    >>> with FetchLedger.open(tmp / "fetched.parquet") as ledger:  # doctest: +SKIP
    ...     ledger.get("/videos/intro_de.mp4")
    """

    def __init__(self, path: Path, entries: list[LedgerEntry]) -> None:
        self.path = path
        self._entries: dict[str, LedgerEntry] = {entry.destination: entry for entry in entries}
        self._journal: IO[bytes] | None = None
        self._dirty = False
        self._lock: contextlib.ExitStack | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> FetchLedger:
        """Lock the ledger at ``path`` and read it (with its journal, if a crash left one)."""
        ledger = Path(path)
        try:
            ledger.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the folder of the fetch ledger {ledger} ({exc.strerror or exc})"
            raise InputError(msg, path=ledger) from None
        if ledger.is_dir():
            msg = f"the fetch ledger {ledger} is a folder: give a file path such as {ledger / 'fetched.parquet'}"
            raise InputError(msg, path=ledger)
        stack = contextlib.ExitStack()
        stack.enter_context(_locked(lock_path(ledger), ledger))
        try:
            pending = _read_journal(journal_path(ledger))
            opened = cls(ledger, [*_read_parquet(ledger), *pending])
        except BaseException:
            stack.close()
            raise
        opened._lock = stack
        opened._dirty = bool(pending)  # a crash left entries to fold in
        return opened

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> list[LedgerEntry]:
        return list(self._entries.values())

    def get(self, destination: str) -> LedgerEntry | None:
        """The entry of the file at ``destination`` (a full local path or URL), if one was fetched there."""
        return self._entries.get(destination)

    def record(self, entry: LedgerEntry) -> None:
        """Note a file that is now complete at its destination (durable at once against a killed process)."""
        if self._journal is None:
            target = journal_path(self.path)
            try:
                self._journal = open(target, "ab", buffering=0)  # noqa: SIM115 - closed in close()
            except OSError as exc:
                msg = f"cannot write the fetch journal {target} ({exc.strerror or exc})"
                raise InputError(msg, path=target) from None
        try:
            self._journal.write(entry.to_json() + b"\n")
        except OSError as exc:
            msg = f"cannot write the fetch journal {journal_path(self.path)} ({exc.strerror or exc})"
            raise InputError(msg, path=self.path) from None
        self._entries[entry.destination] = entry
        self._dirty = True

    def close(self) -> None:
        """Fold the journal into a new ledger file (atomically), remove the journal, release the lock."""
        try:
            if self._journal is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._journal.fileno())
                self._journal.close()
                self._journal = None
            if self._dirty:
                self._compact()
                self._dirty = False
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _compact(self) -> None:
        rows = [asdict(entry) for entry in self._entries.values()]
        frame = pl.DataFrame(rows, schema=LEDGER_COLUMNS) if rows else pl.DataFrame(schema=LEDGER_COLUMNS)
        temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            frame.write_parquet(temp)
            with open(temp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(temp, self.path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            msg = (
                f"cannot write the fetch ledger {self.path} ({exc.strerror or exc}); the files fetched are in "
                f"place and listed in {journal_path(self.path).name}, which the next fetch reads"
            )
            raise InputError(msg, path=self.path) from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        sync_dir(self.path.parent)
        journal_path(self.path).unlink(missing_ok=True)
        sync_dir(self.path.parent)
