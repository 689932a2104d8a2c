"""How the submission journal writes and reads its cells: times in ISO 8601 UTC, JSON, and one-line errors for
cells or databases that cannot be read."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .._errors import JournalError

__all__ = ["db_error", "iso", "json_cell", "parse_time", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None, where: str = "journal") -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        msg = (
            f"{where} holds {str(text)[:40]!r}, which is not a date: the journal was edited or damaged. "
            "Move journal.sqlite aside and run `batchkit recover DIR` to rebuild it from the server"
        )
        raise JournalError(msg) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def json_cell(text: str | None, where: str) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        msg = (
            f"{where} holds {str(text)[:40]!r}, which is not JSON: the journal was edited or damaged. "
            "Move journal.sqlite aside and run `batchkit recover DIR` to rebuild it from the server"
        )
        raise JournalError(msg) from None


def db_error(path: Path, exc: sqlite3.OperationalError) -> JournalError:
    """A locked or unusable database, in one line that says what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        msg = (
            f"the submission journal {path} is locked by another program (a batchkit process or an sqlite shell) "
            "and stayed locked; close it, then run this again"
        )
    else:
        msg = f"cannot use the submission journal {path}: {text}; run `batchkit recover DIR` to rebuild it"
    return JournalError(msg)
