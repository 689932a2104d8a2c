"""``batchkit results DIR``: the joined results handed back in the shapes asked for, in one call.

:func:`hand_back` collects the results (downloading what is missing unless ``download`` is off), adds where
``batchkit fetch`` put each video, and writes what was asked: the table (long, or ``wide`` for an ``[each]``
build) to ``out``, and a copy of the build's own source with the result columns added to ``into``. The export
path is checked before anything is fetched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .._api.client import Client
from .._results.export import check_export_path, export_frame
from .._results.results import Results, collect_results
from .._shard.builddir import Manifest, load_manifest
from .deliver import with_files
from .fill import fill_into
from .wide import each_counts, wide_frame

__all__ = ["HandBack", "HandBackOptions", "hand_back"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HandBackOptions:
    """What :func:`hand_back` writes and from what: ``out`` (``.csv``, ``.parquet``, ``.xlsx``, ``.jsonl``),
    ``wide`` (one row per source row, for an ``[each]`` build), ``into`` (a filled-in copy of the source);
    ``download``, ``source`` and ``follow`` as for :func:`batchkit.collect_results`."""

    out: str | Path | None = None
    wide: bool = False
    into: str | os.PathLike[str] | None = None
    download: bool = True
    source: Any = None
    follow: bool = True


@dataclass(frozen=True, slots=True)
class HandBack:
    """The results, the table written (``written``) or filled in (``filled``), and the ``[each]`` grid."""

    results: Results
    manifest: Manifest
    table: pl.DataFrame
    written: Path | None = None
    filled: Path | None = None
    #: Rows per ``[each]`` value and outcome (None for a build without ``[each]``).
    by_each: pl.DataFrame | None = None

    @property
    def pending(self) -> int:
        """Rows whose batches still run (``batchkit wait DIR``, then again)."""
        return self.results.outcomes["pending"]

    @property
    def complete(self) -> bool:
        """Every row completed, and no finding is an error."""
        return self.results.outcomes["completed"] == self.results.frame.height and self.results.report.valid

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.results.summary(),
            "valid": self.results.report.valid,
            "pending": self.pending,
            "written": str(self.written) if self.written is not None else None,
            "filled": str(self.filled) if self.filled is not None else None,
            "report": self.results.report,
        }


def hand_back(
    directory: str | os.PathLike[str], options: HandBackOptions | None = None, *, client: Client | None = None
) -> HandBack:
    """Join the results of ``directory`` and write them as ``options`` ask (see the module doc)."""
    opts = options or HandBackOptions()
    folder = Path(directory)
    if opts.out is not None:
        check_export_path(opts.out)  # before anything is fetched
    results = collect_results(
        folder, client=client, download=opts.download, source=opts.source, follow=opts.follow
    )
    manifest = load_manifest(folder)
    frame = with_files(results.frame, folder)  # where `batchkit fetch` put each video, once it ran
    table = wide_frame(frame, manifest) if opts.wide else frame
    written = export_frame(table, opts.out) if opts.out is not None else None
    filled = fill_into(frame, manifest, opts.into, source=opts.source) if opts.into is not None else None
    grid = each_counts(results.frame, manifest) if manifest.each else None
    return HandBack(results, manifest, table, written, filled, grid)
