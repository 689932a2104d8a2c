"""``batchkit inspect BATCH_ID``: what a batch holds, and whose it is."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from .._submit.inspect import inspect_batch
from ._common import handle_errors, out
from ._submit import api_options, make_client


@click.command("inspect")
@click.argument("batch_id")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A build directory: say which of its shards the batch's output belongs to.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@api_options
@handle_errors
def inspect_command(
    batch_id: str, directory: Path | None, fmt: str, api_key: str | None, base_url: str | None, timeout: float
) -> None:  # fmt: skip
    """Show a batch: created_at, status, counts, the first request_ids of its output, and whose it is."""
    with make_client(api_key, base_url, timeout) as client:
        found = inspect_batch(batch_id, client=client, directory=directory)
    data = found.to_dict()
    if fmt == "json":
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    m = found.batch.metrics
    out.print(f"batch {data['id']}: {data['status']}, created {data['created_at'] or '?'}", highlight=False)
    out.print(
        f"  {m.total_generations:,} generation(s): {m.success_count:,} succeeded, {m.failed_count:,} failed, "
        f"{m.pending_count:,} pending",
        highlight=False,
    )
    if found.output_note:
        out.print(f"  output: {found.output_note}", highlight=False)
    else:
        shown = ", ".join(found.first_request_ids)
        out.print(f"  output: {found.output_lines:,} line(s); first request_ids: {shown}", highlight=False)
    for where, shard, certainty in found.known_to:
        out.print(f"  recorded by {where} for {shard} ({certainty})", highlight=False)
    if directory is not None:
        verdict = f"matches {found.matches}" if found.matches else "matches none of its shards"
        if found.output_note:
            verdict = "cannot tell yet (no output)"
        out.print(f"  in {directory}: {verdict}", highlight=False)
