"""Build: source rows → canonical batch lines (columnar) + provenance → validated, balanced shards.

The common work is columnar: per chunk, polars expressions (:mod:`batchkit._build.columnar`) render every
template, check every value with patterns that are at least as strict as the validator's checks, and
serialize every line. Only rows those patterns flag (an empty cell, a URL that is not plainly valid, a
newline in a script, ...) go through Python, where :func:`batchkit._wire.rules.line_problems` (the validator's
own rules) says exactly what is wrong, re-located to the source row and column. A line is written only when
the validator would accept it.

Lines and provenance are spilled to disk as they are made, duplicates of ``request_id`` are found over the
whole source from 64-bit hashes (confirmed on the ids themselves), and then :func:`batchkit._shard.write.finish`
writes the shards, ``requests.parquet``, ``report.json`` and ``manifest.json``.

``include_held`` adds the requests a ``batchkit retry --hold`` kept (see :mod:`batchkit._retry.retry`) after
the source's own lines: validated like them, checked for request_id collisions with them, keeping their own
source rows (their sources are appended to the manifest's), and their directories are marked consumed.
"""

from __future__ import annotations

import difflib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import polars as pl

from .._errors import InputError
from .._files import writing
from .._mapping.mapping import Mapping, load_mapping
from .._mapping.select import RowFilter
from .._mapping.templates import Leaf, UnitPlan
from .._report import Finding, Report, Severity
from .._shard.builddir import SourceInfo
from .._shard.plan import expected_layout
from .._shard.spill import Spill
from .._shard.write import (
    BuildResult,
    Progress,
    fail_build,
    finish,
    prepare_out_dir,
    safe_name,
    start_report,
)
from .._sources.source import ISSUE, ISSUE_MESSAGE, ROW, SOURCE_LINE, Source, read_source
from .._wire.checks import request_id_problem
from .._wire.crossfield import show
from .._wire.limits import Limits
from .._wire.rules import line_problems
from .columnar import blank_column, filter_exprs, frame_exprs
from .options import BuildOptions

if TYPE_CHECKING:
    from .held import HeldRequests

__all__ = ["BuildResult", "LineMaker", "build", "missing_column"]

log = logging.getLogger("batchkit")

_UNIT_SCHEMA: dict[str, Any] = {
    "row": pl.Int64,
    "source_line": pl.Int64,
    "request_id": pl.String,
    "line": pl.String,
    "status": pl.String,
    "code": pl.String,
    "message": pl.String,
    "usable": pl.Boolean,
}


def build(
    source: Any,
    mapping: Mapping | dict[str, Any] | str | Path,
    out_dir: str | Path,
    options: BuildOptions | None = None,
    *,
    progress: Progress | None = None,
) -> BuildResult:
    """Turn a source (path, DataFrame, Table or :class:`Source`) into a build directory of shards.

    ``mapping`` is a :class:`Mapping`, a dict, or a TOML path; ``options`` (:class:`BuildOptions`) say how
    to read the source, name the shards, and what to do with invalid rows. By default any invalid row fails
    the build: ``report.json`` is written, no shard and no manifest, and :class:`ValidationFailed` is raised;
    with ``skip_invalid`` the valid rows are written and the rest reported. ``progress(rows_done,
    rows_total)`` is called after each chunk (``rows_total`` is estimated for CSV; None when unknown).
    A directory that was already submitted (it has ``journal.sqlite``) is refused unless ``force``.
    """
    opts = options or BuildOptions()
    plan = load_mapping(mapping)
    src = read_source(source, **opts.read_options())
    folder = prepare_out_dir(out_dir, force=opts.force)
    held = _load_held(opts.include_held, folder)
    stem = safe_name(opts.name or (src.path.stem if src.path is not None else "batch"))
    job = _Job(src, plan, folder, stem, held, opts, progress)
    report = start_report(folder, opts.limits)
    try:
        result = _build(job, report)
    except BaseException:
        report.discard()
        raise
    if held.parts:
        from .held import mark_consumed

        mark_consumed(held, folder)
    return result


@dataclass(frozen=True)
class _Job:
    """One build: what it reads, where it writes, and how."""

    src: Source
    plan: Mapping
    folder: Path
    stem: str
    held: HeldRequests
    opts: BuildOptions
    progress: Progress | None


def _build(job: _Job, report: Report) -> BuildResult:
    src, folder, stem, held, opts = job.src, job.folder, job.stem, job.held, job.opts
    limits = opts.limits
    for finding in src.findings:
        report.add(finding)
    each = job.plan.each_names
    clash = [variable for variable in each if variable in src.columns]
    if clash:
        msg = (
            f"[each] variable {clash[0]!r} is also a column of {src.name}, so {{{clash[0]}}} would be "
            "ambiguous; rename the variable"
        )
        raise InputError(msg, path=src.path, column=clash[0])
    missing = [column for column in job.plan.columns_used() if column not in src.columns]
    if missing:
        for column in missing:
            report.add(missing_column(src, column))
        raise fail_build(folder, stem, report)
    units = job.plan.compile(limits)
    _constant_warnings(units, src, report)
    total = src.count_rows()
    layout = expected_layout(total * len(units) + held.count if total is not None else None, limits)
    names = [src.name, *(info.name for info in held.sources)]
    spilled_each = each + [v for v in held.each if v not in each]
    extra = [_RETRY_OF] if held.parts else []
    with writing(folder), Spill(folder, spilled_each, name=stem, layout=layout, extra=extra) as spill:
        maker = LineMaker(src, units, limits, each, job.plan.row_filter)
        rows = _read_rows(job, maker, spill, report, total)
        if maker.filtered_rows:
            report.add(maker.filtered_note())
        held.add_to(spill, report, limits, names.__getitem__)
        spill.close()  # every line and provenance file is on disk from here on
        if rows == 0:
            msg = f"{src.name} has no data rows (a header only, or blank rows); add rows below the header"
            raise InputError(msg, path=src.path)
        excluded, updates = _duplicates(spill, report, names, units, spilled_each)
        copies, reused = list(held.copies), 0
        if opts.reuse is not None or opts.probe is not None:
            from .passes import preflight

            passed = preflight(spill, report, opts, names, units, spilled_each, excluded, updates)
            excluded, updates, reused = passed.excluded, passed.updates, passed.reused
            copies.extend(passed.copies)
        report.findings.sort(key=lambda f: (f.row is not None, f.row or 0))
        valid = spill.spilled - len(excluded)
        report.stats.lines = rows
        report.stats.records = spill.units
        report.stats.valid_records = valid + reused
        if valid + reused + spill.skipped + spill.filtered < spill.units and not opts.skip_invalid:
            raise fail_build(folder, stem, report, invalid_units=_invalid_units(spill, updates))
        info = SourceInfo(
            name=src.name,
            path=str(src.path) if src.path is not None else None,
            format=src.format,
            sheet=src.sheet,
            sha256=src.sha256,
            bytes=src.bytes,
            rows=rows,
        )
        return finish(
            spill,
            out_dir=folder,
            name=stem,
            limits=limits,
            report=report,
            sources=[info, *held.sources],
            mapping=job.plan.to_dict(),
            rows=rows,
            excluded=excluded,
            updates=updates,
            snapshot=src.snapshot(),
            copies=copies,
            # what is left after reuse may be too few for a batch: it is then sent one by one
            unsharded="realtime" if opts.reuse is not None and valid < limits.min_records else None,
        )


def _invalid_units(spill: Spill, updates: pl.DataFrame | None) -> dict[str, int]:
    """Invalid units by their first error code (what requests.parquet would say), most first."""
    counts = dict(
        spill.scan().filter(pl.col("status") == "invalid").group_by("code").len().collect().iter_rows()
    )
    if updates is not None and updates.height:
        counts["duplicate-request-id"] = counts.get("duplicate-request-id", 0) + updates.height
    return {
        str(code): int(n) for code, n in sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    }


def _constant_warnings(units: list[UnitPlan], src: Source, report: Report) -> None:
    """The warnings of values set in the mapping itself: once for the whole build, not once per row."""
    seen: set[tuple[str, str]] = set()
    for unit in units:
        for problem in unit.constant_warnings:
            if (problem.code, problem.pointer) not in seen:
                seen.add((problem.code, problem.pointer))
                report.add(
                    Finding(
                        code=problem.code,
                        severity=problem.severity,
                        message=f"{problem.message} (set in the mapping, so on every request)",
                        source=src.name,
                        pointer=problem.pointer,
                    )
                )


def _read_rows(job: _Job, maker: LineMaker, spill: Spill, report: Report, total: int | None) -> int:
    """Every chunk of the source through the line maker into the spill; the number of rows read."""
    rows = 0
    for chunk in job.src.chunks(job.opts.chunk_rows, blank=True):
        blank = (chunk[ISSUE] == "blank-row").fill_null(False)
        if blank.any():
            for row, line in chunk.filter(blank).select(ROW, SOURCE_LINE).iter_rows():
                report.add(
                    Finding(
                        code="blank-row",
                        severity="warning",
                        message="the row is blank (every value empty); it was skipped",
                        source=job.src.name,
                        row=row,
                        source_line=line,
                    )
                )
            chunk = chunk.filter(~blank)
        rows += chunk.height
        if not chunk.height:
            continue
        frame, findings = maker.process(chunk)
        spill.add(frame)
        for finding in findings:
            report.add(finding)
        if job.progress is not None:
            done = int(chunk[ROW].max())  # type: ignore[arg-type]
            job.progress(done, max(total, done) if total is not None else None)
    return rows


_RETRY_OF: Final = "retry_of"
#: Helper columns of a chunk: the row is left out by [where], and why.
_LEFT_OUT: Final = "\x00left-out"
_WHY: Final = "\x00why"


def _filtered_units(made: pl.DataFrame) -> pl.DataFrame:
    """The units of the rows ``[where]`` left out, as ``requests.parquet`` records (outcome ``filtered``)."""
    return made.filter(pl.col(_LEFT_OUT)).select(
        "row",
        "source_line",
        "request_id",
        pl.lit(None, dtype=pl.String).alias("line"),
        pl.lit("filtered").alias("status"),
        pl.lit("filtered").alias("code"),
        pl.col(_WHY).alias("message"),
        pl.lit(False).alias("usable"),
    )


def _load_held(paths: Sequence[str | Path], folder: Path) -> HeldRequests:
    from .held import HeldRequests, load_held

    return load_held(paths, out_dir=folder, first_source=1) if paths else HeldRequests()


def missing_column(src: Source, column: str) -> Finding:
    lowered = {c.lower().strip(): c for c in src.columns}
    close = lowered.get(column.lower().strip()) or next(
        iter(difflib.get_close_matches(column, src.columns, n=1, cutoff=0.6)), None
    )
    hint = f"; did you mean {close!r}?" if close else f"; its columns are {', '.join(src.columns[:20])}"
    return Finding(
        code="missing-column",
        severity="error",
        source=src.name,
        column=column,
        message=f"the mapping reads column {column!r}, which {src.name} does not have{hint}",
    )


class LineMaker:
    """Makes the lines of one chunk: columnar for clean rows, the validator's rules for flagged ones."""

    def __init__(
        self, src: Source, units: list[UnitPlan], limits: Limits, each: list[str], row_filter: RowFilter
    ) -> None:
        self.src = src
        self.units = units
        self.limits = limits
        self.each = each
        self.exprs = [frame_exprs(unit, limits) for unit in units]
        self.columns = list(dict.fromkeys(c for unit in units for c in unit.columns))
        self.constant = {(p.code, p.pointer) for unit in units for p in unit.constant_warnings}
        self.row_filter = row_filter
        self.filtered_rows = 0  # rows [where] left out so far
        #: Mapped cells that hold a formula (read from a workbook): column → data row → formula.
        self.formulas = {c: cells for c, cells in src.formulas.items() if c in self.columns}

    def filtered_note(self) -> Finding:
        """The one finding that says how many rows ``[where]`` left out (their units are ``filtered``)."""
        return Finding(
            code="filtered-rows",
            severity="warning",
            source=self.src.name,
            message=(
                f"{self.filtered_rows:,} row(s) were left out by [where] ({self.row_filter.describe()}); "
                "their units are reported with the outcome filtered"
            ),
        )

    def process(self, chunk: pl.DataFrame) -> tuple[pl.DataFrame, list[Finding]]:
        chunk = chunk.with_columns(
            (pl.col(c).is_null() | ~pl.col(c).str.contains(r"\S")).alias(blank_column(c))
            for c in self.columns
        )
        filtering = bool(self.row_filter)
        if filtering:  # a row that cannot be read as the header says is invalid, whatever it holds
            left_out, why = filter_exprs(self.row_filter)
            chunk = chunk.with_columns((left_out & pl.col(ISSUE).is_null()).alias(_LEFT_OUT), why.alias(_WHY))
            self.filtered_rows += int(chunk[_LEFT_OUT].sum())
        parts: list[pl.DataFrame] = []
        findings: list[Finding] = []
        too_long = self.limits.max_bytes  # line + newline must fit in a file
        for unit, exprs in zip(self.units, self.exprs, strict=True):
            staged = chunk.with_columns(exprs.values) if exprs.values else chunk
            made = staged.select(
                pl.col(ROW).alias("row"),
                pl.col(SOURCE_LINE).alias("source_line"),
                exprs.request_id.alias("request_id"),
                exprs.line.alias("line"),
                (exprs.flag | pl.col(ISSUE).is_not_null() | self._formula_flag(unit)).alias("flag"),
                *((pl.col(_LEFT_OUT), pl.col(_WHY)) if filtering else ()),
            ).with_columns(pl.col("flag") | (pl.col("line").str.len_bytes() >= too_long).fill_null(False))
            filtered, chunk_rows = None, chunk
            if filtering:
                filtered = _filtered_units(made)
                made = made.filter(~pl.col(_LEFT_OUT))
                chunk_rows = chunk.filter(~pl.col(_LEFT_OUT))
            flagged = made["flag"]
            good = made.filter(~flagged).select(
                "row",
                "source_line",
                "request_id",
                "line",
                pl.lit("ok").alias("status"),
                pl.lit(None, dtype=pl.String).alias("code"),
                pl.lit(None, dtype=pl.String).alias("message"),
                pl.lit(True).alias("usable"),
            )
            if flagged.any():
                rows, found = self._explain(chunk_rows.filter(flagged), unit)
                findings.extend(found)
                part = pl.concat([good, pl.DataFrame(rows, schema=_UNIT_SCHEMA, orient="row")])
            else:
                part = good
            if filtered is not None and filtered.height:
                part = pl.concat([part, filtered])
            if part.height != good.height:
                part = part.sort("row")
            parts.append(
                part.with_columns(
                    *[pl.lit(unit.values[v], dtype=pl.String).alias(v) for v in self.each],
                    pl.lit(unit.index, dtype=pl.Int32).alias("\x00unit"),
                )
            )
        frame = pl.concat(parts)
        if len(parts) > 1:
            frame = frame.sort("row", "\x00unit")
        return frame.drop("\x00unit"), findings

    def _formula_flag(self, unit: UnitPlan) -> pl.Expr:
        """True for the rows where a cell this unit reads holds a formula."""
        rows = sorted({row for c in unit.columns for row in self.formulas.get(c, ())})
        return pl.col(ROW).is_in(rows) if rows else pl.lit(False)

    def _explain(self, rows: pl.DataFrame, unit: UnitPlan) -> tuple[list[tuple[Any, ...]], list[Finding]]:
        out: list[tuple[Any, ...]] = []
        findings: list[Finding] = []
        for row in rows.iter_rows(named=True):
            record, found = self._explain_row(row, unit)
            out.append(record)
            if unit.values:  # name the [each] value in the finding's place: row 7 [lang=de]
                found = [f.model_copy(update={"each": unit.values}) for f in found]
            findings.extend(found)
        return out, findings

    def _explain_row(self, row: dict[str, Any], unit: UnitPlan) -> tuple[tuple[Any, ...], list[Finding]]:
        """One flagged unit: its ``requests.parquet`` record and its findings, by the validator's rules."""
        rid_leaf = unit.request_id
        rid = rid_leaf.render(row) if isinstance(rid_leaf, Leaf) else rid_leaf.value
        usable = rid is not None and row[ISSUE] is None and request_id_problem(rid) is None
        skipped = self._skipped(row, unit, rid if usable else None)
        if skipped is not None:
            return (row[ROW], row[SOURCE_LINE], rid, None, "skipped", skipped.code, skipped.message, False), [
                skipped
            ]
        found = self._row_findings(row, unit, rid if usable else None)
        errors = [f for f in found if f.severity == "error"]
        line = None
        if not errors:
            line = orjson.dumps(unit.resolve(row).obj).decode()
            size = len(line.encode()) + 1
            if size > self.limits.max_bytes:
                errors.append(
                    self._finding(
                        row,
                        "line-too-large",
                        f"the line is {size:,} bytes with its newline, over the {self.limits.max_bytes:,}"
                        "-byte file limit on its own; shorten it (scripts, URLs) or raise the limit",
                        request_id=rid if usable else None,
                    )
                )
                found.append(errors[-1])
        first = errors[0] if errors else None
        status = "invalid" if errors else "ok"
        code, message = (first.code, first.message) if first else (None, None)
        return (
            row[ROW],
            row[SOURCE_LINE],
            rid,
            None if errors else line,
            status,
            code,
            message,
            usable,
        ), found

    def _skipped(self, row: dict[str, Any], unit: UnitPlan, rid: str | None) -> Finding | None:
        """The ``optional-empty`` finding when the unit's only empty required values come from columns read
        through an optional ``[each]`` variable (``[each] optional``); None when the unit is not skipped."""
        if row[ISSUE] is not None or not any(leaf.optional for leaf in unit.leaves):
            return None
        empty = unit.resolve(row).empty
        if not empty or not all(set(leaf.blank_columns(row)) <= set(leaf.optional) for leaf in empty):
            return None
        columns = ", ".join(dict.fromkeys(c for leaf in empty for c in leaf.blank_columns(row)))
        fields = ", ".join(leaf.field for leaf in empty)
        values = ", ".join(f"{k}={v}" for k, v in unit.values.items())
        return self._finding(
            row,
            "optional-empty",
            f"{fields} is empty for {values} (column {columns}), which [each] marks optional: no request "
            "is made for it (outcome skipped)",
            severity="warning",
            column=columns,
            request_id=rid,
            pointer=empty[0].pointer,
        )

    def _row_findings(self, row: dict[str, Any], unit: UnitPlan, rid: str | None) -> list[Finding]:
        if row[ISSUE] is not None:
            return [self._finding(row, row[ISSUE], row[ISSUE_MESSAGE])]
        found: list[Finding] = []
        for column in unit.columns:
            value = row[column]
            formula = self.formulas.get(column, {}).get(row[ROW])
            if formula is None and isinstance(value, str) and value.startswith("="):
                formula = value
            if formula is not None:
                cached = (
                    ""
                    if formula == value
                    else f"; its cached value {show(value)} is not sent"
                    if value
                    else "; it has no cached value"
                )
                found.append(
                    self._finding(
                        row,
                        "formula-in-cell",
                        f"column {column} holds a spreadsheet formula ({show(formula, 40)}), not a value{cached}; "
                        "export the sheet's values (copy, paste as values) or fix the cell",
                        column=column,
                        request_id=rid,
                    )
                )
        resolved = unit.resolve(row)
        for leaf in resolved.empty:
            blank = leaf.blank_columns(row)
            names = ", ".join(blank)
            verb = "is" if len(blank) == 1 else "are"
            found.append(
                self._finding(
                    row,
                    "empty-value",
                    f"{leaf.field} is required, but column{'s' if len(blank) > 1 else ''} {names} {verb} "
                    "empty in this row; fill it in",
                    column=names or None,
                    request_id=rid,
                    pointer=leaf.pointer,
                )
            )
        for leaf, why in resolved.unparsable:
            found.append(
                self._finding(
                    row,
                    "invalid-value",
                    f"{leaf.field} {why}; fix the cell",
                    column=", ".join(leaf.columns),
                    request_id=rid,
                    pointer=leaf.pointer,
                )
            )
        stand_ins = resolved.stand_ins
        for problem in line_problems(resolved.obj, self.limits):
            where = problem.pointer
            if any(where == s or where.startswith(s + "/") for s in stand_ins):
                continue
            if (problem.code, where) in self.constant:
                continue
            owner = unit.leaf_for(where)
            found.append(
                self._finding(
                    row,
                    problem.code,
                    problem.message,
                    severity=problem.severity,
                    column=", ".join(owner.columns) if owner is not None else None,
                    request_id=rid,
                    pointer=where or None,
                )
            )
        return found

    def _finding(
        self,
        row: dict[str, Any],
        code: str,
        message: str,
        *,
        severity: Severity = "error",
        column: str | None = None,
        request_id: str | None = None,
        pointer: str | None = None,
    ) -> Finding:
        return Finding(
            code=code,
            severity=severity,
            message=message,
            source=self.src.name,
            row=row[ROW],
            source_line=row[SOURCE_LINE],
            column=column,
            request_id=request_id,
            pointer=pointer,
        )


def _duplicates(
    spill: Spill, report: Report, names: Sequence[str], units: list[UnitPlan], each: list[str]
) -> tuple[list[int], pl.DataFrame | None]:
    """Later uses of a request_id: findings naming the first row, lines to leave out, provenance updates.

    ``names`` are the source names by index: the build's source, then those of included held requests.
    """
    # sorted 64-bit hashes: equal neighbours are candidates (memory: 8 bytes per unit, no hash table)
    ordered = spill.scan().select("rid_hash").drop_nulls().collect()["rid_hash"].sort()
    hashes = ordered.filter(ordered == ordered.shift(1)).unique()
    del ordered
    if hashes.is_empty():
        return [], None
    candidates = (
        spill.scan()
        .filter(pl.col("rid_hash").is_in(hashes.implode()))
        .select("unit", "request_id", "source", "row", "source_line", *each, "status", "spill")
        .collect()
    )
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in candidates.iter_rows(named=True):
        groups[record["request_id"]].append(record)
    rid_leaf = units[0].request_id
    column = ", ".join(rid_leaf.columns) if isinstance(rid_leaf, Leaf) else None
    excluded: list[int] = []
    updates: list[tuple[int, str, str, str]] = []
    for rid, group in groups.items():
        if len(group) < 2:
            continue  # a hash collision between different ids
        group.sort(key=lambda r: r["unit"])
        first = group[0]
        where = f"row {first['row']}"
        if first["source"]:
            where = f"{names[first['source']]} {where}"
        if first["source_line"] is not None:
            where += f" (line {first['source_line']})"
        if each:
            where += " for " + ", ".join(f"{v}={first[v]}" for v in each if first[v] is not None)
        message = (
            f"request_id {rid!r} is already used by {where}; request_ids must be unique, so make the "
            "request_id template read a column that tells the rows apart"
        )
        for record in group[1:]:
            held = bool(record["source"])
            report.add(
                Finding(
                    code="duplicate-request-id",
                    severity="error",
                    message=(
                        f"the held request {rid!r} (from --include-held) has the request_id of {where}; "
                        "request_ids must be unique in a build: leave that held directory out, or change "
                        "the new source's request_ids"
                        if held
                        else message
                    ),
                    source=names[record["source"]],
                    row=record["row"],
                    source_line=record["source_line"],
                    each={v: record[v] for v in each if record[v] is not None} or None,
                    column=None if held else column,
                    request_id=rid,
                    pointer="/request_id",
                )
            )
            if record["status"] == "ok":
                excluded.append(record["spill"])
                updates.append((record["unit"], "invalid", "duplicate-request-id", message))
    frame = pl.DataFrame(
        updates,
        schema={"unit": pl.Int64, "status_new": pl.String, "code_new": pl.String, "message_new": pl.String},
        orient="row",
    )
    return sorted(excluded), frame.rename(
        {"status_new": "status", "code_new": "code", "message_new": "message"}
    )
