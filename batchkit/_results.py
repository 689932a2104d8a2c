"""Results: download every batch's output.jsonl, join it back to the source rows, and reconcile.

Every request unit of the build (a source row, or one ``[each]`` expansion of it) gets exactly one outcome:

=============== ==========================================================================================
``completed``   the generation finished; ``output_url`` is the video
``failed``      it failed (``batch-failed``: the whole batch FAILED without a results file)
``rejected``    Sync refused the request
``missing``     its batch finished, but no result line names it (``missing-result``)
``invalid``     it never became a request: ``error_code`` is the build finding that says why
``pending``     not settled yet: its batch is still running, its results are not downloaded yet, or its
                shard's create was interrupted and needs ``batchkit submit`` to reconcile it
``unsubmitted`` its shard was never sent, or the server refused the shard (``shard-refused``)
=============== ==========================================================================================

Results are matched on ``request_id`` within the shard's own batch, never by position, and never from the
batch-level status alone (a COMPLETED batch can hold failed rows). A result line for an id the shard never
sent is an ``unexpected-result`` finding (the line is ignored); an id with several lines is a
``duplicate-result`` finding (a COMPLETED line wins, else the last one). A line without any status counts as
completed when it has an output URL, else as failed (``result-without-status``); a line whose status is not
terminal in a finished batch counts as failed (``result-not-finished``).

The source's own rows come back beside the outcomes: from the file recorded in the manifest (or ``source=``
when it moved), or from the build's snapshot of an in-memory source. When that file changed since the build,
every request_id is derived again from its row with the build's mapping; the join goes ahead only if they
all still match (a ``source-changed`` warning), so an output is never attached to the wrong row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl
import polars.selectors as cs

from ._client import Client
from ._errors import BatchkitError, ResultsError
from ._held import RETRY_OF
from ._journal import JOURNAL_FILE, Journal, ShardRecord
from ._manifest import Manifest, SourceInfo, file_sha256, load_manifest, verify_shards
from ._mapping import Column, Const, load_mapping
from ._outputs import COLUMNS, RESULTS_DIR, download_outputs, download_results, output_path, read_output
from ._report import Finding, Report
from ._sources import ROW, Source, read_source

__all__ = ["OUTCOMES", "RESULTS_DIR", "RESULT_COLUMNS", "Results", "collect_results", "download_results"]

log = logging.getLogger("batchkit")

OUTCOMES: Final = ("completed", "failed", "rejected", "missing", "invalid", "pending", "unsubmitted")
#: The columns results add after the source's own columns (and the ``each`` variables).
RESULT_COLUMNS: Final = (
    "request_id",
    "shard",
    "batch_id",
    "outcome",
    "error_code",
    "error_message",
    "output_url",
    "output_duration",
    "generation_id",
)
_TERMINAL: Final = ("COMPLETED", "FAILED")
_UNFINISHED: Final = ("PENDING", "PROCESSING", "JOBS_CREATED", "QUEUED")
_SHOWN: Final = 5  # request ids named in a per-shard finding


@dataclass(slots=True)
class Results:
    """The joined table (one row per request unit, in source order) with its findings and a summary."""

    frame: pl.DataFrame
    report: Report = field(default_factory=Report)

    @property
    def outcomes(self) -> dict[str, int]:
        """Units per outcome, every outcome listed (zeros included), in :data:`OUTCOMES` order."""
        counts = dict(self.frame.group_by("outcome").len().iter_rows())
        return {outcome: int(counts.get(outcome, 0)) for outcome in OUTCOMES}

    @property
    def error_codes(self) -> dict[str, int]:
        """Units per error code, most frequent first (units without one left out)."""
        counts = self.frame.get_column("error_code").drop_nulls().value_counts()
        return dict(counts.sort(["count", "error_code"], descending=[True, False]).iter_rows())

    def summary(self) -> dict[str, Any]:
        """``units``, ``outcomes``, ``error_codes`` and ``findings`` (findings per code), as plain data."""
        return {
            "units": self.frame.height,
            "outcomes": self.outcomes,
            "error_codes": self.error_codes,
            "findings": self.report.counts,
        }

    def write(self, path: str | Path) -> Path:
        """Export the table; the format follows the suffix (``.csv``, ``.parquet``, ``.xlsx``, ``.jsonl``)."""
        from ._export import export_frame

        return export_frame(self.frame, path)


# -- joining -------------------------------------------------------------------------------------------------


def collect_results(
    directory: str | Path,
    *,
    client: Client | None = None,
    download: bool = True,
    source: str | Path | Any | None = None,
) -> Results:
    """Join the build's request units with their batches' results and their source rows.

    With ``download`` (the default) batch statuses are refreshed and finished batches' results fetched first
    (this needs the API only while something is left to fetch); without it, only what the journal and
    ``DIR/results/`` already hold is used. ``source`` replaces the source recorded in the manifest (a file
    that moved, or the DataFrame an in-memory build came from).
    """
    folder = Path(directory)
    manifest = load_manifest(folder)
    report = Report(limits=manifest.limits)
    for finding in verify_shards(folder, manifest):
        report.add(finding)
    units = _load_units(folder, manifest, report)
    records: dict[str, ShardRecord] = {}
    failures: dict[str, str] = {}
    if (folder / JOURNAL_FILE).exists():
        with Journal.open(folder, create=False) as journal:
            if download:
                api = client if client is not None else Client()
                try:
                    _, failures = download_outputs(folder, journal, api)
                finally:
                    if client is None:
                        api.close()
            records = {s.file: s for s in journal.shards()}
    shards = _shard_frame(folder, manifest, records, failures, report)
    outputs = _read_outputs(shards, units, report)
    joined = _reconcile(units, shards, outputs)
    if manifest.unsharded is not None and manifest.unsharded.mode == "realtime":
        joined = _realtime_overlay(joined, folder, manifest.unsharded.file)
    elif manifest.unsharded is not None:
        joined = _held_overlay(joined, folder, manifest.unsharded.file, manifest.unsharded.consumed_by)
    _outcome_findings(joined, shards, report)
    frame = _with_source(manifest, folder, joined, source, report)
    return Results(frame=frame, report=report)


_UNIT_COLUMNS: Final = ("request_id", "row", "shard", "status")


def _load_units(folder: Path, manifest: Manifest, report: Report) -> pl.DataFrame:
    """``requests.parquet`` with findings for anything a hand edit (or a rebuild) could have broken."""
    units = manifest.requests_frame()
    lacking = [c for c in (*_UNIT_COLUMNS, *manifest.each) if c not in units.columns]
    if lacking:
        msg = f"{manifest.requests.file} has no column {lacking[0]!r}: it is not a batchkit build; rebuild it"
        raise ResultsError(msg)
    units = units.with_columns(
        *[pl.lit(None, pl.String).alias(c) for c in ("code", "message") if c not in units.columns],
        pl.col("source").cast(pl.Int32) if "source" in units.columns else pl.lit(0, pl.Int32).alias("source"),
        pl.col("request_id").cast(pl.String),
        pl.col("row").cast(pl.Int64),
        pl.col("shard").cast(pl.Int32),
        pl.col("status").fill_null("invalid").cast(pl.String),
    )
    name = manifest.requests.file

    def changed(message: str) -> None:
        report.add(Finding(code="manifest-changed", severity="error", file=name, message=message))

    digest, _, _ = file_sha256(folder / name)
    if digest != manifest.requests.sha256 or units.height != manifest.requests.rows:
        changed(
            f"{name} does not match manifest.json ({units.height:,} rows, the manifest says "
            f"{manifest.requests.rows:,}; sha256 {'differs' if digest != manifest.requests.sha256 else 'matches'}): "
            "one of them was edited or replaced. Results are still joined by request_id; rebuild to be sure"
        )
    ok = pl.col("status") == "ok"
    count = len(manifest.shards)
    unsharded = manifest.unsharded is not None  # held or realtime: no unit has a shard, by design
    stray = units.filter(
        ok & ~pl.lit(unsharded) & (pl.col("shard").is_null() | ~pl.col("shard").is_between(1, count))
    )
    if stray.height:
        changed(
            f"{stray.height:,} request(s) of {name} name no shard of the manifest (first: "
            f"{stray['request_id'][0]!r}); they count as unsubmitted"
        )
    per_shard = dict(units.filter(ok).group_by("shard").len().iter_rows())
    off = [
        f"{info.file} ({per_shard.get(n, 0):,} in {name}, {info.records:,} in the manifest)"
        for n, info in enumerate(manifest.shards, 1)
        if per_shard.get(n, 0) != info.records
    ]
    if off:
        changed(f"request counts per shard disagree: {', '.join(off[:3])}{' ...' if len(off) > 3 else ''}")
    ids = units.filter(ok).get_column("request_id").drop_nulls()
    for request_id in ids.filter(ids.is_duplicated()).unique(maintain_order=True).to_list():
        report.add(
            Finding(
                code="duplicate-request-id",
                severity="error",
                file=name,
                request_id=request_id,
                message=f"request_id {request_id!r} belongs to more than one request of the build; they share one result",
            )
        )
    return units


_SHARD_SCHEMA: Final = {
    "shard": pl.Int32,
    "shard_file": pl.String,
    "batch_id": pl.String,
    "journal_state": pl.String,
    "batch_status": pl.String,
    "batch_message": pl.String,
    "has_url": pl.Boolean,
    "output_file": pl.String,
    "downloaded": pl.Boolean,
    "download_error": pl.String,
}


def _shard_frame(
    folder: Path,
    manifest: Manifest,
    records: dict[str, ShardRecord],
    failures: dict[str, str],
    report: Report,
) -> pl.DataFrame:
    """One row per shard of the manifest: what the journal knows of its batch and where its results are."""
    rows: list[dict[str, Any]] = []
    for number, info in enumerate(manifest.shards, 1):
        record = records.get(info.file)
        path = output_path(folder, record) if record is not None else None
        if record is not None and record.state in ("intent", "submitted") and record.sha256 != info.sha256:
            report.add(
                Finding(
                    code="shard-changed",
                    severity="error",
                    file=info.file,
                    message=(
                        f"{info.file} was rebuilt after it was submitted as {record.batch_id or 'a batch'}; its "
                        "results are joined by request_id, but the build no longer describes what was sent"
                    ),
                )
            )
        if info.file in failures:
            report.add(
                Finding(
                    code="download-failed",
                    severity="error",
                    file=info.file,
                    message=(
                        f"the results of batch {record.batch_id if record else '?'} could not be downloaded "
                        f"({failures[info.file]}); its requests stay pending. Run `batchkit results` again later"
                    ),
                )
            )
        rows.append(
            {
                "shard": number,
                "shard_file": info.file,
                "batch_id": record.batch_id if record is not None else None,
                "journal_state": record.state if record is not None else None,
                "batch_status": record.status.upper() if record is not None and record.status else None,
                "batch_message": record.message if record is not None else None,
                "has_url": bool(record is not None and record.output_url),
                "output_file": str(path) if path is not None else None,
                "downloaded": bool(path is not None and path.is_file()),
                "download_error": failures.get(info.file),
            }
        )
    listed = {info.file for info in manifest.shards}
    for file, record in records.items():
        if file not in listed and record.batch_id is not None:
            report.add(
                Finding(
                    code="manifest-changed",
                    severity="error",
                    file=file,
                    message=(
                        f"the journal has {file} (batch {record.batch_id}), which manifest.json does not list; "
                        "its results are not joined. Was the directory rebuilt after submitting?"
                    ),
                )
            )
    return pl.DataFrame(rows, schema=_SHARD_SCHEMA)


_OUTPUT_SCHEMA: Final = {
    "request_id": pl.String,
    "result_status": pl.String,
    "error_code": pl.String,
    "error_message": pl.String,
    "output_url": pl.String,
    "output_duration": pl.Float64,
    "generation_id": pl.String,
    "result_line": pl.Int64,
}


def _read_outputs(shards: pl.DataFrame, units: pl.DataFrame, report: Report) -> pl.DataFrame:
    """One row per (shard, request_id) of the downloaded results, for requests the shard sent; findings for
    the rest (unreadable lines, duplicates, ids the shard never sent)."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    numbers: list[int] = []
    files: dict[int, str] = {}
    for number, path in shards.filter("downloaded").select("shard", "output_file").iter_rows():
        try:
            found, findings = read_output(path)
        except OSError as exc:
            msg = f"cannot read {path}: {exc.strerror or exc}; delete it to download it again"
            raise ResultsError(msg) from exc
        for finding in findings:
            report.add(finding)
        for name in COLUMNS:
            columns[name].extend(found[name])
        numbers.extend([number] * len(found["request_id"]))
        files[number] = path
    outputs = pl.DataFrame(columns, schema=_OUTPUT_SCHEMA).with_columns(
        pl.Series("shard", numbers, dtype=pl.Int32)
    )
    outputs = _dedupe(outputs, files, report)
    sent = units.filter(pl.col("status") == "ok").select("request_id", "shard").drop_nulls().unique()
    stray = outputs.join(sent, on=["request_id", "shard"], how="anti")
    if stray.height:
        home = sent.unique("request_id", keep="first").rename({"shard": "home"})
        stray = stray.join(home, on="request_id", how="left", maintain_order="left")
        names = dict(shards.select("shard", "shard_file").iter_rows())
        for request_id, number, line, where in stray.select(
            "request_id", "shard", "result_line", "home"
        ).iter_rows():
            sent_in = names.get(where, f"shard {where}, which the manifest does not list")
            why = "the build never sent it" if where is None else f"it was sent in {sent_in}"
            report.add(
                Finding(
                    code="unexpected-result",
                    severity="warning",
                    file=files[number],
                    line=line,
                    request_id=request_id,
                    message=f"a result for request_id {request_id!r}, but {why}, not in this batch; the line is ignored",
                )
            )
        outputs = outputs.join(sent, on=["request_id", "shard"], how="semi")
    return outputs


def _dedupe(outputs: pl.DataFrame, files: dict[int, str], report: Report) -> pl.DataFrame:
    """One line per (shard, request_id): a COMPLETED line wins, else the last; the others are findings."""
    key = ["shard", "request_id"]
    dup = outputs.filter(pl.struct(key).is_duplicated())
    if dup.is_empty():
        return outputs
    ranked = outputs.with_columns((pl.col("result_status") == "COMPLETED").fill_null(False).alias("_won"))
    kept = ranked.sort(["_won", "result_line"]).unique(key, keep="last").drop("_won")
    groups = (
        dup.sort("result_line")
        .group_by(key, maintain_order=True)
        .agg("result_line", "result_status")
        .join(
            kept.select(*key, pl.col("result_line").alias("kept")), on=key, how="left", maintain_order="left"
        )
    )
    for number, request_id, lines, statuses, keep in groups.iter_rows():
        shown = ", ".join(f"line {n}: {s or 'no status'}" for n, s in zip(lines, statuses, strict=True))
        conflict = len(set(statuses)) > 1
        report.add(
            Finding(
                code="duplicate-result",
                severity="warning",
                file=files[number],
                line=keep,
                request_id=request_id,
                message=(
                    f"request_id {request_id!r} has {len(lines)} result lines ({shown})"
                    f"{' that disagree' if conflict else ''}; line {keep} is kept, the request counts once"
                ),
            )
        )
    return kept.sort(["shard", "result_line"])


def _reconcile(units: pl.DataFrame, shards: pl.DataFrame, outputs: pl.DataFrame) -> pl.DataFrame:
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
    state = pl.col("journal_state")
    batch = pl.col("batch_status")
    status = pl.col("result_status")
    has_line = pl.col("result_line").is_not_null()
    line_outcome = (
        pl.when(status == "COMPLETED")
        .then(pl.lit("completed"))
        .when(status == "REJECTED")
        .then(pl.lit("rejected"))
        .when(status.is_null() & pl.col("output_url").is_not_null())
        .then(pl.lit("completed"))
        .otherwise(pl.lit("failed"))
    )
    outcome = (
        pl.when(pl.col("status") != "ok")
        .then(pl.lit("invalid"))
        .when(state.is_null() | state.is_in(["pending", "refused"]))
        .then(pl.lit("unsubmitted"))
        .when((state != "submitted") | batch.is_null() | ~batch.is_in(_TERMINAL))
        .then(pl.lit("pending"))
        .when(has_line)
        .then(line_outcome)
        .when(pl.col("downloaded"))
        .then(pl.lit("missing"))
        .when(pl.col("has_url"))
        .then(pl.lit("pending"))
        .when(batch == "FAILED")
        .then(pl.lit("failed"))
        .otherwise(pl.lit("missing"))
    )
    joined = joined.with_columns(outcome.alias("outcome"))
    o = pl.col("outcome")
    refused = (o == "unsubmitted") & (state == "refused")
    line_code = (
        pl.when(status.is_null())
        .then(pl.lit("result-without-status"))
        .when(status.is_in(_UNFINISHED))
        .then(pl.lit("result-not-finished"))
        .otherwise(status.str.to_lowercase())
    )
    error_code = (
        pl.when(o == "invalid")
        .then(pl.coalesce(pl.col("code"), pl.lit("invalid")))
        .when(refused)
        .then(pl.lit("shard-refused"))
        .when(o == "missing")
        .then(pl.lit("missing-result"))
        .when((o == "failed") & ~has_line)
        .then(pl.lit("batch-failed"))
        .when(o.is_in(["failed", "rejected"]))
        .then(pl.coalesce(pl.col("result_code"), line_code))
        .otherwise(pl.lit(None, pl.String))
    )
    shown_status = pl.coalesce(status, pl.lit("no status"))
    error_message = (
        pl.when(o == "invalid")
        .then(pl.col("message"))
        .when(refused)
        .then(
            pl.concat_str(pl.lit("the server refused its shard: "), pl.coalesce("batch_message", pl.lit("?")))
        )
        .when(o == "unsubmitted")
        .then(pl.lit("its shard has not been submitted (run `batchkit submit DIR`)"))
        .when((o == "pending") & (state == "intent"))
        .then(pl.lit("its shard's submission was interrupted; run `batchkit submit DIR` to settle it"))
        .when((o == "pending") & pl.col("has_url") & ~pl.col("downloaded"))
        .then(
            pl.coalesce(
                pl.concat_str(pl.lit("its results could not be downloaded: "), "download_error"),
                pl.lit("its batch finished; its results are not downloaded yet (run `batchkit results DIR`)"),
            )
        )
        .when(o == "pending")
        .then(pl.concat_str(pl.lit("its batch is "), pl.coalesce(batch, pl.lit("not reported yet"))))
        .when((o == "missing") & pl.col("downloaded"))
        .then(pl.lit("its batch finished without a result line for this request"))
        .when(o == "missing")
        .then(pl.lit("its batch finished without a results file (empty outputUrl)"))
        .when((o == "failed") & ~has_line)
        .then(
            pl.concat_str(
                pl.lit("the whole batch failed without results"),
                pl.concat_str(pl.lit(": "), "batch_message"),
                ignore_nulls=True,
            )
        )
        .when(o.is_in(["failed", "rejected"]))
        .then(pl.coalesce("result_message", pl.concat_str(pl.lit("the result line says "), shown_status)))
        .otherwise(pl.lit(None, pl.String))
    )
    completed = o == "completed"
    return joined.with_columns(
        error_code.alias("error_code"),
        error_message.alias("error_message"),
        pl.when(completed).then(pl.col("output_url")).alias("output_url"),
        pl.when(completed).then(pl.col("output_duration")).alias("output_duration"),
        pl.when(o.is_in(["completed", "failed", "rejected"]))
        .then(pl.col("generation_id"))
        .alias("generation_id"),
    )


def _realtime_overlay(joined: pl.DataFrame, folder: Path, file: str) -> pl.DataFrame:
    """A ``retry --realtime`` directory: outcomes come from its journal of generations, not from batches."""
    from ._realtime import realtime_outcomes, realtime_results

    outcomes = realtime_outcomes(folder)
    finished = pl.DataFrame(realtime_results(folder), schema=_OUTPUT_SCHEMA).select(
        "request_id", *[pl.col(c).alias(f"_rt_{c}") for c in _OUTPUT_SCHEMA if c != "request_id"]
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


def _held_overlay(joined: pl.DataFrame, folder: Path, file: str, consumed_by: str | None) -> pl.DataFrame:
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


def _outcome_findings(joined: pl.DataFrame, shards: pl.DataFrame, report: Report) -> None:
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


# -- the source rows -----------------------------------------------------------------------------------------


def _with_source(
    manifest: Manifest, folder: Path, joined: pl.DataFrame, override: Any, report: Report
) -> pl.DataFrame:
    """Prepend the source's own columns (as read, all strings) to every unit, by (source, row)."""
    frames: list[pl.DataFrame] = []
    columns: list[str] = []
    each = list(manifest.each)
    taken = {*RESULT_COLUMNS, *each, "row", "source", "_unit", "_source"}
    assigned: dict[str, str] = {}
    single = len(manifest.sources) == 1
    for index, info in enumerate(manifest.sources):
        if info.format == "jsonl":  # built by `batchkit shard`: the lines are the rows; nothing to add
            continue
        src, trusted = _open_source(info, folder, override if single else None)
        rows = src.read_all().select(ROW, *src.columns)
        if not trusted:
            _check_identity(manifest, info, src, rows, joined.filter(pl.col("source") == index), report)
        names: dict[str, str] = {}
        for column in src.columns:
            name = assigned.get(column)
            if name is None:  # first seen: keep its name unless a column results add (or the join) needs it
                name = column
                while name in taken:
                    name = f"source_{name}"
                assigned[column] = name
                taken.add(name)
                columns.append(name)
            names[column] = name
        frames.append(
            rows.rename({ROW: "row", **names}).with_columns(pl.lit(index, pl.Int32).alias("_source"))
        )
    rows_frame = (
        pl.concat(frames, how="diagonal_relaxed")
        if frames
        else pl.DataFrame(schema={"row": pl.Int64, "_source": pl.Int32})
    )
    return joined.join(
        rows_frame,
        left_on=["source", "row"],
        right_on=["_source", "row"],
        how="left",
        maintain_order="left",
    ).select(
        *columns,
        *each,
        "request_id",
        *([RETRY_OF] if RETRY_OF in joined.columns else []),  # a retry directory: the request_id it retries
        pl.col("shard_file").alias("shard"),
        *RESULT_COLUMNS[2:],
    )


def _open_source(info: SourceInfo, folder: Path, override: Any) -> tuple[Source, bool]:
    """The source's rows, and whether they are certainly the ones built from (same bytes)."""
    if override is not None:
        src = read_source(override, sheet=info.sheet)
    elif info.snapshot:
        src = read_source(folder / info.snapshot)
    elif info.path is None:
        msg = f"{info.name} was built from memory without a snapshot; pass source= the same DataFrame"
        raise ResultsError(msg)
    else:
        path = Path(info.path)
        if not path.exists():
            msg = (
                f"the source {path} is gone (moved or deleted); pass --source (source=) with where it is now"
            )
            raise ResultsError(msg)
        src = read_source(path, sheet=info.sheet)
    return src, bool(info.sha256 and src.sha256 == info.sha256)


def _check_identity(
    manifest: Manifest, info: SourceInfo, src: Source, rows: pl.DataFrame, units: pl.DataFrame, report: Report
) -> None:
    """Derive every request_id again from its row; refuse the join unless they all match the build's."""
    problems: list[str] = []
    present = rows.select(pl.col(ROW).alias("row"))
    lost = units.select("row").unique().join(present, on="row", how="anti").sort("row")
    if lost.height:
        problems.append(f"{lost.height:,} row(s) the build used are not in it (first: row {lost['row'][0]})")
    if manifest.mapping is None:
        problems.append("the build has no mapping to check its rows against")
    else:
        problems.extend(_request_id_problems(manifest, rows, units))
    if problems:
        msg = (
            f"{src.name} is not the source this build was made from: {'; '.join(problems)}. Joining it would "
            "put results on the wrong rows; restore the original file or pass --source (source=) with it"
        )
        raise ResultsError(msg)
    if info.sha256 is not None and src.sha256 is not None:
        report.add(
            Finding(
                code="source-changed",
                severity="warning",
                source=src.name,
                message=(
                    f"{src.name} changed since the build (its sha256 differs), but every request_id still "
                    "matches its row, so the results are joined to it"
                ),
            )
        )


def _request_id_problems(manifest: Manifest, rows: pl.DataFrame, units: pl.DataFrame) -> list[str]:
    try:
        plans = load_mapping(manifest.mapping or {}).compile(manifest.limits)
    except BatchkitError as exc:
        return [f"the build's mapping cannot be read ({exc})"]
    ok = units.filter((pl.col("status") == "ok") & pl.col("request_id").is_not_null())
    if RETRY_OF in ok.columns:  # a `batchkit retry` directory: c020.r2 retries the request c020 of its row
        ok = ok.with_columns(pl.col("request_id").str.replace(r"\.r[1-9][0-9]*$", ""))
    for plan in plans:
        node = plan.request_id
        if isinstance(node, Const):
            expected = pl.lit(str(node.value), pl.String)
        else:
            gone = [c for c in node.columns if c not in rows.columns]
            if gone:
                return [f"it has no column {gone[0]!r}, which request ids are made from"]
            parts = [pl.col(p.name) if isinstance(p, Column) else pl.lit(p, pl.String) for p in node.parts]
            expected = pl.concat_str(parts)
        mine = ok
        for name, value in plan.values.items():
            mine = mine.filter(pl.col(name) == value)
        check = mine.select("row", "request_id").join(
            rows.select(pl.col(ROW).alias("row"), expected.alias("_expected")), on="row", how="left"
        )
        bad = check.filter(pl.col("_expected").is_null() | (pl.col("_expected") != pl.col("request_id")))
        if bad.height:
            row, sent, now = bad.sort("row").select("row", "request_id", "_expected").row(0)
            return [
                f"{bad.height:,} row(s) no longer give the request_id the build sent (row {row} gives "
                f"{now!r}, the build sent {sent!r})"
            ]
    return []
