"""A budget for a submission: :class:`Budget`, judged against an :class:`~batchkit._probe.pricing.Estimate`.

``submit`` and ``run`` estimate what they are about to send (as ``batchkit estimate`` does, with the same price
book) before their first create, and :func:`judge` refuses with :class:`BudgetError` when the estimate is
over ``max_cost``, or unknown in part (unless ``allow_unknown``: then the known part is compared), or when
``confirm`` (a question a person answers, asked once) says no. Nothing has been sent, or written to a
journal, when it refuses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .._errors import BatchkitError, InputError
from .pricing import Estimate, PriceBook, TablePrices

__all__ = ["Budget", "BudgetError", "Confirm", "describe_estimate", "format_usd", "judge"]

#: ``confirm(estimate)``: True to go ahead. Asked once, before anything is sent.
Confirm = Callable[[Estimate], bool]
Reason = Literal["over", "unknown", "declined"]


class BudgetError(BatchkitError):
    """A submission refused before anything was sent: over budget, of unknown cost, or not confirmed.

    ``reason`` is ``over``, ``unknown`` or ``declined``; ``estimate`` is what was judged.
    """

    def __init__(self, message: str, *, reason: Reason, estimate: Estimate) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.estimate = estimate


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """What a submission may cost, and who must agree, checked before its first create.

    ``max_cost`` is in USD (None: no cap). ``prices`` is a :class:`batchkit.PriceBook`, the path of a
    ``prices.toml``, or None for Sync's own estimate endpoints through the submitting client
    (:class:`batchkit.ApiPrices`). ``allow_unknown`` lets a partly unknown estimate through when its known
    part fits; ``confirm`` is asked once with the estimate (the CLI asks on a terminal).

    >>> Budget(max_cost=25.0).max_cost
    25.0
    """

    max_cost: float | None = None
    prices: PriceBook | str | os.PathLike[str] | None = None
    allow_unknown: bool = False
    confirm: Confirm | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        cap = self.max_cost
        if cap is not None and (isinstance(cap, bool) or not math.isfinite(cap) or cap < 0):
            msg = f"max_cost must be a finite number of USD ≥ 0, not {cap!r}"
            raise InputError(msg)

    def price_book(self) -> PriceBook | None:
        """The price book to estimate with: the one given, the ``prices.toml`` named, or None (the API's)."""
        if isinstance(self.prices, str | os.PathLike):
            return TablePrices.from_toml(Path(self.prices))
        return self.prices


def format_usd(value: float | None) -> str:
    """``$1,234.56``, or ``unknown`` for None (an unknown cost is never shown as 0)."""
    return "unknown" if value is None else f"${value:,.2f}"


def describe_estimate(estimate: Estimate) -> str:
    """One line: the total (or what is known of it), requests, seconds of media and where prices come from."""
    total = format_usd(estimate.total_usd)
    known = "" if estimate.total_usd is not None else f" (known part {format_usd(estimate.known_usd)})"
    return (
        f"{total}{known} for {estimate.requests:,} request(s), {estimate.seconds:,.0f} s of media, prices from "
        f"{estimate.source}"
    )


def judge(estimate: Estimate, budget: Budget, *, where: str) -> None:
    """Raise :class:`BudgetError` unless ``estimate`` fits ``budget``; ``where`` names what would be sent."""
    cap = budget.max_cost
    if cap is not None:
        if estimate.total_usd is None and not budget.allow_unknown:
            models = (
                f" (no price for {', '.join(estimate.unpriced_models)})" if estimate.unpriced_models else ""
            )
            msg = (
                f"{where}: the cost of {estimate.unknown:,} of {estimate.requests:,} request(s) is unknown: "
                f"{estimate.unknown_seconds:,} of unknown length, {estimate.unknown_price:,} without a price"
                f"{models}, so --max-cost {format_usd(cap)} cannot be checked; nothing was sent. Probe the "
                f"media (`batchkit probe DIR`; a length it cannot read stays unknown), give --prices for the "
                f"models without one, or pass --allow-unknown-cost to compare only the known "
                f"{format_usd(estimate.known_usd)}"
            )
            raise BudgetError(msg, reason="unknown", estimate=estimate)
        if estimate.known_usd > cap:
            msg = (
                f"{where}: the estimate is {describe_estimate(estimate)}, over --max-cost {format_usd(cap)}; nothing "
                "was sent. Raise --max-cost, or send fewer rows first (`batchkit run --sample N`)"
            )
            raise BudgetError(msg, reason="over", estimate=estimate)
    if budget.confirm is not None and not budget.confirm(estimate):
        msg = f"{where}: not confirmed (the estimate is {describe_estimate(estimate)}); nothing was sent"
        raise BudgetError(msg, reason="declined", estimate=estimate)
