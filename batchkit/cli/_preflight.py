"""The pre-flight options ``build`` and ``run`` share: ``--probe`` (with ``--refresh`` ...) and ``--reuse DIR``,
and what ``build`` shows after probing (the probe summary and the estimate)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .._build.estimate import estimate_directory
from .._build.reuse import Reusable
from .._probe.options import ProbeOptions
from .._probe.pricing import TablePrices
from .._results.reuse import find_reusable
from .._shard.builddir import LENGTHS
from .._shard.write import BuildResult
from ._budget import print_estimate
from ._common import err
from ._probe import print_probe_summary, probe_bar, probe_options

__all__ = ["preflight_build", "preflight_options", "reuse_of"]

Done = Callable[[BuildResult | None, str], None]


def preflight_options(*, prices: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--probe``, ``--refresh``, ``--no-cache``, ``--probe-concurrency``, ``--reuse DIR`` (and ``--prices``)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
            click.option(
                "--probe",
                is_flag=True,
                help="Probe every media URL first; a row whose media fails is invalid (see `batchkit probe`).",
            ),
            probe_options,
            click.option(
                "--reuse",
                "reuse",
                multiple=True,
                type=click.Path(path_type=Path, file_okay=False, exists=True),
                help="Do not send again what already completed in this build directory (repeatable).",
            ),
        ]
        if prices:
            options.append(
                click.option(
                    "--prices",
                    type=click.Path(path_type=Path, dir_okay=False, exists=True),
                    help="With --probe: price the estimate with this prices.toml (USD per second by model).",
                )
            )
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def reuse_of(directories: tuple[Path, ...]) -> Reusable | None:
    """What ``--reuse DIR...`` offers, or None without any."""
    return find_reusable(directories) if directories else None


@contextmanager
def preflight_build(
    options: Mapping[str, Any],
) -> Iterator[tuple[ProbeOptions | None, Reusable | None, Done]]:
    """The probe options (with a progress bar) and reusable requests a ``build``'s options ask for, and a
    ``done(result, fmt)`` to call after the build: the probe summary is printed when the block ends (also
    when the build failed), the estimate after a successful probed build."""
    probe = bool(options.get("probe"))
    reuse = reuse_of(tuple(options.get("reuse") or ()))
    built: list[BuildResult] = []
    fmt_seen: list[str] = []

    def done(result: BuildResult | None, fmt: str) -> None:
        fmt_seen.append(fmt)
        if result is not None:
            built.append(result)

    with probe_bar(
        bool(options.get("refresh")), bool(options.get("no_cache")), int(options.get("probe_concurrency") or 16),
        enabled=probe,
    ) as (probe_options_, stats):  # fmt: skip
        try:
            yield probe_options_, reuse, done
        finally:
            text = not fmt_seen or fmt_seen[-1] == "text"
            if probe and text and stats.total:
                print_probe_summary(stats)
            if built and text:
                _after(built[-1], options.get("prices"))


def _after(result: BuildResult, prices: Path | None) -> None:
    reused = result.counts.reused
    if reused:
        err.print(
            f"[green]reused[/] {reused:,} request(s) that completed before: not sent again", highlight=False
        )
    if not (result.out_dir / LENGTHS).is_file():
        return
    if prices is None:
        err.print(
            f"price it: `batchkit estimate {result.out_dir}` (Sync's estimate API) or with --prices prices.toml",
            highlight=False,
        )
        return
    print_estimate(
        estimate_directory(result.out_dir, TablePrices.from_toml(prices)), to_stderr=True, shards=False
    )
