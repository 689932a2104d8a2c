"""What ``estimate``, ``build``, ``submit`` and ``run`` show of an estimate, and the budget options ``submit``
and ``run`` share (``--max-cost``, ``--prices``, ``--allow-unknown-cost``, ``--yes``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .._probe.budget import Budget, describe_estimate, format_usd
from .._probe.pricing import Estimate, Subtotal
from ._common import err, out

__all__ = ["budget_options", "make_budget", "print_estimate", "render_estimate"]

_SHARDS_SHOWN = 12


def _table(title: str, key: str, groups: dict[str, Subtotal], *, limit: int | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    for name in ("requests", "priced", "unknown", "seconds", "USD"):
        table.add_column(name, justify="right")
    shown = list(groups.items())
    for label, group in shown[:limit] if limit is not None else shown:
        table.add_row(
            escape(label),
            f"{group.requests:,}",
            f"{group.priced:,}",
            f"{group.unknown:,}" if group.unknown else "-",
            f"{group.seconds:,.1f}",
            format_usd(group.total_usd)
            if group.total_usd is not None
            else f"≥ {format_usd(group.known_usd)}",
        )
    if limit is not None and len(shown) > limit:
        table.add_row(f"… {len(shown) - limit:,} more", "", "", "", "", "")
    return table


def render_estimate(estimate: Estimate, *, shards: bool = True) -> list[Table | str]:
    """The estimate as text: the total line, then tables by model, ``[each]`` value and shard."""
    parts: list[Table | str] = [f"[bold]estimate:[/] {escape(describe_estimate(estimate))}"]
    if estimate.unknown:
        parts.append(
            f"[yellow]unknown:[/] {estimate.unknown_seconds:,} request(s) of unknown length, "
            f"{estimate.unknown_price:,} without a price"
            + (f" ({escape(', '.join(estimate.unpriced_models))})" if estimate.unpriced_models else "")
            + (
                " (media not probed, or a length the probe could not read: `batchkit probe DIR`)"
                if estimate.unknown_seconds
                else ""
            )
        )
    parts.append(_table("by model", "model", estimate.by_model))
    if estimate.by_each:
        parts.append(_table("by [each] value", "value", estimate.by_each))
    if shards and estimate.by_shard:
        parts.append(_table("by shard", "shard", estimate.by_shard, limit=_SHARDS_SHOWN))
    return parts


def print_estimate(estimate: Estimate, *, to_stderr: bool = False, shards: bool = True) -> None:
    console = err if to_stderr else out
    for part in render_estimate(estimate, shards=shards):
        console.print(part, highlight=False)


# -- the budget of submit and run ----------------------------------------------------------------------------


def budget_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--max-cost``, ``--prices``, ``--allow-unknown-cost``, ``--yes``."""
    options = [
        click.option(
            "--max-cost",
            type=click.FloatRange(min=0),
            help="Refuse, before anything is sent, when the estimate is over this many USD (or unknown).",
        ),
        click.option(
            "--prices",
            type=click.Path(path_type=Path, dir_okay=False, exists=True),
            help="Price the estimate with this prices.toml instead of Sync's estimate API.",
        ),
        click.option(
            "--allow-unknown-cost",
            is_flag=True,
            help="With --max-cost: let a partly unknown estimate through when its known part fits.",
        ),
        click.option(
            "--yes", "-y", "yes", is_flag=True, help="Do not ask before sending (on a terminal it asks once)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _ask(estimate: Estimate) -> bool:
    print_estimate(estimate, to_stderr=True, shards=False)
    return click.confirm("Send these requests?", default=False, err=True)


def make_budget(
    max_cost: float | None, prices: Path | None, allow_unknown_cost: bool, yes: bool, *, live: bool
) -> Budget | None:
    """The budget the options ask for; on a terminal a live submission also asks once, unless ``--yes``."""
    asks = live and not yes and sys.stdin.isatty() and err.is_terminal
    allow_unknown = allow_unknown_cost
    if max_cost is None and not asks:
        if allow_unknown:
            msg = "--allow-unknown-cost only means something with --max-cost"
            raise click.UsageError(msg)
        return None
    return Budget(
        max_cost=max_cost, prices=prices, allow_unknown=allow_unknown, confirm=_ask if asks else None
    )
