"""``batchkit build`` and ``batchkit shard``: sources or JSONL into a build directory of balanced shards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson
import polars as pl
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._build.build import build as build_source
from .._build.options import BuildOptions
from .._report import Report, ValidationFailed
from .._shard.builddir import FINDINGS, REPORT
from .._shard.reshard import shard_file
from .._shard.write import BuildResult
from .._sources.source import FORMATS
from ._common import EXIT_FINDINGS, EXIT_OK, err, handle_errors, limits_options, make_limits, out
from ._preflight import preflight_build, preflight_options
from ._validate import render_report

__all__ = ["build", "shard"]

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: findings and a summary; json: counts, shards and the whole report.",
)
_MAX_FINDINGS = click.option(
    "--max-findings",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Findings listed in text form (all are counted, and all are in findings.ndjson).",
)


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--mapping",
    "-m",
    "mapping",
    required=True,
    type=click.Path(path_type=Path),
    help="TOML file that says how a row becomes a request.",
)
@click.option(
    "--out", "-o", "out_dir", required=True, type=click.Path(path_type=Path), help="Build directory."
)
@click.option("--sheet", help="Excel sheet to read (default: the first).")
@click.option("--skip-invalid", is_flag=True, help="Write the valid rows and report the rest (exit 0).")
@click.option("--name", help="Shard file stem (default: the source file's stem).")
@click.option(
    "--source-format",
    type=click.Choice(sorted(set(FORMATS.values()))),
    help="Read SOURCE as this format instead of guessing from its suffix.",
)
@click.option("--delimiter", help="CSV delimiter (default: detected).")
@click.option("--encoding", help="Text encoding of a CSV or NDJSON source (default: UTF-8, else detected).")
@click.option("--force", is_flag=True, help="Rebuild a directory that was already submitted.")
@click.option(
    "--include-held",
    "include_held",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Add the requests `batchkit retry --hold` kept in this directory (repeatable).",
)
@preflight_options()
@_FORMAT
@_MAX_FINDINGS
@limits_options
@handle_errors
def build(
    source: Path,
    mapping: Path,
    out_dir: Path,
    sheet: str | None,
    skip_invalid: bool,
    name: str | None,
    source_format: str | None,
    delimiter: str | None,
    encoding: str | None,
    force: bool,
    include_held: tuple[Path, ...],
    fmt: str,
    max_findings: int,
    min_records: int,
    max_records: int,
    max_bytes: int,
    **preflight: Any,
) -> None:
    """Build SOURCE (CSV, TSV, Parquet, Excel, NDJSON) into balanced batch shards in --out.

    Every row becomes one request (or one per [each] value), is checked like `batchkit validate`
    checks a line, and lands in exactly one shard or in report.json. --include-held adds the
    requests a `batchkit retry --hold` kept (checked the same way, joined to their own rows).
    --probe first probes every media URL (a row whose media fails is invalid, DIR/media.parquet keeps
    what was learned, and the estimate is shown); --reuse DIR leaves out the requests that already
    completed there (their outcome is carried into the results).
    Exit status: 0 built, 1 invalid rows (nothing written but report.json; use --skip-invalid)
    or too few records, 2 usage or I/O error.
    """
    limits = make_limits(min_records, max_records, max_bytes)
    with _progress("rows") as progress, preflight_build(preflight) as (probe, reuse, done):
        result = _attempt(
            lambda: build_source(
                source,
                mapping,
                out_dir,
                BuildOptions(
                    name=name,
                    limits=limits,
                    skip_invalid=skip_invalid,
                    sheet=sheet,
                    format=source_format,
                    delimiter=delimiter,
                    encoding=encoding,
                    force=force,
                    include_held=include_held,
                    probe=probe,
                    reuse=reuse,
                ),
                progress=progress,
            ),
            out_dir,
            fmt,
            max_findings,
        )
        done(result, fmt)
        if result is not None:
            if include_held and fmt == "text":
                held = result.counts.units - _units_of_first_source(result)
                out.print(
                    f"[green]included[/] {held:,} held request(s) from {', '.join(map(str, include_held))} "
                    "(marked as included, so no later build takes them again)",
                    highlight=False,
                )
            _succeeded(result, fmt, max_findings, unit="rows")


@click.command()
@click.argument("jsonl", type=click.Path(path_type=Path))
@click.option(
    "--out", "-o", "out_dir", required=True, type=click.Path(path_type=Path), help="Build directory."
)
@click.option("--name", help="Shard file stem (default: the input file's stem).")
@click.option("--skip-invalid", is_flag=True, help="Shard the valid lines and report the rest (exit 0).")
@click.option("--force", is_flag=True, help="Rebuild a directory that was already submitted.")
@_FORMAT
@_MAX_FINDINGS
@limits_options
@handle_errors
def shard(
    jsonl: Path,
    out_dir: Path,
    name: str | None,
    skip_invalid: bool,
    force: bool,
    fmt: str,
    max_findings: int,
    min_records: int,
    max_records: int,
    max_bytes: int,
) -> None:
    """Re-shard an existing batch JSONL (of any length) into balanced shards in --out.

    The input is validated first; invalid lines are reported by line number. Exit status as for build.
    """
    limits = make_limits(min_records, max_records, max_bytes)
    with _progress("lines") as progress:
        result = _attempt(
            lambda: shard_file(
                jsonl,
                out_dir,
                name=name,
                limits=limits,
                skip_invalid=skip_invalid,
                force=force,
                progress=progress,
            ),
            out_dir,
            fmt,
            max_findings,
        )
    if result is not None:
        _succeeded(result, fmt, max_findings, unit="lines")


def _attempt(
    make: Callable[[], BuildResult], out_dir: Path, fmt: str, max_findings: int
) -> BuildResult | None:
    """Run a build; on invalid input render its report (and exit 1 there), else return the result."""
    try:
        return make()
    except ValidationFailed as exc:
        _failed(exc, out_dir, fmt, max_findings, hint="fix them or pass --skip-invalid")
        return None


@contextmanager
def _progress(unit: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr (only on a terminal), fed by the library's progress callback."""
    bar = Progress(
        TextColumn(f"[bold]{unit}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task(unit, total=None)

    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def _succeeded(result: BuildResult, fmt: str, max_findings: int, *, unit: str) -> None:
    counts = result.counts
    if fmt == "json":
        data: dict[str, Any] = {
            "ok": True,
            "out_dir": str(result.out_dir),
            "counts": counts.model_dump(),
            "invalid_by_code": _invalid_units(result),
            "shards": [s.model_dump() for s in result.manifest.shards],
            "report": orjson.loads(result.report.to_json()),
        }
        out.print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode(), markup=False, highlight=False)
        raise SystemExit(EXIT_OK)
    if result.report.counts:
        render_report(result.report, max_findings=max_findings)
    out.print(
        f"[green]built[/] {result.out_dir}: {counts.rows:,} {unit} read → {counts.units:,} request(s), "
        f"{counts.requests:,} written, {counts.invalid:,} invalid"
        + "".join(f", {n:,} {what}" for what, n in (("skipped", counts.skipped), ("filtered", counts.filtered)) if n),
        highlight=False,
    )
    for code, n in _invalid_units(result).items():
        out.print(f"  invalid {code}: {n:,}", highlight=False)
    unsharded = result.manifest.unsharded
    if unsharded is not None:  # build --reuse left fewer than a batch's minimum: they go one by one
        out.print(
            f"  no shard: {unsharded.records:,} request(s) in {unsharded.file}, fewer than a batch's minimum; "
            f"`batchkit submit {result.out_dir}` sends them one by one"
            if unsharded.records
            else "  nothing left to send: every valid request completed before",
            highlight=False,
        )
        raise SystemExit(EXIT_OK)
    sizes = ", ".join(f"{s.records}" for s in result.manifest.shards[:12])
    more = " …" if len(result.manifest.shards) > 12 else ""
    files = result.manifest.shards[0].file
    if counts.shards > 1:
        files += f" … {result.manifest.shards[-1].file}"
    out.print(
        f"  {counts.shards:,} shard(s) of {sizes}{more} records, {counts.bytes:,} bytes: {files}",
        highlight=False,
    )
    raise SystemExit(EXIT_OK)


def _failed(failure: ValidationFailed, out_dir: Path, fmt: str, max_findings: int, *, hint: str) -> None:
    report = failure.report
    if fmt == "json":
        data = {"ok": False, "out_dir": str(out_dir), "report": orjson.loads(report.to_json())}
        out.print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode(), markup=False, highlight=False)
        raise SystemExit(EXIT_FINDINGS)
    render_report(report, max_findings=max_findings)
    invalid = failure.invalid_units if failure.invalid_units is not None else _invalid_by_code(report)
    if invalid:
        listed = ", ".join(f"{code} × {n:,}" for code, n in invalid.items())
        written = ", ".join(str(out_dir / name) for name in (REPORT, FINDINGS))
        err.print(
            f"[bold red]not built:[/] {sum(invalid.values()):,} invalid row(s) ({escape(listed)}); {hint}. "
            f"Nothing was written but {escape(written)}",
            highlight=False,
        )
    else:
        listed = ", ".join(f"{code} × {n:,}" for code, n in report.error_counts.items())
        err.print(f"[bold red]not built:[/] {escape(listed)}; see {escape(str(out_dir / REPORT))}", highlight=False)
    raise SystemExit(EXIT_FINDINGS)


def _units_of_first_source(result: BuildResult) -> int:
    return int(
        result.manifest.scan_requests().filter(pl.col("source") == 0).select(pl.len()).collect().item()
    )


def _invalid_units(result: BuildResult) -> dict[str, int]:
    """Invalid request units by their first error code, from requests.parquet."""
    counts = (
        result.manifest.scan_requests()
        .filter(pl.col("status") == "invalid")
        .group_by("code")
        .len()
        .sort(["len", "code"], descending=[True, False])
        .collect()
    )
    return {str(code): int(n) for code, n in counts.iter_rows()}


def _invalid_by_code(report: Report) -> dict[str, int]:
    """Invalid rows by their first error code (one count per row, unlike the findings table), from the
    retained findings: for a failure that does not say how many units were invalid."""
    first: dict[tuple[str | None, int | None, int | None, str | None], str] = {}
    for finding in report.errors:
        if finding.row is None and finding.line is None:
            continue
        key = (finding.source or finding.file, finding.row, finding.line, finding.request_id)
        first.setdefault(key, finding.code)
    counts: dict[str, int] = {}
    for code in first.values():
        counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
