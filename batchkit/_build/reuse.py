"""Reuse, not re-pay: a build leaves out requests identical to ones that already completed (``build --reuse``).

**Identity.** Two requests are the same when their canonical lines carry the same ``endpoint`` and ``payload``,
byte for byte (:func:`payload_key`: sha256 of them, re-serialized exactly as parsed). The ``request_id`` is
left out on purpose: tomorrow's CRM export may number its rows differently, and the id does not change the
video Sync makes; everything that does (model, every input URL, options, segments, outputFileName, webhookUrl)
is in the payload. A changed row (a new audio URL, a fixed script) is therefore a new request, and is sent.
Lines written by another version of batchkit that serialized differently simply do not match: they are sent
(the safe way to be wrong).

:class:`Reusable` is what earlier directories completed, by key (``find_reusable`` in
:mod:`batchkit._results.reuse` reads it from their results). :func:`reuse_spill` runs inside
:func:`batchkit.build`: each valid unit whose key completed before is left out of the shards, its status in
``requests.parquet`` is ``reused``, and ``reused.parquet`` keeps the outcome it carries (where it completed,
under which request_id, its output URL, duration, generation and batch), so that ``batchkit results`` shows it
as completed with ``reused_from`` and ``reused_request_id``. A unit identical to one still pending there is
sent (a ``reuse-pending`` warning says so).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import polars as pl

from .._report import Finding, Report
from .._shard.builddir import REUSED
from .._shard.spill import Spill
from .preflight import Unit, spilled_units

__all__ = [
    "COMPLETED_SCHEMA",
    "REUSED_SCHEMA",
    "Reusable",
    "ReusePass",
    "payload_key",
    "reuse_spill",
]

log = logging.getLogger("batchkit")

#: What a :class:`Reusable` knows of each completed request (one row per key; the last directory wins).
COMPLETED_SCHEMA: Final[dict[str, Any]] = {
    "key": pl.String,
    "reused_from": pl.String,
    "reused_request_id": pl.String,
    "batch_id": pl.String,
    "output_url": pl.String,
    "output_duration": pl.Float64,
    "generation_id": pl.String,
}
#: Columns of ``reused.parquet``: the unit's own request_id, then what it carries.
REUSED_SCHEMA: Final[dict[str, Any]] = {"request_id": pl.String, **COMPLETED_SCHEMA}


def payload_key(line: bytes | str) -> str | None:
    """The identity of a canonical batch line: sha256 of its endpoint and payload (None if it is not one)."""
    try:
        obj = orjson.loads(line)
        data = orjson.dumps([obj["endpoint"], obj["payload"]])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Reusable:
    """Requests that completed in earlier build directories, by :func:`payload_key`, ready for a build.

    ``completed`` has the columns of :data:`COMPLETED_SCHEMA`; ``pending`` the keys (with ``reused_from`` and
    ``reused_request_id``) of requests still running there. Made by :func:`batchkit.find_reusable`.
    """

    directories: tuple[str, ...]
    completed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=COMPLETED_SCHEMA))
    pending: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={"key": pl.String, "reused_from": pl.String, "reused_request_id": pl.String}
        )
    )

    @property
    def count(self) -> int:
        """Distinct completed requests on offer."""
        return self.completed.height

    def merged(self, other: Reusable) -> Reusable:
        """Both offers in one (``other``'s outcome wins for a request both completed)."""
        completed = pl.concat([self.completed, other.completed]).unique(
            "key", keep="last", maintain_order=True
        )
        pending = pl.concat([self.pending, other.pending]).unique("key", keep="last", maintain_order=True)
        pending = pending.join(completed.select("key"), on="key", how="anti")
        directories = tuple(dict.fromkeys([*self.directories, *other.directories]))
        return Reusable(directories, completed, pending)

    def __repr__(self) -> str:
        return f"Reusable({len(self.directories)} directory(ies), {self.count:,} completed request(s))"


@dataclass(slots=True)
class ReusePass:
    """What reuse gives a build: lines to leave out, provenance updates, ``reused.parquet`` to move into place."""

    excluded: list[int]
    updates: pl.DataFrame
    copies: list[tuple[Path, str]]
    reused: int


def reuse_spill(
    spill: Spill,
    reusable: Reusable,
    report: Report,
    *,
    names: Sequence[str],
    each: Sequence[str],
    skip: Iterable[int] = (),
) -> ReusePass:
    """Leave out of the build every valid unit of ``spill`` (but the spill indexes in ``skip``) that completed."""
    every = spill.scan().select(
        "unit", "request_id", "source", "row", "source_line", *each, "status", "spill"
    )
    skipped = pl.Series("skip", sorted(set(skip)), dtype=pl.Int64)
    frame = (
        every.filter((pl.col("status") == "ok") & ~pl.col("spill").is_in(skipped.implode()))
        .sort("spill")
        .collect()
    )
    completed = {row["key"]: row for row in reusable.completed.iter_rows(named=True)}
    pending = {row["key"]: row for row in reusable.pending.iter_rows(named=True)}
    spill_of = dict(frame.select("unit", "spill").iter_rows())
    rows: list[dict[str, Any]] = []
    updates: list[tuple[int, str, str | None, str]] = []
    for unit in spilled_units(spill, frame, each):
        key = payload_key(unit.line)
        if key is None:
            continue
        earlier = completed.get(key)
        if earlier is not None:
            rows.append({"request_id": unit.request_id, **earlier})
            message = (
                f"completed before in {earlier['reused_from']} as {earlier['reused_request_id']!r}; its outcome "
                "is carried over, not sent again"
            )
            updates.append((unit.unit, "reused", None, message))
        elif key in pending:
            report.add(_pending(unit, pending[key], names))
    table = (
        pl.DataFrame(rows, schema=REUSED_SCHEMA, orient="row") if rows else pl.DataFrame(schema=REUSED_SCHEMA)
    )
    path = spill.dir / REUSED
    table.write_parquet(path)
    log.info("reuse: %d request(s) completed before and are not sent again", len(rows))
    return ReusePass(
        excluded=[spill_of[unit] for unit, _, _, _ in updates],
        updates=pl.DataFrame(
            updates,
            schema={"unit": pl.Int64, "status": pl.String, "code": pl.String, "message": pl.String},
            orient="row",
        ),
        copies=[(path, REUSED)],
        reused=len(rows),
    )


def _pending(unit: Unit, earlier: dict[str, Any], names: Sequence[str]) -> Finding:
    return Finding(
        code="reuse-pending",
        severity="warning",
        message=(
            f"an identical request ({earlier['reused_request_id']!r}) is still pending in {earlier['reused_from']}, "
            "so this one is sent again; to reuse it instead, wait for that directory to finish "
            "(`batchkit wait`, `batchkit results`) and build again"
        ),
        source=names[unit.source] if 0 <= unit.source < len(names) else None,
        row=unit.row,
        source_line=unit.source_line,
        request_id=unit.request_id,
    )
