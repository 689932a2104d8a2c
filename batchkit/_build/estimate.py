"""What a build directory will cost to send: :func:`estimate_directory`, and :func:`check_budget` before a submit.

Only the requests that will be sent are priced: valid units in shards (or sent one by one), not invalid,
reused or held ones. Each request's billable seconds come from ``lengths.parquet`` (written with
``media.parquet`` by ``build --probe`` and ``batchkit probe DIR``), a table read in one go; a directory
without it is measured from its lines instead (:func:`batchkit._probe.lengths.billable_seconds`, with the
durations of ``media.parquet`` if there is one): text-to-speech scripts then still have a length, media URLs
do not. The seconds are priced by :func:`batchkit.estimate` (asked once per distinct model and rounded length),
with totals by model, by ``[each]`` value and by shard (named by its file).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from .._api.client import Client
from .._errors import InputError
from .._probe.budget import Budget, judge
from .._probe.lengths import billable_seconds
from .._probe.options import ProbeOptions
from .._probe.pricing import ApiPrices, Estimate, PriceBook, estimate
from .._shard.builddir import LENGTHS, MEDIA, Manifest, load_manifest
from .preflight import each_labels
from .probe import directory_lines

__all__ = ["check_budget", "estimate_directory", "request_lengths"]

log = logging.getLogger("batchkit")

_FRAME = {"model": pl.Categorical, "seconds": pl.Float64, "each": pl.Categorical, "shard": pl.Int32}


def request_lengths(directory: str | Path, manifest: Manifest | None = None) -> pl.DataFrame:
    """The requests a directory will send, one row each: ``model``, ``seconds`` (None: unknown), ``each``
    (the ``[each]`` values as one label) and ``shard`` (its number; None when sent one by one)."""
    folder = Path(directory)
    manifest = manifest or load_manifest(folder)
    requests = manifest.requests_frame(columns=["status", "shard"])
    lengths = _stored(folder, manifest, requests.height)
    if lengths is None:
        lengths = _measured(folder, manifest, requests.height)
    sent = requests.get_column("status") == "ok"
    frame = lengths.with_columns(requests.get_column("shard"))
    if not sent.all():  # invalid, reused or held units are not sent (a clean build is copied no further)
        frame = frame.filter(sent)
    return frame.select(
        pl.col(name) if frame.schema[name] == dtype else pl.col(name).cast(dtype)
        for name, dtype in _FRAME.items()
    )


def _stored(folder: Path, manifest: Manifest, units: int) -> pl.DataFrame | None:
    """``lengths.parquet``, when it is there and lines up with ``requests.parquet`` (as many units, the same
    first one: a rebuild removes it, ``batchkit probe DIR`` writes it again)."""
    path = folder / LENGTHS
    if not path.is_file():
        return None
    try:
        lengths = pl.read_parquet(path, columns=["model", "seconds", "each"])
        mine = _request_id(path, 0) if units else None
        theirs = _request_id(folder / manifest.requests.file, 0) if units else None
    except (OSError, pl.exceptions.PolarsError) as exc:
        log.warning("estimate: cannot read %s (%s); measuring the lines instead", path, exc)
        return None
    if lengths.height != units or mine != theirs:
        log.warning("estimate: %s does not match requests.parquet; measuring the lines instead", path)
        return None
    return lengths


def _request_id(path: Path, row: int) -> str | None:
    """One request_id of a parquet table, reading only the row group that holds it."""
    found = pl.scan_parquet(path).select("request_id").slice(row, 1).collect().get_column("request_id")
    return found[0] if found.len() else None


def _measured(folder: Path, manifest: Manifest, units: int) -> pl.DataFrame:
    """Lengths measured from the directory's own lines (no ``lengths.parquet``), in requests order."""
    durations: dict[str, float] = {}
    media = folder / MEDIA
    if media.is_file():
        table = pl.read_parquet(media, columns=["url", "status", "duration"])
        ok = table.filter((pl.col("status") == "ok") & pl.col("duration").is_not_null())
        durations = dict(ok.select("url", "duration").iter_rows())
    lines = directory_lines(folder, manifest)
    labels = each_labels(lines, manifest.each)
    rules = ProbeOptions()
    models: list[str | None] = [None] * units
    seconds: list[float | None] = [None] * units
    each: list[str | None] = [None] * units
    for record, label in zip(
        lines.select("unit", "line", *manifest.each).iter_rows(named=True), labels, strict=True
    ):
        payload = orjson.loads(record["line"]).get("payload") or {}
        values = {name: record[name] for name in manifest.each}
        unit = record["unit"]
        model = payload.get("model")
        models[unit] = model if isinstance(model, str) else None
        seconds[unit] = billable_seconds(payload, durations, rules.language_of(values))
        each[unit] = label
    return pl.DataFrame(
        {"model": models, "seconds": seconds, "each": each},
        schema={"model": pl.String, "seconds": pl.Float64, "each": pl.String},
    )


def estimate_directory(
    directory: str | Path, prices: PriceBook | None = None, *, client: Client | None = None
) -> Estimate:
    """What sending ``directory`` costs, priced with ``prices`` (default: Sync's estimate API through
    ``client``, which is then required). Unknown lengths and prices are counted as unknown, never as 0."""
    folder = Path(directory)
    manifest = load_manifest(folder)
    frame = request_lengths(folder, manifest)
    if prices is None:
        if client is None:
            msg = "estimate_directory needs prices (a price book, e.g. TablePrices.from_toml) or a client"
            raise InputError(msg)
        prices = ApiPrices(client, examples=_examples(folder, manifest, frame))
    result = estimate(frame, prices)
    files = {str(n): info.file for n, info in enumerate(manifest.shards, 1)}
    if manifest.unsharded is not None:
        files["(none)"] = manifest.unsharded.file
    return dataclasses.replace(result, by_shard={files.get(k, k): v for k, v in result.by_shard.items()})


def _examples(folder: Path, manifest: Manifest, frame: pl.DataFrame) -> Any:
    """For ``POST /v2/analyze/cost``: a request of the directory with that model and rounded length."""
    cache: dict[tuple[str, float], tuple[Mapping[str, Any], float] | None] = {}

    def find(model: str, seconds: float) -> tuple[Mapping[str, Any], float] | None:
        key = (model, seconds)
        if key not in cache:
            cache[key] = _example(folder, manifest, frame, model, seconds)
        return cache[key]

    return find


def _example(
    folder: Path, manifest: Manifest, frame: pl.DataFrame, model: str, seconds: float
) -> tuple[Mapping[str, Any], float] | None:
    position = frame.with_row_index("i").filter(
        (pl.col("model").cast(pl.String) == model) & (pl.col("seconds").ceil() == math.ceil(seconds))
    )
    if position.is_empty():
        return None
    index, length = int(position["i"][0]), float(position["seconds"][0])
    lines = directory_lines(folder, manifest).filter(pl.col("status") == "ok")
    line = lines.get_column("line")[index]
    payload = orjson.loads(line).get("payload")
    return (payload, length) if isinstance(payload, dict) else None


def check_budget(directory: str | Path, budget: Budget, *, client: Client | None = None) -> Estimate:
    """Estimate ``directory`` as ``batchkit estimate`` does and judge it against ``budget``.

    Raises :class:`batchkit.BudgetError` when it is over ``max_cost``, unknown in part (unless
    ``allow_unknown``), or not confirmed; returns the estimate otherwise. Nothing is sent or written.
    """
    folder = Path(directory)
    result = estimate_directory(folder, budget.price_book(), client=client)
    judge(result, budget, where=str(folder))
    return result
