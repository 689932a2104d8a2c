"""``batchkit validate`` and ``batchkit schema``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from .._formats import FORMATS, write_format
from .._report import Report
from .._validate.validate import validate_files
from ._common import EXIT_FINDINGS, EXIT_OK, err, handle_errors, limits_options, make_limits, out


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", *FORMATS]),
    default="text",
    show_default=True,
    help="text: findings and a table of counts; json: the whole report; github: GitHub Actions "
    "annotations; junit: JUnit XML; sarif: SARIF 2.1.0 (code scanning). Paths are relative to the "
    "working directory.",
)
@click.option(
    "--schema",
    "policy",
    type=click.Path(path_type=Path),
    help="Also check every line against this JSON Schema (findings coded 'policy').",
)
@click.option(
    "--max-findings",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Findings listed in text form (all are counted).",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write every finding to this file, as JSON Lines (the outputs keep the first 1,000 per code).",
)
@limits_options
@handle_errors
def validate(
    paths: tuple[Path, ...],
    fmt: str,
    policy: Path | None,
    max_findings: int,
    report_file: Path | None,
    min_records: int,
    max_records: int,
    max_bytes: int,
) -> None:
    """Dry-run validate batch JSONL files (or directories of them) before upload.

    Every finding is counted; the first 1,000 of each code are listed (text: --max-findings of them),
    and --report FILE writes all of them. Exit status: 0 valid (warnings allowed), 1 findings of severity
    error, 2 usage or I/O error.
    """
    limits = make_limits(min_records, max_records, max_bytes)
    report = validate_files(paths, limits=limits, schema=policy, report_file=report_file)
    if fmt == "json":
        click.echo(report.to_json())  # verbatim: rich would rewrite ":emoji:" codes in messages
    elif fmt in FORMATS:
        # streamed verbatim to stdout (rich would rewrite markup); the verdict goes to stderr
        write_format(fmt, report.findings, report.stats, sys.stdout)
        sys.stdout.flush()
        s = report.stats
        err.print(
            f"{'valid' if report.valid else 'invalid'}: {s.files} file(s), {s.records:,} record(s), "
            f"{s.errors:,} error(s), {s.warnings:,} warning(s)",
            highlight=False,
        )
    else:
        render_report(report, max_findings=max_findings)
    raise SystemExit(EXIT_OK if report.valid else EXIT_FINDINGS)


def render_report(report: Report, *, max_findings: int = 200, title: str = "findings by code") -> None:
    """Findings one per line, a verdict, then a table of counts by code."""
    shown = report.findings[:max_findings]
    for finding in shown:
        style = "red" if finding.severity == "error" else "yellow"
        out.print(f"[{style}]{escape(str(finding))}[/]", highlight=False, emoji=False)
    note = report.more_note(len(shown))
    if note is not None:
        out.print(escape(note), highlight=False, emoji=False)
    s = report.stats
    verdict = "[green]valid[/]" if report.valid else "[bold red]invalid[/]"
    out.print(
        f"{verdict}: {s.files} file(s), {s.records:,} record(s), {s.valid_records:,} valid, "
        f"{s.errors:,} error(s), {s.warnings:,} warning(s)"
    )
    if report.counts:
        table = Table(title=title, title_justify="left")
        table.add_column("code")
        table.add_column("severity")
        table.add_column("count", justify="right")
        for code, n in report.counts.items():
            table.add_row(escape(code), report.severity_of(code), f"{n:,}")
        out.print(table)


@click.command()
@click.option(
    "--out",
    "folder",
    type=click.Path(path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="Folder to write the *.schema.json files into.",
)
@handle_errors
def schema(folder: Path) -> None:
    """Write the JSON Schemas of the batch line, generate payload, output line and Batch object."""
    from .._wire.schemas import write_schemas

    for path in write_schemas(folder):
        err.print(f"wrote {path}")
