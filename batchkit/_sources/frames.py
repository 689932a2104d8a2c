"""In-memory tables as sources: a pandas index kept as columns, and snapshots a Parquet file can hold.

A pandas index that is not the default one (``0, 1, 2, ...`` without a name) may hold the request id, so it
is never dropped: it becomes the first column(s), named as the index (``index`` when unnamed, ``level_N`` for
unnamed levels of a MultiIndex), as ``DataFrame.reset_index()`` names them.
"""

from __future__ import annotations

import logging
from typing import Any

import polars as pl

from .._errors import InputError

__all__ = ["index_as_columns", "parquet_ready"]

log = logging.getLogger("batchkit")


def index_as_columns(obj: Any) -> Any:
    """A pandas frame whose index is not the default one, with its index as columns (never dropped)."""
    index = obj.index
    default = (
        index.nlevels == 1
        and index.name is None
        and type(index).__name__ == "RangeIndex"
        and index.start == 0
        and index.step == 1
    )
    if default:
        return obj
    names = [
        name if name is not None else ("index" if index.nlevels == 1 else f"level_{i}")
        for i, name in enumerate(index.names)
    ]
    taken = [name for name in names if name in obj.columns]
    if taken:
        msg = (
            f"the DataFrame's index {taken[0]!r} has the name of one of its columns, so it cannot become a "
            "column too: rename it (df.rename_axis('new_name')) or drop it (df.reset_index(drop=True))"
        )
        raise InputError(msg, column=str(taken[0]))
    log.info("the DataFrame's index becomes the column(s) %s", ", ".join(map(str, names)))
    return obj.reset_index()


def parquet_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in its own column types, but a column of nothing but nulls (which has no type a Parquet file
    keeps reliably) as text."""
    return frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null)
