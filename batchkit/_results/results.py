"""Results: download every batch's output.jsonl, join it back to the source rows, and reconcile.

Every request unit of the build (a source row, or one ``[each]`` expansion of it) gets exactly one outcome,
one of :data:`OUTCOMES`: ``completed``, ``failed``, ``rejected``, ``missing``, ``invalid``, ``pending``,
``unsubmitted``, or, for units that are no request by design, ``skipped`` (an optional ``[each]`` value was
empty) and ``filtered`` (the mapping's ``[where]`` left the row out), by the rules in
:mod:`batchkit._results.outcomes`. The source's own rows come back beside the
outcomes (:mod:`batchkit._results.join`). This module reads what they start from: the build's units, what the journal
knows of each shard's batch, and the downloaded result lines.

Results are matched on ``request_id`` within the shard's own batch, never by position, and never from the
batch-level status alone (a COMPLETED batch can hold failed rows). A result line for an id the shard never
sent is an ``unexpected-result`` finding (the line is ignored); an id with several lines is a
``duplicate-result`` finding (a COMPLETED line wins, else the last one).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl

from .._api.client import Client, given_or_default
from .._errors import ConfigurationError, ResultsError
from .._files import file_sha256
from .._report import Finding, Report
from .._shard.builddir import JOURNAL, RESULTS_DIR, REUSED, SUBMISSION, Manifest, load_manifest, verify_shards
from .._submit.binding import open_journal
from .._submit.journal import ShardRecord
from .._submit.lock import try_directory_lock
from .._submit.submit import reconciler
from .chain import base_attempts, follow_retries
from .join import RESULT_COLUMNS, with_source
from .outcomes import (
    OUTPUT_SCHEMA,
    held_overlay,
    outcome_findings,
    pending_findings,
    realtime_overlay,
    reconcile,
)
from .outputs import COLUMNS, OutputUnreadable, download_outputs, download_results, output_path, read_output

__all__ = ["OUTCOMES", "RESULT_COLUMNS", "Results", "collect_results", "download_results"]

log = logging.getLogger("batchkit")

OUTCOMES: Final = (
    "completed",
    "failed",
    "rejected",
    "missing",
    "invalid",
    "pending",
    "unsubmitted",
    "skipped",
    "filtered",
)


@dataclass(slots=True)
class Results:
    """The joined table (one row per request unit, in source order) with its findings and a summary.

    ``frame`` is a polars DataFrame, whatever the source was; :meth:`to_pandas` gives a pandas one.
    """

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

    def to_pandas(self) -> Any:
        """The table as a pandas DataFrame (needs pandas and pyarrow): the source's columns keep their
        types, and a pandas source's index is its first column(s), under the index's name."""
        try:
            return self.frame.to_pandas()
        except ModuleNotFoundError as exc:
            msg = f"to_pandas needs pandas and pyarrow ({exc.name} is not installed): pip install pandas pyarrow"
            raise ConfigurationError(msg) from exc

    def write(self, path: str | Path) -> Path:
        """Export the table; the format follows the suffix (``.csv``, ``.parquet``, ``.xlsx``, ``.jsonl``)."""
        from .export import export_frame

        return export_frame(self.frame, path)


# -- joining -------------------------------------------------------------------------------------------------


def collect_results(
    directory: str | Path,
    *,
    client: Client | None = None,
    download: bool = True,
    source: str | Path | Any | None = None,
    follow: bool = True,
) -> Results:
    """Join the build's request units with their batches' results and their source rows.

    With ``download`` (the default) batch statuses are refreshed and finished batches' results fetched first
    (this needs the API only while something is left to fetch); without it, only what the journal and
    ``DIR/results/`` already hold is used. ``source`` replaces the source recorded in the manifest (a file
    that moved, or the DataFrame an in-memory build came from). With ``follow`` (the default) every unit
    shows its latest attempt across the directories it was retried into, with ``attempts`` and
    ``settled_in`` (:mod:`batchkit._results.chain`); ``follow=False`` shows this directory's own outcomes.
    """
    seen: set[Path] = set()

    def collect(folder: Path, override: Any) -> Results:
        seen.add(folder.resolve())
        results = _collect(folder, client=client, download=download, source=override)
        if not follow:
            return results
        frame = base_attempts(results.frame, folder)

        def later(target: Path) -> pl.DataFrame:
            if target.resolve() in seen:
                msg = f"{target} is already on this retry chain; retries.json or a manifest was edited"
                raise ResultsError(msg)
            found = collect(target, None)
            for finding in found.report.findings:  # the others are its own: `batchkit results DIR2`
                if finding.code == "retry-not-followed":
                    results.report.add(finding)
            return found.frame

        return Results(frame=follow_retries(folder, frame, later, results.report), report=results.report)

    return collect(Path(directory), source)


def _collect(
    folder: Path, *, client: Client | None, download: bool, source: Any, rows: bool = True
) -> Results:
    """The results of one directory, not followed (``rows=False``: the units' outcomes without their source
    rows, in requests.parquet's order with its columns, as :func:`batchkit.find_reusable` reads them)."""
    manifest = load_manifest(folder)
    report = Report(limits=manifest.limits)
    for finding in verify_shards(folder, manifest):
        report.add(finding)
    units = _load_units(folder, manifest, report)
    records: dict[str, ShardRecord] = {}
    failures: dict[str, str] = {}
    _check_results_dir(folder, report)
    if (folder / JOURNAL).exists() or (folder / SUBMISSION).exists():
        with open_journal(folder) as journal:
            records = {s.file: s for s in journal.shards()}
            retired = journal.retired()
        if download and _needs_api(folder, records.values()):
            with (
                given_or_default(client) as api,
                try_directory_lock(folder, "batchkit results") as held,
                open_journal(folder, client=api) as journal,
            ):
                ctx = reconciler(folder, journal, api, None) if held else None
                _, failures = download_outputs(folder, journal, api, ctx)
                records = {s.file: s for s in journal.shards()}
        for row in retired:
            report.add(
                Finding(
                    code="shard-retired",
                    severity="warning",
                    file=row["file"],
                    message=(
                        f"{row['file']} ({row['state']}{', batch ' + row['batch_id'] if row['batch_id'] else ''}) "
                        "is no longer in the manifest (the directory was rebuilt); its journal row was retired "
                        "and its results are not joined"
                    ),
                )
            )
    shards = _shard_frame(folder, manifest, records, failures, report)
    outputs, shards = _read_outputs(shards, units, report)
    joined = reconcile(units, shards, outputs)
    if manifest.unsharded is not None and manifest.unsharded.mode == "realtime":
        joined = realtime_overlay(joined, folder, manifest.unsharded.file)
    elif manifest.unsharded is not None:
        joined = held_overlay(joined, folder, manifest.unsharded.file, manifest.unsharded.consumed_by)
    if (folder / REUSED).is_file():
        from .reused import reused_overlay

        joined = reused_overlay(joined, folder)
    outcome_findings(joined, shards, report)
    if not rows:
        return Results(frame=joined, report=report)
    pending_findings(shards, report)
    frame = with_source(manifest, folder, joined, source, report)
    return Results(frame=frame, report=report)


def _needs_api(folder: Path, records: Any) -> bool:
    """Something the server must still say: a batch running, a results file not fetched, a create unsettled."""
    for record in records:
        if record.state == "intent":
            return True
        if record.state != "submitted":
            continue
        path = output_path(folder, record)
        if path is None or record.provisional:  # running, or adopted and not checked by content yet
            return True
        if not path.is_file() and (record.output_url or record.status != "FAILED"):
            return True  # not fetched yet, or finished without an outputUrl: ask again
    return False


_UNIT_COLUMNS: Final = ("request_id", "row", "shard", "status")


def _check_results_dir(folder: Path, report: Report) -> None:
    """``DIR/results`` must be a directory (or absent): each batch's results are kept there."""
    where = folder / RESULTS_DIR
    if where.exists() and not where.is_dir():
        report.add(
            Finding(
                code="unreadable-output",
                severity="error",
                file=str(where),
                message=(
                    f"{where} is not a directory, so no batch's results can be kept or read there; their "
                    "requests stay pending. Move it away and run `batchkit results` again"
                ),
            )
        )


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
    "provisional": pl.Boolean,
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
                "downloaded": bool(path is not None and os.path.lexists(path) and _exists(path)),
                "download_error": failures.get(info.file),
                "provisional": bool(record is not None and record.provisional),
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


def _exists(path: Path) -> bool:
    """An output file is there (a FIFO or a directory in its place counts too: reading it says what it is)."""
    try:
        return path.exists() or path.is_symlink()
    except OSError:
        return True


def _read_outputs(
    shards: pl.DataFrame, units: pl.DataFrame, report: Report
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per (shard, request_id) of the downloaded results, for requests the shard sent; findings for
    the rest (unreadable lines, duplicates, ids the shard never sent). A results file that cannot be read at
    all is an ``unreadable-output`` finding, and its shard counts as not downloaded (its requests pending)."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    numbers: list[int] = []
    files: dict[int, str] = {}
    unreadable: dict[int, str] = {}
    for number, path in shards.filter("downloaded").select("shard", "output_file").iter_rows():
        try:
            found, findings = read_output(path)
        except OutputUnreadable as exc:
            unreadable[number] = str(exc)
            report.add(
                Finding(
                    code="unreadable-output",
                    severity="error",
                    file=path,
                    message=f"{exc}; its batch's requests stay pending: delete the file to download it again",
                )
            )
            continue
        for finding in findings:
            report.add(finding)
        for name in COLUMNS:
            columns[name].extend(found[name])
        numbers.extend([number] * len(found["request_id"]))
        files[number] = path
    if unreadable:
        gone = pl.DataFrame(
            {"shard": list(unreadable), "_why": list(unreadable.values())},
            schema={"shard": pl.Int32, "_why": pl.String},
        )
        shards = (
            shards.join(gone, on="shard", how="left", maintain_order="left")
            .with_columns(
                pl.col("downloaded") & pl.col("_why").is_null(),
                pl.coalesce("_why", "download_error").alias("download_error"),
            )
            .drop("_why")
        )
    outputs = pl.DataFrame(columns, schema=OUTPUT_SCHEMA).with_columns(
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
    return outputs, shards


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
