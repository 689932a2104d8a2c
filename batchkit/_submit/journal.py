"""The submission journal: a SQLite database (WAL, synchronous=FULL) beside the shards.

It records, durably and before the fact, every create batchkit is about to send, so that after any crash a
re-run knows which shards are certainly not submitted, which certainly are (with their batch id), and which are
*uncertain* (an intent without an answer), which must be reconciled against the server before anything is sent
again. Every change is one transaction; an append-only ``events`` table keeps the history for audits.

Shard states::

    pending ──intent──▶ intent ──answer──▶ submitted ──poll──▶ (status COMPLETED / FAILED)
       ▲                  │
       └──certainly not───┘        (refused: the server said no, with a reason; --force may retry it)

Requests sent one by one (``retry --realtime``) are journaled the same way in a ``generations`` table, one row
per request: its ``Idempotency-Key`` is fixed when the row is added, the intent is committed before each
create, the generation id as soon as it arrives, then every polled status::

    pending ──intent──▶ intent ──answer──▶ created ──poll──▶ (status COMPLETED / FAILED / REJECTED ...)
                          │
                          └──▶ refused (the server said no: 400, 409, 422 ...)

An intent without an answer is resent with the same key, which makes the server return the generation it
may already have made. The keys are ``<request_id>.<scope>``: ``scope`` is random per journal, so the same
request_id in another build directory never shares a key with this one.

The journal holds no secret: no API key, no headers, only ids, counts, times and messages.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from .._errors import JournalError
from .._shard.builddir import JOURNAL
from .cells import db_error, iso, json_cell, parse_time, utcnow
from .generations import GenerationLog, GenerationRecord, GenerationState, idempotency_key

__all__ = [
    "GenerationRecord",
    "GenerationState",
    "Journal",
    "ShardRecord",
    "ShardState",
    "idempotency_key",
]

_FORMAT: Final = "batchkit-journal/1"

ShardState = Literal["pending", "intent", "submitted", "refused"]
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    file         TEXT PRIMARY KEY,
    position     INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    records      INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'intent', 'submitted', 'refused')),
    batch_id     TEXT UNIQUE,
    intent_at    TEXT,
    submitted_at TEXT,
    webhook_url  TEXT,
    status       TEXT,
    metrics      TEXT,
    output_url   TEXT,
    message      TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dry_runs (
    file     TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    verdict  TEXT NOT NULL,
    message  TEXT,
    at       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    request_id      TEXT PRIMARY KEY,
    position        INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'intent', 'created', 'refused')),
    generation_id   TEXT,
    status          TEXT,
    output_url      TEXT,
    output_duration REAL,
    error           TEXT,
    error_code      TEXT,
    message         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    intent_at       TEXT,
    created_at      TEXT,
    updated_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS candidates (
    file        TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    created_at  TEXT,
    records     INTEGER,
    status      TEXT,
    output_url  TEXT,
    verdict     TEXT NOT NULL DEFAULT 'unknown',
    note        TEXT,
    seen_at     TEXT NOT NULL,
    PRIMARY KEY (file, batch_id)
);
CREATE TABLE IF NOT EXISTS retired (
    file        TEXT NOT NULL,
    state       TEXT NOT NULL,
    batch_id    TEXT,
    sha256      TEXT,
    records     INTEGER,
    reason      TEXT,
    retired_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    file    TEXT,
    kind    TEXT NOT NULL,
    detail  TEXT
);
"""


#: Columns added to ``shards`` after the first journals were written (added on open when missing).
_ADDED_COLUMNS: Final = (
    ("provenance", "TEXT"),
    ("verified_at", "TEXT"),
    ("last_intent_at", "TEXT"),
    ("batch_created_at", "TEXT"),
)
#: How a shard's batch id came to the journal: the create's own answer is certain; the rest is checked by content.
Provenance = Literal["created", "reconciled", "adopted", "recovered"]
Verdict = Literal["unknown", "ours", "not-ours", "unreadable"]
_SAFE_FILE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
BUSY_TIMEOUT: Final = 30.0


def safe_shard_name(file: str) -> bool:
    """A shard file name as batchkit writes them: a plain name inside the directory, nothing that climbs out."""
    return bool(file) and set(file) <= _SAFE_FILE and not file.startswith(".") and file.endswith(".jsonl")


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One shard as the journal knows it."""

    file: str
    position: int
    sha256: str
    records: int
    bytes: int
    state: ShardState
    batch_id: str | None
    intent_at: datetime | None
    submitted_at: datetime | None
    webhook_url: str | None
    status: str | None
    metrics: dict[str, int]
    output_url: str | None
    message: str | None
    attempts: int
    #: How the batch id came (``created``: the create's answer; else adopted and checked by content).
    provenance: str | None = None
    #: When the batch's output was found to carry this shard's request_ids (None: not checked).
    verified_at: datetime | None = None
    #: The latest moment a create for this shard may have left (the horizon of "cannot be in flight").
    last_intent_at: datetime | None = None
    #: The batch's ``created_at`` as the server reported it.
    batch_created_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in ("COMPLETED", "FAILED")

    @property
    def provisional(self) -> bool:
        """A batch adopted without proof yet: its output has not been checked against this shard's ids."""
        return (
            self.state == "submitted"
            and self.provenance not in (None, "created")
            and self.verified_at is None
        )

    @property
    def uncertain(self) -> bool:
        """A create may have made a batch, and nothing says which (or whether) yet."""
        return self.state == "intent"

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON data (times in ISO 8601), with ``uncertain`` and ``provisional``."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["metrics"] = dict(self.metrics)
        return {**data, "uncertain": self.uncertain, "provisional": self.provisional}


class Journal(GenerationLog):
    """The journal of one build directory. Open with :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(
        cls, directory: str | Path, *, create: bool = True, busy_timeout: float = BUSY_TIMEOUT
    ) -> Journal:
        """Open (and if needed create) ``directory/journal.sqlite``.

        Most callers go through :func:`batchkit._submit.binding.open_journal`, which first checks that the
        journal is the directory's own (a submitted directory never gets a silently re-created journal).
        """
        path = Path(directory) / JOURNAL
        if not create and not path.exists():
            msg = (
                f"{directory} has no submission journal ({JOURNAL}); run `batchkit submit {directory}` first"
            )
            raise JournalError(msg)
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            have = {row["name"] for row in db.execute("PRAGMA table_info(shards)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in have:
                    db.execute(f"ALTER TABLE shards ADD COLUMN {name} {kind}")
            found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('format', ?)", (_FORMAT,))
            elif found["value"] != _FORMAT:
                msg = f"{path} is a {found['value']} journal; this batchkit reads {_FORMAT}"
                raise JournalError(msg)
            if db.execute("SELECT 1 FROM meta WHERE key = 'journal_id'").fetchone() is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('journal_id', ?)", (secrets.token_hex(8),))
        except sqlite3.OperationalError as exc:
            raise db_error(path, exc) from exc
        except sqlite3.DatabaseError as exc:
            msg = f"cannot open the submission journal {path}: {exc}"
            raise JournalError(msg) from exc
        return cls(path, db)

    @property
    def journal_id(self) -> str:
        """A random id fixed when the journal was created; the directory's binding names it."""
        return self.meta("journal_id") or ""

    def is_empty(self) -> bool:
        """No shard, no generation, no event: a journal that never recorded anything."""
        return all(
            self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None
            for table in ("shards", "generations", "dry_runs")
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise db_error(self.path, exc) from exc
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _event(self, db: sqlite3.Connection, file: str | None, kind: str, detail: Any = None) -> None:
        text = None if detail is None else orjson.dumps(detail).decode()
        db.execute(
            "INSERT INTO events (at, file, kind, detail) VALUES (?, ?, ?, ?)",
            (iso(utcnow()), file, kind, text),
        )

    # -- reading -------------------------------------------------------------------------------------------

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(query, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise db_error(self.path, exc) from exc
        except sqlite3.DatabaseError as exc:
            msg = f"cannot read the submission journal {self.path}: {exc}; run `batchkit recover DIR` to rebuild it"
            raise JournalError(msg) from exc

    def shards(self) -> list[ShardRecord]:
        return [self._record(row) for row in self._rows("SELECT * FROM shards ORDER BY position")]

    def shard(self, file: str) -> ShardRecord:
        row = self._db.execute("SELECT * FROM shards WHERE file = ?", (file,)).fetchone()
        if row is None:
            msg = f"the journal has no shard {file!r}"
            raise JournalError(msg, shard=file)
        return self._record(row)

    def known_batch_ids(self, *, certain_only: bool = False) -> set[str]:
        """Batch ids this journal holds (``certain_only``: not the provisional ones), had, or retired."""
        query = "SELECT batch_id FROM shards WHERE batch_id IS NOT NULL"
        if certain_only:
            query += " AND (provenance IS NULL OR provenance = 'created' OR verified_at IS NOT NULL)"
        ids = {row["batch_id"] for row in self._rows(query)}
        for row in self._rows("SELECT detail FROM events WHERE kind IN ('superseded', 'retired')"):
            detail = json_cell(row["detail"], "journal event detail")
            if isinstance(detail, dict) and isinstance(detail.get("batch_id"), str):
                ids.add(detail["batch_id"])
        return ids

    def candidates(self, file: str) -> list[dict[str, Any]]:
        """The batches that may be ``file``'s lost create, with what their content said (``verdict``)."""
        rows = self._rows("SELECT * FROM candidates WHERE file = ? ORDER BY created_at, batch_id", (file,))
        return [dict(row) for row in rows]

    def retired(self) -> list[dict[str, Any]]:
        """Journal rows of shards a rebuild removed from the manifest, kept for the record."""
        return [dict(row) for row in self._rows("SELECT * FROM retired ORDER BY rowid")]

    def events(self, file: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM events" + (" WHERE file = ?" if file else "") + " ORDER BY id"
        rows = self._db.execute(query, (file,) if file else ()).fetchall()
        return [
            {**dict(row), "detail": None if row["detail"] is None else orjson.loads(row["detail"])}
            for row in rows
        ]

    def meta(self, key: str) -> str | None:
        """A note about the whole journal (e.g. ``server``: which kind of server it submitted to)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def dry_runs(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._db.execute("SELECT * FROM dry_runs ORDER BY rowid").fetchall()]

    @staticmethod
    def _record(row: sqlite3.Row) -> ShardRecord:
        file = row["file"]
        where = f"journal row {file!r}"
        metrics = json_cell(row["metrics"], f"{where}, column metrics") or {}
        if not isinstance(metrics, dict):
            msg = f"{where}, column metrics is not an object; move journal.sqlite aside and run `batchkit recover DIR`"
            raise JournalError(msg, shard=file)
        keys = row.keys()
        return ShardRecord(
            file=file,
            position=row["position"],
            sha256=row["sha256"],
            records=row["records"],
            bytes=row["bytes"],
            state=row["state"],
            batch_id=row["batch_id"],
            intent_at=parse_time(row["intent_at"], f"{where}, column intent_at"),
            submitted_at=parse_time(row["submitted_at"], f"{where}, column submitted_at"),
            webhook_url=row["webhook_url"],
            status=row["status"],
            metrics={str(k): int(v) for k, v in metrics.items() if isinstance(v, int | float)},
            output_url=row["output_url"],
            message=row["message"],
            attempts=row["attempts"],
            provenance=row["provenance"] if "provenance" in keys else None,
            verified_at=parse_time(row["verified_at"], f"{where}, column verified_at")
            if "verified_at" in keys
            else None,
            last_intent_at=parse_time(row["last_intent_at"], f"{where}, column last_intent_at")
            if "last_intent_at" in keys
            else None,
            batch_created_at=parse_time(row["batch_created_at"], f"{where}, column batch_created_at")
            if "batch_created_at" in keys
            else None,
        )

    # -- writing -------------------------------------------------------------------------------------------

    def sync_shards(self, shards: list[tuple[str, str, int, int]]) -> list[str]:
        """Make the journal know every ``(file, sha256, records, bytes)`` of the manifest, in order.

        A shard the journal already has keeps its state; one whose bytes changed is refused if it was ever
        sent (its batch was made from the old bytes), and reset to pending otherwise. Rows of shards the
        manifest no longer lists are retired (returned); a row naming something that cannot be a shard file
        of this directory is an error.
        """
        with self._transaction() as db:
            for position, (file, sha256, records, size) in enumerate(shards, 1):
                row = db.execute("SELECT state, sha256 FROM shards WHERE file = ?", (file,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO shards (file, position, sha256, records, bytes, state, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                        (file, position, sha256, records, size, iso(utcnow())),
                    )
                    self._event(db, file, "added", {"sha256": sha256, "records": records})
                elif row["sha256"] != sha256:
                    if row["state"] in ("intent", "submitted"):
                        msg = (
                            f"{file} changed since it was submitted (sha256 {row['sha256'][:12]}… → {sha256[:12]}…); "
                            "its batch was made from the old bytes. Rebuild into a new directory, "
                            "or restore the shard"
                        )
                        raise JournalError(msg, shard=file)
                    db.execute(
                        "UPDATE shards SET sha256 = ?, records = ?, bytes = ?, position = ?, state = 'pending', "
                        "message = NULL, updated_at = ? WHERE file = ?",
                        (sha256, records, size, position, iso(utcnow()), file),
                    )
                    self._event(db, file, "changed", {"sha256": sha256})
                else:
                    db.execute("UPDATE shards SET position = ? WHERE file = ?", (position, file))
            listed = {file for file, _, _, _ in shards}
            strays = [
                row["file"] for row in db.execute("SELECT file FROM shards") if row["file"] not in listed
            ]
        for file in strays:
            if not safe_shard_name(file):
                msg = (
                    f"the journal {self.path} has a row for {file[:60]!r}, which is no shard file of this build: "
                    "the journal was edited or belongs to another directory. Move it aside and run "
                    "`batchkit recover DIR`"
                )
                raise JournalError(msg)
        for file in strays:
            self.retire(file, "the manifest no longer lists this shard (the directory was rebuilt)")
        return strays

    def record_intent(self, file: str, *, webhook_url: str | None, at: datetime | None = None) -> datetime:
        """Durably note that a create for ``file`` is about to be sent. Returns the recorded time."""
        moment = at or utcnow()
        with self._transaction() as db:
            row = db.execute("SELECT state FROM shards WHERE file = ?", (file,)).fetchone()
            if row is None or row["state"] not in ("pending", "refused"):
                state = None if row is None else row["state"]
                msg = f"cannot send {file}: the journal has it as {state}"
                raise JournalError(msg, shard=file)
            db.execute(
                "UPDATE shards SET state = 'intent', intent_at = ?, last_intent_at = ?, webhook_url = ?, "
                "attempts = attempts + 1, message = NULL, updated_at = ? WHERE file = ?",
                (iso(moment), iso(moment), webhook_url, iso(utcnow()), file),
            )
            self._event(db, file, "intent", {"at": iso(moment), "webhook_url": webhook_url})
        return moment

    def record_recovered_intent(self, file: str, *, since: datetime, until: datetime, reason: str) -> None:
        """A shard of a rebuilt journal: a create may have been sent between ``since`` and ``until``."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'intent', intent_at = ?, last_intent_at = ?, message = ?, "
                "updated_at = ? WHERE file = ?",
                (iso(since), iso(until), reason, iso(utcnow()), file),
            )
            self._event(db, file, "recovered-intent", {"since": iso(since), "until": iso(until)})

    def record_submitted(
        self,
        file: str,
        batch_id: str,
        *,
        status: str,
        metrics: dict[str, int],
        how: Provenance = "created",
        output_url: str | None = None,
        created_at: datetime | None = None,
        verified: bool = False,
    ) -> None:
        """The server answered with ``batch_id`` (or reconciliation found it): record all it said about it."""
        now = iso(utcnow())
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'submitted', batch_id = ?, submitted_at = ?, status = ?, metrics = ?, "
                "output_url = ?, batch_created_at = ?, provenance = ?, verified_at = ?, message = NULL, "
                "updated_at = ? WHERE file = ?",
                (
                    batch_id,
                    now,
                    status,
                    orjson.dumps(metrics).decode(),
                    output_url or None,
                    iso(created_at) if created_at is not None else None,
                    how,
                    now if verified else None,
                    now,
                    file,
                ),
            )
            self._event(db, file, how, {"batch_id": batch_id, "status": status, "verified": verified})

    def record_verified(self, file: str, batch_id: str, detail: str) -> None:
        """The batch's output carries this shard's request_ids: it is the shard's, for certain."""
        now = iso(utcnow())
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET verified_at = ?, updated_at = ? WHERE file = ? AND batch_id = ?",
                (now, now, file, batch_id),
            )
            db.execute(
                "UPDATE candidates SET verdict = 'ours', note = ? WHERE file = ? AND batch_id = ?",
                (detail, file, batch_id),
            )
            self._event(db, file, "verified", {"batch_id": batch_id, "detail": detail})

    def release(self, file: str, batch_id: str, reason: str) -> None:
        """Un-adopt: the batch's content says it is not this shard's. The shard is uncertain again (its lost
        create is looked for anew before anything is sent)."""
        now = iso(utcnow())
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'intent', batch_id = NULL, submitted_at = NULL, status = NULL, "
                "metrics = NULL, output_url = NULL, batch_created_at = NULL, provenance = NULL, verified_at = NULL, "
                "intent_at = COALESCE(intent_at, submitted_at, ?), last_intent_at = COALESCE(last_intent_at, ?), "
                "message = ?, updated_at = ? WHERE file = ? AND batch_id = ?",
                (now, now, reason, now, file, batch_id),
            )
            db.execute(
                "INSERT INTO candidates (file, batch_id, verdict, note, seen_at) VALUES (?, ?, 'not-ours', ?, ?) "
                "ON CONFLICT (file, batch_id) DO UPDATE SET verdict = 'not-ours', note = excluded.note",
                (file, batch_id, reason, now),
            )
            self._event(db, file, "released", {"batch_id": batch_id, "reason": reason})

    def record_candidate(
        self,
        file: str,
        batch_id: str,
        *,
        created_at: datetime | None,
        records: int,
        status: str,
        output_url: str | None,
    ) -> None:
        """A batch that may be ``file``'s lost create (its verdict is kept once given)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO candidates (file, batch_id, created_at, records, status, output_url, seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (file, batch_id) DO UPDATE SET "
                "created_at = excluded.created_at, records = excluded.records, status = excluded.status, "
                "output_url = excluded.output_url",
                (
                    file,
                    batch_id,
                    iso(created_at) if created_at is not None else None,
                    records,
                    status,
                    output_url or None,
                    iso(utcnow()),
                ),
            )

    def set_verdict(self, file: str, batch_id: str, verdict: Verdict, note: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE candidates SET verdict = ?, note = ? WHERE file = ? AND batch_id = ?",
                (verdict, note, file, batch_id),
            )
            self._event(db, file, "candidate", {"batch_id": batch_id, "verdict": verdict, "note": note})

    def retire(self, file: str, reason: str) -> None:
        """Move the row of a shard the manifest no longer lists out of ``shards`` (its batch id stays known)."""
        now = iso(utcnow())
        with self._transaction() as db:
            row = db.execute("SELECT * FROM shards WHERE file = ?", (file,)).fetchone()
            if row is None:
                return
            db.execute(
                "INSERT INTO retired (file, state, batch_id, sha256, records, reason, retired_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (file, row["state"], row["batch_id"], row["sha256"], row["records"], reason, now),
            )
            db.execute("DELETE FROM shards WHERE file = ?", (file,))
            db.execute("DELETE FROM candidates WHERE file = ?", (file,))
            self._event(
                db, file, "retired", {"batch_id": row["batch_id"], "state": row["state"], "reason": reason}
            )

    def record_not_sent(self, file: str, reason: str) -> None:
        """The create certainly did not create a batch (refused before arrival, or reconciled as absent)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'pending', intent_at = NULL, last_intent_at = NULL, message = ?, "
                "updated_at = ? WHERE file = ?",
                (reason, iso(utcnow()), file),
            )
            self._event(db, file, "not-sent", {"reason": reason})

    def record_refused(self, file: str, message: str) -> None:
        """The server refused the shard (400): nothing was created; the reason is kept for the user."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'refused', intent_at = NULL, message = ?, updated_at = ? WHERE file = ?",
                (message, iso(utcnow()), file),
            )
            self._event(db, file, "refused", {"message": message})

    def record_uncertain(self, file: str, message: str) -> None:
        """The create may have reached the server; the shard stays an intent until reconciled."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET message = ?, updated_at = ? WHERE file = ?",
                (message, iso(utcnow()), file),
            )
            self._event(db, file, "uncertain", {"message": message})

    def supersede(self, file: str, reason: str) -> None:
        """Forget the shard's batch (``--force``): the old batch id stays in the history, the shard is pending."""
        with self._transaction() as db:
            row = db.execute("SELECT batch_id FROM shards WHERE file = ?", (file,)).fetchone()
            if row is not None and row["batch_id"] is not None:
                self._event(db, file, "superseded", {"batch_id": row["batch_id"], "reason": reason})
            db.execute(
                "UPDATE shards SET state = 'pending', batch_id = NULL, intent_at = NULL, submitted_at = NULL, "
                "status = NULL, metrics = NULL, output_url = NULL, provenance = NULL, verified_at = NULL, "
                "last_intent_at = NULL, batch_created_at = NULL, message = ?, updated_at = ? WHERE file = ?",
                (reason, iso(utcnow()), file),
            )

    def record_status(
        self,
        file: str,
        *,
        status: str,
        metrics: dict[str, int],
        output_url: str | None,
        created_at: datetime | None = None,
    ) -> None:
        """The latest status of the shard's batch, from a poll (every field the server gave)."""
        with self._transaction() as db:
            old = db.execute("SELECT status FROM shards WHERE file = ?", (file,)).fetchone()
            db.execute(
                "UPDATE shards SET status = ?, metrics = ?, output_url = ?, "
                "batch_created_at = COALESCE(?, batch_created_at), updated_at = ? WHERE file = ?",
                (
                    status,
                    orjson.dumps(metrics).decode(),
                    output_url or None,
                    iso(created_at) if created_at is not None else None,
                    iso(utcnow()),
                    file,
                ),
            )
            if old is not None and old["status"] != status:
                self._event(db, file, "status", {"status": status, "metrics": metrics})

    def record_dry_run(self, file: str, sha256: str, verdict: str, message: str | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO dry_runs (file, sha256, verdict, message, at) VALUES (?, ?, ?, ?, ?)",
                (file, sha256, verdict, message, iso(utcnow())),
            )
            self._event(db, file, "dry-run", {"verdict": verdict})
