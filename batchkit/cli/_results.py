"""``batchkit results``: the user's own rows back, with an outcome on every one."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from .._results import OUTCOMES, Results, collect_results
from ._common import EXIT_FINDINGS, err, handle_errors, out
from ._submit import api_options, make_client
from ._validate import render_report

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
    """Rows per outcome (all of them, zeros included), then the error codes behind the failures."""
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
    codes = results.error_codes
    if not codes:
        return None
    table = Table(title="why", title_justify="left")
    table.add_column("error code")
    table.add_column("rows", justify="right")
    for code, n in codes.items():
        table.add_row(code, f"{n:,}")
    return table


def print_results(results: Results) -> None:
    if results.report.findings:
        render_report(results.report, title="result findings")
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
@click.option("--offline", is_flag=True, help="Use only results already downloaded; do not call the API.")
@click.option(
    "--source",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The source file, if it moved since the build.",
)
@click.option("--strict", is_flag=True, help=f"Exit 1 unless every row is {OUTCOMES[0]}.")
@api_options
@handle_errors
def results_command(
    directory: Path, out_path: Path | None, offline: bool, source: Path | None, strict: bool,
    api_key: str | None, base_url: str | None,
) -> None:  # fmt: skip
    """Download the results of finished batches and join them back to the source rows.

    Every row gets one outcome: completed, failed, rejected, missing, invalid, pending or unsubmitted.
    """
    if offline:
        results = collect_results(directory, download=False, source=source)
    else:
        with make_client(api_key, base_url) as client:
            results = collect_results(directory, client=client, source=source)
    print_results(results)
    if out_path is not None:
        err.print(f"wrote {results.write(out_path)}")
    else:
        out.print(f"{results.frame.height:,} rows; add --out results.csv to write them", highlight=False)
    if strict and results.outcomes["completed"] != results.frame.height:
        raise SystemExit(EXIT_FINDINGS)
