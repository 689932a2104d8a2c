"""The requests a ``retry --realtime`` directory sends one by one, as the journal's ``generations`` table keeps
them: each with its ``Idempotency-Key`` (fixed when the row is added), its intent, its generation id and every
polled status. :class:`GenerationLog` is the part of :class:`batchkit._submit.journal.Journal` that writes them."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from .._errors import JournalError
from .cells import iso, parse_time, utcnow

__all__ = ["GenerationLog", "GenerationRecord", "GenerationState", "idempotency_key"]

GenerationState = Literal["pending", "intent", "created", "refused"]
#: Generation statuses after which nothing changes any more (as ``batchkit._wire.responses.GENERATION_TERMINAL``).
_GENERATION_TERMINAL: Final = frozenset({"COMPLETED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT"})
_KEY_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
_MAX_KEY: Final = 128


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


class GenerationLog:
    """Reading and writing the ``generations`` table (a part of the journal)."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover - the journal's
        raise NotImplementedError

    def _event(
        self, db: sqlite3.Connection, file: str | None, kind: str, detail: Any = None
    ) -> None:  # pragma: no cover
        raise NotImplementedError

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
            intent_at=parse_time(row["intent_at"]),
            created_at=parse_time(row["created_at"]),
        )

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
                    (request_id, count, key, iso(utcnow())),
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
        now = iso(utcnow())
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
        now = iso(utcnow())
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
                (status, output_url, output_duration, error, error_code, iso(utcnow()), request_id),
            )
            if old is not None and old["status"] != status:
                self._event(db, request_id, "generation-status", {"status": status})

    def record_generation_refused(self, request_id: str, *, error_code: str | None, message: str) -> None:
        """The server refused the create (nothing was made); the reason is kept for the results."""
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET state = 'refused', error_code = ?, error = ?, message = ?, "
                "updated_at = ? WHERE request_id = ?",
                (error_code, message, message, iso(utcnow()), request_id),
            )
            self._event(db, request_id, "generation-refused", {"error_code": error_code, "message": message})

    def record_generation_note(self, request_id: str, kind: str, message: str) -> None:
        """Keep what happened (a rate-limit wait, a lost answer) without changing the request's state."""
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET message = ?, updated_at = ? WHERE request_id = ?",
                (message, iso(utcnow()), request_id),
            )
            self._event(db, request_id, kind, {"message": message})
