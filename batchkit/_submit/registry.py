"""The per-user registry of batch ids: every batch any batchkit journal on this machine has recorded.

Reconciling a lost create looks for batches that *no* batchkit journal knows: another directory's batch of
the same size (a second campaign, a retry) must never be taken for this one's. Each journal records its own
batches, so the registry is what lets one directory see the others': a small SQLite file in the user's state
directory (``$BATCHKIT_STATE_DIR``, else ``$XDG_STATE_HOME/batchkit``, ``~/.local/state/batchkit``;
``%LOCALAPPDATA%\\batchkit`` on Windows; ``~/Library/Application Support/batchkit`` on macOS).

Each entry says how certain it is:

* ``created``: the create of that shard was answered with this id, so the batch is that shard's;
* ``verified``: its output was read and carries that shard's request_ids;
* ``provisional``: adopted as the only candidate, not checked by content yet. It does not count as known:
  a provisional batch stays a candidate for every other shard until its output tells whose it is.

Only ids, base URLs, directories and shard names are kept: no key, no content. The registry is a help, not a
source of truth; losing it costs caution (more candidates), never a double submission, because candidates are
still told apart by their content.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

__all__ = ["CERTAIN", "REGISTRY_ENV", "Entry", "Registry", "registry_path"]

log = logging.getLogger("batchkit")

REGISTRY_ENV: Final = "BATCHKIT_STATE_DIR"
_FILE: Final = "batches.sqlite"
Certainty = Literal["created", "verified", "provisional"]
#: Entries that make a batch someone's for certain.
CERTAIN: Final = frozenset({"created", "verified"})

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id    TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    journal_id  TEXT NOT NULL,
    directory   TEXT NOT NULL,
    shard       TEXT NOT NULL,
    certainty   TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (batch_id, base_url, journal_id, shard)
);
"""

Entry = tuple[str, str, str, str, str]  # batch_id, journal_id, directory, shard, certainty


def registry_path() -> Path:
    """Where the registry lives for this user (``$BATCHKIT_STATE_DIR`` overrides it)."""
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Path(override) / _FILE
    if sys.platform == "win32":  # pragma: no cover
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":  # pragma: no cover
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "batchkit" / _FILE


class Registry:
    """The registry, opened for one call; every method is one short transaction. Failures only log."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or registry_path()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            log.warning(
                "the batch registry %s cannot be used (%s); reconciliation is more cautious", self.path, exc
            )
            return None
        return db

    def record(
        self,
        batch_id: str,
        *,
        base_url: str,
        journal_id: str,
        directory: Path,
        shard: str,
        certainty: Certainty,
    ) -> None:
        """Note that ``journal_id``'s ``shard`` holds ``batch_id`` (with this certainty)."""
        db = self._connect()
        if db is None:
            return
        try:
            db.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    base_url,
                    journal_id,
                    str(directory.resolve()),
                    shard,
                    certainty,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
        except sqlite3.Error as exc:
            log.warning("cannot record %s in the batch registry %s: %s", batch_id, self.path, exc)
        finally:
            db.close()

    def release(self, batch_id: str, *, base_url: str, journal_id: str) -> None:
        """``journal_id`` no longer claims ``batch_id`` (its content said it is not that shard's)."""
        db = self._connect()
        if db is None:
            return
        try:
            db.execute(
                "DELETE FROM batches WHERE batch_id = ? AND base_url = ? AND journal_id = ?",
                (batch_id, base_url, journal_id),
            )
        except sqlite3.Error as exc:
            log.warning("cannot update the batch registry %s: %s", self.path, exc)
        finally:
            db.close()

    def entries(self, batch_ids: Iterable[str], *, base_url: str) -> dict[str, list[Entry]]:
        """What the registry knows of each of ``batch_ids`` on ``base_url``."""
        wanted = list(dict.fromkeys(batch_ids))
        found: dict[str, list[Entry]] = {}
        if not wanted:
            return found
        db = self._connect()
        if db is None:
            return found
        try:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT batch_id, journal_id, directory, shard, certainty FROM batches "
                    f"WHERE base_url = ? AND batch_id IN ({marks})",
                    (base_url, *chunk),
                ).fetchall()
                for row in rows:
                    found.setdefault(row[0], []).append(tuple(row))
        except sqlite3.Error as exc:
            log.warning("cannot read the batch registry %s: %s", self.path, exc)
        finally:
            db.close()
        return found

    def recorded_for(self, directory: Path) -> int:
        """How many batches any journal recorded for ``directory`` (a directory whose journal was lost)."""
        return len(self._for(directory))

    def journal_of(self, directory: Path) -> str | None:
        """The journal id that last recorded a batch for ``directory`` (to recover a journal under its own id)."""
        rows = self._for(directory)
        return rows[-1][0] if rows else None

    def _for(self, directory: Path) -> list[tuple[str, str]]:
        db = self._connect()
        if db is None:
            return []
        try:
            rows = db.execute(
                "SELECT journal_id, recorded_at FROM batches WHERE directory = ? ORDER BY recorded_at",
                (str(directory.resolve()),),
            ).fetchall()
        except sqlite3.Error:
            return []
        finally:
            db.close()
        return [(str(r[0]), str(r[1])) for r in rows]

    def claimed_elsewhere(self, batch_ids: Iterable[str], *, base_url: str, journal_id: str) -> set[str]:
        """The ids another journal holds for certain (created, or verified by content)."""
        return {
            batch_id
            for batch_id, entries in self.entries(batch_ids, base_url=base_url).items()
            if any(e[1] != journal_id and e[4] in CERTAIN for e in entries)
        }
