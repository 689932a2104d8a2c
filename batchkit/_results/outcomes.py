"""Outcome rules: each request unit of a build gets exactly one outcome, from its batch and its result line.

=============== ==========================================================================================
``completed``   the generation finished; ``output_url`` is the video
``failed``      it failed (``batch-failed``: the whole batch FAILED without a results file)
``rejected``    Sync refused the request
``missing``     its batch's results file was downloaded, and no line of it names the request (``missing-result``)
``invalid``     it never became a request: ``error_code`` is the build finding that says why
``skipped``     no request by design: an ``[each]`` value marked optional is empty (``optional-empty``)
``filtered``    no request by design: the mapping's ``[where]`` left its row out (``filtered``)
``pending``     not settled yet: its batch is still running, its results are not downloaded (or not to be had)
                yet, its batch was adopted and not checked by content yet, or its shard's create is uncertain
``unsubmitted`` its shard was never sent, or the server refused the shard (``shard-refused``)
=============== ==========================================================================================

Outcomes never come from the batch-level status alone (a COMPLETED batch can hold failed rows). A line
without any status counts as completed when it has an output URL, else as failed (``result-without-status``);
a line whose status is not terminal in a finished batch counts as failed (``result-not-finished``).

A directory without shards overlays its own outcomes: a ``retry --realtime`` one takes them from its journal
of generations, a ``retry --hold`` one counts its held units as ``unsubmitted`` (error code ``held``).
:func:`outcome_findings` then reports, per shard, the requests its batch did not account for.
:func:`batchkit._results.results.collect_results` runs these steps in that order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import polars as pl
import polars.selectors as cs

from .._report import Finding, Report

__all__ = [
    "OUTPUT_SCHEMA",
    "held_overlay",
    "outcome_findings",
    "pending_findings",
    "realtime_overlay",
    "reconcile",
]

_TERMINAL: Final = ("COMPLETED", "FAILED")
#: Build statuses that are their own outcome: units that are no request by design.
_BY_DESIGN: Final = ("skipped", "filtered")
_UNFINISHED: Final = ("PENDING", "PROCESSING", "JOBS_CREATED", "QUEUED")
_SHOWN: Final = 5  # request ids named in a per-shard finding

#: One downloaded result line, as :func:`reconcile` reads it (the results add the ``shard`` it came from).
OUTPUT_SCHEMA: Final = {
    "request_id": pl.String,
    "result_status": pl.String,
    "error_code": pl.String,
    "error_message": pl.String,
    "output_url": pl.String,
    "output_duration": pl.Float64,
    "generation_id": pl.String,
    "result_line": pl.Int64,
}


def reconcile(units: pl.DataFrame, shards: pl.DataFrame, outputs: pl.DataFrame) -> pl.DataFrame:
    """Every unit with its outcome, by the rules in the module docstring."""
    joined = (
        units.with_row_index("_unit")
        .join(shards, on="shard", how="left", maintain_order="left")
        .join(
            outputs.rename({"error_code": "result_code", "error_message": "result_message"}),
            on=["request_id", "shard"],
            how="left",
            maintain_order="left",
        )
    )
    joined = joined.with_columns(_outcome().alias("outcome"))
    o = pl.col("outcome")
    completed = o == "completed"
    return joined.with_columns(
        _error_code().alias("error_code"),
        _error_message().alias("error_message"),
        pl.when(completed).then(pl.col("output_url")).alias("output_url"),
        pl.when(completed).then(pl.col("output_duration")).alias("output_duration"),
        pl.when(o.is_in(["completed", "failed", "rejected"]))
        .then(pl.col("generation_id"))
        .alias("generation_id"),
    )


_STATE: Final = pl.col("journal_state")
_BATCH: Final = pl.col("batch_status")
_STATUS: Final = pl.col("result_status")
_HAS_LINE: Final = pl.col("result_line").is_not_null()
_REFUSED: Final = (pl.col("outcome") == "unsubmitted") & (_STATE == "refused")


def _outcome() -> pl.Expr:
    """The outcome of a unit, from its build status, its shard's journal state and batch, and its line."""
    line_outcome = (
        pl.when(_STATUS == "COMPLETED")
        .then(pl.lit("completed"))
        .when(_STATUS == "REJECTED")
        .then(pl.lit("rejected"))
        .when(_STATUS.is_null() & pl.col("output_url").is_not_null())
        .then(pl.lit("completed"))
        .otherwise(pl.lit("failed"))
    )
    return (
        pl.when(pl.col("status").is_in(_BY_DESIGN))
        .then(pl.col("status"))
        .when(pl.col("status") != "ok")
        .then(pl.lit("invalid"))
        .when(_STATE.is_null() | _STATE.is_in(["pending", "refused"]))
        .then(pl.lit("unsubmitted"))
        .when((_STATE != "submitted") | _BATCH.is_null() | ~_BATCH.is_in(_TERMINAL) | pl.col("provisional"))
        .then(pl.lit("pending"))
        .when(_HAS_LINE)
        .then(line_outcome)
        .when(pl.col("downloaded"))
        .then(pl.lit("missing"))
        .when(pl.col("has_url"))
        .then(pl.lit("pending"))
        .when(_BATCH == "FAILED")
        .then(pl.lit("failed"))
        .otherwise(pl.lit("pending"))  # finished, but no results file to be had yet: never called missing
    )


def _error_code() -> pl.Expr:
    """The code that says why a unit did not complete (the build's, the server's, or batchkit's own)."""
    o = pl.col("outcome")
    line_code = (
        pl.when(_STATUS.is_null())
        .then(pl.lit("result-without-status"))
        .when(_STATUS.is_in(_UNFINISHED))
        .then(pl.lit("result-not-finished"))
        .otherwise(_STATUS.str.to_lowercase())
    )
    return (
        pl.when(o.is_in(["invalid", *_BY_DESIGN]))
        .then(pl.coalesce(pl.col("code"), o))
        .when(_REFUSED)
        .then(pl.lit("shard-refused"))
        .when(o == "missing")
        .then(pl.lit("missing-result"))
        .when((o == "failed") & ~_HAS_LINE)
        .then(pl.lit("batch-failed"))
        .when(o.is_in(["failed", "rejected"]))
        .then(pl.coalesce(pl.col("result_code"), line_code))
        .otherwise(pl.lit(None, pl.String))
    )


def _error_message() -> pl.Expr:
    """What happened to a unit that did not complete, and what to do about it."""
    o = pl.col("outcome")
    pending = o == "pending"
    return (
        pl.when(o.is_in(["invalid", *_BY_DESIGN]))
        .then(pl.col("message"))
        .when(_REFUSED)
        .then(
            pl.concat_str(pl.lit("the server refused its shard: "), pl.coalesce("batch_message", pl.lit("?")))
        )
        .when(o == "unsubmitted")
        .then(pl.lit("its shard has not been submitted (run `batchkit submit DIR`)"))
        .when(pending & (_STATE == "intent"))
        .then(
            pl.coalesce(
                pl.concat_str(pl.lit("its shard's create is not settled yet: "), "batch_message"),
                pl.lit("its shard's submission was interrupted; run `batchkit submit DIR` to settle it"),
            )
        )
        .when(pending & pl.col("provisional") & _BATCH.is_in(_TERMINAL))
        .then(
            pl.lit(
                "its batch was adopted for a lost create and is not checked by content yet (run `batchkit results DIR`)"
            )
        )
        .when(pending & _BATCH.is_in(_TERMINAL) & ~pl.col("has_url"))
        .then(
            pl.lit(
                "its batch finished, but the server gives no results file yet; ask again later (`batchkit results DIR`)"
            )
        )
        .when(pending & pl.col("has_url") & ~pl.col("downloaded"))
        .then(
            pl.coalesce(
                pl.concat_str(pl.lit("its results could not be downloaded: "), "download_error"),
                pl.lit("its batch finished; its results are not downloaded yet (run `batchkit results DIR`)"),
            )
        )
        .when(pending)
        .then(pl.concat_str(pl.lit("its batch is "), pl.coalesce(_BATCH, pl.lit("not reported yet"))))
        .when(o == "missing")
        .then(pl.lit("its batch finished without a result line for this request"))
        .when((o == "failed") & ~_HAS_LINE)
        .then(
            pl.concat_str(
                pl.lit("the whole batch failed without results"),
                pl.concat_str(pl.lit(": "), "batch_message"),
                ignore_nulls=True,
            )
        )
        .when(o.is_in(["failed", "rejected"]))
        .then(
            pl.coalesce(
                "result_message",
                pl.concat_str(pl.lit("the result line says "), pl.coalesce(_STATUS, pl.lit("no status"))),
            )
        )
        .otherwise(pl.lit(None, pl.String))
    )


def realtime_overlay(joined: pl.DataFrame, folder: Path, file: str) -> pl.DataFrame:
    """A ``retry --realtime`` directory: outcomes come from its journal of generations, not from batches."""
    from .realtime import realtime_outcomes, realtime_results

    outcomes = realtime_outcomes(folder)
    finished = pl.DataFrame(realtime_results(folder), schema=OUTPUT_SCHEMA).select(
        "request_id", *[pl.col(c).alias(f"_rt_{c}") for c in OUTPUT_SCHEMA if c != "request_id"]
    )
    frame = joined.join(finished, on="request_id", how="left", maintain_order="left").with_columns(
        pl.col("request_id")
        .replace_strict(outcomes, default=None, return_dtype=pl.String)
        .alias("_rt_outcome")
    )
    sent = (pl.col("status") == "ok") & pl.col("_rt_outcome").is_not_null()
    rt = pl.col("_rt_outcome")
    status = pl.col("_rt_result_status")
    ended = rt.is_in(["failed", "rejected"])
    return frame.with_columns(
        pl.when(sent).then(rt).otherwise(pl.col("outcome")).alias("outcome"),
        pl.when(sent & ended)
        .then(pl.coalesce("_rt_error_code", status.str.to_lowercase()))
        .when(sent)
        .then(pl.lit(None, pl.String))
        .otherwise(pl.col("error_code"))
        .alias("error_code"),
        pl.when(sent & ended)
        .then(pl.col("_rt_error_message"))
        .when(sent & (rt == "pending"))
        .then(pl.lit("sent one by one and not finished yet: run the same `batchkit retry --realtime` again"))
        .when(sent)
        .then(pl.lit(None, pl.String))
        .when((pl.col("status") == "ok") & (pl.col("outcome") == "unsubmitted"))
        .then(pl.lit("not sent yet: run the same `batchkit retry --realtime` again"))
        .otherwise(pl.col("error_message"))
        .alias("error_message"),
        pl.when(sent & (rt == "completed"))
        .then(pl.col("_rt_output_url"))
        .otherwise(pl.col("output_url"))
        .alias("output_url"),
        pl.when(sent & (rt == "completed"))
        .then(pl.col("_rt_output_duration"))
        .otherwise(pl.col("output_duration"))
        .alias("output_duration"),
        pl.when(sent)
        .then(pl.col("_rt_generation_id"))
        .otherwise(pl.col("generation_id"))
        .alias("generation_id"),
        pl.when(pl.col("status") == "ok")
        .then(pl.lit(file))
        .otherwise(pl.col("shard_file"))
        .alias("shard_file"),
    ).drop(cs.starts_with("_rt_"))


def held_overlay(joined: pl.DataFrame, folder: Path, file: str, consumed_by: str | None) -> pl.DataFrame:
    """A ``retry --hold`` directory: its units wait for (or went into) a later build; none was sent from here."""
    held = pl.col("status") == "held"
    where = (
        f"included in {consumed_by}: its results are there"
        if consumed_by
        else f"held for a later build: `batchkit build SOURCE --mapping M --out DIR --include-held {folder}`"
    )
    return joined.with_columns(
        pl.when(held).then(pl.lit("unsubmitted")).otherwise(pl.col("outcome")).alias("outcome"),
        pl.when(held).then(pl.lit("held")).otherwise(pl.col("error_code")).alias("error_code"),
        pl.when(held).then(pl.lit(where)).otherwise(pl.col("error_message")).alias("error_message"),
        pl.when(held).then(pl.lit(file)).otherwise(pl.col("shard_file")).alias("shard_file"),
    )


def pending_findings(shards: pl.DataFrame, report: Report) -> None:
    """One warning per shard whose rows stay pending for a reason to act on (codes in ``CODES``)."""
    for row in shards.iter_rows(named=True):
        file, batch_id = row["shard_file"], row["batch_id"]
        finished = row["batch_status"] in _TERMINAL
        if row["journal_state"] == "intent":
            note = row["batch_message"] or "its create's answer was lost"
            report.add(
                Finding(
                    code="submission-uncertain",
                    severity="warning",
                    file=file,
                    message=f"{file}: {note}; its requests stay pending (every submit, wait and results checks again)",
                )
            )
        elif row["journal_state"] == "submitted" and row["provisional"] and finished:
            report.add(
                Finding(
                    code="batch-unverified",
                    severity="warning",
                    file=file,
                    message=(
                        f"batch {batch_id} was adopted for {file}'s lost create and its output could not be checked "
                        "yet; its requests stay pending until it is"
                    ),
                )
            )
        elif (
            row["journal_state"] == "submitted"
            and finished
            and not row["has_url"]
            and row["batch_status"] != "FAILED"
        ):
            report.add(
                Finding(
                    code="output-unavailable",
                    severity="warning",
                    file=file,
                    message=(
                        f"batch {batch_id} is {row['batch_status']} but the server gives no results file (empty "
                        "outputUrl, asked again); its requests stay pending, not missing. Run `batchkit results` later"
                    ),
                )
            )


def outcome_findings(joined: pl.DataFrame, shards: pl.DataFrame, report: Report) -> None:
    """One finding per shard for requests its batch did not account for, or a shard that never ran."""
    codes = pl.col("error_code")
    grouped = (
        joined.filter(codes.is_in(["missing-result", "batch-failed", "shard-refused"]))
        .group_by("shard", "error_code", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("request_id").head(_SHOWN))
        .join(shards.select("shard", "shard_file", "batch_id", "batch_message"), on="shard", how="left")
        .sort("shard")
    )
    for _, code, n, ids, file, batch_id, note in grouped.iter_rows():
        named = ", ".join(repr(i) for i in ids) + (" ..." if n > len(ids) else "")
        if code == "missing-result":
            message = (
                f"batch {batch_id} finished without a result for {n:,} request(s) ({named}); they count as "
                "missing (retry them)"
            )
        elif code == "batch-failed":
            message = f"batch {batch_id} FAILED without a results file ({note or 'no reason given'}); its {n:,} request(s) count as failed"
        else:
            message = f"the server refused {file} ({note or 'no reason given'}); its {n:,} request(s) are unsubmitted"
        report.add(Finding(code=code, severity="warning", file=file, message=message))
