"""A sandbox account kept in a file, so a sandbox started again (any port, any process) is the same account.

The file is JSON Lines, appended to and fsync'd as things happen: a first line naming the account, then one
line per batch and per generation created, with the facts they were created from (the uploaded bytes, the
planned outcomes, the timing). Statuses are never stored: they follow from the creation time and the clock,
so a batch created before a restart goes on progressing as if the sandbox had never stopped.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ._state import Clock, Result, SandboxBatch, SandboxGeneration, iso_z
from ._upload import UploadLine, split_lines

__all__ = ["StateFile"]

_FORMAT = "batchkit-sandbox-state/1"


def _result(data: dict[str, Any]) -> Result:
    return Result(data["status"], data.get("error_code"), data.get("message"))


def _started(clock: Clock, created_at: datetime) -> float:
    """The monotonic time that corresponds to ``created_at`` on this clock."""
    return clock.monotonic() - (clock.now() - created_at).total_seconds()


class StateFile:
    """The append-only state of one sandbox account."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self, clock: Clock, seed: int) -> tuple[str, list[SandboxBatch], list[SandboxGeneration]]:
        """The account id and everything created so far (a new account when the file does not exist yet)."""
        if not self.path.exists():
            account = f"acct_{secrets.token_hex(8)}"
            self._append({"kind": "account", "format": _FORMAT, "id": account})
            return account, [], []
        account = ""
        batches: list[SandboxBatch] = []
        generations: list[SandboxGeneration] = []
        for number, raw in enumerate(self.path.read_bytes().splitlines(), 1):
            if not raw.strip():
                continue
            try:
                item = orjson.loads(raw)
                kind = item["kind"]
                if kind == "account":
                    account = str(item["id"])
                elif kind == "batch":
                    batches.append(self._batch(item, clock, seed))
                elif kind == "generation":
                    generations.append(self._generation(item, clock))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                if number == len(self.path.read_bytes().splitlines()):
                    break  # a line cut short by a crash while it was written: everything before it stands
                msg = (
                    f"{self.path}:{number} is not a sandbox state line ({exc}); start with a new --state file"
                )
                raise ValueError(msg) from exc
        if not account:
            msg = f"{self.path} is not a sandbox state file (no account line); start with a new --state file"
            raise ValueError(msg)
        return account, batches, generations

    @staticmethod
    def _batch(item: dict[str, Any], clock: Clock, seed: int) -> SandboxBatch:
        data = item["file"].encode()
        lines = [
            UploadLine(n, str(orjson.loads(raw)["request_id"]), raw, orjson.loads(raw))
            for n, raw in enumerate(split_lines(data), 1)
        ]
        created_at = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
        return SandboxBatch.create(
            batch_id=item["id"],
            created_at=created_at,
            started=_started(clock, created_at),
            data=data,
            lines=lines,
            results=[_result(r) for r in item["results"]],
            webhook_url=item.get("webhook_url"),
            api_base=item["api_base"],
            pending_seconds=float(item["pending_seconds"]),
            seconds_per_generation=float(item["seconds_per_generation"]),
            seed=seed,
        )

    @staticmethod
    def _generation(item: dict[str, Any], clock: Clock) -> SandboxGeneration:
        created_at = datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
        return SandboxGeneration(
            id=item["id"],
            created_at=created_at,
            payload=item["payload"],
            webhook_url=item.get("webhook_url"),
            idempotency_key=item.get("idempotency_key"),
            result=_result(item["result"]),
            body_digest=item["body_digest"],
            started=_started(clock, created_at),
            pending_seconds=float(item["pending_seconds"]),
            seconds_per_generation=float(item["seconds_per_generation"]),
        )

    def add_batch(self, batch: SandboxBatch) -> None:
        self._append(
            {
                "kind": "batch",
                "id": batch.id,
                "created_at": iso_z(batch.created_at),
                "webhook_url": batch.webhook_url,
                "file": batch.file_bytes.decode(),
                "results": [
                    {"status": r.status, "error_code": r.error_code, "message": r.message}
                    for r in batch.results
                ],
                "api_base": batch.api_base,
                "pending_seconds": batch.pending_seconds,
                "seconds_per_generation": batch.seconds_per_generation,
            }
        )

    def add_generation(self, generation: SandboxGeneration) -> None:
        result = generation.result
        self._append(
            {
                "kind": "generation",
                "id": generation.id,
                "created_at": iso_z(generation.created_at),
                "payload": generation.payload,
                "webhook_url": generation.webhook_url,
                "idempotency_key": generation.idempotency_key,
                "result": {
                    "status": result.status,
                    "error_code": result.error_code,
                    "message": result.message,
                },
                "body_digest": generation.body_digest,
                "pending_seconds": generation.pending_seconds,
                "seconds_per_generation": generation.seconds_per_generation,
            }
        )

    def _append(self, item: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            handle.write(orjson.dumps(item) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
