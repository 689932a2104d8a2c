"""``batchkit recover DIR``: rebuild a lost, emptied or foreign journal from the server, by content."""

from __future__ import annotations

from pathlib import Path

import click

from .._submit.recover import recover
from ._common import handle_errors, out
from ._submit import api_options, make_client, make_policy, reconcile_options, report_unsettled, shard_table

_SAID = {
    "registry": "its own batch again (recorded on this machine)",
    "verified": "found by content (its output carries the shard's ids)",
    "adopted": "the only candidate, adopted; checked by content once it finishes",
    "candidates": "several candidates; their outputs will tell",
    "in-flight": "no batch found; `batchkit submit` sends it once a create can no longer be in flight",
}


@click.command("recover")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@api_options
@reconcile_options
@handle_errors
def recover_command(
    directory: Path, api_key: str | None, base_url: str | None, timeout: float, in_flight: float, clock_skew: float
) -> None:  # fmt: skip
    """Rebuild DIRECTORY's journal from the server: each shard gets the batch whose output carries its ids.

    For a submitted directory whose journal.sqlite is missing, emptied or another's. Nothing is sent; the
    broken journal is kept as journal.sqlite.broken-<time>. Run `batchkit submit DIRECTORY` afterwards: it
    sends only the shards that certainly never made a batch.
    """
    with make_client(api_key, base_url, timeout) as client:
        result = recover(directory, client=client, policy=make_policy(in_flight, clock_skew))
    if result.moved_aside is not None:
        out.print(f"kept the broken journal as {result.moved_aside}", highlight=False)
    for file, outcome in result.outcomes.items():
        out.print(f"{file}: {_SAID.get(outcome, outcome)}", highlight=False)
    out.print(shard_table(result.shards, title=str(directory)))
    report_unsettled(result.shards)
