"""``batchkit results``: the user's own rows back, with an outcome on every one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._handback.handback import HandBackOptions, hand_back
from . import _render as render
from ._common import EXIT_FAILED, command
from ._options import Api, Output, api_options, directory_argument, group, output_options


def _handback(v: dict[str, Any]) -> HandBackOptions:
    return HandBackOptions(out=v["out_path"], wide=v["wide"], into=v["into"], download=not v["offline"],
                           source=v["source"], follow=not v["no_follow"])  # fmt: skip


_results_options = group("wanted", _handback, lambda: [
    click.Option(["-o", "--out", "out_path"], type=click.Path(path_type=Path, dir_okay=False),
                 help="Write the table: .csv, .parquet, .xlsx or .jsonl (CSV/Excel cells are formula-safe)."),
    click.Option(["--wide"], is_flag=True, help="For an [each] build: one row per source row, outcome_<value>, output_url_<value> ... side by side."),
    click.Option(["--into"], type=click.Path(path_type=Path, dir_okay=False),
                 help="Write a copy of the build's own source file (.csv, .tsv, .xlsx) with the result columns added."),
    click.Option(["--offline"], is_flag=True, help="Use only what is already downloaded; do not call the API."),
    click.Option(["--source"], type=click.Path(path_type=Path, dir_okay=False, exists=True), help="The source file, if it moved since the build."),
    click.Option(["--no-follow"], is_flag=True, help="Show this directory's own outcomes, not the latest attempt of retried rows."),
])  # fmt: skip


@command("results", failed="with --strict: a row did not complete, or a finding is an error")
@directory_argument
@_results_options
@click.option(
    "--strict", is_flag=True, help="Exit 1 unless every row completed and the results have no error finding."
)
@api_options
@output_options("the summary (outcomes, error codes, pending rows) and every finding", max_findings=50)
def results_command(directory: Path, wanted: HandBackOptions, strict: bool, api: Api, output: Output) -> None:
    """Download the results of finished batches and join them back to the source rows.

    Every row gets one outcome: completed, failed, rejected, missing, invalid, pending or unsubmitted;
    a row retried into another directory (`batchkit retry`) shows its latest attempt, with `attempts`
    and `settled_in` (--no-follow: this directory's own outcomes). While batches still run, their rows
    are pending: `batchkit wait DIR`, then this again.
    """
    if not wanted.download:
        back = hand_back(directory, wanted)
    else:
        with api.client(directory) as client:
            back = hand_back(directory, wanted, client=client)
    if output.json:
        render.document(back)
    else:
        render.handed_back(back, directory, max_findings=output.max_findings)
    if strict and not back.complete:
        raise SystemExit(EXIT_FAILED)
