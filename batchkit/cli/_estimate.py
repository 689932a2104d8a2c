"""``batchkit estimate DIR``: what sending a build directory costs, by model, ``[each]`` value and shard."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from .._build.estimate import estimate_directory
from .._probe.pricing import TablePrices
from ._budget import print_estimate
from ._common import handle_errors
from ._submit import api_options, make_client

__all__ = ["estimate_command"]


@click.command("estimate")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--prices",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='A prices.toml (USD per second of input by model: [prices] "lipsync-2" = 0.05); default: '
    "ask Sync's estimate API.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the total and tables by model, [each] value and shard; json: all of it.",
)
@api_options
@handle_errors
def estimate_command(
    directory: Path, prices: Path | None, fmt: str, api_key: str | None, base_url: str | None, timeout: float
) -> None:
    """Estimate what sending a build directory costs: seconds of media per request × a price per model.

    Lengths come from the probe (`build --probe`, `batchkit probe DIR`); text-to-speech scripts are timed
    by their spoken length. Prices come from --prices, or from Sync's estimate API (asked once per
    model and rounded length). A cost that cannot be known is shown as unknown, never as 0.
    """
    if prices is not None:
        result = estimate_directory(directory, TablePrices.from_toml(prices))
    else:
        with make_client(api_key, base_url, timeout) as client:
            result = estimate_directory(directory, client=client)
    if fmt == "json":
        click.echo(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    print_estimate(result)
