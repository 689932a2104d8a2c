"""The source rows beside the outcomes: read the build's source again and join it to the units by row.

The rows come from the file recorded in the manifest (or ``source=`` when it moved), or from the build's
snapshot of an in-memory source, in the source's own column types: a Parquet file's or a DataFrame's ints,
floats and dates stay what they were (CSV, Excel and NDJSON stay text, as they were read). When that file changed since the build, every request_id is derived again
from its row with the build's mapping; the join goes ahead only if they all still match (a
``source-changed`` warning), so an output is never attached to the wrong row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import polars as pl

from .._build.held import RETRY_OF
from .._errors import BatchkitError, ResultsError
from .._mapping.mapping import load_mapping
from .._mapping.templates import Column, Const
from .._report import Finding, Report
from .._shard.builddir import Manifest, SourceInfo
from .._sources.source import ROW, Source, read_source

__all__ = ["CHAIN_COLUMNS", "RESULT_COLUMNS", "REUSE_COLUMNS", "source_columns", "with_source"]

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
#: The columns following a retry chain adds after them (:mod:`batchkit._results.chain`).
CHAIN_COLUMNS: Final = ("attempts", "settled_in")
#: The columns a ``build --reuse`` directory adds after ``request_id``: for a unit not sent because an
#: identical request completed before, where it completed and under which request_id (null for the others).
REUSE_COLUMNS: Final = ("reused_from", "reused_request_id")


def with_source(
    manifest: Manifest, folder: Path, joined: pl.DataFrame, override: Any, report: Report
) -> pl.DataFrame:
    """Prepend the source's own columns (in their own types) to every unit, by (source, row)."""
    frames: list[pl.DataFrame] = []
    columns: list[str] = []
    each = list(manifest.each)
    taken = {*RESULT_COLUMNS, *CHAIN_COLUMNS, *REUSE_COLUMNS, *each, "row", "source", "_unit", "_source"}
    assigned: dict[str, str] = {}
    single = len(manifest.sources) == 1
    for index, info in enumerate(manifest.sources):
        if info.format == "jsonl":  # built by `batchkit shard`: the lines are the rows; nothing to add
            continue
        src, trusted = _open_source(info, folder, override if single else None)
        if not trusted:
            text = src.read_all().select(ROW, *src.columns)
            _check_identity(manifest, info, src, text, joined.filter(pl.col("source") == index), report)
        rows = src.read_typed().select(ROW, *src.columns)
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
    rows_frame = _stack(frames)
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
        *[c for c in REUSE_COLUMNS if c in joined.columns],  # build --reuse: where a carried outcome is from
        pl.col("shard_file").alias("shard"),
        *RESULT_COLUMNS[2:],
    )


def _stack(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The rows of every source in one frame; a column typed differently in two sources becomes text."""
    if not frames:
        return pl.DataFrame(schema={"row": pl.Int64, "_source": pl.Int32})
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        keep = {"row", "_source"}
        return pl.concat(
            [f.with_columns(pl.col(c).cast(pl.String) for c in f.columns if c not in keep) for f in frames],
            how="diagonal_relaxed",
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
            expected = pl.concat_str([_part(p) for p in node.parts])
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


def _part(part: str | Column) -> pl.Expr:
    """One part of a request_id template over the source's text: literal text, a cell, or its fallback."""
    if not isinstance(part, Column):
        return pl.lit(part, pl.String)
    if part.fallback is None:
        return pl.col(part.name)
    cell = pl.col(part.name)
    return pl.when(cell.is_null() | ~cell.str.contains(r"\S")).then(pl.lit(part.fallback)).otherwise(cell)


def source_columns(frame: pl.DataFrame, manifest: Manifest) -> list[str]:
    """The columns of a joined results table that came from the source: those before the result columns."""
    first = manifest.each[0] if manifest.each else "request_id"
    return frame.columns[: frame.columns.index(first)]
