"""What a campaign will cost: seconds of input × a price per model, totalled by model, ``[each]`` value and shard.

A :class:`PriceBook` gives a rate, USD per second, for a model and an input length. Two come with batchkit:

* :class:`TablePrices`, a user's ``prices.toml`` for offline use::

      # USD per second of input media, by model
      currency = "USD"          # optional; USD is the only currency accepted
      [prices]
      "lipsync-2" = 0.05
      "lipsync-2-pro" = 0.083

* :class:`ApiPrices`, which asks Sync: ``POST /v2/generations/estimate`` with ``{model, duration}`` (the
  newer endpoint; ``422 cost_estimate_unavailable`` means unknown), and when that endpoint does not exist
  (404/405) the SDK's ``POST /v2/analyze/cost``, whose body is a whole generate request: it is asked with an
  example payload that the caller supplies per model and length. Sync bills output frames × a price per frame,
  so the cost of the rounded-up length, divided by it, is the rate.

:func:`estimate` rounds every known length up to whole ``resolution`` seconds, asks the price book once per
distinct (model, rounded length), never once per row, and prices each request at ``seconds × rate``. The
aggregation is columnar (polars): a million requests take a group-by, not a Python loop. Unknown is never 0:
a request without a length or without a price is counted as unknown, ``total_usd`` is then ``None``, and
``known_usd`` sums what is known.
"""

from __future__ import annotations

import logging
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, overload

import httpx
import orjson
import polars as pl

from .._errors import APIStatusError, InputError

__all__ = ["ApiPrices", "Estimate", "EstimateItem", "PriceBook", "Subtotal", "TablePrices", "estimate"]

log = logging.getLogger("batchkit")

_NONE_LABEL: Final = "(none)"


class PriceBook(Protocol):
    """Where prices come from: ``rate(model, seconds)`` is USD per second of input, or None when unknown.

    A book whose rates do not depend on the length may also have ``flat_rates``, a mapping of model to rate
    (as :class:`TablePrices` does): :func:`estimate` then prices a frame in one pass instead of two.
    """

    @property
    def source(self) -> str:
        """Where the prices come from, for reports (``prices.toml``, ``Sync's estimate API``)."""
        ...

    def rate(self, model: str, seconds: float) -> float | None:
        """USD per second for a request of ``model`` whose input lasts ``seconds`` (rounded up)."""
        ...


class TablePrices:
    """Fixed prices, USD per second of input, by model: ``TablePrices({"lipsync-2": 0.05})``."""

    def __init__(self, prices: Mapping[str, float], *, source: str = "price table") -> None:
        self._prices = {model: _valid_price(model, value, source) for model, value in prices.items()}
        self._source = source

    @property
    def source(self) -> str:
        return self._source

    @property
    def prices(self) -> dict[str, float]:
        return dict(self._prices)

    def rate(self, model: str, seconds: float) -> float | None:
        return self._prices.get(model)

    @property
    def flat_rates(self) -> dict[str, float]:
        """The rates, which do not depend on the length: :func:`estimate` then prices in a single pass."""
        return dict(self._prices)

    def __repr__(self) -> str:
        return f"TablePrices({self._prices!r})"

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> TablePrices:
        """Read a ``prices.toml`` (layout in the module docstring); :class:`~batchkit.InputError` if unusable."""
        where = Path(path)
        try:
            data = tomllib.loads(where.read_text(encoding="utf-8"))
        except OSError as exc:
            msg = f"{where}: cannot read the price file ({exc.strerror or exc})"
            raise InputError(msg, path=where) from None
        except UnicodeDecodeError:
            msg = f"{where}: the price file is not UTF-8 text"
            raise InputError(msg, path=where) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f'{where}: not valid TOML ({exc}); prices look like: [prices] "lipsync-2" = 0.05'
            raise InputError(msg, path=where) from None
        unknown = sorted(set(data) - {"prices", "currency"})
        if unknown:
            msg = f"{where}: unknown key(s) {', '.join(unknown)}; a price file holds [prices] and optionally currency"
            raise InputError(msg, path=where)
        currency = data.get("currency", "USD")
        if currency != "USD":
            msg = f'{where}: currency is {currency!r}; prices must be in USD (currency = "USD")'
            raise InputError(msg, path=where)
        table = data.get("prices")
        if not isinstance(table, dict) or not table:
            msg = f'{where}: no [prices] table; add one: [prices] then "lipsync-2" = 0.05 (USD per second)'
            raise InputError(msg, path=where)
        try:
            return cls(table, source=str(where))
        except ValueError as exc:
            msg = f"{where}: {exc}"
            raise InputError(msg, path=where) from None


def _valid_price(model: object, value: object, source: str) -> float:
    if not isinstance(model, str) or not model.strip():
        msg = f"model names must be non-empty strings, not {model!r}"
        raise ValueError(msg)
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"the price of {model!r} is {value!r}; a price is a number of USD per second, e.g. 0.05"
        raise ValueError(msg)
    if not math.isfinite(value) or value < 0:
        msg = f"the price of {model!r} is {value}; prices must be finite and ≥ 0 (USD per second)"
        raise ValueError(msg)
    return float(value)


class _Caller(Protocol):
    """What :class:`ApiPrices` needs of :class:`batchkit.Client`: one authenticated call with retries."""

    def _call(
        self,
        method: str,
        path: str,
        *,
        rule: Literal["idempotent"],
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response: ...


#: ``examples(model, seconds)``: a generate payload whose inputs last about ``seconds``, and their exact length.
ExampleFinder = Callable[[str, float], tuple[Mapping[str, Any], float] | None]


class ApiPrices:
    """Prices from Sync's own estimate endpoints, through a :class:`batchkit.Client` (or the sandbox).

    ``fps`` is sent to the newer endpoint when given (Sync assumes 30). ``examples`` makes the fallback to
    ``POST /v2/analyze/cost`` possible (see the module docstring); without it, a server that lacks the newer
    endpoint prices nothing. Each (model, length) is asked once; answers, unknowns included, are remembered.
    """

    def __init__(
        self, client: _Caller, *, fps: float | None = None, examples: ExampleFinder | None = None
    ) -> None:
        self._client = client
        self._fps = fps
        self._examples = examples
        self._memo: dict[tuple[str, float], float | None] = {}
        self._newer: bool | None = None
        #: API calls made so far.
        self.calls = 0

    @property
    def source(self) -> str:
        return "Sync's estimate API"

    def rate(self, model: str, seconds: float) -> float | None:
        key = (model, seconds)
        if key not in self._memo:
            self._memo[key] = self._ask(model, seconds)
        return self._memo[key]

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        self.calls += 1
        response = self._client._call(
            "POST",
            path,
            rule="idempotent",
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
        )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            log.warning("estimate: %s answered %d with a body that is not JSON", path, response.status_code)
            return None

    def _ask(self, model: str, seconds: float) -> float | None:
        if seconds <= 0:
            return None
        if self._newer is not False:
            body: dict[str, Any] = {"model": model, "duration": seconds}
            if self._fps is not None:
                body["fps"] = self._fps
            try:
                answer = self._post("/v2/generations/estimate", body)
            except APIStatusError as exc:
                if exc.status_code in (404, 405):
                    log.info(
                        "estimate: POST /v2/generations/estimate is not there; using POST /v2/analyze/cost"
                    )
                    self._newer = False
                elif exc.status_code in (400, 422):
                    log.info(
                        "estimate: no price for %s at %g s (%s)",
                        model,
                        seconds,
                        exc.error_code or exc.status_code,
                    )
                    return None
                else:
                    raise
            else:
                self._newer = True
                cost = _cost(answer)
                return cost / seconds if cost is not None else None
        return self._fallback(model, seconds)

    def _fallback(self, model: str, seconds: float) -> float | None:
        example = self._examples(model, seconds) if self._examples is not None else None
        if example is None:
            return None
        payload, length = example
        if not length or length <= 0:
            return None
        try:
            answer = self._post("/v2/analyze/cost", {**payload, "model": model})
        except APIStatusError as exc:
            if exc.status_code in (400, 404, 405, 422):
                log.info("estimate: POST /v2/analyze/cost gave no price for %s (%s)", model, exc.status_code)
                return None
            raise
        cost = _cost(answer[0] if isinstance(answer, list) and answer else answer)
        return cost / length if cost is not None else None


def _cost(answer: Any) -> float | None:
    value = answer.get("estimatedGenerationCost") if isinstance(answer, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


# --------------------------------------------------------------------------------------------- estimate


@dataclass(frozen=True, slots=True)
class EstimateItem:
    """One request to price: its model, its billable seconds (None when unknown), its ``[each]`` value and shard."""

    request_id: str
    model: str
    seconds: float | None
    each: str | None = None
    shard: str | None = None


@dataclass(frozen=True, slots=True)
class Subtotal:
    """Requests, seconds and dollars of one group. ``total_usd`` is None when any request's cost is unknown."""

    requests: int
    priced: int
    unknown: int
    seconds: float
    known_usd: float

    @property
    def total_usd(self) -> float | None:
        return self.known_usd if self.unknown == 0 else None

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data, dollars rounded to a millionth (float sums leave noise below that)."""
        total = self.total_usd
        return {
            **asdict(self),
            "known_usd": round(self.known_usd, 6),
            "total_usd": round(total, 6) if total is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Estimate:
    """The price of a set of requests, with totals by model, by ``[each]`` value and by shard.

    ``unknown_seconds`` requests have no known length, ``unknown_price`` have one but no price for their
    model (``unpriced_models`` names those models); ``unknown`` is both together.
    """

    source: str
    requests: int
    priced: int
    unknown_seconds: int
    unknown_price: int
    seconds: float
    known_usd: float
    by_model: dict[str, Subtotal] = field(default_factory=dict)
    by_each: dict[str, Subtotal] = field(default_factory=dict)
    by_shard: dict[str, Subtotal] = field(default_factory=dict)
    unpriced_models: tuple[str, ...] = ()

    @property
    def unknown(self) -> int:
        return self.unknown_seconds + self.unknown_price

    @property
    def total_usd(self) -> float | None:
        """The whole cost, or None when any request's cost is unknown (see :attr:`known_usd`)."""
        return self.known_usd if self.unknown == 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data (``total_usd`` is null when anything is unknown)."""
        return {
            "source": self.source,
            "requests": self.requests,
            "priced": self.priced,
            "unknown": self.unknown,
            "unknown_seconds": self.unknown_seconds,
            "unknown_price": self.unknown_price,
            "unpriced_models": list(self.unpriced_models),
            "seconds": self.seconds,
            "known_usd": round(self.known_usd, 6),
            "total_usd": round(self.total_usd, 6) if self.total_usd is not None else None,
            "by_model": {k: v.to_dict() for k, v in self.by_model.items()},
            "by_each": {k: v.to_dict() for k, v in self.by_each.items()},
            "by_shard": {k: v.to_dict() for k, v in self.by_shard.items()},
        }


_SCHEMA: Final = {
    "request_id": pl.String,
    "model": pl.String,
    "seconds": pl.Float64,
    "each": pl.String,
    "shard": pl.String,
}


def _kept(dtype: pl.DataType, name: str) -> bool:
    """A ``model`` or ``each`` column that is categorical already stays so: its group-bys are on integers."""
    return name in ("model", "each") and isinstance(dtype, pl.Categorical | pl.Enum)


def _frame(items: Iterable[EstimateItem] | pl.DataFrame) -> pl.DataFrame:
    if isinstance(items, pl.DataFrame):
        missing = {"model", "seconds"} - set(items.columns)
        if missing:
            msg = f"the frame to estimate needs the column(s) {', '.join(sorted(missing))} (and may have each, shard)"
            raise InputError(msg)
        columns = [
            (pl.col(name) if name == "shard" or _kept(items.schema[name], name) else pl.col(name).cast(dtype))
            if name in items.columns
            else pl.lit(None, dtype).alias(name)
            for name, dtype in _SCHEMA.items()
            if name != "request_id"
        ]
        return items.select(columns)
    rows = [(i.model, i.seconds, i.each, i.shard) for i in items]
    return pl.DataFrame(rows, schema={k: v for k, v in _SCHEMA.items() if k != "request_id"}, orient="row")


def estimate(
    items: Iterable[EstimateItem] | pl.DataFrame, prices: PriceBook, *, resolution: float = 1.0
) -> Estimate:
    """Price every request of ``items`` (:class:`EstimateItem` objects, or a polars frame with columns
    ``model`` and ``seconds`` and optionally ``each`` and ``shard``) with ``prices``.

    Lengths are rounded up to whole ``resolution`` seconds before the price book is asked, once per distinct
    (model, rounded length); each request then costs ``seconds × rate``. A length that is null, not finite or
    not positive is unknown.
    """
    if not (math.isfinite(resolution) and resolution > 0):
        msg = f"resolution must be a positive number of seconds, not {resolution}"
        raise InputError(msg)
    frame = _frame(items)
    has_shard = bool(frame.get_column("shard").is_not_null().any())
    flat = getattr(prices, "flat_rates", None)
    if isinstance(flat, Mapping):
        priced, shard = _flat(frame, {str(k): float(v) for k, v in flat.items()}, has_shard)
    else:
        priced, shard = _length_aware(frame, prices, resolution, has_shard)
    # the two passes over the rows run side by side; every other total comes from the small table
    small, *shards = pl.collect_all([priced, *([shard] if shard is not None else [])])
    overall = small.select(_SUMS).row(0, named=True)
    unpriced = (
        small.filter(pl.col("unknown_price") > 0).get_column("model").cast(pl.String).unique().to_list()
    )
    models, values = small.group_by("model").agg(_SUMS), small.group_by("each").agg(_SUMS)
    return Estimate(
        source=prices.source,
        requests=int(overall["requests"] or 0),
        priced=int(overall["priced"] or 0),
        unknown_seconds=int(overall["unknown_seconds"] or 0),
        unknown_price=int(overall["unknown_price"] or 0),
        seconds=float(overall["seconds"] or 0.0),
        known_usd=float(overall["usd"] or 0.0),
        by_model=_subtotals(models, "model"),
        by_each=_subtotals(values, "each") if values.get_column("each").is_not_null().any() else {},
        by_shard=_subtotals(shards[0], "shard") if shards else {},
        unpriced_models=tuple(sorted(m if m is not None else _NONE_LABEL for m in unpriced)),
    )


_SECONDS: Final = pl.col("seconds")
_USABLE: Final = _SECONDS.is_not_null() & _SECONDS.is_finite() & (_SECONDS > 0)


def _flat(
    frame: pl.DataFrame, flat: Mapping[str, float], has_shard: bool
) -> tuple[pl.LazyFrame, pl.LazyFrame | None]:
    """Rates that do not depend on the length: the length only needs to be known or not (units 1 or null).

    Two group-bys run side by side over the rows: by model and ``[each]`` value, counting the known lengths
    (a small table every total but the shards' comes from, its rates looked up on it), and by shard with each
    row's rate. A
    ``model``/``each`` column that is categorical groups on integers; a shard column in order (as a build
    directory's is) groups as sorted.
    """
    rows = frame.lazy().with_columns(seconds=pl.when(_USABLE).then(_SECONDS), known=_USABLE)
    # known lengths are counted, not grouped by: two keys group faster than three
    small = rows.group_by("model", "each").agg(
        pl.len().alias("requests"), pl.col("known").sum().alias("known"), _SECONDS.sum()
    )
    rate = pl.col("model").cast(pl.String).replace_strict(flat, default=None, return_dtype=pl.Float64)
    known, requests, has_rate = (
        pl.col("known").cast(pl.Int64),
        pl.col("requests").cast(pl.Int64),
        rate.is_not_null(),
    )
    priced = small.with_columns(
        unknown_seconds=requests - known,
        unknown_price=pl.when(has_rate).then(0).otherwise(known),
        priced=pl.when(has_rate).then(known).otherwise(0),
        usd=_SECONDS * rate,
    )
    if not has_shard:
        return priced, None
    shard = frame.get_column("shard")
    if shard.null_count() == 0 and shard.is_sorted():
        rows = rows.with_columns(pl.col("shard").set_sorted())
    rate = pl.lit(None, dtype=pl.Float64)
    for model, value in flat.items():  # a few comparisons (of integers when categorical) beat a hash lookup
        rate = pl.when(pl.col("model") == model).then(pl.lit(value, dtype=pl.Float64)).otherwise(rate)
    per_row = rows.with_columns(units=pl.when(pl.col("known")).then(pl.lit(1, dtype=pl.Int64)), rate=rate)
    return priced, _shard_plan(per_row)


def _length_aware(
    frame: pl.DataFrame, prices: PriceBook, resolution: float, has_shard: bool
) -> tuple[pl.LazyFrame, pl.LazyFrame | None]:
    """Rates by length: one pass gives (model, rounded length, each) groups, whose rates are asked once each;
    the shard totals are a second pass over the rows with each row's rate."""
    rows = frame.lazy().with_columns(
        seconds=pl.when(_USABLE).then(_SECONDS).otherwise(None),
        units=pl.when(_USABLE).then((_SECONDS / resolution).ceil().cast(pl.Int64)).otherwise(None),
    )
    small = rows.group_by("model", "units", "each").agg(pl.len().alias("requests"), _SECONDS.sum()).collect()
    pairs = small.select("model", "units").drop_nulls().unique().sort("model", "units")
    rates = [prices.rate(model, units * resolution) for model, units in pairs.iter_rows()]
    table = pairs.with_columns(rate=pl.Series(rates, dtype=pl.Float64))
    priced = _measures(
        small.lazy().join(table.lazy(), on=["model", "units"], how="left"), weight=pl.col("requests")
    )
    shard = _shard_plan(_with_rates(rows, table)) if has_shard else None
    return priced, shard


_SUMS: Final = [pl.col("requests", "priced", "unknown_seconds", "unknown_price", "seconds", "usd").sum()]
_DENSE_LIMIT: Final = 1 << 22  # rate table cells; past it, shard totals join instead of looking up


@overload
def _measures(frame: pl.DataFrame, *, weight: pl.Expr) -> pl.DataFrame: ...
@overload
def _measures(frame: pl.LazyFrame, *, weight: pl.Expr) -> pl.LazyFrame: ...
def _measures(frame: pl.DataFrame | pl.LazyFrame, *, weight: pl.Expr) -> pl.DataFrame | pl.LazyFrame:
    """Add priced / unknown counts and dollars to rows (or groups of ``weight`` rows) that have ``rate``."""
    units, rate = pl.col("units"), pl.col("rate")
    return frame.with_columns(
        unknown_seconds=pl.when(units.is_null()).then(weight).otherwise(0),
        unknown_price=pl.when(units.is_not_null() & rate.is_null()).then(weight).otherwise(0),
        priced=pl.when(rate.is_not_null()).then(weight).otherwise(0),
        usd=pl.col("seconds") * rate,
    )


def _with_rates(rows: pl.LazyFrame, table: pl.DataFrame) -> pl.LazyFrame:
    """``rows`` with each one's rate, looked up by (model, rounded length) in ``table``."""
    models = table.get_column("model").unique().sort().to_list()
    top = table.get_column("units").max()
    span = (top if isinstance(top, int) else 0) + 1
    if not models or len(models) * span > _DENSE_LIMIT or len(models) > 64:
        return rows.join(table.lazy(), on=["model", "units"], how="left")
    # A dense (model × rounded length) table, so that a row's rate is one gather, not a join.
    dense: list[float | None] = [None] * (len(models) * span)
    index = {m: i for i, m in enumerate(models)}
    for model, units, rate in table.iter_rows():
        dense[index[model] * span + units] = rate
    which = pl.lit(None, dtype=pl.Int64)
    for i, model in reversed(list(enumerate(models))):
        which = pl.when(pl.col("model") == model).then(pl.lit(i, dtype=pl.Int64)).otherwise(which)
    cells = rows.select((which * span + pl.col("units")).fill_null(len(dense))).collect().to_series()
    return rows.with_columns(rate=pl.Series([*dense, None], dtype=pl.Float64).gather(cells))


def _shard_plan(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Totals by shard of rows that carry their ``rate``."""
    rate, seconds = pl.col("rate"), pl.col("seconds")
    known = pl.col("units").is_not_null()
    return (
        rows.group_by("shard")
        .agg(
            pl.len().alias("requests"),
            (rate.is_not_null() & known).sum().alias("priced"),
            known.not_().sum().alias("unknown_seconds"),
            seconds.sum(),
            (seconds * rate).sum().alias("usd"),
        )
        .with_columns(unknown_price=pl.col("requests") - pl.col("priced") - pl.col("unknown_seconds"))
    )


def _subtotals(table: pl.DataFrame, key: str) -> dict[str, Subtotal]:
    """One :class:`Subtotal` per value of ``key``, in order (no value last)."""
    if table.schema[key] != pl.String:
        table = table.with_columns(pl.col(key).cast(pl.String))
    columns = (
        table.sort(key, nulls_last=True)
        .select(
            pl.col(key).fill_null(_NONE_LABEL),
            pl.col("requests", "priced").fill_null(0).cast(pl.Int64),
            (pl.col("unknown_seconds").fill_null(0) + pl.col("unknown_price").fill_null(0)).cast(pl.Int64),
            pl.col("seconds", "usd").fill_null(0.0).cast(pl.Float64),
        )
        .get_columns()
    )
    labels, *values = (column.to_list() for column in columns)  # whole columns: faster than row by row
    return dict(zip(labels, map(Subtotal, *values), strict=True))
