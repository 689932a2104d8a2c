"""The passes a build may make over its spilled lines before the shards are planned: reuse, then the probe.

Reuse comes first (:mod:`batchkit._build.reuse`), so a request that already completed is neither sent nor
probed again; the media pass (:mod:`batchkit._build.preflight`) then judges what is left. Both leave lines out
of the shards and update their units' provenance the way the duplicate search does, so every unit still ends
in exactly one place: a shard, ``reused.parquet``, or the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .._mapping.templates import UnitPlan
from .._report import Report
from .._shard.spill import Spill
from .options import BuildOptions
from .preflight import probe_spill
from .reuse import reuse_spill

__all__ = ["Passed", "preflight"]


@dataclass(slots=True)
class Passed:
    """What the passes leave the build: lines to leave out, provenance updates, files to move into place."""

    excluded: list[int]
    updates: pl.DataFrame | None
    copies: list[tuple[Path, str]] = field(default_factory=list)
    #: Units not sent because an identical request completed before.
    reused: int = 0


def preflight(
    spill: Spill,
    report: Report,
    options: BuildOptions,
    names: Sequence[str],
    plans: Sequence[UnitPlan],
    each: Sequence[str],
    excluded: Sequence[int],
    updates: pl.DataFrame | None,
) -> Passed:
    """Reuse and probe (as ``options`` ask) the spill's valid lines not yet ``excluded``; the updates come
    in order (a unit's first update wins)."""
    left_out = sorted(excluded)
    copies: list[tuple[Path, str]] = []
    count = 0
    if options.reuse is not None:
        reused = reuse_spill(spill, options.reuse, report, names=names, each=each, skip=left_out)
        left_out, updates = _merge(left_out, updates, reused.excluded, reused.updates)
        copies.extend(reused.copies)
        count = reused.reused
    if options.probe is not None:
        media = probe_spill(
            spill,
            report,
            names=names,
            plans=plans,
            each=each,
            limits=options.limits,
            options=options.probe,
            skip=left_out,
        )
        left_out, updates = _merge(left_out, updates, media.excluded, media.updates)
        copies.extend(media.copies)
    return Passed(left_out, updates, copies, count)


def _merge(
    excluded: Sequence[int], updates: pl.DataFrame | None, more: Sequence[int], newer: pl.DataFrame
) -> tuple[list[int], pl.DataFrame | None]:
    """Both sets of left-out lines, and both updates (a unit updated twice keeps its first update)."""
    frames = [f for f in (updates, newer) if f is not None and f.height]
    merged = pl.concat(frames).unique("unit", keep="first", maintain_order=True) if frames else updates
    return sorted({*excluded, *more}), merged
