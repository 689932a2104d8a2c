"""``batchkit inspect BATCH_ID``: what a batch holds, and whose it is."""

from __future__ import annotations

from pathlib import Path

import click

from .._submit.inspect import inspect_batch
from . import _render as render
from ._common import command
from ._options import Api, Output, api_options, output_options


@command("inspect", failed=None)
@click.argument("batch_id")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A build directory: say which of its shards the batch's output belongs to (with --sandbox: the "
    "directory whose sandbox holds the batch).",
)
@api_options
@output_options("the batch, its counts, the first request_ids of its output, whose it is")
def inspect_command(batch_id: str, directory: Path | None, api: Api, output: Output) -> None:
    """Show a batch: created_at, status, counts, the first request_ids of its output, and whose it is."""
    with api.client(directory) as client:
        found = inspect_batch(batch_id, client=client, directory=directory)
    if output.json:
        render.document(found)
    else:
        render.inspected(found, directory)
