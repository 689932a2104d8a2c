"""``batchkit probe SOURCE --mapping M`` and ``batchkit probe DIR``, and the probe options ``build`` and ``run``
share: a progress bar (URLs, from the cache, bytes read, ETA) and a summary table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .._build.options import BuildOptions
from .._build.probe import ProbeResult, probe_directory, probe_source
from .._probe.config import ProbeConfig
from .._probe.options import ProbeOptions
from .._report import ValidationFailed
from .._sources.source import FORMATS
from ._common import EXIT_FINDINGS, err, handle_errors
from ._validate import render_report

__all__ = ["ProbeStats", "print_probe_summary", "probe_bar", "probe_command", "probe_options"]


def probe_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--refresh``, ``--no-cache``, ``--probe-concurrency`` (``--probe`` itself is the command's own)."""
    options = [
        click.option(
            "--refresh", is_flag=True, help="Probe every media URL again, whatever the cache holds."
        ),
        click.option("--no-cache", "no_cache", is_flag=True, help="Neither read nor write the probe cache."),
        click.option(
            "--probe-concurrency",
            type=click.IntRange(min=1),
            default=16,
            show_default=True,
            help="Media URLs probed at once (at most 6 per host).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(slots=True)
class ProbeStats:
    """The last progress a probe reported: URLs done and total, answered from the cache, bytes read."""

    done: int = 0
    total: int = 0
    cached: int = 0
    bytes_read: int = 0


@contextmanager
def probe_bar(
    refresh: bool, no_cache: bool, concurrency: int, *, enabled: bool = True
) -> Iterator[tuple[ProbeOptions | None, ProbeStats]]:
    """Probe options whose progress drives a rich bar on stderr (only on a terminal), and their last counts."""
    stats = ProbeStats()
    if not enabled:
        yield None, stats
        return
    bar = Progress(
        TextColumn("[bold]media"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("", total=None)

    def update(done: int, total: int, cached: int, read: int) -> None:
        stats.done, stats.total, stats.cached, stats.bytes_read = done, total, cached, read
        bar.update(
            task, completed=done, total=total, description=f"{cached:,} cached, {read / 1e6:,.1f} MB read"
        )

    options = ProbeOptions(
        config=ProbeConfig(concurrency=concurrency),
        cache=not no_cache,
        refresh=refresh,
        on_progress=update,
    )
    with bar:
        yield options, stats


def print_probe_summary(stats: ProbeStats, *, statuses: dict[str, int] | None = None) -> None:
    """URLs probed, answered from the cache, bytes read, and URLs by status (``ok`` or a code), on stderr.

    The findings themselves, by code, are in the report's own table."""
    table = Table(title="media probe", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("distinct URLs", f"{stats.total:,}")
    table.add_row("probed", f"{stats.total - stats.cached:,}")
    table.add_row("from the cache", f"{stats.cached:,}")
    table.add_row("bytes read", f"{stats.bytes_read:,}")
    for status, n in (statuses or {}).items():
        table.add_row(f"URLs {status}", f"{n:,}")
    err.print(table)


@click.command("probe")
@click.argument("target", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--mapping",
    "-m",
    "mapping",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The mapping TOML, when TARGET is a source (not needed for a build directory).",
)
@click.option("--sheet", help="Excel sheet to read (default: the first).")
@click.option(
    "--source-format",
    type=click.Choice(sorted(set(FORMATS.values()))),
    help="Read SOURCE as this format instead of guessing from its suffix.",
)
@click.option("--delimiter", help="CSV delimiter (default: detected).")
@click.option("--encoding", help="Text encoding of a CSV or NDJSON source (default: UTF-8, else detected).")
@probe_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: findings and a summary; json: the report and every URL's result.",
)
@click.option("--max-findings", type=click.IntRange(min=0), default=50, show_default=True)
@handle_errors
def probe_command(
    target: Path,
    mapping: Path | None,
    sheet: str | None,
    source_format: str | None,
    delimiter: str | None,
    encoding: str | None,
    refresh: bool,
    no_cache: bool,
    probe_concurrency: int,
    fmt: str,
    max_findings: int,
) -> None:
    """Probe every media URL of a source (with --mapping) or of a build directory, without sending anything.

    Each URL is read with a few small Range requests (never the whole file; the API key is never sent),
    its duration, tracks and codecs checked against what Sync accepts, and each problem reported at its
    source row. For a build directory, DIR/media.parquet and DIR/lengths.parquet are written (what
    `batchkit estimate DIR` reads). Exit status: 0 no error finding, 1 error findings, 2 usage or I/O error.
    """
    with probe_bar(refresh, no_cache, probe_concurrency) as (options, _):
        assert options is not None
        if target.is_dir():
            if mapping is not None:
                msg = "a build directory has its mapping already; drop --mapping"
                raise click.UsageError(msg)
            result = probe_directory(target, options)
        else:
            if mapping is None:
                msg = "probing a source needs its --mapping (or give a build directory)"
                raise click.UsageError(msg)
            read = BuildOptions(
                sheet=sheet, format=source_format, delimiter=delimiter, encoding=encoding, probe=options
            )
            try:
                result = probe_source(target, mapping, read)
            except ValidationFailed as exc:
                result = ProbeResult(exc.report)
    _show(result, fmt, max_findings)


def _show(result: ProbeResult, fmt: str, max_findings: int) -> None:
    report = result.report
    if fmt == "json":
        data = {
            "valid": report.valid,
            "directory": str(result.directory) if result.directory is not None else None,
            "urls": len(result.media),
            "cached": result.cached,
            "bytes_read": result.bytes_read,
            "statuses": result.statuses,
            "report": orjson.loads(report.to_json()),
            "media": [info.to_dict() for info in result.media.values()],
        }
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        render_report(report, max_findings=max_findings)
        stats = ProbeStats(len(result.media), len(result.media), result.cached, result.bytes_read)
        print_probe_summary(stats, statuses=result.statuses)
        if result.directory is not None:
            err.print(f"wrote {result.directory / 'media.parquet'} and lengths.parquet; price it with "
                      f"`batchkit estimate {result.directory}`", highlight=False)  # fmt: skip
    if not report.valid:
        raise SystemExit(EXIT_FINDINGS)
