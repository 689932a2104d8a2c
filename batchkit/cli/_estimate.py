"""``batchkit estimate DIR``: what sending a build directory costs, by model, ``[each]`` value and shard."""

from __future__ import annotations

from pathlib import Path

from .._build.estimate import estimate_directory
from .._probe.pricing import TablePrices
from . import _render as render
from ._common import command
from ._options import Api, Output, api_options, directory_argument, group, output_options, prices_param

__all__ = ["estimate_command"]

_prices_option = group("prices", lambda v: v["prices"], lambda: [prices_param(
    'A prices.toml (USD per second of input by model: [prices] "lipsync-2" = 0.05) [default: ask Sync\'s estimate API].'
)])  # fmt: skip


@command("estimate", failed=None)
@directory_argument
@_prices_option
@api_options
@output_options("the total, the unknown counts, and the subtotals by model, [each] value and shard")
def estimate_command(directory: Path, prices: Path | None, api: Api, output: Output) -> None:
    """Estimate what sending a build directory costs: seconds of media per request × a price per model.

    Lengths come from the probe (`build --probe`, `batchkit probe DIR`); text-to-speech scripts are timed
    by their spoken length. Prices come from --prices, or from Sync's estimate API (asked once per
    model and rounded length). A cost that cannot be known is shown as unknown, never as 0.
    """
    if prices is not None:
        result = estimate_directory(directory, TablePrices.from_toml(prices))
    else:
        with api.client(directory) as client:
            result = estimate_directory(directory, client=client)
    if output.json:
        render.document(result)
    else:
        render.estimate(result)
