"""What a build did, in numbers: the counts, the invalid units by code, the shards, the held requests included,
the requests reused, and (after ``--probe``, given prices) what sending it costs.

:func:`summarize` reads them from a finished build (its ``requests.parquet``); :func:`invalid_rows_by_code`
from the report of a build that failed (one count per row, unlike the findings table, which counts findings).
The command line shows these; they are plain data for any other caller too (``to_dict``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .._report import Report
from .._shard.builddir import LENGTHS, BuildCounts, UnshardedInfo
from .._shard.write import BuildResult

if TYPE_CHECKING:
    from .._probe.pricing import Estimate

__all__ = ["BuildSummary", "invalid_rows_by_code", "summarize"]


@dataclass(frozen=True, slots=True)
class BuildSummary:
    """A finished build in numbers (see :func:`summarize`)."""

    out_dir: Path
    counts: BuildCounts
    #: Invalid request units by their first error code, most frequent first.
    invalid_by_code: dict[str, int] = field(default_factory=dict)
    #: Records per shard, in shard order.
    shard_records: list[int] = field(default_factory=list)
    #: The first and the last shard file (the same when there is one; None when there is none).
    first_file: str | None = None
    last_file: str | None = None
    #: Requests that came from ``--include-held`` directories rather than the source itself.
    held: int = 0
    #: Requests left out because an identical one completed before (``--reuse``).
    reused: int = 0
    #: The lines of a build without shards (``--reuse`` left fewer than a batch's minimum): sent one by one.
    unsharded: UnshardedInfo | None = None
    #: Whether the media was probed (``lengths.parquet`` is there for the estimate).
    probed: bool = False
    #: What sending it costs, when it was probed and prices were given.
    estimate: Estimate | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "counts": self.counts.model_dump(),
            "invalid_by_code": self.invalid_by_code,
            "held": self.held,
            "reused": self.reused,
            "shard_records": self.shard_records,
            "unsharded": self.unsharded.model_dump() if self.unsharded is not None else None,
            "estimate": self.estimate.to_dict() if self.estimate is not None else None,
        }


def summarize(result: BuildResult, *, prices: str | os.PathLike[str] | None = None) -> BuildSummary:
    """The numbers of a finished build, from its manifest and ``requests.parquet``; with ``prices`` (a
    ``prices.toml``) and probed media, the estimate too."""
    manifest = result.manifest
    requests = manifest.scan_requests()
    invalid = (
        requests.filter(pl.col("status") == "invalid")
        .group_by("code")
        .len()
        .sort(["len", "code"], descending=[True, False])
        .collect()
    )
    held = 0
    if len(manifest.sources) > 1:  # held requests bring their own sources; the build's own is source 0
        own = int(requests.filter(pl.col("source") == 0).select(pl.len()).collect().item())
        held = result.counts.units - own
    shards = manifest.shards
    probed = (result.out_dir / LENGTHS).is_file()
    estimate = None
    if probed and prices is not None:
        from .._probe.pricing import TablePrices
        from .estimate import estimate_directory

        estimate = estimate_directory(result.out_dir, TablePrices.from_toml(prices))
    return BuildSummary(
        out_dir=result.out_dir,
        counts=result.counts,
        invalid_by_code={str(code): int(n) for code, n in invalid.iter_rows()},
        shard_records=[s.records for s in shards],
        first_file=shards[0].file if shards else None,
        last_file=shards[-1].file if shards else None,
        held=held,
        reused=result.counts.reused or 0,
        unsharded=manifest.unsharded,
        probed=probed,
        estimate=estimate,
    )


def invalid_rows_by_code(report: Report) -> dict[str, int]:
    """Invalid rows (or lines) of a failed build by their first error code, most frequent first: one count per
    row, where the report counts findings (a row with two problems has two)."""
    first: dict[tuple[str | None, int | None, int | None, str | None], str] = {}
    for finding in report.errors:
        if finding.row is None and finding.line is None:
            continue
        key = (finding.source or finding.file, finding.row, finding.line, finding.request_id)
        first.setdefault(key, finding.code)
    counts: dict[str, int] = {}
    for code in first.values():
        counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
