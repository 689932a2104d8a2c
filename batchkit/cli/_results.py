"""``batchkit results``: the user's own rows back, with an outcome on every one."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from rich.markup import escape
from rich.table import Table

from .._handback.deliver import with_files
from .._handback.fill import fill_into
from .._handback.wide import each_counts, wide_frame
from .._results.export import check_export_path, export_frame
from .._results.results import Results, collect_results
from .._shard.builddir import Manifest, load_manifest
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
    "skipped": "dim",
    "filtered": "dim",
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


def grid_table(results: Results, manifest: Manifest) -> Table:
    """An ``[each]`` build's status grid: per value (a language), rows per outcome."""
    counts = each_counts(results.frame, manifest)
    name, *outcomes = counts.columns
    table = Table(title=f"by {name}", title_justify="left")
    table.add_column(name)
    for outcome in outcomes:
        table.add_column(outcome, justify="right")
    for value, *numbers in counts.iter_rows():
        cells = [
            f"[{_STYLE.get(o, 'bold')}]{n:,}[/]" if n else "[dim]0[/]" for o, n in zip(outcomes, numbers, strict=True)
        ]
        table.add_row(escape(str(value)), *cells)
    return table


def print_results(results: Results, *, max_findings: int = 50, manifest: Manifest | None = None) -> None:
    """Findings, the outcome table, the ``[each]`` grid and the error-code table, all on stderr."""
    print_findings(results, max_findings=max_findings)
    err.print(summary_table(results))
    if manifest is not None and manifest.each:
        err.print(grid_table(results, manifest))
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
    "--wide",
    is_flag=True,
    help="For an [each] build: one row per source row, outcome_<value>, output_url_<value> ... side by side.",
)
@click.option(
    "--into",
    "into",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a copy of the build's own source file (.csv, .tsv, .xlsx) with the result columns added.",
)
@click.option(
    "--no-follow",
    "no_follow",
    is_flag=True,
    help="Show this directory's own outcomes, not the latest attempt of retried rows.",
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
    directory: Path, out_path: Path | None, offline: bool, source: Path | None, strict: bool, wide: bool,
    into: Path | None, no_follow: bool, fmt: str, max_findings: int, api_key: str | None, base_url: str | None,
    timeout: float,
) -> None:  # fmt: skip
    """Download the results of finished batches and join them back to the source rows.

    Every row gets one outcome: completed, failed, rejected, missing, invalid, pending or unsubmitted;
    a row retried into another directory (`batchkit retry`) shows its latest attempt, with `attempts`
    and `settled_in` (--no-follow: this directory's own outcomes).
    Exit status: 0 (1 with --strict when a row did not complete or a finding is an error), 2 usage or I/O error.
    """
    if out_path is not None:
        check_export_path(out_path)  # before anything is fetched
    if offline:
        results = collect_results(directory, download=False, source=source, follow=not no_follow)
    else:
        with make_client(api_key, base_url, timeout) as client:
            results = collect_results(directory, client=client, source=source, follow=not no_follow)
    manifest = load_manifest(directory)
    frame = with_files(results.frame, directory)  # where `batchkit fetch` put each video, once it ran
    table = wide_frame(frame, manifest) if wide else frame
    written = export_frame(table, out_path) if out_path is not None else None
    filled = fill_into(frame, manifest, into, source=source) if into is not None else None
    if fmt == "json":
        document = {
            **results.summary(),
            "valid": results.report.valid,
            "written": str(written) if written is not None else None,
            "filled": str(filled) if filled is not None else None,
            "report": orjson.loads(results.report.to_json(indent=False)),
        }
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        print_results(results, max_findings=max_findings, manifest=manifest)
        if filled is not None:
            err.print(f"filled in {escape(str(filled))} (a copy of the build's source)", highlight=False)
        if written is not None:
            err.print(f"wrote {escape(str(written))} ({table.height:,} rows)", highlight=False)
        elif filled is None:
            out.print(f"{table.height:,} rows; add --out results.csv to write them", highlight=False)
    complete = results.outcomes["completed"] == results.frame.height
    raise SystemExit(EXIT_FINDINGS if strict and not (complete and results.report.valid) else EXIT_OK)
