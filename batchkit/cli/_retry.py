"""``batchkit retry``: what failed, went missing or was rejected, as a new build directory (or sent one by one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._handback.decisions import read_decisions
from .._handback.review import build_id_of
from .._report import Report, ValidationFailed
from .._results.results import collect_results
from .._retry.retry import DEFAULT_ONLY, RETRYABLE, RetryOptions, RetryResult, retry_failed
from .._shard.builddir import load_manifest
from .._submit.realtime import RealtimeEvent, RealtimeResult
from .._wire.limits import Limits
from ._common import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, err, fail, handle_errors, out
from ._submit import api_options, make_client, make_poll, poll_options
from ._validate import render_report

__all__ = ["retry_command"]

_EVENT_STYLE = {
    "created": "green",
    "resent": "cyan",
    "refused": "red",
    "rate-limited": "yellow",
    "uncertain": "yellow",
    "finished": "blue",
    "poll-error": "yellow",
}


def _only(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
    if not names:
        msg = f"give one or more of {', '.join(RETRYABLE)}, separated by commas"
        raise click.BadParameter(msg, param_hint="--only")
    return names


@click.command("retry")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--out", "-o", "out_dir", required=True, type=click.Path(path_type=Path), help="New build directory."
)
@click.option(
    "--only",
    default=",".join(DEFAULT_ONLY),
    show_default=True,
    help=f"Outcomes to retry, comma-separated: {', '.join(RETRYABLE)}.",
)
@click.option("--realtime", is_flag=True, help="Send them one by one now (POST /v2/generate), journaled.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="With --realtime: generations running at once (your plan's limit: 1 to 15).",
)
@click.option("--hold", is_flag=True, help="Keep them for the next `batchkit build ... --include-held DIR2`.")
@click.option("--force", is_flag=True, help="Replace another build in --out, or retry units retried before.")
@click.option("--offline", is_flag=True, help="Use only results already downloaded to DIRECTORY.")
@click.option(
    "--from-review",
    "review",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Retry the cards a reviewer rejected in this decisions CSV (from `batchkit review`), any outcome.",
)
@click.option(
    "--source",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The source file, if it moved since the build.",
)
@click.option(
    "--min-records",
    type=click.IntRange(min=1),
    help="Fewest records a batch may hold [default: DIRECTORY's].",
)
@click.option(
    "--max-records", type=click.IntRange(min=1), help="Most records a batch may hold [default: DIRECTORY's]."
)
@click.option(
    "--max-bytes", type=click.IntRange(min=64), help="Largest batch file in bytes [default: DIRECTORY's]."
)
@api_options
@poll_options
@handle_errors
def retry_command(
    directory: Path, out_dir: Path, only: str, realtime: bool, concurrency: int, hold: bool, force: bool,
    offline: bool, review: Path | None, source: Path | None, min_records: int | None, max_records: int | None,
    max_bytes: int | None, api_key: str | None, base_url: str | None, timeout: float, poll_initial: float,
    poll_factor: float, poll_max: float, deadline: float | None,
) -> None:  # fmt: skip
    """Build a new directory from the units of DIRECTORY that failed, went missing or were rejected.

    The lines are the ones that were sent, with new request_ids linked to the originals (c020 → c020.r1);
    the new directory's results join back to the same source rows. When fewer are left than a batch's
    minimum, send them one by one with --realtime, or keep them with --hold for your next build.
    Running the same retry again changes nothing (with --realtime: it resumes). Exit status: 0 done,
    1 too few for a batch (or invalid lines), 2 usage, API or I/O error.
    """
    if realtime and hold:
        fail("choose one of --realtime (send them one by one now) and --hold (keep them for the next build)")
    limits = _limits(directory, min_records, max_records, max_bytes)
    poll = make_poll(poll_initial, poll_factor, poll_max)
    rejected = _rejected_in_review(directory, review) if review is not None else None
    with make_client(api_key, base_url, timeout) as client, _realtime_progress(realtime) as (on_event, on_progress):
        try:
            options = RetryOptions(
                only=_only(only),
                request_ids=rejected,
                mode="realtime" if realtime else "held" if hold else "shards",
                limits=limits,
                force=force,
                download=not offline,
                source=source,
                concurrency=concurrency,
                poll=poll,
                deadline=deadline,
            )
            result = retry_failed(
                directory, out_dir, options, client=client, on_event=on_event, on_progress=on_progress
            )
        except ValidationFailed as exc:
            _print_refusal(exc.report)
            raise SystemExit(EXIT_FINDINGS) from None
    _print_result(result)


def _rejected_in_review(directory: Path, review: Path) -> tuple[str, ...]:
    """The request_ids a reviewer rejected, read from a decisions CSV of this very directory's page."""
    ids = collect_results(directory, download=False, follow=False).frame.get_column("request_id").to_list()
    decisions = read_decisions(review, build=build_id_of(ids), request_ids=[i for i in ids if i is not None])
    for finding in decisions.findings:
        err.print(f"[yellow]{escape(str(finding))}[/]", highlight=False)
    if not decisions.rejected:
        err.print(f"{escape(str(review))} rejects no card ({len(decisions):,} decision(s)): nothing to retry")
        raise SystemExit(EXIT_OK)
    return decisions.rejected


def _print_refusal(report: Report) -> None:
    """Too few units (or no shard plan): the message alone; lines that no longer pass: the whole report."""
    if {f.code for f in report.errors} <= {"too-few-records", "cannot-shard"} and all(
        f.line is None for f in report.errors
    ):
        for finding in report.errors:
            err.print(f"[bold red]not retried:[/] {escape(finding.message)}", highlight=False)
        return
    render_report(report, title="not retried")
    err.print("[bold red]not retried:[/] the lines above no longer pass the limits; nothing was written")


def _limits(directory: Path, low: int | None, high: int | None, size: int | None) -> Limits | None:
    if low is None and high is None and size is None:
        return None
    base = load_manifest(directory).limits
    changes = {
        k: v for k, v in (("min_records", low), ("max_records", high), ("max_bytes", size)) if v is not None
    }
    merged = {**base.as_dict(), **changes}
    if merged["min_records"] > merged["max_records"]:
        fail(
            f"--min-records ({merged['min_records']}) is larger than --max-records ({merged['max_records']})"
        )
    return Limits.model_validate(merged)


@contextmanager
def _realtime_progress(
    enabled: bool,
) -> Iterator[tuple[Callable[[RealtimeEvent], None] | None, Callable[[int, int], None] | None]]:
    """A rich bar of finished generations on stderr, and one line per notable event."""
    if not enabled:
        yield None, None
        return
    bar = Progress(
        TextColumn("[bold]generations"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = bar.add_task("generations", total=None)

    def on_event(event: RealtimeEvent) -> None:
        if event.kind == "finished":
            return
        style = _EVENT_STYLE.get(event.kind, "")
        gen = f" {event.generation_id}" if event.generation_id else ""
        note = f": {event.message}" if event.message else ""
        text = escape(f"{event.request_id}{gen}{note}")
        bar.console.print(f"[{style}]{event.kind:>12}[/] {text}", highlight=False, markup=True)

    def on_progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield on_event, on_progress


def _say(text: str) -> None:
    """A plain line on stdout (no markup: paths and ids are printed as they are)."""
    out.print(text, markup=False, highlight=False)


def _print_result(result: RetryResult) -> None:
    err.print(_outcome_table(result))
    source = result.directory
    if not result.units:
        _say(f"nothing to retry in {source}: no unit is {' or '.join(result.only)}")
        pending = result.outcomes.get("pending", 0)
        if pending:
            _say(f"  {pending:,} unit(s) still pending: `batchkit wait {source}` first")
        return
    picked = ", ".join(f"{n:,} {outcome}" for outcome, n in result.selected.items())
    _say(f"selected {result.units:,} unit(s) of {source}: {picked}")
    pending = result.outcomes.get("pending", 0)
    if pending:
        err.print(
            f"[yellow]note:[/] {pending:,} unit(s) of {escape(str(source))} are still pending and were not retried",
            highlight=False,
        )
    build = result.build
    assert build is not None
    target = result.out_dir
    verb = "already holds" if result.reused else "wrote"
    if result.mode == "shards":
        sizes = ", ".join(str(s.records) for s in build.manifest.shards[:12])
        more = " …" if len(build.manifest.shards) > 12 else ""
        _say(f"{verb} {target}: {build.counts.shards} shard(s) of {sizes}{more} records (new ids: *.rN)")
        _say(f"next: batchkit submit {target} --wait && batchkit results {target}")
    elif result.mode == "held":
        _say(f"{verb} {target / 'held.jsonl'}: {build.counts.requests:,} request(s) held")
        _say(f"next: batchkit build SOURCE --mapping MAPPING --out NEW_DIR --include-held {target}")
    else:
        _say(f"{verb} {target / 'realtime.jsonl'}: {build.counts.requests:,} request(s)")
        assert result.realtime is not None
        _print_realtime(result.realtime, target)


def _outcome_table(result: RetryResult) -> Table:
    table = Table(title=escape(f"outcomes of {result.directory}"), title_justify="left")
    table.add_column("outcome")
    table.add_column("units", justify="right")
    table.add_column("retried", justify="right")
    for outcome, n in result.outcomes.items():
        if n:
            taken = result.selected.get(outcome)
            table.add_row(outcome, f"{n:,}", f"{taken:,}" if taken else "")
    return table


def _print_realtime(sent: RealtimeResult, target: Path) -> None:
    statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(sent.statuses.items())) or "none yet"
    _say(f"sent one by one: {len(sent.finished):,} finished ({statuses})")
    left = len(sent.running) + len(sent.unsent)
    if left:
        err.print(
            f"[yellow]{left:,} not finished[/] ({len(sent.running):,} running, {len(sent.unsent):,} not sent yet); "
            "run the same command again to resume",
            highlight=False,
        )
        _say(f"then: batchkit results {target}")
        raise SystemExit(EXIT_USAGE)
    _say(f"next: batchkit results {target}")
