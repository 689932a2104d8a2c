"""``batchkit fetch DIR --to DEST``: every finished video of a build directory, in the user's storage.

The rows are the directory's results followed along the retry chain (a row retried into another directory
gives the video of its latest attempt), completed ones only. Each gets a name from the template over its
source columns and ``[each]`` values (default: the request's ``outputFileName``, else its request_id; see
:mod:`batchkit._handback.naming`), then :func:`batchkit._handback.fetch.fetch_outputs` downloads it once,
verified and atomically, with the directory's ledger ``fetched.parquet`` making it resumable. Links that
expired are renewed through the API with the given client (``GET /v2/generate/{id}``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from .._api.client import Client
from .._results.join import source_columns
from .._results.results import collect_results
from .._shard.builddir import FETCHED, Manifest, load_manifest
from .fetch import FetchItem, FetchOptions, FetchProgress, FetchResult, fetch_outputs, renew_from
from .ledger import FetchLedger
from .naming import NameRequest, OnCollision, assign_names
from .stores import open_destination

__all__ = ["DeliverOptions", "fetch_directory", "fetched_files", "with_files"]

log = logging.getLogger("batchkit")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverOptions:
    """How ``batchkit fetch`` names and fetches: a ``name`` template, what to do when two rows get one name
    (``error`` or ``number`` them), ``concurrency``, ``renew_all`` (ask the API for a fresh link of every
    video first: for links known to be stale, e.g. of a sandbox started anew), the fetch's own ``fetch``
    options, and ``storage_options`` for an fsspec destination (an S3 endpoint, credentials...)."""

    name: str | None = None
    on_collision: OnCollision = "error"
    concurrency: int = 8
    renew_all: bool = False
    fetch: FetchOptions | None = None
    storage_options: Mapping[str, Any] | None = None


def fetch_directory(
    directory: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    options: DeliverOptions | None = None,
    *,
    client: Client | None = None,
    on_progress: Callable[[FetchProgress], None] | None = None,
) -> FetchResult:
    """Fetch every completed video of ``directory`` to ``dest`` (a folder or an fsspec URL)."""
    opts = options or DeliverOptions()
    folder = Path(directory)
    manifest = load_manifest(folder)
    frame = collect_results(folder, download=False).frame
    done = frame.filter(pl.col("outcome") == "completed")
    file_names = _output_file_names(folder, manifest)
    columns = [*source_columns(frame, manifest), *manifest.each]
    requests = [
        NameRequest(row["request_id"], output_file_name=file_names.get(row["request_id"]), values=row)
        for row in done.select("request_id", *columns).to_dicts()
    ]
    naming = assign_names(requests, opts.name, columns=columns, on_collision=opts.on_collision)
    urls = done.select("request_id", "output_url", "generation_id").iter_rows()
    items = [
        FetchItem(rid, url, name, generation)
        for (rid, url, generation), name in zip(urls, naming.names, strict=True)
    ]
    renew = renew_from(client) if client is not None else None
    if opts.renew_all and renew is not None:
        items = [FetchItem(i.request_id, renew(i) or i.output_url, i.name, i.generation_id) for i in items]
    store = open_destination(
        dest, storage_options=opts.storage_options, fsync=(opts.fetch or FetchOptions()).fsync
    )
    result = fetch_outputs(
        items,
        store,
        ledger_path=folder / FETCHED,
        concurrency=opts.concurrency,
        renew=renew,
        on_progress=on_progress,
        options=opts.fetch,
    )
    result.findings[:0] = naming.findings
    return result


def _output_file_names(folder: Path, manifest: Manifest) -> dict[str, str]:
    """Each request's ``outputFileName`` from the lines that were sent (shards, or the unsharded file)."""
    files = manifest.shard_paths() or ([folder / manifest.unsharded.file] if manifest.unsharded else [])
    names: dict[str, str] = {}
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for raw in data.splitlines():
            try:
                line = orjson.loads(raw)
                name = line["payload"].get("outputFileName")
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
            if isinstance(name, str) and isinstance(line.get("request_id"), str):
                names[line["request_id"]] = name
    return names


def fetched_files(directory: str | os.PathLike[str]) -> dict[str, str]:
    """The videos ``batchkit fetch`` put in a local folder, by request_id (none when it never ran there)."""
    path = Path(directory) / FETCHED
    if not path.exists():
        return {}
    with FetchLedger.open(path) as ledger:
        entries = ledger.entries
    found: dict[str, str] = {}
    for entry in entries:
        local = entry.destination.removeprefix("file://")
        if "://" not in local and Path(local).is_file():
            found[entry.request_id] = local
    return found


def with_files(frame: pl.DataFrame, directory: str | os.PathLike[str]) -> pl.DataFrame:
    """``frame`` with a ``file`` column: where ``batchkit fetch`` put each row's video (null when nowhere)."""
    path = Path(directory) / FETCHED
    if not path.exists():
        return frame
    with FetchLedger.open(path) as ledger:
        where = {e.request_id: e.destination for e in ledger.entries}
    if not where:
        return frame
    return frame.with_columns(
        pl.col("request_id").replace_strict(where, default=None, return_dtype=pl.String).alias("file")
    )
