"""``batchkit fetch``: every finished video of a build directory, in a folder or a bucket, named your way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._handback.deliver import DeliverOptions, fetch_directory
from .._handback.fetch import FetchOptions, FetchProgress
from . import _render as render
from ._common import EXIT_FAILED, command
from ._options import Api, Output, api_options, directory_argument, group, output_options

__all__ = ["fetch_command"]


def _deliver(v: dict[str, Any]) -> DeliverOptions:
    return DeliverOptions(
        name=v["template"],
        on_collision="number" if v["number_collisions"] else "error",
        concurrency=v["concurrency"],
        fetch=FetchOptions(verify_existing="sha256" if v["verify_sha256"] else "size", fsync=v["fsync"]),
    )


_deliver_options = group("deliver", _deliver, lambda: [
    click.Option(["--name", "template"], help="File name template over the source columns and [each] values, e.g. "
                 "'{lang}/{video_id}' [default: the request's outputFileName, else its request_id]; .mp4 is added."),
    click.Option(["--number-collisions"], is_flag=True, help="Number names two rows share (name~2.mp4) instead of refusing."),
    click.Option(["--concurrency"], type=click.IntRange(1, 256), default=8, show_default=True, help="Downloads at once."),
    click.Option(["--verify-sha256"], is_flag=True, help="Re-read files already there to compare their sha256 (default: sizes)."),
    click.Option(["--fsync"], is_flag=True, help="Make each file durable before its rename (slower; survives power loss)."),
])  # fmt: skip


@command("fetch", failed="some videos could not be fetched (run it again to retry them)")
@directory_argument
@click.option("--to", "dest", required=True, help="A folder, or an fsspec URL such as s3://bucket/prefix.")
@_deliver_options
@api_options
@output_options("the counts, the request_ids that failed, every finding")
def fetch_command(directory: Path, dest: str, deliver: DeliverOptions, api: Api, output: Output) -> None:
    """Download every completed output video of DIRECTORY to --to, once, verified and resumable.

    Rows retried into other directories give the video of their latest attempt. A ledger
    (DIRECTORY/fetched.parquet) means running it again fetches nothing already there; expired links
    are renewed through the API (with --sandbox: from the sandbox kept in the directory).
    """
    import dataclasses

    options = dataclasses.replace(deliver, renew_all=api.sandbox)  # a sandbox served anew has a new port
    with api.client(directory) as client, render.progress("videos", data=True) as bar:

        def on_progress(p: FetchProgress) -> None:
            total = p.bytes_total if p.bytes_total is not None else p.bytes_estimate
            bar.update(p.bytes_done, total, note=f"{p.files_done:,}/{p.files_total:,} files")

        result = fetch_directory(directory, dest, options, client=client, on_progress=on_progress)
    if output.json:
        render.document(result)
    else:
        render.fetched(result)
    if not result.ok:
        raise SystemExit(EXIT_FAILED)
