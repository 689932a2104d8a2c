"""``batchkit results``: the user's own rows back, with an outcome on every one."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from rich.markup import escape
from rich.table import Table

from .._results.results import Results, collect_results
from ._common import EXIT_FINDINGS, EXIT_OK, err, handle_errors, out
from ._submit import api_options, make_client

_STYLE = {
    "completed": "green",
    "failed": "red",
    "rejected": "red",
    "missing": "magenta",
    "invalid": "yellow",
    "pending": "cyan",
    "unsubmitted": "dim",
}


def summary_table(results: Results, title: str = "outcomes") -> Table:
    """Rows per outcome (all of them, zeros included), then the total."""
    table = Table(title=title, title_justify="left")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome, n in results.outcomes.items():
        style = _STYLE[outcome] if n else "dim"
        table.add_row(f"[{style}]{outcome}[/]", f"{n:,}")
    table.add_section()
    table.add_row("[bold]total[/]", f"[bold]{results.frame.height:,}[/]")
    return table


def codes_table(results: Results) -> Table | None:
    """Rows per error code (why the rows that did not complete did not), or None when there is none."""
    codes = results.error_codes
    if not codes:
        return None
    table = Table(title="why", title_justify="left")
    table.add_column("error code")
    table.add_column("rows", justify="right")
    for code, n in codes.items():
        table.add_row(escape(code), f"{n:,}")
    return table


def print_findings(results: Results, *, max_findings: int = 50) -> None:
    """The result findings, one per line, on stderr."""
    shown = results.report.findings[:max_findings]
    for finding in shown:
        style = "red" if finding.severity == "error" else "yellow"
        err.print(f"[{style}]{escape(str(finding))}[/]", highlight=False, emoji=False)
    note = results.report.more_note(len(shown))
    if note is not None:
        err.print(escape(note), highlight=False, emoji=False)


def print_results(results: Results, *, max_findings: int = 50) -> None:
    """Findings, the outcome table and the error-code table, all on stderr."""
    print_findings(results, max_findings=max_findings)
    err.print(summary_table(results))
    codes = codes_table(results)
    if codes is not None:
        err.print(codes)


@click.command("results")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the table: .csv, .parquet, .xlsx or .jsonl (CSV/Excel cells are formula-safe).",
)
@click.option("--offline", is_flag=True, help="Use only what is already downloaded; do not call the API.")
@click.option(
    "--source",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The source file, if it moved since the build.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 unless every row completed and the results have no error finding.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: tables on stderr; json: the summary and every finding on stdout.",
)
@click.option(
    "--max-findings",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Findings listed in text form (all are counted).",
)
@api_options
@handle_errors
def results_command(
    directory: Path, out_path: Path | None, offline: bool, source: Path | None, strict: bool, fmt: str,
    max_findings: int, api_key: str | None, base_url: str | None,
) -> None:  # fmt: skip
    """Download the results of finished batches and join them back to the source rows.

    Every row gets one outcome: completed, failed, rejected, missing, invalid, pending or unsubmitted.
    Exit status: 0 (1 with --strict when a row did not complete or a finding is an error), 2 usage or I/O error.
    """
    if offline:
        results = collect_results(directory, download=False, source=source)
    else:
        with make_client(api_key, base_url) as client:
            results = collect_results(directory, client=client, source=source)
    written = results.write(out_path) if out_path is not None else None
    if fmt == "json":
        document = {
            **results.summary(),
            "valid": results.report.valid,
            "written": str(written) if written is not None else None,
            "report": orjson.loads(results.report.to_json(indent=False)),
        }
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        print_results(results, max_findings=max_findings)
        if written is not None:
            err.print(f"wrote {escape(str(written))} ({results.frame.height:,} rows)", highlight=False)
        else:
            out.print(f"{results.frame.height:,} rows; add --out results.csv to write them", highlight=False)
    complete = results.outcomes["completed"] == results.frame.height
    raise SystemExit(EXIT_FINDINGS if strict and not (complete and results.report.valid) else EXIT_OK)
