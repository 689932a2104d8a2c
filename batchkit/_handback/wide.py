"""Results in the source's own layout: one row per source row, the ``[each]`` values side by side.

A localization sheet has one row per video and a column per language; its results come back the same way:
the source's columns in their order, then for every ``[each]`` value ``v`` (in the order the build made
them) ``outcome_<v>``, ``output_url_<v>``, ``error_code_<v>`` and ``error_message_<v>`` (and ``file_<v>`` once
the videos were fetched). Several ``[each]`` variables join their values with ``_`` (``de_female``).

:func:`each_counts` is the summary behind the terminal status grid: per ``[each]`` value, units per outcome.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import polars as pl

from .._errors import InputError
from .._results.join import source_columns
from .._results.results import OUTCOMES, collect_results
from .._shard.builddir import Manifest, load_manifest
from .deliver import with_files

__all__ = ["WIDE_FIELDS", "by_source_row", "each_counts", "wide_frame", "wide_results"]

#: The per-value columns of the wide table, in order (``file`` only when present).
WIDE_FIELDS: Final = ("outcome", "output_url", "error_code", "error_message", "file")
_KEY: Final = "_each"


def _each_key(each: Sequence[str]) -> pl.Expr:
    return pl.concat_str([pl.col(v).cast(pl.String).fill_null("") for v in each], separator="_").alias(_KEY)


def _require_each(manifest: Manifest) -> list[str]:
    if not manifest.each:
        msg = (
            f"{manifest.name} has no [each] expansion: every source row already has one request, so the "
            "results table is already one row per source row; leave out --wide"
        )
        raise InputError(msg)
    return list(manifest.each)


def wide_frame(frame: pl.DataFrame, manifest: Manifest) -> pl.DataFrame:
    """The joined results ``frame`` (one row per unit) pivoted to one row per source row.

    Rows keep their source order; a source row with no unit (every value skipped) is not in ``frame`` and
    so not in the result. Raises :class:`InputError` for a build without ``[each]``.
    """
    return by_source_row(frame, manifest).drop("source", "row")


def by_source_row(frame: pl.DataFrame, manifest: Manifest) -> pl.DataFrame:
    """:func:`wide_frame` with the ``source`` (index in the manifest) and 1-based data ``row`` of each row."""
    each = _require_each(manifest)
    columns = source_columns(frame, manifest)
    units = manifest.scan_requests().select("request_id", "source", "row").collect()
    keyed = frame.join(units, on="request_id", how="left", maintain_order="left").with_columns(
        _each_key(each)
    )
    values = keyed.get_column(_KEY).unique(maintain_order=True).to_list()
    fields = [f for f in WIDE_FIELDS if f in frame.columns]
    taken = {f"{field}_{value}" for value in values for field in fields}
    names = {c: _free(c, taken) for c in columns}
    base = keyed.group_by(["source", "row"], maintain_order=True).agg(
        [pl.col(c).first().alias(names[c]) for c in columns]
    )
    for value in values:
        part = keyed.filter(pl.col(_KEY) == value).select(
            "source", "row", *[pl.col(f).alias(f"{f}_{value}") for f in fields]
        )
        base = base.join(part.unique(["source", "row"], keep="first"), on=["source", "row"], how="left")
    return base.sort(["source", "row"])


def _free(name: str, taken: set[str]) -> str:
    """A source column named like a wide column (``outcome_de``) becomes ``source_outcome_de``."""
    while name in taken:
        name = f"source_{name}"
    taken.add(name)
    return name


def each_counts(frame: pl.DataFrame, manifest: Manifest) -> pl.DataFrame:
    """Per ``[each]`` value (in build order): units per outcome (every outcome a column), and the total."""
    each = _require_each(manifest)
    keyed = frame.with_columns(_each_key(each))
    order = keyed.get_column(_KEY).unique(maintain_order=True)
    counts = keyed.group_by(_KEY, "outcome").len()
    present = [o for o in OUTCOMES if o in set(counts.get_column("outcome").to_list())]
    table = (
        pl.DataFrame({_KEY: order})
        .join(
            counts.pivot(on="outcome", index=_KEY, values="len").fill_null(0),
            on=_KEY,
            how="left",
            maintain_order="left",
        )
        .select(_KEY, *[pl.col(o).fill_null(0).cast(pl.Int64) for o in present])
    )
    return table.with_columns(pl.sum_horizontal(present).alias("total")).rename({_KEY: "_".join(each)})


def wide_results(directory: str | os.PathLike[str], *, follow: bool = True) -> pl.DataFrame:
    """The results of an ``[each]`` build one row per source row (what ``results DIR --wide`` writes), from
    what is already downloaded, with ``file_<v>`` once ``batchkit fetch`` ran."""
    folder = Path(directory)
    frame = with_files(collect_results(folder, download=False, follow=follow).frame, folder)
    return wide_frame(frame, load_manifest(folder))
