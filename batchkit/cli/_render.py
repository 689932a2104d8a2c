"""Everything the command line shows, and the only module of it that writes to a terminal or a pipe.

Two streams: **stdout** carries documents only (``--format json``, and ``validate``'s CI formats), so it can be
piped or redirected; **stderr** carries everything meant for a person: progress bars, tables, summaries,
findings, ``error:`` lines. Long work shows ONE progress bar (counts, rate, ETA; on a terminal only, and gone
when done) and a summary at the end; with ``-v`` the per-item lines (a line per shard, per request) come back.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

__all__ = [
    "Bar",
    "Events",
    "confirm",
    "document",
    "err",
    "error",
    "escape",
    "line",
    "progress",
    "report",
    "say",
    "set_verbosity",
    "shard_table",
    "table",
    "verbosity",
]


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, soft_wrap=True, highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # a pipe or a log: don't squeeze tables into 80 columns and cut ids short
    return console


#: Everything for a person goes here (stdout is kept for documents).
err = _console(stderr=True)

#: At most this many shards are listed one per row; more are summed up by state (``-v`` lists them all).
LISTED = 20
#: Per-item problem lines shown without ``-v`` (all of them are counted in the summary).
PROBLEMS_SHOWN = 10

_verbosity = 0


def set_verbosity(level: int) -> None:
    """``-v`` (1 or more): per-item lines come back, every shard is listed."""
    global _verbosity
    _verbosity = max(_verbosity, level)


def verbosity() -> int:
    return _verbosity


# -- lines and documents -------------------------------------------------------------------------------------


def error(message: str, *, hint: str | None = None) -> None:
    """``error: message`` on stderr (one line), then an optional one-line hint."""
    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False)
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}", highlight=False)


def say(text: str, *, style: str = "") -> None:
    """One plain line on stderr (no markup: paths and ids are printed as they are)."""
    err.print(Text(text, style=style), highlight=False)


def line(markup: str) -> None:
    """One line of rich markup on stderr (the caller escapes what is not markup)."""
    err.print(markup, highlight=False)


def show(renderable: RenderableType) -> None:
    err.print(renderable, highlight=False)


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "to_json"):  # a Report, as the library writes it
        return orjson.loads(value.to_json(indent=False))
    if hasattr(value, "model_dump"):  # pydantic models: the manifest's records, findings
        return value.model_dump(mode="json", exclude_none=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(type(value).__name__)


#: Dataclasses go through ``_default`` too, so those with a ``to_dict`` say what they hold themselves.
_JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def document(data: Any) -> None:
    """A JSON document on stdout, verbatim (rich would rewrite markup and ``:emoji:`` codes)."""
    click.echo(orjson.dumps(data, default=_default, option=_JSON_OPTIONS).decode())


def stream() -> Any:
    """stdout, for the writers of CI formats (``validate --format github|junit|sarif``)."""
    return sys.stdout


def confirm(question: str) -> bool:
    """Ask once on the terminal (stderr), default no."""
    return click.confirm(question, default=False, err=True)


def table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]], *, right: int = 1
) -> Table:
    """A table whose first ``right`` columns are text and the rest numbers (right-aligned)."""
    made = Table(title=escape(title) if title else None, title_justify="left")
    for i, name in enumerate(columns):
        made.add_column(name, justify="left" if i < right else "right", overflow="fold")
    for row in rows:
        made.add_row(*row)
    return made


def count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


# -- progress ------------------------------------------------------------------------------------------------


class _Count(ProgressColumn):
    """``12,345/60,000`` (or ``12,345`` while the total is unknown)."""

    def render(self, task: Task) -> Text:
        done = f"{int(task.completed):,}"
        return Text(
            f"{done}/{int(task.total):,}" if task.total is not None else done, style="progress.download"
        )


class _Rate(ProgressColumn):
    """Items per second, over the last few updates."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


class Bar:
    """One task of a progress bar: ``update(done, total, note)``; a no-op away from a terminal."""

    def __init__(self, bar: Progress, task: Any, unit: str) -> None:
        self._bar, self._task, self.unit = bar, task, unit

    def update(self, done: float, total: float | None = None, note: str | None = None) -> None:
        fields: dict[str, Any] = {"note": escape(note)} if note is not None else {}
        self._bar.update(self._task, completed=done, total=total, **fields)

    def advance(self, steps: float = 1, note: str | None = None) -> None:
        fields: dict[str, Any] = {"note": escape(note)} if note is not None else {}
        self._bar.update(self._task, advance=steps, **fields)

    def relabel(self, unit: str, *, total: float | None = None) -> None:
        """Count something else from now on (submit --wait: shards, then generations)."""
        self.unit = unit
        self._bar.reset(self._task, total=total, unit=escape(unit), note="")

    def feed(self, unit: str) -> Any:
        """A ``progress(done, total)`` callback that counts ``unit`` (relabelling the bar when it counted
        something else: ``build --probe`` probes media, then reads rows, on one bar)."""

        def update(done: float, total: float | None = None) -> None:
            if self.unit != unit:
                self.relabel(unit, total=total)
            self.update(done, total)

        return update


@contextmanager
def progress(unit: str, *, total: float | None = None, data: bool = False) -> Iterator[Bar]:
    """A progress bar on stderr: counts, rate and ETA (``data``: bytes, transfer speed, ETA).

    Only on a terminal, and transient: what stays on the screen is the summary the command prints after."""
    columns: list[ProgressColumn] = [TextColumn("[bold]{task.fields[unit]}"), BarColumn()]
    if data:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [_Count(), _Rate()]
    columns += [TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}")]
    bar = Progress(*columns, console=err, transient=True, disable=not err.is_terminal)
    task = bar.add_task(unit, total=total, unit=escape(unit), note="")
    with bar:
        yield Bar(bar, task, unit)


# -- per-item events -----------------------------------------------------------------------------------------


class Events:
    """Per-item events (a shard submitted, a request resent): counted for the summary; shown one per line with
    ``-v``, else only the problems (the first :data:`PROBLEMS_SHOWN` of them)."""

    def __init__(self, styles: Mapping[str, str], problems: frozenset[str], width: int = 16) -> None:
        self.styles, self.problems, self.width = styles, problems, width
        self.counts: Counter[str] = Counter()
        self._shown = 0

    def __call__(self, kind: str, item: str, detail: str | None = None, message: str | None = None) -> None:
        self.counts[kind] += 1
        if not (verbosity() or (kind in self.problems and self._shown < PROBLEMS_SHOWN)):
            return
        if kind in self.problems and not verbosity():
            self._shown += 1
        text = escape(" ".join(filter(None, (item, detail))) + (f": {message}" if message else ""))
        style = self.styles.get(kind, "")
        err.print(
            f"[{style}]{kind:>{self.width}}[/] {text}" if style else f"{kind:>{self.width}} {text}",
            highlight=False,
        )

    def summary(self, label: str) -> None:
        """One line: ``label: 598 submitted, 2 skipped, 1 refused`` (and how many lines were left out)."""
        if not self.counts:
            return
        listed = ", ".join(f"[{self.styles.get(k, '')}]{n:,} {k}[/]" for k, n in self.counts.most_common())
        hidden = sum(self.counts[k] for k in self.problems) - self._shown
        more = f" ({hidden:,} line(s) left out: -v shows every one)" if hidden > 0 and not verbosity() else ""
        line(f"{escape(label)}: {listed}{more}")


# -- findings ------------------------------------------------------------------------------------------------


def findings(found: Sequence[Any], *, limit: int, note: str | None = None) -> None:
    """Findings one per line (errors red, warnings yellow), at most ``limit``, then what was left out."""
    for finding in found[:limit]:
        style = "red" if finding.severity == "error" else "yellow"
        err.print(f"[{style}]{escape(str(finding))}[/]", highlight=False, emoji=False)
    hidden = len(found) - limit
    if note is not None:
        say(note)
    elif hidden > 0:
        say(f"… and {hidden:,} more (--format json lists all)")


def verdict(rep: Any) -> None:
    """One line: valid or invalid, and the counts."""
    s = rep.stats
    word = "[green]valid[/]" if rep.valid else "[bold red]invalid[/]"
    line(
        f"{word}: {s.files} file(s), {s.records:,} record(s), {s.errors:,} error(s), {s.warnings:,} warning(s)"
    )


def report(rep: Any, *, max_findings: int, title: str = "findings by code") -> None:
    """A Report: its findings (and what the listing leaves out, and where it is), a verdict, then a table of
    counts by code."""
    shown = rep.findings[:max_findings]
    findings(shown, limit=max_findings, note=rep.more_note(len(shown)))
    s = rep.stats
    verdict = "[green]valid[/]" if rep.valid else "[bold red]invalid[/]"
    line(
        f"{verdict}: {s.files} file(s), {s.records:,} record(s), {s.valid_records:,} valid, "
        f"{s.errors:,} error(s), {s.warnings:,} warning(s)"
    )
    if rep.counts:
        rows = [(escape(code), rep.severity_of(code), f"{n:,}") for code, n in rep.counts.items()]
        show(table(title, ("code", "severity", "count"), rows, right=2))


# -- shards --------------------------------------------------------------------------------------------------


def _state(shard: Any) -> str:
    return (
        "uncertain" if shard.uncertain else ("adopted, unchecked" if shard.provisional else str(shard.state))
    )


def shard_table(shards: Sequence[Any], title: str = "shards") -> Table:
    """Every shard (batch, state, status, counts) when there are few of them or with ``-v``; else one row per
    state and status with the shards and their counts summed (600 shards are never 600 lines)."""
    names = ("shard", "records", "batch", "state", "status", "done", "failed", "pending")
    made = Table(title=escape(title), title_justify="left")
    for i, name in enumerate(names):
        wide = name in ("state", "status")
        justify = "right" if name in ("records", "done", "failed", "pending") else "left"
        made.add_column(name, justify=justify, overflow="fold", min_width=9 if wide else None)  # type: ignore[arg-type]
        if i == 0 and len(shards) > LISTED and not verbosity():
            made.columns[0].header = "shards"
    metrics = ("success_count", "failed_count", "pending_count")
    if len(shards) <= LISTED or verbosity():
        for s in shards:
            made.add_row(escape(s.file), f"{s.records:,}", s.batch_id or "-", _state(s), s.status or "-",
                         *(f"{s.metrics.get(m, 0):,}" for m in metrics))  # fmt: skip
        return made
    groups: dict[tuple[str, str], list[Any]] = {}
    for s in shards:
        groups.setdefault((_state(s), s.status or "-"), []).append(s)
    for (state, status), members in sorted(groups.items()):
        sums = (sum(s.metrics.get(m, 0) for s in members) for m in metrics)
        made.add_row(
            f"{len(members):,}",
            f"{sum(s.records for s in members):,}",
            "-",
            state,
            status,
            *(f"{n:,}" for n in sums),
        )
    made.caption = f"{len(shards):,} shards summed by state; -v lists every one, --format json has them all"
    return made


def unsettled(shards: Sequence[Any]) -> None:
    """A line per shard whose create is not settled yet, or whose batch was adopted without proof yet."""
    for s in shards:
        if s.uncertain:
            line(
                f"[yellow]uncertain[/] {escape(s.file)}: {escape(s.message or 'its create is not settled yet')}"
            )
        elif s.provisional:
            line(
                f"[cyan]adopted[/] {escape(s.file)}: batch {escape(str(s.batch_id))}, checked by content once it finishes"
            )


def dry_run(verdicts: Sequence[Any]) -> None:
    """The server's verdict on every shard of a dry run."""
    rows = [(escape(v.file), "[green]VALIDATED[/]" if v.valid else "[red]REFUSED[/]", escape(v.message or ""))
            for v in verdicts]  # fmt: skip
    show(table("dry run", ("shard", "verdict", "server message"), rows, right=3))


# -- results -------------------------------------------------------------------------------------------------

OUTCOME_STYLE = {
    "completed": "green",
    "failed": "red",
    "rejected": "red",
    "missing": "magenta",
    "invalid": "yellow",
    "pending": "cyan",
    "unsubmitted": "dim",
    "skipped": "dim",
    "filtered": "dim",
}


def outcomes(counts: Mapping[str, int], total: int, codes: Mapping[str, int], grid: Any = None) -> None:
    """Rows per outcome (zeros included) and the total; an ``[each]`` build's grid; rows per error code."""
    made = table("outcomes", ("outcome", "rows"), [])
    for outcome, n in counts.items():
        made.add_row(f"[{OUTCOME_STYLE.get(outcome, 'bold') if n else 'dim'}]{outcome}[/]", f"{n:,}")
    made.add_section()
    made.add_row("[bold]total[/]", f"[bold]{total:,}[/]")
    show(made)
    if grid is not None:
        name, *kinds = grid.columns
        by = table(f"by {name}", (name, *kinds), [])
        for value, *numbers in grid.iter_rows():
            cells = [
                f"[{OUTCOME_STYLE.get(o, 'bold')}]{n:,}[/]" if n else "[dim]0[/]"
                for o, n in zip(kinds, numbers, strict=True)
            ]
            by.add_row(escape(str(value)), *cells)
        show(by)
    if codes:
        show(table("why", ("error code", "rows"), [(escape(c), f"{n:,}") for c, n in codes.items()]))


def numbered(label: str, values: Mapping[str, int]) -> str:
    """``label: 3 failed, 2 rejected`` (``none`` when empty)."""
    listed = ", ".join(f"{n:,} {what}" for what, n in values.items() if n) or "none"
    return f"{label}: {listed}"


# -- builds --------------------------------------------------------------------------------------------------


def built(summary: Any, *, unit: str) -> None:
    """A finished build: what was read and written, the invalid units by code, the shards in one line."""
    c = summary.counts
    extra = "".join(f", {n:,} {what}" for what, n in (("skipped", c.skipped), ("filtered", c.filtered)) if n)
    line(f"[green]built[/] {escape(str(summary.out_dir))}: {c.rows:,} {unit} read → {c.units:,} request(s), "
         f"{c.requests:,} written, {c.invalid:,} invalid{extra}")  # fmt: skip
    for code, n in summary.invalid_by_code.items():
        say(f"  invalid {code}: {n:,}")
    if summary.held:
        say(
            f"  included {summary.held:,} held request(s) (marked as included, so no later build takes them again)"
        )
    sizes = summary.shard_records
    if summary.unsharded is not None:  # build --reuse left fewer than a batch's minimum: they go one by one
        if summary.unsharded.records:
            say(f"  no shard: {summary.unsharded.records:,} request(s) in {summary.unsharded.file}, fewer than a "
                f"batch's minimum; `batchkit submit {summary.out_dir}` sends them one by one")  # fmt: skip
        else:
            say("  nothing left to send: every valid request completed before")
    elif summary.first_file is not None:
        listed = ", ".join(f"{n:,}" for n in sizes[:12]) + (" …" if len(sizes) > 12 else "")
        files = summary.first_file + (f" … {summary.last_file}" if len(sizes) > 1 else "")
        say(f"  {c.shards:,} shard(s) of {listed} records, {c.bytes:,} bytes: {files}")
    if summary.reused:
        line(f"[green]reused[/] {summary.reused:,} request(s) that completed before: not sent again")
    if summary.estimate is not None:
        estimate(summary.estimate, shards=False)
    elif summary.probed:
        say(
            f"price it: `batchkit estimate {summary.out_dir}` (Sync's estimate API) or with --prices prices.toml"
        )


def not_built(
    rep: Any, invalid: Mapping[str, int], written: Sequence[Path], *, max_findings: int, hint: str
) -> None:
    """A build that stopped on its findings: the findings, then one line of what to do."""
    report(rep, max_findings=max_findings)
    kept = ", ".join(str(p) for p in written)
    if invalid:
        listed = ", ".join(f"{code} × {n:,}" for code, n in invalid.items())
        line(f"[bold red]not built:[/] {sum(invalid.values()):,} invalid row(s) ({escape(listed)}); {escape(hint)}. "
             f"Nothing was written but {escape(kept)}")  # fmt: skip
    else:
        listed = ", ".join(f"{code} × {n:,}" for code, n in rep.error_counts.items())
        line(f"[bold red]not built:[/] {escape(listed)}; see {escape(kept)}")


# -- submitting ----------------------------------------------------------------------------------------------

SUBMIT_STYLES = {
    "submitted": "green", "reconciled": "cyan", "not-created": "yellow", "refused": "red", "concurrency-wait": "yellow",
    "uncertain": "yellow", "in-flight-wait": "yellow", "adopted": "cyan", "verified": "green", "released": "magenta",
    "retired": "magenta", "skipped": "dim", "dry-run": "blue",
}  # fmt: skip
_SUBMIT_PROBLEMS = frozenset({"refused", "uncertain", "not-created", "released", "retired", "adopted"})
#: A shard whose event is one of these is done with, for the bar.
_SHARD_DONE = frozenset({"submitted", "skipped", "refused", "dry-run"})


def submit_events(bar: Bar) -> tuple[Events, Any]:
    """The events of a submit (counted; problems shown) and the ``on_event`` that feeds them and ``bar``."""
    events = Events(SUBMIT_STYLES, _SUBMIT_PROBLEMS)

    def on_event(event: Any) -> None:
        events(event.kind, event.file, event.batch_id, event.message)
        if event.kind in _SHARD_DONE:
            bar.advance(1, note=f"{event.kind} {event.file}")
        elif event.kind.endswith("-wait"):
            bar.advance(0, note=f"{event.kind}: {event.message or ''}")

    return events, on_event


def wait_feed(bar: Bar, progress_of: Any) -> Any:
    """The ``on_progress`` of a wait: generations done of all (an ETA), batches finished as the note."""

    def on_progress(shards: Sequence[Any]) -> None:
        p = progress_of(shards)
        bar.update(p.done, p.total or None, note=f"{p.batches_done:,}/{p.batches:,} batches done")

    return on_progress


def not_submitted(view: Any) -> None:
    """``status`` of a build directory whose shards were never sent."""
    line(f"[yellow]not submitted yet:[/] {escape(str(view.directory))} holds {view.planned_shards:,} shard(s) of "
         f"{view.planned_requests:,} request(s); `batchkit submit {escape(str(view.directory))}` sends them")  # fmt: skip


def realtime_sent(sent: Any, directory: Path) -> None:
    """A directory sent one request at a time: how many finished, by status."""
    statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(sent.statuses.items())) or "none yet"
    say(
        f"sent one by one: {len(sent.finished):,} of {len(sent.generations):,} request(s) finished ({statuses})"
    )
    left = len(sent.running) + len(sent.unsent)
    if left:
        line(f"[yellow]{left:,} not finished[/] ({len(sent.running):,} running, {len(sent.unsent):,} not sent yet); "
             "run the same command again to resume")  # fmt: skip
    say(f"next: batchkit results {directory}")


def unsent(files: Sequence[str], directory: Path) -> None:
    if files:
        listed = ", ".join(files[:PROBLEMS_SHOWN]) + (
            f" and {len(files) - PROBLEMS_SHOWN:,} more" if len(files) > PROBLEMS_SHOWN else ""
        )
        line(f"[yellow]not sent:[/] {escape(listed)}; `batchkit submit {escape(str(directory))}` sends them")


def results(res: Any, *, max_findings: int, grid: Any = None) -> None:
    """Joined results: their findings, the outcome table, the ``[each]`` grid, rows per error code."""
    rep = res.report
    shown = rep.findings[:max_findings]
    findings(shown, limit=max_findings, note=rep.more_note(len(shown)))
    outcomes(res.outcomes, res.frame.height, res.error_codes, grid)


def handed_back(back: Any, directory: Path, *, max_findings: int) -> None:
    """``results``: the tables, what was written, and the hint when rows are still pending."""
    results(back.results, max_findings=max_findings, grid=back.by_each)
    if back.filled is not None:
        say(f"filled in {back.filled} (a copy of the build's source)")
    if back.written is not None:
        say(f"wrote {back.written} ({back.table.height:,} rows)")
    elif back.filled is None:
        say(f"{back.table.height:,} rows; add --out results.csv to write them")
    if back.pending:
        line(f"[cyan]{back.pending:,} rows pending:[/] batchkit wait {escape(str(directory))}")


def fetched(result: Any) -> None:
    """``fetch``: its findings (the first ones), then one line of counts."""
    findings(result.findings, limit=PROBLEMS_SHOWN if not verbosity() else len(result.findings))
    say(f"{len(result.fetched):,} fetched ({result.bytes_fetched:,} bytes), {len(result.present):,} already at "
        f"{result.destination}, {len(result.failed):,} failed; {result.media_requests:,} media request(s)")  # fmt: skip


_RECOVERED = {
    "registry": "its own batch again (recorded on this machine)",
    "verified": "found by content (its output carries the shard's ids)",
    "adopted": "the only candidate, adopted; checked by content once it finishes",
    "candidates": "several candidates; their outputs will tell",
    "in-flight": "no batch found; `batchkit submit` sends it once a create can no longer be in flight",
}


def recovered(result: Any) -> None:
    """``recover``: where the broken journal went, what was found per shard, the shards."""
    if result.moved_aside is not None:
        say(f"kept the broken journal as {result.moved_aside}")
    found = Counter(result.outcomes.values())
    if len(result.outcomes) <= LISTED or verbosity():
        for file, outcome in result.outcomes.items():
            say(f"{file}: {_RECOVERED.get(outcome, outcome)}")
    else:
        for outcome, n in found.most_common():
            say(f"{n:,} shard(s): {_RECOVERED.get(outcome, outcome)}")
    show(shard_table(result.shards, title=str(result.directory)))
    unsettled(result.shards)


def inspected(found: Any, directory: Path | None) -> None:
    """``inspect``: the batch, its counts, its output's first request_ids, whose it is."""
    data = found.to_dict()
    m = found.batch.metrics
    say(f"batch {data['id']}: {data['status']}, created {data['created_at'] or '?'}")
    say(f"  {m.total_generations:,} generation(s): {m.success_count:,} succeeded, {m.failed_count:,} failed, "
        f"{m.pending_count:,} pending")  # fmt: skip
    if found.output_note:
        say(f"  output: {found.output_note}")
    else:
        say(
            f"  output: {found.output_lines:,} line(s); first request_ids: {', '.join(found.first_request_ids)}"
        )
    for where, shard, certainty in found.known_to:
        say(f"  recorded by {where} for {shard} ({certainty})")
    if directory is not None:
        verdict = f"matches {found.matches}" if found.matches else "matches none of its shards"
        say(f"  in {directory}: {'cannot tell yet (no output)' if found.output_note else verdict}")


# -- retries -------------------------------------------------------------------------------------------------

REALTIME_STYLES = {"created": "green", "resent": "cyan", "refused": "red", "rate-limited": "yellow",
                   "uncertain": "yellow", "finished": "blue", "poll-error": "yellow"}  # fmt: skip


def not_retried(rep: Any) -> None:
    """Too few units (or no shard plan): the message alone; lines that no longer pass: the whole report."""
    if {f.code for f in rep.errors} <= {"too-few-records", "cannot-shard"} and all(
        f.line is None for f in rep.errors
    ):
        for finding in rep.errors:
            line(f"[bold red]not retried:[/] {escape(finding.message)}")
        return
    report(rep, max_findings=200, title="not retried")
    line("[bold red]not retried:[/] the lines above no longer pass the limits; nothing was written")


def retried(result: Any) -> None:
    """``retry``: the outcomes and what was selected, what was written, and what to run next."""
    for finding in result.findings:
        line(f"[yellow]{escape(str(finding))}[/]")
    if result.reviewed is not None and not result.units:
        say(f"the review rejects no card ({result.reviewed:,} decision(s)): nothing to retry")
        return
    rows = [
        (o, f"{n:,}", f"{result.selected.get(o, 0):,}" if result.selected.get(o) else "")
        for o, n in result.outcomes.items()
        if n
    ]
    show(table(f"outcomes of {result.directory}", ("outcome", "units", "retried"), rows))
    source = result.directory
    if not result.units:
        say(f"nothing to retry in {source}: no unit is {' or '.join(result.only)}")
        if result.outcomes.get("pending", 0):
            say(f"  {result.outcomes['pending']:,} unit(s) still pending: `batchkit wait {source}` first")
        return
    say(numbered(f"selected {result.units:,} unit(s) of {source}", result.selected))
    if result.outcomes.get("pending", 0):
        line(
            f"[yellow]note:[/] {result.outcomes['pending']:,} unit(s) of {escape(str(source))} are still pending and were not retried"
        )
    build, target = result.build, result.out_dir
    verb = "already holds" if result.reused else "wrote"
    if result.mode == "shards":
        sizes = ", ".join(str(s.records) for s in build.manifest.shards[:12]) + (
            " …" if len(build.manifest.shards) > 12 else ""
        )
        say(f"{verb} {target}: {build.counts.shards} shard(s) of {sizes} records (new ids: *.rN)")
        say(f"next: batchkit submit {target} --wait && batchkit results {target}")
    elif result.mode == "held":
        say(f"{verb} {target / 'held.jsonl'}: {build.counts.requests:,} request(s) held")
        say(f"next: batchkit build SOURCE --mapping MAPPING --out NEW_DIR --include-held {target}")
    else:
        say(f"{verb} {target / 'realtime.jsonl'}: {build.counts.requests:,} request(s)")
        realtime_sent(result.realtime, target)


def stage(name: str, note: str) -> None:
    """One line per stage of ``run``: build, reuse, submit, wait, results."""
    line(f"[bold cyan]{name:>8}[/] {escape(note)}")


# -- probes and estimates ------------------------------------------------------------------------------------

#: Shards listed one per row in an estimate's table (the rest summed in one row).
ESTIMATE_SHARDS = 12


def _subtotals(title: str, key: str, groups: Mapping[str, Any], *, limit: int | None = None) -> Table:
    from .._probe.budget import format_usd

    made = table(title, (key, "requests", "priced", "unknown", "seconds", "USD"), [])
    shown = list(groups.items())
    for label, g in shown[:limit] if limit is not None else shown:
        usd = format_usd(g.total_usd) if g.total_usd is not None else f"≥ {format_usd(g.known_usd)}"
        made.add_row(escape(label), f"{g.requests:,}", f"{g.priced:,}", f"{g.unknown:,}" if g.unknown else "-",
                     f"{g.seconds:,.1f}", usd)  # fmt: skip
    if limit is not None and len(shown) > limit:
        made.add_row(f"… {len(shown) - limit:,} more", "", "", "", "", "")
    return made


def estimate(est: Any, *, shards: bool = True) -> None:
    """An estimate: the total line, what is unknown and why, then tables by model, ``[each]`` value and shard."""
    from .._probe.budget import describe_estimate

    line(f"[bold]estimate:[/] {escape(describe_estimate(est))}")
    if est.unknown:
        models = f" ({escape(', '.join(est.unpriced_models))})" if est.unpriced_models else ""
        why = (
            " (media not probed, or a length the probe could not read: `batchkit probe DIR`)"
            if est.unknown_seconds
            else ""
        )
        line(
            f"[yellow]unknown:[/] {est.unknown_seconds:,} request(s) of unknown length, {est.unknown_price:,} without a price{models}{why}"
        )
    show(_subtotals("by model", "model", est.by_model))
    if est.by_each:
        show(_subtotals("by [each] value", "value", est.by_each))
    if shards and est.by_shard:
        show(_subtotals("by shard", "shard", est.by_shard, limit=ESTIMATE_SHARDS))


def confirm_estimate(est: Any) -> bool:
    """Show the estimate of a live submission and ask once whether to send it (default no)."""
    estimate(est, shards=False)
    return confirm("Send these requests?")


def probe_summary(urls: int, cached: int, bytes_read: int, statuses: Mapping[str, int] | None = None) -> None:
    """URLs probed, answered from the cache, bytes read, and URLs by status (``ok`` or a code). The findings
    themselves, by code, are in the report's own table."""
    rows = [("distinct URLs", f"{urls:,}"), ("probed", f"{urls - cached:,}"), ("from the cache", f"{cached:,}"),
            ("bytes read", f"{bytes_read:,}"), *((f"URLs {s}", f"{n:,}") for s, n in (statuses or {}).items())]  # fmt: skip
    show(table("media probe", ("", "count"), rows))


def probed(result: Any, *, max_findings: int) -> None:
    """``probe``: the findings and the verdict, the probe's numbers, what it wrote."""
    report(result.report, max_findings=max_findings)
    probe_summary(len(result.media), result.cached, result.bytes_read, result.statuses)
    if result.directory is not None:
        say(f"wrote {result.directory / 'media.parquet'} and lengths.parquet; price it with "
            f"`batchkit estimate {result.directory}`")  # fmt: skip
