"""Reuse, read from the results side: what earlier directories completed (:func:`find_reusable`), and the
outcomes a ``build --reuse`` directory carries are overlaid by :mod:`batchkit._results.reused`.

:func:`find_reusable` takes every unit's outcome the way ``batchkit results --offline`` does (only what the
journal and ``DIR/results/`` already hold: nothing is downloaded, no API key is needed), keeps the completed
ones with the identity of their line (:func:`batchkit._build.reuse.payload_key`), and follows each directory
into the directories it was retried into. Units a directory itself reused are offered again with the outcome
they carry, so reuse chains from day to day (``reused_from`` keeps naming the directory that made the video).
When two directories completed the same request, the later one given wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from .._build.probe import directory_lines
from .._build.reuse import COMPLETED_SCHEMA, Reusable, payload_key
from .._errors import InputError
from .._shard.builddir import REUSED, load_manifest, retried_into
from .results import _collect
from .reused import CARRIED

__all__ = ["find_reusable"]

log = logging.getLogger("batchkit")


def find_reusable(directories: Iterable[str | Path]) -> Reusable:
    """The requests that completed in ``directories`` (and the directories they were retried into), ready
    for ``BuildOptions(reuse=...)``. A directory that is not a finished build is an :class:`InputError`."""
    order: list[Path] = []
    queue = [Path(d) for d in directories]
    while queue:
        folder = queue.pop(0)
        if any(folder.resolve() == seen.resolve() for seen in order):
            continue
        if not folder.is_dir():
            msg = f"--reuse {folder}: no such build directory"
            raise InputError(msg, path=folder)
        order.append(folder)
        queue.extend(target for target in retried_into(folder) if target.is_dir())
    completed: list[pl.DataFrame] = []
    pending: list[pl.DataFrame] = []
    for folder in order:
        done, waiting = _directory(folder)
        completed.append(done)
        pending.append(waiting)
    done_all = pl.concat(completed) if completed else pl.DataFrame(schema=COMPLETED_SCHEMA)
    done_all = done_all.unique("key", keep="last", maintain_order=True)
    waiting_all = pl.concat(pending).unique("key", keep="last") if pending else Reusable(()).pending
    waiting_all = waiting_all.join(done_all.select("key"), on="key", how="anti")
    log.info("reuse: %d completed request(s) in %s", done_all.height, ", ".join(map(str, order)))
    return Reusable(tuple(str(folder) for folder in order), done_all, waiting_all)


def _directory(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The completed requests of one directory (:data:`COMPLETED_SCHEMA`), and its pending ones."""
    manifest = load_manifest(folder)
    joined = _collect(folder, client=None, download=False, source=None, rows=False).frame
    lines = directory_lines(folder, manifest).select(pl.col("unit").alias("_unit"), "line")
    sent = joined.filter(pl.col("status") == "ok").join(lines, on="_unit", how="inner", maintain_order="left")
    keys = pl.Series(
        "key", [payload_key(line) for line in sent.get_column("line").to_list()], dtype=pl.String
    )
    sent = sent.with_columns(keys)
    where = pl.lit(str(folder)).alias("reused_from")
    done = sent.filter((pl.col("outcome") == "completed") & pl.col("key").is_not_null()).select(
        "key", where, pl.col("request_id").alias("reused_request_id"), *CARRIED
    )
    waiting = sent.filter((pl.col("outcome") == "pending") & pl.col("key").is_not_null()).select(
        "key", where, pl.col("request_id").alias("reused_request_id")
    )
    if (folder / REUSED).is_file():
        carried = pl.read_parquet(folder / REUSED).select(list(COMPLETED_SCHEMA))
        done = pl.concat([carried, done.select(list(COMPLETED_SCHEMA))], how="vertical_relaxed")
    return done.select(pl.col(c).cast(t) for c, t in COMPLETED_SCHEMA.items()), waiting
