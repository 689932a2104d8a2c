"""``batchkit submit``, ``batchkit status`` and ``batchkit wait``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._api.backoff import PollPolicy
from .._api.client import Client
from .._submit.journal import ShardRecord
from .._submit.reconcile import ReconcilePolicy
from .._submit.submit import SubmitEvent, SubmitResult, resolve, status, submit, wait
from ._budget import budget_options, make_budget
from ._common import EXIT_FINDINGS, EXIT_USAGE, err, handle_errors, out

_EVENT_STYLE = {
    "submitted": "green",
    "reconciled": "cyan",
    "not-created": "yellow",
    "refused": "red",
    "concurrency-wait": "yellow",
    "uncertain": "yellow",
    "in-flight-wait": "yellow",
    "adopted": "cyan",
    "verified": "green",
    "released": "magenta",
    "retired": "magenta",
    "skipped": "dim",
    "dry-run": "blue",
}


def api_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--base-url``, ``--api-key`` (both also from the environment) and ``--timeout``."""
    func = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=60.0,
        show_default=True,
        help="Seconds one request may take.",
    )(func)
    func = click.option(
        "--api-key",
        envvar="SYNC_API_KEY",
        show_envvar=True,
        help="Sync API key (prefer the environment variable: options show up in shell history).",
    )(func)
    return click.option(
        "--base-url",
        envvar="SYNC_BASE_URL",
        show_envvar=True,
        help="API base URL [default: https://api.sync.so]; plain http:// only for loopback (the sandbox).",
    )(func)


def poll_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--poll-initial``, ``--poll-factor``, ``--poll-max``, ``--deadline``."""
    options = [
        click.option(
            "--poll-initial",
            type=click.FloatRange(min=0),
            default=5.0,
            show_default=True,
            help="Seconds before the first status poll.",
        ),
        click.option(
            "--poll-factor",
            type=click.FloatRange(min=1),
            default=1.5,
            show_default=True,
            help="Each poll interval is the previous one times this.",
        ),
        click.option(
            "--poll-max",
            type=click.FloatRange(min=0),
            default=60.0,
            show_default=True,
            help="Longest interval between polls, in seconds.",
        ),
        click.option(
            "--deadline",
            type=click.FloatRange(min=0),
            default=None,
            help="Give up waiting after this many seconds (waiting again later is safe).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def reconcile_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--in-flight`` and ``--clock-skew``: how a create whose answer was lost is settled."""
    func = click.option(
        "--clock-skew",
        type=click.FloatRange(min=0),
        default=300.0,
        show_default=True,
        help="Seconds the server's clock may differ from this machine's.",
    )(func)
    return click.option(
        "--in-flight",
        type=click.FloatRange(min=0),
        default=300.0,
        show_default=True,
        help="Seconds a create whose answer was lost may still land (at least twice --timeout is used).",
    )(func)


def make_policy(in_flight: float, clock_skew: float) -> ReconcilePolicy:
    return ReconcilePolicy(in_flight=in_flight, skew=clock_skew)


def make_client(api_key: str | None, base_url: str | None, timeout: float = 60.0) -> Client:
    return Client(api_key=api_key or None, base_url=base_url or None, timeout=timeout)


def make_poll(initial: float, factor: float, maximum: float) -> PollPolicy:
    return PollPolicy(initial=initial, factor=factor, maximum=max(maximum, initial))


def _print_event(event: SubmitEvent) -> None:
    style = _EVENT_STYLE.get(event.kind, "")
    batch = f" {event.batch_id}" if event.batch_id else ""
    note = f": {event.message}" if event.message else ""
    err.print(f"[{style}]{event.kind:>16}[/] {event.file}{batch}{note}", highlight=False, markup=True)


def shard_table(shards: Sequence[ShardRecord], title: str = "shards") -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in [
        ("shard", "left"),
        ("records", "right"),
        ("batch", "left"),
        ("state", "left"),
        ("status", "left"),
        ("done", "right"),
        ("failed", "right"),
        ("pending", "right"),
    ]:
        # Narrow terminals fold long cells instead of cutting them: ids and statuses stay whole.
        wide = name in ("state", "status")
        table.add_column(name, justify=justify, overflow="fold", min_width=9 if wide else None)  # type: ignore[arg-type]
    for s in shards:
        m = s.metrics
        state = "uncertain" if s.uncertain else ("adopted, unchecked" if s.provisional else s.state)
        table.add_row(
            s.file,
            f"{s.records:,}",
            s.batch_id or "-",
            state,
            s.status or "-",
            f"{m.get('success_count', 0):,}",
            f"{m.get('failed_count', 0):,}",
            f"{m.get('pending_count', 0):,}",
        )
    return table


def progress_printer() -> tuple[Progress, Callable[[Sequence[ShardRecord]], None]]:
    """A rich bar of generations done / total across every batch of the directory."""
    progress = Progress(
        TextColumn("[bold]generations"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task("", total=None)

    def update(shards: Sequence[ShardRecord]) -> None:
        sent = [s for s in shards if s.state == "submitted"]
        total = sum(s.metrics.get("total_generations") or s.records for s in sent)
        done = sum(s.metrics.get("success_count", 0) + s.metrics.get("failed_count", 0) for s in sent)
        finished = sum(1 for s in sent if s.terminal)
        progress.update(task, total=total, completed=done, description=f"{finished}/{len(sent)} batches done")

    return progress, update


def run_wait(
    directory: Path, client: Client, poll: PollPolicy, deadline: float | None, policy: ReconcilePolicy | None = None
) -> list[ShardRecord]:
    progress, update = progress_printer()
    with progress:
        return wait(
            directory, client=client, poll=poll, deadline=deadline, on_progress=update, on_event=_print_event, policy=policy
        )


def report_unsettled(shards: Sequence[ShardRecord]) -> None:
    """One line per shard that is uncertain, adopted without proof yet, or waiting to be sent."""
    for s in shards:
        if s.uncertain:
            err.print(f"[yellow]uncertain[/] {s.file}: {s.message or 'its create is not settled yet'}", highlight=False)
        elif s.provisional:
            err.print(
                f"[cyan]adopted[/] {s.file}: batch {s.batch_id}, checked by content once it finishes", highlight=False
            )


def submit_exit(result: SubmitResult, shards: Sequence[ShardRecord]) -> None:
    """Exit 1 when the server refused a shard or nothing could be submitted (an uncertain shard may have been)."""
    if result.refused:
        err.print(f"[red]{len(result.refused)} shard(s) refused by the server[/]; see the messages above")
        raise SystemExit(EXIT_FINDINGS)
    if shards and all(s.state in ("pending", "refused") for s in shards):
        err.print("[red]nothing could be submitted[/]; see the messages above")
        raise SystemExit(EXIT_FINDINGS)


def _pairs(values: Sequence[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        shard, sep, batch = value.partition("=")
        if not sep or not shard or not batch:
            msg = f"{value!r} is not SHARD=BATCH_ID"
            raise click.BadParameter(msg, param_hint="--adopt")
        pairs[shard] = batch
    return pairs


@click.command("submit")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Ask the server to validate every shard; nothing is created.")
@click.option("--webhook-url", help="URL Sync POSTs each batch's final status to.")
@click.option("--wait", "and_wait", is_flag=True, help="Then wait for every batch to finish, with progress.")
@click.option("--force", is_flag=True, help="Submit shards that already have a batch again (new batches!).")
@click.option(
    "--adopt",
    multiple=True,
    metavar="SHARD=BATCH_ID",
    help="Settle an uncertain shard: this existing batch is its submission.",
)
@click.option(
    "--forget",
    multiple=True,
    metavar="SHARD",
    help="Settle an uncertain shard: its interrupted create made no batch; send it again.",
)
@click.option(
    "--rebind",
    is_flag=True,
    help="The directory's account is now reached at this (real) base URL: record the move and go on.",
)
@api_options
@poll_options
@reconcile_options
@budget_options
@handle_errors
def submit_command(
    directory: Path, dry_run: bool, webhook_url: str | None, and_wait: bool, force: bool,
    adopt: tuple[str, ...], forget: tuple[str, ...], rebind: bool, api_key: str | None, base_url: str | None,
    timeout: float, poll_initial: float, poll_factor: float, poll_max: float, deadline: float | None,
    in_flight: float, clock_skew: float, **budget_flags: Any,
) -> None:  # fmt: skip
    """Submit every shard of a build directory, exactly once, through a crash-safe journal.

    Safe to run again at any time: shards already submitted are skipped, and a create whose answer was lost
    is settled by content on the server before anything is resent. One process at a time per directory.
    --max-cost refuses, before anything is sent, when the estimate (as `batchkit estimate` prices it) is
    over or unknown. Exit status: 0 submitted, 1 a shard refused or nothing could be submitted, 2 usage, API or I/O error.
    """
    poll = make_poll(poll_initial, poll_factor, poll_max)
    policy = make_policy(in_flight, clock_skew)
    budget = make_budget(**budget_flags, live=not dry_run)
    with make_client(api_key, base_url, timeout) as client:
        if adopt or forget:
            resolve(directory, adopt=_pairs(adopt), forget=forget, client=client)
        result = submit(
            directory,
            client=client,
            dry_run=dry_run,
            webhook_url=webhook_url,
            force=force,
            on_event=_print_event,
            poll=poll,
            policy=policy,
            rebind=rebind,
            budget=budget,
        )
        if result.realtime is not None:
            sent = result.realtime
            err.print(
                f"sent one by one: {len(sent.finished):,} of {len(sent.generations):,} request(s) finished "
                f"{sent.statuses}; `batchkit results {directory}` joins them to their rows"
            )
            if not sent.done:
                raise SystemExit(EXIT_USAGE)
            return
        if dry_run:
            table = Table(title="dry run", title_justify="left")
            table.add_column("shard")
            table.add_column("verdict")
            table.add_column("server message")
            for verdict in result.dry_runs:
                table.add_row(
                    verdict.file,
                    "[green]VALIDATED[/]" if verdict.valid else "[red]REFUSED[/]",
                    verdict.message or "",
                )
            out.print(table)
            if not all(v.valid for v in result.dry_runs):
                raise SystemExit(EXIT_FINDINGS)
            return
        if and_wait and result.submitted:
            shards = run_wait(directory, client, poll, deadline, policy)
            if any(s.state == "pending" for s in shards):  # released on the way (its adopted batch was another's)
                result = submit(directory, client=client, webhook_url=webhook_url, on_event=_print_event, poll=poll, policy=policy)
                shards = run_wait(directory, client, poll, deadline, policy)
        else:
            shards = result.shards
    out.print(shard_table(shards))
    report_unsettled(shards)
    submit_exit(result, shards)


@click.command("status")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--offline", is_flag=True, help="Show what the journal knows without asking the server.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: a table; json: one object per shard, for scripts.",
)
@api_options
@handle_errors
def status_command(
    directory: Path, offline: bool, fmt: str, api_key: str | None, base_url: str | None, timeout: float
) -> None:  # fmt: skip
    """Show every shard's batch id, status and metrics (uncertain and adopted shards are checked again)."""
    if offline:
        shards = status(directory, offline=True)
    else:
        with make_client(api_key, base_url, timeout) as client:
            shards = status(directory, client=client)
    if fmt == "json":
        click.echo(orjson.dumps([shard_json(s) for s in shards], option=orjson.OPT_INDENT_2).decode())
    else:
        out.print(shard_table(shards, title=str(directory)))
        report_unsettled(shards)


def shard_json(shard: ShardRecord) -> dict[str, Any]:
    """A shard as plain JSON: what the table shows, with times in ISO 8601."""
    data = dataclasses.asdict(shard)
    for key, value in data.items():
        if hasattr(value, "isoformat"):
            data[key] = value.isoformat()
    data["uncertain"] = shard.uncertain
    data["provisional"] = shard.provisional
    return data


@click.command("wait")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@api_options
@poll_options
@reconcile_options
@handle_errors
def wait_command(
    directory: Path, api_key: str | None, base_url: str | None, timeout: float, poll_initial: float,
    poll_factor: float, poll_max: float, deadline: float | None, in_flight: float, clock_skew: float,
) -> None:  # fmt: skip
    """Wait until every submitted batch is COMPLETED or FAILED and every uncertain shard is settled.

    Adopted batches are checked by content as they finish. A shard left to send (its lost create made no
    batch) is named: `batchkit submit DIR` sends it.
    """
    with make_client(api_key, base_url, timeout) as client:
        poll = make_poll(poll_initial, poll_factor, poll_max)
        shards = run_wait(directory, client, poll, deadline, make_policy(in_flight, clock_skew))
    out.print(shard_table(shards, title=str(directory)))
    report_unsettled(shards)
    unsent = [s.file for s in shards if s.state == "pending"]
    if unsent:
        err.print(f"[yellow]not sent:[/] {', '.join(unsent)}; run `batchkit submit {directory}` to send them")
