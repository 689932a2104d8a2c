"""``batchkit recover DIR``: rebuild a lost, emptied or foreign journal from the server, by content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._submit.recover import recover
from . import _render as render
from ._common import command
from ._options import Api, Output, api_options, directory_argument, output_options, reconcile_options


@command("recover", failed=None)
@directory_argument
@reconcile_options
@api_options
@output_options("what was found for every shard, and the shards as the new journal holds them")
def recover_command(directory: Path, policy: Any, api: Api, output: Output) -> None:
    """Rebuild DIRECTORY's journal from the server: each shard gets the batch whose output carries its ids.

    For a submitted directory whose journal.sqlite is missing, emptied or another's. Nothing is sent; the
    broken journal is kept as journal.sqlite.broken-<time>. Run `batchkit submit DIRECTORY` afterwards: it
    sends only the shards that certainly never made a batch.
    """
    with api.client(directory) as client:
        result = recover(directory, client=client, policy=api.policy(policy))
    if output.json:
        render.document(result)
    else:
        render.recovered(result)
