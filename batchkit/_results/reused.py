"""The outcomes a ``build --reuse`` directory carries: :func:`reused_overlay`.

A unit left out of the build because an identical request already completed (``requests.parquet`` status
``reused``) was never sent from here; ``reused.parquet`` keeps the outcome it carries. The overlay makes it
``completed`` with that output URL, duration, generation and batch, and fills ``reused_from`` (the directory
that made the video) and ``reused_request_id`` (its request_id there); both are null for every other unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import polars as pl

from .._shard.builddir import REUSED

__all__ = ["CARRIED", "reused_overlay"]

#: The result columns a reused unit takes from the directory that completed it.
CARRIED: Final = ("batch_id", "output_url", "output_duration", "generation_id")


def reused_overlay(joined: pl.DataFrame, folder: Path) -> pl.DataFrame:
    """A ``build --reuse`` directory: units left out as ``reused`` take the completed outcome they carry."""
    table = pl.read_parquet(folder / REUSED)
    carried = table.select(
        "request_id",
        pl.col("reused_from").alias("_ru_reused_from"),
        pl.col("reused_request_id").alias("_ru_reused_request_id"),
        *[pl.col(c).alias(f"_ru_{c}") for c in CARRIED],
    ).unique("request_id", keep="first")
    frame = joined.join(carried, on="request_id", how="left", maintain_order="left")
    reused = pl.col("status") == "reused"
    return frame.with_columns(
        pl.when(reused).then(pl.lit("completed")).otherwise(pl.col("outcome")).alias("outcome"),
        pl.when(reused).then(pl.lit(None, pl.String)).otherwise(pl.col("error_code")).alias("error_code"),
        pl.when(reused)
        .then(pl.lit(None, pl.String))
        .otherwise(pl.col("error_message"))
        .alias("error_message"),
        *[pl.when(reused).then(pl.col(f"_ru_{c}")).otherwise(pl.col(c)).alias(c) for c in CARRIED],
        pl.when(reused).then(pl.col("_ru_reused_from")).alias("reused_from"),
        pl.when(reused).then(pl.col("_ru_reused_request_id")).alias("reused_request_id"),
    ).drop(pl.selectors.starts_with("_ru_"))
