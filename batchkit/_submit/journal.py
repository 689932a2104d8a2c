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

import hashlib
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from .._errors import JournalError
from .._shard.builddir import JOURNAL

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
GenerationState = Literal["pending", "intent", "created", "refused"]
#: Generation statuses after which nothing changes any more (as ``batchkit._wire.responses.GENERATION_TERMINAL``).
_GENERATION_TERMINAL: Final = frozenset({"COMPLETED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT"})
_KEY_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
_MAX_KEY: Final = 128

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
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    file    TEXT,
    kind    TEXT NOT NULL,
    detail  TEXT
);
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


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

    @property
    def terminal(self) -> bool:
        return self.status in ("COMPLETED", "FAILED")


def idempotency_key(request_id: str, scope: str) -> str:
    """The ``Idempotency-Key`` for ``request_id`` in a journal of ``scope``: 1–128 of ``A-Z a-z 0-9 . _ ~ -``.

    ``<request_id>.<scope>`` when the request_id is made of those characters and fits, else
    ``rid-<sha256 of the request_id, 32 hex>.<scope>``.

    >>> idempotency_key("c020.r1", "5f3a9c21d0e4")
    'c020.r1.5f3a9c21d0e4'
    """
    if set(request_id) <= _KEY_CHARS and len(request_id) + 1 + len(scope) <= _MAX_KEY:
        return f"{request_id}.{scope}"
    return f"rid-{hashlib.sha256(request_id.encode()).hexdigest()[:32]}.{scope}"


@dataclass(frozen=True, slots=True)
class GenerationRecord:
    """One request sent (or to send) through ``POST /v2/generate``, as the journal knows it."""

    request_id: str
    position: int
    idempotency_key: str
    state: GenerationState
    generation_id: str | None
    status: str | None
    output_url: str | None
    output_duration: float | None
    error: str | None
    error_code: str | None
    message: str | None
    attempts: int
    intent_at: datetime | None
    created_at: datetime | None

    @property
    def terminal(self) -> bool:
        """The generation reached an end (COMPLETED, FAILED, REJECTED ...), or the create was refused."""
        return self.state == "refused" or (self.state == "created" and self.status in _GENERATION_TERMINAL)


class Journal:
    """The journal of one build directory. Open with :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, directory: str | Path, *, create: bool = True) -> Journal:
        """Open (and if needed create) ``directory/journal.sqlite``."""
        path = Path(directory) / JOURNAL
        if not create and not path.exists():
            msg = f"{directory} has no submission journal ({JOURNAL}); run `batchkit submit {directory}` first"
            raise JournalError(msg)
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('format', ?)", (_FORMAT,))
            elif found["value"] != _FORMAT:
                msg = f"{path} is a {found['value']} journal; this batchkit reads {_FORMAT}"
                raise JournalError(msg)
        except sqlite3.DatabaseError as exc:
            msg = f"cannot open the submission journal {path}: {exc}"
            raise JournalError(msg) from exc
        return cls(path, db)

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
        self._db.execute("BEGIN IMMEDIATE")
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
            (_iso(utcnow()), file, kind, text),
        )

    # -- reading -------------------------------------------------------------------------------------------

    def shards(self) -> list[ShardRecord]:
        rows = self._db.execute("SELECT * FROM shards ORDER BY position").fetchall()
        return [self._record(row) for row in rows]

    def shard(self, file: str) -> ShardRecord:
        row = self._db.execute("SELECT * FROM shards WHERE file = ?", (file,)).fetchone()
        if row is None:
            msg = f"the journal has no shard {file!r}"
            raise JournalError(msg, shard=file)
        return self._record(row)

    def known_batch_ids(self) -> set[str]:
        rows = self._db.execute("SELECT batch_id FROM shards WHERE batch_id IS NOT NULL").fetchall()
        ids = {row["batch_id"] for row in rows}
        for row in self._db.execute("SELECT detail FROM events WHERE kind = 'superseded'").fetchall():
            ids.add(orjson.loads(row["detail"])["batch_id"])
        return ids

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

    def generations(self) -> list[GenerationRecord]:
        """Every request of the ``generations`` table, in the order they were added."""
        rows = self._db.execute("SELECT * FROM generations ORDER BY position").fetchall()
        return [self._generation(row) for row in rows]

    def generation(self, request_id: str) -> GenerationRecord:
        row = self._db.execute("SELECT * FROM generations WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:
            msg = f"the journal has no generation request {request_id!r}"
            raise JournalError(msg)
        return self._generation(row)

    @staticmethod
    def _generation(row: sqlite3.Row) -> GenerationRecord:
        return GenerationRecord(
            request_id=row["request_id"],
            position=row["position"],
            idempotency_key=row["idempotency_key"],
            state=row["state"],
            generation_id=row["generation_id"],
            status=row["status"],
            output_url=row["output_url"],
            output_duration=row["output_duration"],
            error=row["error"],
            error_code=row["error_code"],
            message=row["message"],
            attempts=row["attempts"],
            intent_at=_parse(row["intent_at"]),
            created_at=_parse(row["created_at"]),
        )

    @staticmethod
    def _record(row: sqlite3.Row) -> ShardRecord:
        return ShardRecord(
            file=row["file"],
            position=row["position"],
            sha256=row["sha256"],
            records=row["records"],
            bytes=row["bytes"],
            state=row["state"],
            batch_id=row["batch_id"],
            intent_at=_parse(row["intent_at"]),
            submitted_at=_parse(row["submitted_at"]),
            webhook_url=row["webhook_url"],
            status=row["status"],
            metrics=orjson.loads(row["metrics"]) if row["metrics"] else {},
            output_url=row["output_url"],
            message=row["message"],
            attempts=row["attempts"],
        )

    # -- writing -------------------------------------------------------------------------------------------

    def sync_shards(self, shards: list[tuple[str, str, int, int]]) -> None:
        """Make the journal know every ``(file, sha256, records, bytes)`` of the manifest, in order.

        A shard the journal already has keeps its state; one whose bytes changed is refused if it was ever
        sent (its batch was made from the old bytes), and reset to pending otherwise.
        """
        with self._transaction() as db:
            for position, (file, sha256, records, size) in enumerate(shards, 1):
                row = db.execute("SELECT state, sha256 FROM shards WHERE file = ?", (file,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO shards (file, position, sha256, records, bytes, state, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                        (file, position, sha256, records, size, _iso(utcnow())),
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
                        (sha256, records, size, position, _iso(utcnow()), file),
                    )
                    self._event(db, file, "changed", {"sha256": sha256})
                else:
                    db.execute("UPDATE shards SET position = ? WHERE file = ?", (position, file))

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
                "UPDATE shards SET state = 'intent', intent_at = ?, webhook_url = ?, attempts = attempts + 1, "
                "message = NULL, updated_at = ? WHERE file = ?",
                (_iso(moment), webhook_url, _iso(utcnow()), file),
            )
            self._event(db, file, "intent", {"at": _iso(moment), "webhook_url": webhook_url})
        return moment

    def record_submitted(
        self, file: str, batch_id: str, *, status: str, metrics: dict[str, int], how: str = "created"
    ) -> None:
        """The server answered with ``batch_id`` (or reconciliation found it)."""
        now = _iso(utcnow())
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'submitted', batch_id = ?, submitted_at = ?, status = ?, metrics = ?, "
                "message = NULL, updated_at = ? WHERE file = ?",
                (batch_id, now, status, orjson.dumps(metrics).decode(), now, file),
            )
            self._event(db, file, how, {"batch_id": batch_id})

    def record_not_sent(self, file: str, reason: str) -> None:
        """The create certainly did not create a batch (refused before arrival, or reconciled as absent)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'pending', intent_at = NULL, message = ?, updated_at = ? WHERE file = ?",
                (reason, _iso(utcnow()), file),
            )
            self._event(db, file, "not-sent", {"reason": reason})

    def record_refused(self, file: str, message: str) -> None:
        """The server refused the shard (400): nothing was created; the reason is kept for the user."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET state = 'refused', intent_at = NULL, message = ?, updated_at = ? WHERE file = ?",
                (message, _iso(utcnow()), file),
            )
            self._event(db, file, "refused", {"message": message})

    def record_uncertain(self, file: str, message: str) -> None:
        """The create may have reached the server; the shard stays an intent until reconciled."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET message = ?, updated_at = ? WHERE file = ?",
                (message, _iso(utcnow()), file),
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
                "status = NULL, metrics = NULL, output_url = NULL, message = ?, updated_at = ? WHERE file = ?",
                (reason, _iso(utcnow()), file),
            )

    def record_status(
        self, file: str, *, status: str, metrics: dict[str, int], output_url: str | None
    ) -> None:
        """The latest status of the shard's batch, from a poll."""
        with self._transaction() as db:
            old = db.execute("SELECT status FROM shards WHERE file = ?", (file,)).fetchone()
            db.execute(
                "UPDATE shards SET status = ?, metrics = ?, output_url = ?, updated_at = ? WHERE file = ?",
                (status, orjson.dumps(metrics).decode(), output_url or None, _iso(utcnow()), file),
            )
            if old is not None and old["status"] != status:
                self._event(db, file, "status", {"status": status, "metrics": metrics})

    def record_dry_run(self, file: str, sha256: str, verdict: str, message: str | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO dry_runs (file, sha256, verdict, message, at) VALUES (?, ?, ?, ?, ?)",
                (file, sha256, verdict, message, _iso(utcnow())),
            )
            self._event(db, file, "dry-run", {"verdict": verdict})

    # -- generations (requests sent one by one) -------------------------------------------------------------

    def sync_generations(self, request_ids: Iterable[str]) -> list[GenerationRecord]:
        """Make the journal know every request to send, in order; each keeps its state and key once added."""
        with self._transaction() as db:
            scope = self._key_scope(db)
            count = db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
            for request_id in request_ids:
                found = db.execute("SELECT 1 FROM generations WHERE request_id = ?", (request_id,)).fetchone()
                if found is not None:
                    continue
                count += 1
                key = idempotency_key(request_id, scope)
                db.execute(
                    "INSERT INTO generations (request_id, position, idempotency_key, state, updated_at) "
                    "VALUES (?, ?, ?, 'pending', ?)",
                    (request_id, count, key, _iso(utcnow())),
                )
                self._event(db, request_id, "generation-added", {"idempotency_key": key})
        return self.generations()

    def _key_scope(self, db: sqlite3.Connection) -> str:
        found = db.execute("SELECT value FROM meta WHERE key = 'idempotency_scope'").fetchone()
        if found is not None:
            return str(found["value"])
        scope = secrets.token_hex(6)
        db.execute("INSERT INTO meta (key, value) VALUES ('idempotency_scope', ?)", (scope,))
        return scope

    def record_generation_intent(self, request_id: str) -> None:
        """Durably note that a create for ``request_id`` is about to be sent (again)."""
        now = _iso(utcnow())
        with self._transaction() as db:
            row = db.execute("SELECT state FROM generations WHERE request_id = ?", (request_id,)).fetchone()
            if row is None or row["state"] not in ("pending", "intent"):
                state = None if row is None else row["state"]
                msg = f"cannot send {request_id!r}: the journal has it as {state}"
                raise JournalError(msg)
            db.execute(
                "UPDATE generations SET state = 'intent', intent_at = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE request_id = ?",
                (now, now, request_id),
            )
            self._event(db, request_id, "generation-intent")

    def record_generation_created(self, request_id: str, generation_id: str, *, status: str | None) -> None:
        """The server answered the create with ``generation_id``."""
        now = _iso(utcnow())
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET state = 'created', generation_id = ?, status = ?, created_at = ?, "
                "message = NULL, updated_at = ? WHERE request_id = ?",
                (generation_id, status, now, now, request_id),
            )
            self._event(db, request_id, "generation-created", {"generation_id": generation_id})

    def record_generation_status(
        self,
        request_id: str,
        *,
        status: str | None,
        output_url: str | None = None,
        output_duration: float | None = None,
        error: str | None = None,
        error_code: str | None = None,
    ) -> None:
        """The latest status of the request's generation, from a poll."""
        with self._transaction() as db:
            old = db.execute("SELECT status FROM generations WHERE request_id = ?", (request_id,)).fetchone()
            db.execute(
                "UPDATE generations SET status = ?, output_url = ?, output_duration = ?, error = ?, "
                "error_code = ?, updated_at = ? WHERE request_id = ?",
                (status, output_url, output_duration, error, error_code, _iso(utcnow()), request_id),
            )
            if old is not None and old["status"] != status:
                self._event(db, request_id, "generation-status", {"status": status})

    def record_generation_refused(self, request_id: str, *, error_code: str | None, message: str) -> None:
        """The server refused the create (nothing was made); the reason is kept for the results."""
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET state = 'refused', error_code = ?, error = ?, message = ?, "
                "updated_at = ? WHERE request_id = ?",
                (error_code, message, message, _iso(utcnow()), request_id),
            )
            self._event(db, request_id, "generation-refused", {"error_code": error_code, "message": message})

    def record_generation_note(self, request_id: str, kind: str, message: str) -> None:
        """Keep what happened (a rate-limit wait, a lost answer) without changing the request's state."""
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET message = ?, updated_at = ? WHERE request_id = ?",
                (message, _iso(utcnow()), request_id),
            )
            self._event(db, request_id, kind, {"message": message})
