"""``batchkit fetch``: every finished video of a build directory, in a folder or a bucket, named your way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .._api.client import Client
from .._errors import ConfigurationError
from .._handback.deliver import DeliverOptions, fetch_directory
from .._handback.fetch import FetchOptions, FetchProgress
from .._shard.builddir import SANDBOX_STATE
from ._common import EXIT_FINDINGS, EXIT_OK, err, handle_errors, out
from ._submit import api_options, make_client

__all__ = ["fetch_command"]

SANDBOX_KEY = "sandbox"


@contextmanager
def _client(directory: Path, sandbox: bool, api_key: str | None, base_url: str | None, timeout: float) -> Iterator[Client]:
    """The API client that renews expired links: the real API's, or the sandbox of a ``run --sandbox``."""
    if not sandbox:
        with make_client(api_key, base_url, timeout) as client:
            yield client
        return
    state = directory / SANDBOX_STATE
    if not state.is_file():
        msg = f"{directory} has no {SANDBOX_STATE}: it was not made by `batchkit run --sandbox`, so leave out --sandbox"
        raise ConfigurationError(msg)
    from ..sandbox import Sandbox, serve

    with serve(Sandbox(state_path=state)) as url, Client(api_key=SANDBOX_KEY, base_url=url) as client:
        yield client


@click.command("fetch")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--to", "dest", required=True, help="A folder, or an fsspec URL such as s3://bucket/prefix.")
@click.option(
    "--name",
    "template",
    help="File name template over the source columns and [each] values, e.g. '{lang}/{video_id}' "
    "[default: the request's outputFileName, else its request_id]; .mp4 is added.",
)
@click.option("--number-collisions", is_flag=True, help="Number names two rows share (name~2.mp4) instead of refusing.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True, help="Downloads at once.")
@click.option("--verify-sha256", is_flag=True, help="Re-read files already there to compare their sha256 (default: sizes).")
@click.option("--fsync", is_flag=True, help="Make each file durable before its rename (slower; survives power loss).")
@click.option(
    "--sandbox",
    is_flag=True,
    help="The directory was made by `run --sandbox`: renew its links from the sandbox kept in the directory.",
)
@api_options
@handle_errors
def fetch_command(
    directory: Path, dest: str, template: str | None, number_collisions: bool, concurrency: int,
    verify_sha256: bool, fsync: bool, sandbox: bool, api_key: str | None, base_url: str | None, timeout: float,
) -> None:  # fmt: skip
    """Download every completed output video of DIRECTORY to --to, once, verified and resumable.

    Rows retried into other directories give the video of their latest attempt. A ledger
    (DIRECTORY/fetched.parquet) means running it again fetches nothing already there; expired links
    are renewed through the API. Exit status: 0 every video is there, 1 some could not be fetched
    (run it again to retry them), 2 usage, API or I/O error.
    """
    options = DeliverOptions(
        name=template,
        on_collision="number" if number_collisions else "error",
        concurrency=concurrency,
        renew_all=sandbox,  # a sandbox started anew serves its videos on a new port
        fetch=FetchOptions(verify_existing="sha256" if verify_sha256 else "size", fsync=fsync),
    )
    bar = Progress(
        TextColumn("[bold]videos {task.fields[files]}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("fetch", total=None, files="")

    def on_progress(p: FetchProgress) -> None:
        total = p.bytes_total if p.bytes_total is not None else p.bytes_estimate
        bar.update(task, completed=p.bytes_done, total=total, files=f"{p.files_done:,}/{p.files_total:,}")

    with _client(directory, sandbox, api_key, base_url, timeout) as client, bar:
        result = fetch_directory(directory, dest, options, client=client, on_progress=on_progress)
    for finding in result.findings:
        style = "red" if finding.severity == "error" else "yellow"
        err.print(f"[{style}]{escape(str(finding))}[/]", highlight=False)
    out.print(
        f"{len(result.fetched):,} fetched ({result.bytes_fetched:,} bytes), {len(result.present):,} already at "
        f"{escape(result.destination)}, {len(result.failed):,} failed; {result.media_requests:,} media request(s)",
        highlight=False,
    )
    raise SystemExit(EXIT_OK if result.ok else EXIT_FINDINGS)
