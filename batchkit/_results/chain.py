"""One answer across retries: every unit's latest outcome, following the directories it was retried into.

A build directory remembers where its units went (``retries.json``, written by ``batchkit retry``); a retry
directory links each of its units to the one it retries (``retry_of``); a ``retry --hold`` directory knows
the build that included it (``consumed_by``). Following those links from a directory gives each of its units
the outcome of its latest attempt, with two more columns:

``attempts``    how many times the unit's request was sent to Sync (0: never, e.g. invalid or held)
``settled_in``  the directory whose outcome the row shows (the directory itself when nothing later counts)

A later attempt counts only once it was sent: a retry that is built but not submitted, or held and not yet
included, leaves the earlier outcome in place. When a unit was retried into several directories (``--force``),
the last one that sent it wins. A later directory that cannot be read (gone, edited, leading back into the
chain) is not followed: a ``retry-not-followed`` warning says why, and the earlier outcomes stand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

import polars as pl

from .._build.held import RETRY_OF
from .._errors import BatchkitError, ResultsError
from .._report import Finding, Report
from .._shard.builddir import RETRIES, load_manifest, retried_into
from .join import CHAIN_COLUMNS, RESULT_COLUMNS

__all__ = ["CHAIN_COLUMNS", "base_attempts", "follow_retries"]

log = logging.getLogger("batchkit")

#: What a later attempt replaces in a row: every result column but the request_id, which stays the row's own.
_REPLACED: Final = RESULT_COLUMNS[1:]
_NOT_SENT: Final = ("invalid", "skipped", "filtered", "unsubmitted")

#: Collect (and follow) the results of another directory: its joined table.
Collect = Callable[[Path], pl.DataFrame]


def base_attempts(frame: pl.DataFrame, folder: Path) -> pl.DataFrame:
    """The chain columns of a directory on its own: one attempt for every unit that was sent."""
    return frame.with_columns(
        pl.when(pl.col("outcome").is_in(_NOT_SENT)).then(0).otherwise(1).cast(pl.Int32).alias("attempts"),
        pl.lit(str(folder)).alias("settled_in"),
    )


def follow_retries(folder: Path, frame: pl.DataFrame, collect: Collect, report: Report) -> pl.DataFrame:
    """``frame`` (the joined table of ``folder``, with :func:`base_attempts`) with later attempts applied."""
    manifest = load_manifest(folder)
    held = manifest.unsharded
    if held is not None and held.mode == "held" and held.consumed_by:
        frame = _apply(frame, _later(Path(held.consumed_by), collect, report), key="request_id")
    for target in retried_into(folder):
        later = _later(target, collect, report, of=folder)
        if later is not None and RETRY_OF in later.columns:
            frame = _apply(frame, later, key=RETRY_OF)
    return frame


def _later(target: Path, collect: Collect, report: Report, *, of: Path | None = None) -> pl.DataFrame | None:
    """The followed results of a later directory, or None (and a warning) when they cannot be had."""
    try:
        if of is not None:
            retry = load_manifest(target).retry
            if retry is None or Path(retry.of).resolve() != of.resolve():
                msg = f"{target} is listed in {of / RETRIES} but is not a retry of {of}"
                raise ResultsError(msg)
        return collect(target)
    except BatchkitError as exc:
        if not target.exists():
            log.info("%s is gone; its retries are not followed", target)
            return None
        report.add(
            Finding(
                code="retry-not-followed",
                severity="warning",
                file=str(target),
                message=f"the retried rows keep their earlier outcome: {exc}",
            )
        )
        return None


def _apply(frame: pl.DataFrame, later: pl.DataFrame | None, *, key: str) -> pl.DataFrame:
    """Replace the result of every row that ``later`` holds a sent attempt for, matching ``later[key]``.

    Attempts add up: a row sent once here and twice later was sent three times (a held row, never sent from
    its own directory, takes the later count as it is).
    """
    if later is None or later.is_empty():
        return frame
    sent = later.filter(~pl.col("outcome").is_in(_NOT_SENT) & pl.col(key).is_not_null())
    if sent.is_empty():
        return frame
    columns = [c for c in _REPLACED if c in frame.columns and c in sent.columns]
    newer = sent.unique(subset=key, keep="last", maintain_order=True).select(
        pl.col(key).cast(pl.String).alias("request_id"),
        *[pl.col(c).alias(f"_later_{c}") for c in columns],
        pl.col("attempts").alias("_later_attempts"),
        pl.col("settled_in").alias("_later_settled_in"),
    )
    joined = frame.join(newer, on="request_id", how="left", maintain_order="left", coalesce=True)
    found = pl.col("_later_settled_in").is_not_null()
    return joined.with_columns(
        *[pl.when(found).then(pl.col(f"_later_{c}")).otherwise(pl.col(c)).alias(c) for c in columns],
        pl.when(found)
        .then(pl.col("attempts") + pl.col("_later_attempts"))
        .otherwise(pl.col("attempts"))
        .cast(pl.Int32)
        .alias("attempts"),
        pl.when(found).then(pl.col("_later_settled_in")).otherwise(pl.col("settled_in")).alias("settled_in"),
    ).drop(pl.selectors.starts_with("_later_"))
