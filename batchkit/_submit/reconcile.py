"""Identity by content: which batch on the server is a shard's, when a create's answer was lost.

A batch belongs to a shard only if its output lines carry that shard's request_ids. After a create whose
answer was lost (or a crash between the intent and the answer), the shard is *uncertain*, and
:meth:`Reconciler.settle` looks at the server:

* **candidates** are the batches created since the intent (less ``skew``, for the server's clock), with the
  shard's record count (or none reported yet), that no batchkit journal on this machine holds for certain
  (:mod:`batchkit._submit.registry`; a batch adopted *provisionally* elsewhere stays a candidate), and that
  were not already found to be another's by their content;
* every candidate that has finished is judged by its output: most of its lines naming the shard's
  request_ids make it **ours** (adopted, verified); otherwise it is **not ours** and never looked at again;
* one candidate left that cannot be judged yet (still running) is **adopted provisionally**, so work goes on;
  :meth:`Reconciler.verify` checks it by content as soon as its output is available, and a mismatch releases it:
  the shard is uncertain again and is looked for anew (and sent only if nothing is found);
* several candidates keep the shard **uncertain**: other shards go on, and every later submit, wait and
  results checks again, until their outputs tell which one is ours;
* **not created** is concluded only when no candidate is left *and* the create can no longer be in flight:
  ``in_flight`` seconds (at least twice the request timeout) after the last moment a create may have left,
  confirmed by a second look ``second_look`` seconds later. On a first resume exactly as inside the loop.

Nothing here sends a create: :mod:`batchkit._submit.submit` does, and only for shards this module settled as
certainly not created (or that were never sent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import orjson

from .._api.client import Client
from .._errors import APIError, ResultsError
from .._shard.builddir import output_file
from .._wire.responses import Batch
from .journal import Journal, ShardRecord, Verdict
from .registry import Registry

__all__ = [
    "ReconcilePolicy",
    "Reconciler",
    "Settled",
    "judge",
    "output_request_ids",
    "shard_request_ids",
]

log = logging.getLogger("batchkit")

_SHOWN: Final = 3

Settled = Literal["verified", "adopted", "not-created", "candidates", "in-flight"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    """How lost creates are settled. Times in seconds; ``now`` and ``sleep`` are injectable for tests."""

    #: How far the server's clock may be from ours, either way.
    skew: float = 300.0
    #: After the last moment a create may have left, it may still land on the server this long (at least
    #: twice the client's request timeout is used whatever this says).
    in_flight: float = 300.0
    #: Pause between the first look that finds nothing and the second that confirms it.
    second_look: float = 5.0
    now: Callable[[], datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    #: Never conclude sooner than twice the client's request timeout. Only a server that cannot outlive its
    #: client (the sandbox ``run --sandbox`` starts in its own process) may do without.
    at_least_twice_the_timeout: bool = True

    def horizon(self, shard: ShardRecord, client: Client) -> datetime:
        """When the shard's last create can no longer be in flight."""
        last = shard.last_intent_at or shard.intent_at or self.now()
        floor = 2 * client.timeout if self.at_least_twice_the_timeout else 0.0
        return last + timedelta(seconds=max(self.in_flight, floor))


def shard_request_ids(path: Path) -> frozenset[str]:
    """The request_ids of a shard file (unreadable lines are skipped)."""
    ids: set[str] = set()
    for line in path.read_bytes().splitlines():
        try:
            value = orjson.loads(line).get("request_id")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, str):
            ids.add(value)
    return frozenset(ids)


def output_request_ids(path: Path) -> set[str]:
    """The request_ids an output.jsonl names (``request_id`` or ``requestId``, text or number)."""
    ids: set[str] = set()
    for line in path.read_bytes().splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        value = obj.get("request_id", obj.get("requestId"))
        if isinstance(value, str) and value:
            ids.add(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            ids.add(str(value))
    return ids


def judge(named: set[str], ours: frozenset[str]) -> tuple[Verdict, str]:
    """Whose is a batch whose output names ``named``: ours when most of its lines name our request_ids."""
    if not named:
        return "unreadable", "its output names no request_id, so it cannot be told apart"
    hits = len(named & ours)
    if hits and hits > len(named) - hits:
        return "ours", f"{hits:,} of its {len(named):,} result lines name this shard's request_ids"
    example = sorted(named - ours)[:1]
    return "not-ours", (
        f"its output names {hits:,} of this shard's request_ids and {len(named) - hits:,} others"
        + (f" (such as {example[0]!r})" if example else "")
    )


@dataclass(slots=True)
class Reconciler:
    """Settles the uncertain and provisional shards of one journal against one server."""

    folder: Path
    journal: Journal
    api: Client
    server: str
    policy: ReconcilePolicy = field(default_factory=ReconcilePolicy)
    registry: Registry = field(default_factory=Registry)
    notes: dict[str, str] = field(default_factory=dict)
    _ids: dict[str, frozenset[str]] = field(default_factory=dict)
    _named: dict[str, set[str]] = field(default_factory=dict)

    # -- content ---------------------------------------------------------------------------------------

    def ours(self, shard: ShardRecord) -> frozenset[str]:
        if shard.file not in self._ids:
            self._ids[shard.file] = shard_request_ids(self.folder / shard.file)
        return self._ids[shard.file]

    def _named_by(self, batch: Batch) -> set[str] | None:
        """The request_ids a finished batch's output names (downloaded into ``results/`` once), or None."""
        if batch.id in self._named:
            return self._named[batch.id]
        if not batch.is_terminal:
            return None
        if not batch.output_url:
            batch = self.api.batches.get(batch.id)  # a finished batch without outputUrl: ask again
            if not batch.output_url:
                return None
        dest = self.folder / output_file(batch.id)
        if not dest.is_file():
            try:
                self.api.batches.download(batch.output_url or "", dest)
            except (APIError, ResultsError) as exc:
                log.warning(
                    "cannot read the output of %s to tell whose it is (%s); asking again later", batch.id, exc
                )
                return None
        named = output_request_ids(dest)
        self._named[batch.id] = named
        return named

    def _drop_output(self, batch_id: str) -> None:
        """Remove a judged output no shard of this journal holds (another's batch: its results are not ours)."""
        if batch_id not in self.journal.known_batch_ids():
            (self.folder / output_file(batch_id)).unlink(missing_ok=True)

    # -- provisional adoptions -----------------------------------------------------------------------------

    def verify(self, shard: ShardRecord, batch: Batch) -> Verdict | None:
        """Check a provisionally adopted batch by its content once it is finished; release it on a mismatch."""
        if not shard.provisional or shard.batch_id != batch.id:
            return None
        named = self._named_by(batch)
        if named is None:
            return None
        verdict, why = judge(named, self.ours(shard))
        if verdict == "ours":
            self.journal.record_verified(shard.file, batch.id, why)
            self._register(shard.file, batch.id, "verified")
            log.info("%s: batch %s verified by content (%s)", shard.file, batch.id, why)
        elif verdict == "not-ours":
            self.release(shard.file, batch.id, f"batch {batch.id} is not this shard's: {why}")
        return verdict

    def release(self, file: str, batch_id: str, reason: str) -> None:
        log.warning("%s: %s; releasing it and looking for the shard's own batch again", file, reason)
        self.journal.release(file, batch_id, reason)
        self.registry.release(batch_id, base_url=self.server, journal_id=self.journal.journal_id)
        self._drop_output(batch_id)
        self.notes[file] = reason

    def _register(
        self, file: str, batch_id: str, certainty: Literal["created", "verified", "provisional"]
    ) -> None:
        self.registry.record(
            batch_id,
            base_url=self.server,
            journal_id=self.journal.journal_id,
            directory=self.folder,
            shard=file,
            certainty=certainty,
        )

    def record_created(self, file: str, batch_id: str) -> None:
        self._register(file, batch_id, "created")

    # -- uncertain creates -------------------------------------------------------------------------------

    def _candidates(
        self, shard: ShardRecord, listed: list[Batch], since: datetime
    ) -> tuple[list[Batch], set[str]]:
        """The candidates for ``shard`` among ``listed``, and those of them another shard holds provisionally."""
        rows = self.journal.shards()
        certain_here = {
            s.batch_id for s in rows if s.batch_id and s.file != shard.file and not s.provisional
        } | self.journal.known_batch_ids(certain_only=True) - {shard.batch_id}
        held_here = {s.batch_id for s in rows if s.batch_id and s.file != shard.file and s.provisional}
        rejected = {c["batch_id"] for c in self.journal.candidates(shard.file) if c["verdict"] == "not-ours"}
        fitting = [
            b
            for b in listed
            if (b.created_at is None or b.created_at >= since)
            and b.metrics.total_generations in (shard.records, 0)
            and b.id not in rejected
            and b.id not in certain_here
        ]
        elsewhere = self.registry.claimed_elsewhere(
            (b.id for b in fitting), base_url=self.server, journal_id=self.journal.journal_id
        )
        chosen = [b for b in fitting if b.id not in elsewhere]
        return chosen, held_here & {b.id for b in chosen}

    def settle(self, shard: ShardRecord, *, confirm: bool = True) -> Settled:
        """Look for an uncertain shard's batch; adopt, keep it uncertain, or conclude it was not created."""
        assert shard.intent_at is not None
        since = shard.intent_at - timedelta(seconds=self.policy.skew)
        chosen, held = self._candidates(shard, self.api.batches.list(created_after=since), since)
        ours: list[Batch] = []
        open_: list[Batch] = []
        for batch in chosen:
            self.journal.record_candidate(
                shard.file,
                batch.id,
                created_at=batch.created_at,
                records=batch.metrics.total_generations,
                status=batch.status,
                output_url=batch.output_url,
            )
            named = self._named_by(batch)
            if named is None:
                open_.append(batch)
                continue
            verdict, why = judge(named, self.ours(shard))
            self.journal.set_verdict(shard.file, batch.id, verdict, why)
            if verdict == "ours":
                ours.append(batch)
            elif verdict == "unreadable":
                open_.append(batch)
            elif batch.id not in held:
                self._drop_output(batch.id)
        if ours:
            return self._adopt(shard, ours[0], held, verified=True)
        held_open = held & {b.id for b in open_}
        if len(open_) == 1 and not held_open:
            return self._adopt(shard, open_[0], held, verified=False)
        if open_:
            shown = ", ".join(b.id for b in open_[:_SHOWN]) + (
                f" and {len(open_) - _SHOWN} more" if len(open_) > _SHOWN else ""
            )
            note = (
                f"{len(open_)} batch(es) may be this shard's lost create ({shown}); their outputs will tell "
                "which, once they finish (every submit, wait and results checks again)"
            )
            self.journal.record_uncertain(shard.file, note)
            self.notes[shard.file] = note
            return "candidates"
        if self.policy.now() < self.policy.horizon(shard, self.api):
            note = (
                f"no batch found yet; the create may still be in flight until "
                f"{self.policy.horizon(shard, self.api).isoformat(timespec='seconds')}"
            )
            self.journal.record_uncertain(shard.file, note)
            self.notes[shard.file] = note
            return "in-flight"
        if confirm:
            self.policy.sleep(self.policy.second_look)
            return self.settle(self.journal.shard(shard.file), confirm=False)
        self.journal.record_not_sent(shard.file, "reconciled: the server has no batch for this create")
        return "not-created"

    def _adopt(self, shard: ShardRecord, batch: Batch, held: set[str], *, verified: bool) -> Settled:
        if batch.id in held:  # another shard holds it provisionally, but its content says it is this one's
            other = next(s for s in self.journal.shards() if s.batch_id == batch.id)
            self.release(other.file, batch.id, f"batch {batch.id} carries {shard.file}'s request_ids")
        self.journal.record_submitted(
            shard.file,
            batch.id,
            status=batch.status,
            metrics=batch.metrics.model_dump(),
            how="reconciled",
            output_url=batch.output_url,
            created_at=batch.created_at,
            verified=verified,
        )
        self._register(shard.file, batch.id, "verified" if verified else "provisional")
        return "verified" if verified else "adopted"
