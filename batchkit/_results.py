"""Results: download every batch's output.jsonl, join it back to the source rows, and reconcile.

Every request unit of the build (a source row, or one ``each`` expansion of it) gets exactly one outcome:

=============== ==========================================================================================
``completed``   the generation finished; ``output_url`` is the video
``failed``      it failed (also: the whole batch FAILED without results)
``rejected``    Sync refused the request
``missing``     its batch finished, but its output.jsonl has no line for it
``invalid``     it never became a request: ``error_code`` says why (a build finding)
``pending``     its batch has not finished yet (or its results are not downloaded yet)
``unsubmitted`` its shard was never sent, or the server refused the shard
=============== ==========================================================================================

Results are matched on ``request_id`` within the shard's own batch, never by position, and never from the
batch-level status alone (a COMPLETED batch can hold failed rows). Output lines for ids the shard never sent
are ``unexpected-result`` findings; an id reported twice is a ``duplicate-result`` finding (a COMPLETED line
wins, else the last one).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl

from ._client import Client
from ._errors import ResultsError
from ._journal import JOURNAL_FILE, Journal, ShardRecord
from ._manifest import Manifest, file_sha256, load_manifest, verify_shards
from ._outputs import read_output
from ._report import Finding, Report
from ._sources import ROW, read_source
from ._submit import refresh

__all__ = ["OUTCOMES", "RESULT_COLUMNS", "Results", "collect_results", "download_results"]

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
RESULTS_DIR: Final = "results"
_STATUS_OUTCOME: Final = {"COMPLETED": "completed", "REJECTED": "rejected"}


@dataclass(slots=True)
class Results:
    """The joined table (one row per request unit) with its findings and a summary."""

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
        codes = self.frame.get_column("error_code").drop_nulls().to_list()
        return dict(Counter(codes).most_common())

    def summary(self) -> dict[str, Any]:
        return {"units": self.frame.height, "outcomes": self.outcomes, "error_codes": self.error_codes}

    def write(self, path: str | Path) -> Path:
        """Export the table; the format follows the suffix (``.csv``, ``.parquet``, ``.xlsx``, ``.jsonl``)."""
        from ._export import export_frame

        return export_frame(self.frame, path)


def download_results(directory: str | Path, *, client: Client | None = None) -> list[Path]:
    """Fetch the output.jsonl of every finished batch into ``DIR/results/`` (skipping what is already there).

    Files are named after their batch (``results/<batch_id>.output.jsonl``) and appear only when complete,
    so one on disk never needs fetching again.
    """
    folder = Path(directory)
    api = client if client is not None else Client()
    fetched: list[Path] = []
    with Journal.open(folder, create=False) as journal:
        shards = refresh(journal, api)
    for shard in shards:
        dest = _output_path(folder, shard)
        if dest is None or dest.exists() or not shard.output_url:
            continue
        log.info("downloading the results of %s (%s)", shard.file, shard.batch_id)
        fetched.append(api.batches.download(shard.output_url, dest))
    return fetched


def _output_path(folder: Path, shard: ShardRecord) -> Path | None:
    if shard.batch_id is None or not shard.terminal:
        return None
    return folder / RESULTS_DIR / f"{shard.batch_id}.output.jsonl"


def collect_results(
    directory: str | Path,
    *,
    client: Client | None = None,
    download: bool = True,
    source: str | Path | Any | None = None,
) -> Results:
    """Join the build's request units with their batches' results and their source rows.

    With ``download`` (the default) finished batches' results are fetched first (needs the API); without it,
    only what is already in ``DIR/results/`` is used. ``source`` replaces the source recorded in the manifest
    (a moved file, or the DataFrame an in-memory build came from).
    """
    folder = Path(directory)
    manifest = load_manifest(folder)
    report = Report(limits=manifest.limits)
    for finding in verify_shards(folder, manifest):
        report.add(finding)
    units = manifest.requests_frame()
    _check_requests(folder, manifest, units, report)
    if download and (folder / JOURNAL_FILE).exists():
        download_results(folder, client=client)
    shards = _journal_shards(folder, manifest, report)
    outputs = _read_outputs(folder, manifest, shards, units, report)
    joined = _join(manifest, units, shards, outputs)
    frame = _with_source(manifest, folder, joined, source)
    return Results(frame=frame, report=report)


def _check_requests(folder: Path, manifest: Manifest, units: pl.DataFrame, report: Report) -> None:
    """Findings for a requests.parquet or manifest edited by hand."""
    path = folder / manifest.requests.file
    digest, _, _ = file_sha256(path)
    if digest != manifest.requests.sha256 or units.height != manifest.requests.rows:
        report.add(
            Finding(
                code="manifest-changed",
                severity="error",
                file=manifest.requests.file,
                message=(
                    f"{manifest.requests.file} does not match manifest.json ({units.height:,} rows, "
                    f"manifest says {manifest.requests.rows:,}); results are joined by request_id anyway"
                ),
            )
        )
    ids = units.get_column("request_id").drop_nulls()
    for request_id in ids.filter(ids.is_duplicated()).unique(maintain_order=True).to_list():
        report.add(
            Finding(
                code="duplicate-request-id",
                severity="error",
                file=manifest.requests.file,
                request_id=request_id,
                message=f"request_id {request_id!r} belongs to more than one unit; they share one result",
            )
        )


def _journal_shards(folder: Path, manifest: Manifest, report: Report) -> dict[str, ShardRecord]:
    if not (folder / JOURNAL_FILE).exists():
        return {}
    with Journal.open(folder, create=False) as journal:
        records = {s.file: s for s in journal.shards()}
    for shard in manifest.shards:
        record = records.get(shard.file)
        if record is not None and record.sha256 != shard.sha256:
            report.add(
                Finding(
                    code="shard-changed",
                    severity="error",
                    file=shard.file,
                    message=(
                        f"{shard.file} was rebuilt after it was submitted as {record.batch_id}; its results "
                        "are joined by request_id, but the build no longer describes what was sent"
                    ),
                )
            )
    return records


def _read_outputs(
    folder: Path,
    manifest: Manifest,
    shards: dict[str, ShardRecord],
    units: pl.DataFrame,
    report: Report,
) -> pl.DataFrame:
    """One row per kept output line, tagged with its shard number; findings for the rest."""
    frames: list[pl.DataFrame] = []
    for number, info in enumerate(manifest.shards, 1):
        record = shards.get(info.file)
        path = _output_path(folder, record) if record is not None else None
        if path is None or not path.exists():
            continue
        columns, findings = read_output(path)
        for finding in findings:
            report.add(finding)
        frame = pl.DataFrame(columns, schema=_OUTPUT_SCHEMA).with_columns(
            pl.lit(number, pl.Int32).alias("shard")
        )
        frames.append(_dedupe(frame, path, report))
    if not frames:
        return pl.DataFrame(schema={**_OUTPUT_SCHEMA, "shard": pl.Int32})
    outputs = pl.concat(frames)
    known = units.select("request_id", pl.col("shard").alias("home")).drop_nulls()
    tagged = outputs.join(known, on="request_id", how="left", nulls_equal=False)
    stray = tagged.filter(pl.col("home").is_null() | (pl.col("home") != pl.col("shard")))
    for row in stray.iter_rows(named=True):
        record = shards[manifest.shards[row["shard"] - 1].file]
        home = row["home"]
        why = "the build never sent it" if home is None else f"it belongs to shard {home}, not this batch"
        report.add(
            Finding(
                code="unexpected-result",
                severity="error",
                file=str(_output_path(folder, record)),
                line=row["result_line"],
                request_id=row["request_id"],
                message=f"a result for request_id {row['request_id']!r}, but {why}; it is ignored",
            )
        )
    return tagged.filter(pl.col("home") == pl.col("shard")).drop("home")


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


def _dedupe(frame: pl.DataFrame, path: Path, report: Report) -> pl.DataFrame:
    """One line per request_id: a COMPLETED line wins, else the last; each extra line is a finding."""
    dup = frame.filter(pl.col("request_id").is_duplicated())
    if dup.is_empty():
        return frame
    for request_id, lines in dup.group_by("request_id", maintain_order=True).agg("result_line").iter_rows():
        report.add(
            Finding(
                code="duplicate-result",
                severity="warning",
                file=str(path),
                line=lines[-1],
                request_id=request_id,
                message=f"request_id {request_id!r} has {len(lines)} result lines ({lines}); one is kept",
            )
        )
    ranked = frame.with_columns((pl.col("result_status") == "COMPLETED").fill_null(False).alias("_won"))
    kept = ranked.sort(["_won", "result_line"]).unique("request_id", keep="last", maintain_order=False)
    return kept.drop("_won").sort("result_line")


def _join(
    manifest: Manifest, units: pl.DataFrame, shards: dict[str, ShardRecord], outputs: pl.DataFrame
) -> pl.DataFrame:
    """Every unit with its outcome, by the rules in the module docstring."""
    shard_rows = []
    for number, info in enumerate(manifest.shards, 1):
        record = shards.get(info.file)
        shard_rows.append(
            {
                "shard": number,
                "shard_file": info.file,
                "batch_id": record.batch_id if record is not None else None,
                "journal_state": record.state if record is not None else None,
                "batch_status": record.status if record is not None else None,
                "batch_message": record.message if record is not None else None,
                "has_output": bool(record is not None and record.terminal and record.output_url),
            }
        )
    shard_frame = pl.DataFrame(
        shard_rows,
        schema={
            "shard": pl.Int32,
            "shard_file": pl.String,
            "batch_id": pl.String,
            "journal_state": pl.String,
            "batch_status": pl.String,
            "batch_message": pl.String,
            "has_output": pl.Boolean,
        },
    )
    joined = (
        units.with_row_index("_unit")
        .join(shard_frame, on="shard", how="left")
        .join(
            outputs.rename({"error_code": "result_code", "error_message": "result_message"}),
            on=["request_id", "shard"],
            how="left",
        )
        .sort("_unit")
    )
    status = pl.col("result_status")
    outcome = (
        pl.when(pl.col("status") == "invalid")
        .then(pl.lit("invalid"))
        .when(pl.col("journal_state").is_null() | (pl.col("journal_state") != "submitted"))
        .then(pl.lit("unsubmitted"))
        .when(pl.col("batch_status").is_in(["COMPLETED", "FAILED"]).not_())
        .then(pl.lit("pending"))
        .when(status.is_not_null())
        .then(status.replace_strict(_STATUS_OUTCOME, default="failed", return_dtype=pl.String))
        .when(pl.col("has_output"))
        .then(pl.lit("missing"))
        .when(pl.col("batch_status") == "FAILED")
        .then(pl.lit("failed"))
        .otherwise(pl.lit("pending"))
    )
    joined = joined.with_columns(outcome.alias("outcome"))
    o = pl.col("outcome")
    error_code = (
        pl.when(o == "invalid")
        .then(pl.col("code"))
        .when((o == "unsubmitted") & (pl.col("journal_state") == "refused"))
        .then(pl.lit("shard-refused"))
        .when(o == "missing")
        .then(pl.lit("missing-result"))
        .when((o == "failed") & status.is_null())
        .then(pl.lit("batch-failed"))
        .when(o.is_in(["failed", "rejected"]))
        .then(pl.coalesce(pl.col("result_code"), status.str.to_lowercase()))
        .otherwise(pl.lit(None, pl.String))
    )
    error_message = (
        pl.when(o == "invalid")
        .then(pl.col("message"))
        .when((o == "unsubmitted") & (pl.col("journal_state") == "refused"))
        .then(pl.col("batch_message"))
        .when(o == "unsubmitted")
        .then(pl.lit("its shard has not been submitted"))
        .when(o == "missing")
        .then(pl.lit("the batch finished without a result line for this request"))
        .when((o == "failed") & status.is_null())
        .then(pl.lit("the whole batch failed without results"))
        .when(o.is_in(["failed", "rejected"]))
        .then(pl.col("result_message"))
        .when(o == "pending")
        .then(pl.lit("its batch has not finished (or its results are not downloaded yet)"))
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
        pl.col("shard_file").alias("shard_name"),
    )


def _with_source(manifest: Manifest, folder: Path, joined: pl.DataFrame, override: Any) -> pl.DataFrame:
    """Prepend the source's own columns (as read, all strings) to every unit, by (source, row)."""
    frames: list[pl.DataFrame] = []
    columns: list[str] = []
    for index, info in enumerate(manifest.sources):
        if override is not None and len(manifest.sources) == 1:
            src = read_source(override, sheet=info.sheet)
        elif info.format == "jsonl":  # built by `batchkit shard`: the lines are the rows; nothing to add
            continue
        elif info.snapshot:
            src = read_source(folder / info.snapshot)
        elif info.path is None:
            msg = f"{info.name} was built from memory without a snapshot; pass source= the same DataFrame"
            raise ResultsError(msg)
        else:
            path = Path(info.path)
            if not path.exists():
                msg = f"the source {path} is gone; pass --source (source=) with its new place"
                raise ResultsError(msg)
            src = read_source(path, sheet=info.sheet)
            if info.sha256 and src.sha256 and src.sha256 != info.sha256:
                msg = (
                    f"{path} changed since the build (sha256 differs), so its rows may no longer match "
                    "the requests; restore it, or rebuild and resubmit"
                )
                raise ResultsError(msg)
        names = {c: _source_name(c, manifest.each) for c in src.columns}
        for name in names.values():
            if name not in columns:
                columns.append(name)
        for chunk in src.chunks():
            part = chunk.select(ROW, *src.columns).rename(names)
            frames.append(part.with_columns(pl.lit(index, pl.Int32).alias("_source")))
    rows = (
        pl.concat(frames, how="diagonal_relaxed")
        if frames
        else pl.DataFrame(schema={ROW: pl.Int64, "_source": pl.Int32})
    )
    each = list(manifest.each)
    result = (
        joined.join(
            rows.rename({ROW: "row"}),
            left_on=[pl.col("source").cast(pl.Int32), "row"],
            right_on=["_source", "row"],
            how="left",
        )
        .sort("_unit")
        .select(
            *[pl.col(c) for c in columns],
            *[pl.col(c) for c in each],
            pl.col("request_id"),
            pl.col("shard_name").alias("shard"),
            *[pl.col(c) for c in RESULT_COLUMNS[2:]],
        )
    )
    return result


def _source_name(column: str, each: list[str]) -> str:
    """A source column keeps its name unless it would clash with a column results add."""
    clash = column in RESULT_COLUMNS or column in each or column in ("row", "source")
    return f"source_{column}" if clash else column
