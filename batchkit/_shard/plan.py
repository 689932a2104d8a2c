"""The balanced shard planner: contiguous line ranges that respect a :class:`Limits` profile.

:func:`plan_shards` is pure: given the byte size of every line (newline included) and a :class:`Limits`
profile, it returns contiguous ``(start, end)`` ranges such that every shard holds between ``min_records``
and ``max_records`` lines and at most ``max_bytes`` bytes, with the fewest shards possible and counts as even
as the byte cap allows (510 lines → 255 + 255, never 500 + 10). :func:`expected_layout` gives the counts a
build expects while it reads its source: those of every unit valid, when only the counts bind.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import polars as pl

from .._report import Finding, Report, ValidationFailed
from .._wire.limits import DEFAULT_LIMITS, Limits

__all__ = ["even_counts", "expected_layout", "plan_shards"]


def plan_shards(sizes: Sequence[int] | pl.Series, limits: Limits = DEFAULT_LIMITS) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` ranges over lines of the given byte sizes (newline included).

    The fewest shards satisfying ``min_records ≤ n ≤ max_records`` and ``bytes ≤ max_bytes``; among those,
    counts as even as the byte cap allows, earlier shards taking the extra line (1,001 → 334, 334, 333).
    Raises :class:`ValidationFailed` with a ``too-few-records`` or ``cannot-shard`` finding when no plan
    exists.
    """
    series = sizes if isinstance(sizes, pl.Series) else pl.Series("size", list(sizes), dtype=pl.Int64)
    series = series.cast(pl.Int64)
    _check_lines(series, limits)
    n, hi = len(series), limits.max_records
    prefix = pl.concat([pl.Series("p", [0], dtype=pl.Int64), series.cum_sum()]).rename("p")
    window = int(prefix[n]) if n <= hi else int((prefix.slice(hi) - prefix.slice(0, n + 1 - hi)).max())  # type: ignore[arg-type]
    if window <= limits.max_bytes:  # no run of max_records lines reaches the byte cap: counts alone decide
        return _by_counts(n, limits)
    return _by_bytes(prefix, n, limits)


def _check_lines(series: pl.Series, limits: Limits) -> None:
    """Too few lines, or one line over the byte cap: no plan can exist."""
    n, lo, cap = len(series), limits.min_records, limits.max_bytes
    if n < lo:
        noun = "request" if n == 1 else "requests"
        _fail(
            limits,
            "too-few-records",
            f"{n} valid {noun}; a batch needs at least {lo} ({lo - n} more). Add rows, lower the "
            "minimum (--min-records), or send these one by one with the Generate API",
        )
    if n and int(series.max()) > cap:  # type: ignore[arg-type]
        index = int(series.arg_max())  # type: ignore[arg-type]
        _fail(
            limits,
            "cannot-shard",
            f"line {index + 1} alone is {int(series[index]):,} bytes, over the {cap:,}-byte shard limit",
        )


def _by_counts(n: int, limits: Limits) -> list[tuple[int, int]]:
    """The plan when only the record counts bind: the fewest shards, counts that differ by at most one."""
    k = -(-n // limits.max_records)
    if k * limits.min_records > n:
        _fail(
            limits,
            "cannot-shard",
            f"{n:,} lines cannot be split into shards of {limits.describe()}; "
            "lower --min-records or raise --max-records",
        )
    return list(itertools.pairwise(itertools.accumulate(even_counts(n, k), initial=0)))


def _by_bytes(prefix: pl.Series, n: int, limits: Limits) -> list[tuple[int, int]]:
    """The plan when the byte cap binds too, over the prefix sums of the line sizes."""
    lo, hi, cap = limits.min_records, limits.max_records, limits.max_bytes

    def reach(p: int) -> int:
        """Largest q with bytes(p..q) ≤ cap."""
        return int(prefix.search_sorted(prefix[p] + cap, side="right")) - 1

    def back(q: int) -> int:
        """Smallest p with bytes(p..q) ≤ cap."""
        return int(prefix.search_sorted(prefix[q] - cap, side="left"))

    # the farthest line reachable with j shards; the first j that reaches n is the fewest shards
    k, far = 0, 0
    while far < n:
        step = min(far + hi, reach(far), n)
        if (step < far + lo and step < n) or step <= far:
            break
        k, far = k + 1, step
    if far < n or k * lo > n:
        _fail(
            limits,
            "cannot-shard",
            f"{n:,} lines of {int(prefix[n]):,} bytes cannot be split into shards of {limits.describe()}; "
            "lower --min-records or raise --max-records/--max-bytes",
        )
    # earliest start from which the rest fits in m shards, for m = 0 .. k-1
    earliest = [n]
    for _ in range(1, k):
        q = earliest[-1]
        earliest.append(max(q - hi, back(q), 0))
    plan: list[tuple[int, int]] = []
    start = 0
    for j in range(k):
        rest = k - j - 1
        low = max(start + lo, earliest[rest])
        high = min(start + hi, reach(start), n - rest * lo)
        if low > high:
            _fail(
                limits,
                "cannot-shard",
                f"no split of lines {start + 1}–{n} into {k - j} shard(s) of {limits.describe()} exists; "
                "lower --min-records or raise --max-bytes",
            )
        target = start + -(-(n - start) // (rest + 1))
        end = min(max(target, low), high)
        plan.append((start, end))
        start = end
    return plan


def even_counts(n: int, k: int) -> list[int]:
    """``n`` split into ``k`` counts that differ by at most one, larger first: (1001, 3) → [334, 334, 333]."""
    q, r = divmod(n, k)
    return [q + (j < r) for j in range(k)]


def expected_layout(units: int | None, limits: Limits) -> list[int]:
    """The shard counts when all ``units`` are valid and only counts bind ([] when unknown or impossible)."""
    if not units or units < limits.min_records:
        return []
    k = -(-units // limits.max_records)
    return even_counts(units, k) if k * limits.min_records <= units else []


def _fail(limits: Limits, code: str, message: str) -> None:
    report = Report(limits=limits)
    report.add(Finding(code=code, severity="error", message=message))
    raise ValidationFailed(report)
