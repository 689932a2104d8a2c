"""``batchkit run``: build → validate → shard → submit → wait → results, resumable by running it again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .._report import ValidationFailed
from .._run import RunOptions, Stage, run
from .._submit.journal import ShardRecord
from ._budget import budget_options, make_budget
from ._build import _failed
from ._common import EXIT_FINDINGS, err, handle_errors, limits_options, make_limits
from ._preflight import preflight_build, preflight_options
from ._results import print_results
from ._submit import (
    _print_event,
    api_options,
    make_client,
    make_poll,
    poll_options,
    progress_printer,
    report_unsettled,
    submit_exit,
)


def _stage(stage: Stage, note: str) -> None:
    err.print(f"[bold cyan]{stage:>8}[/] {note}", highlight=False)


@click.command("run")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--mapping",
    "mapping_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The mapping TOML: how a row becomes a request.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The build directory (shards, manifest, journal, results).",
)
@click.option(
    "--sandbox", is_flag=True, help="Run against a local sandbox started for this run; no API key needed."
)
@click.option(
    "--dry-run", is_flag=True, help="Build, then ask the server to validate every shard; nothing is created."
)
@click.option("--sheet", help="Excel sheet to read (default: the first).")
@click.option(
    "--strict",
    is_flag=True,
    help="Fail the build on any invalid row (default: skip them; they show as invalid in the results).",
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the joined table [default: OUT/results.csv]; .csv, .parquet, .xlsx or .jsonl.",
)
@click.option("--webhook-url", help="URL Sync POSTs each batch's final status to.")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Send only a stratified sample of N requests (every [each] value and video) from OUT-sample; "
    "the full run (without --sample) then reuses what it completed.",
)
@preflight_options(prices=False)
@budget_options
@limits_options
@api_options
@poll_options
@handle_errors
def run_command(
    source: Path, mapping_path: Path, out_dir: Path, sandbox: bool, dry_run: bool, sheet: str | None,
    strict: bool, results_path: Path | None, webhook_url: str | None,
    min_records: int, max_records: int, max_bytes: int, api_key: str | None, base_url: str | None,
    timeout: float, poll_initial: float, poll_factor: float, poll_max: float, deadline: float | None,
    sample: int | None = None, **preflight: Any,
) -> None:  # fmt: skip
    """Build SOURCE into shards, submit them, wait, and join the results back to every row.

    Running it again resumes where it stopped: an unchanged build is reused, nothing is submitted twice
    (with --sandbox too: its account is kept in OUT/sandbox-state.ndjson). --probe checks every media URL
    first; --max-cost refuses before anything is sent when the estimate is over; --sample N tries a handful
    first; --reuse DIR does not send again what completed there. Exit status: 0 done, 1 the build found
    errors (--strict, too few rows), a shard was refused or nothing could be submitted, 2 usage, API or I/O
    error.
    """
    limits = make_limits(min_records, max_records, max_bytes)
    custom_poll = (poll_initial, poll_factor, poll_max) != (5.0, 1.5, 60.0)
    poll = make_poll(poll_initial, poll_factor, poll_max) if custom_poll or not sandbox else None
    progress, update = progress_printer()

    def on_progress(shards: Sequence[ShardRecord]) -> None:
        progress.start()  # only once there is something to show; starting twice is harmless
        update(shards)

    client = None if sandbox else make_client(api_key, base_url, timeout)
    budget = make_budget(
        preflight.pop("max_cost"), preflight.pop("prices"), preflight.pop("allow_unknown_cost"),
        preflight.pop("yes"), live=not (sandbox or dry_run),
    )  # fmt: skip
    try:
        with preflight_build(preflight) as (probe, reuse, _):
            options = RunOptions(
                limits=limits, skip_invalid=not strict, sheet=sheet, sandbox=sandbox, dry_run=dry_run,
                webhook_url=webhook_url, poll=poll, deadline=deadline, results_path=results_path,
                probe=probe, reuse=reuse, budget=budget, sample=sample,
            )  # fmt: skip
            result = run(
                source, mapping_path, out_dir, options, client=client,
                on_stage=_stage, on_event=_print_event, on_progress=on_progress,
            )  # fmt: skip
    except ValidationFailed as exc:
        progress.stop()
        _failed(exc, out_dir, "text", 20, hint="fix them, or leave out --strict to skip invalid rows")
        return
    finally:
        progress.stop()
        if client is not None:
            client.close()
    if dry_run:
        table = Table(title="dry run", title_justify="left")
        for name in ("shard", "verdict", "server message"):
            table.add_column(name)
        for verdict in result.submission.dry_runs:
            mark = "[green]VALIDATED[/]" if verdict.valid else "[red]REFUSED[/]"
            table.add_row(verdict.file, mark, verdict.message or "")
        err.print(table)
        if not all(v.valid for v in result.submission.dry_runs):
            raise SystemExit(EXIT_FINDINGS)
        return
    print_results(result.results, manifest=result.manifest)
    err.print(f"wrote {result.results_path}")
    report_unsettled(result.submission.shards)
    submit_exit(result.submission, result.submission.shards)
