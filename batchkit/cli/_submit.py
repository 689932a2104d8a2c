"""``batchkit submit``, ``batchkit status`` and ``batchkit wait``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .._shard.builddir import load_manifest
from .._submit.journal import ShardRecord
from .._submit.overview import overview, wait_progress
from .._submit.rounds import Sending, submit_and_wait
from .._submit.submit import SubmitResult, resolve, submit, wait
from . import _render as render
from ._common import EXIT_FAILED, EXIT_NOT_FINISHED, command
from ._options import (
    Api,
    BudgetAsk,
    Output,
    Polling,
    api_options,
    budget_options,
    directory_argument,
    group,
    output_options,
    poll_options,
    reconcile_options,
    sending_options,
)

_UNFINISHED = (
    "not finished yet (a --deadline passed, requests sent one by one still run, or a shard is uncertain)"
)


@dataclass(frozen=True, slots=True)
class Settle:
    """``--adopt SHARD=BATCH_ID`` and ``--forget SHARD``: how uncertain shards are settled by hand."""

    adopt: dict[str, str]
    forget: tuple[str, ...]


def _settle(v: dict[str, Any]) -> Settle:
    pairs: dict[str, str] = {}
    for value in v["adopt"]:
        shard, sep, batch = value.partition("=")
        if not sep or not shard or not batch:
            msg = f"{value!r} is not SHARD=BATCH_ID"
            raise click.BadParameter(msg, param_hint="--adopt")
        pairs[shard] = batch
    return Settle(pairs, v["forget"])


_settle_options = group("settle", _settle, lambda: [
    click.Option(["--adopt"], multiple=True, metavar="SHARD=BATCH_ID", help="Settle an uncertain shard: this existing batch is its submission."),
    click.Option(["--forget"], multiple=True, metavar="SHARD", help="Settle an uncertain shard: its interrupted create made no batch; send it again."),
])  # fmt: skip


@command("submit", failed="a shard refused, or nothing could be submitted", unfinished=_UNFINISHED)
@directory_argument
@click.option("--dry-run", is_flag=True, help="Ask the server to validate every shard; nothing is created.")
@click.option("--wait", "and_wait", is_flag=True, help="Then wait for every batch to finish, with progress.")
@sending_options()
@_settle_options
@budget_options
@api_options
@output_options("the shards (batch, state, status, metrics), the dry-run verdicts, the events by kind")
def submit_command(
    directory: Path, dry_run: bool, and_wait: bool, sending: Sending, settle: Settle, budget: BudgetAsk, api: Api,
    output: Output,
) -> None:  # fmt: skip
    """Submit every shard of a build directory, exactly once, through a crash-safe journal.

    Safe to run again at any time: shards already submitted are skipped, and a create whose answer was lost
    is settled by content on the server before anything is resent. One process at a time per directory.
    With --sandbox a build directory gets a sandbox of its own (kept in it for status, wait, results...).
    --max-cost refuses, before anything is sent, when the estimate (as `batchkit estimate` prices it) is
    over or unknown.
    """
    asked = budget.budget(live=not (dry_run or api.sandbox), confirm=render.confirm_estimate)
    how = dataclasses.replace(api.sending(sending), budget=asked)
    shards_total = len(load_manifest(directory).shards)
    with api.client(directory, start=True) as client, render.progress("shards", total=shards_total) as bar:
        if settle.adopt or settle.forget:
            resolve(directory, adopt=settle.adopt, forget=settle.forget, client=client)
        events, on_event = render.submit_events(bar)
        if and_wait and not dry_run:

            def on_progress(shards: Sequence[ShardRecord]) -> None:
                p = wait_progress(shards)
                bar.update(p.done, p.total or None, note=f"{p.batches_done:,}/{p.batches:,} batches done")

            def on_round(stage: str, _note: str) -> None:
                if stage == "wait":
                    bar.relabel("generations")

            result, shards = submit_and_wait(
                directory, how, client=client, on_event=on_event, on_progress=on_progress, on_round=on_round
            )
        else:
            result = submit(directory, client=client, dry_run=dry_run, webhook_url=how.webhook_url, force=how.force,
                            on_event=on_event, poll=how.poll, policy=how.policy, rebind=how.rebind,
                            budget=how.budget)  # fmt: skip
            shards = result.shards
    _show_submission(directory, result, shards, events.counts, output)
    if output.text:
        events.summary("this run")
    submission_exit(result, shards, directory)


def _show_submission(
    directory: Path, result: SubmitResult, shards: list[ShardRecord], counts: Any, output: Output
) -> None:
    if output.json:
        render.document({"directory": directory, "shards": shards, "dry_run": result.dry_runs,
                         "realtime": result.realtime, "events": dict(counts)})  # fmt: skip
    elif result.realtime is not None:
        render.realtime_sent(result.realtime, directory)
    elif result.dry_runs:
        render.dry_run(result.dry_runs)
    else:
        render.show(render.shard_table(shards, title=str(directory)))
        render.unsettled(shards)
        render.unsent([s.file for s in shards if s.state == "pending"], directory)


def submission_exit(result: SubmitResult, shards: Sequence[ShardRecord], directory: Path) -> None:
    """Exit 1 when the server refused a shard (or a dry run) or nothing could be submitted; 3 (not finished)
    when requests sent one by one are still running, or when a shard's lost create is not settled yet (its
    journal row still an intent: ``batchkit wait DIR`` settles it)."""
    if result.realtime is not None:
        if not result.realtime.done:
            raise SystemExit(EXIT_NOT_FINISHED)
        return
    if result.dry_runs:
        if not all(v.valid for v in result.dry_runs):
            raise SystemExit(EXIT_FAILED)
        return
    if result.refused:
        render.line(f"[red]{len(result.refused):,} shard(s) refused by the server[/]; see the messages above")
        raise SystemExit(EXIT_FAILED)
    if shards and all(s.state in ("pending", "refused") for s in shards):
        render.line("[red]nothing could be submitted[/]; see the messages above")
        raise SystemExit(EXIT_FAILED)
    uncertain = [s for s in shards if s.state == "intent"]
    if uncertain:
        render.line(f"[yellow]not finished:[/] {len(uncertain):,} shard(s) uncertain (a create whose answer was lost); "
                    f"`batchkit wait {render.escape(str(directory))}` settles them")  # fmt: skip
        raise SystemExit(EXIT_NOT_FINISHED)


@command("status", failed=None)
@directory_argument
@click.option("--offline", is_flag=True, help="Show what the journal knows without asking the server.")
@api_options
@output_options("the directory's submission: planned shards and requests, progress, every shard")
def status_command(directory: Path, offline: bool, api: Api, output: Output) -> None:
    """Show every shard's batch id, status and metrics (uncertain and adopted shards are checked again).

    A build directory never submitted says so (exit 0), with what `batchkit submit` would send.
    """
    if offline:
        view = overview(directory, offline=True)
    else:
        with api.client(directory) as client:
            view = overview(directory, client=client)
    if output.json:
        render.document(view)
    elif not view.shards:
        render.not_submitted(view)
    else:
        render.show(render.shard_table(view.shards, title=str(directory)))
        render.unsettled(view.shards)
        if not view.submitted:
            render.not_submitted(view)


@command(
    "wait", failed=None, unfinished="not finished yet (the --deadline passed; waiting again later is safe)"
)
@directory_argument
@poll_options
@reconcile_options
@api_options
@output_options("every shard as the wait left it")
def wait_command(directory: Path, polling: Polling, policy: Any, api: Api, output: Output) -> None:
    """Wait until every submitted batch is COMPLETED or FAILED and every uncertain shard is settled.

    Adopted batches are checked by content as they finish. A shard left to send (its lost create made no
    batch) is named: `batchkit submit DIR` sends it.
    """
    events = render.Events(render.SUBMIT_STYLES, frozenset({"released", "not-created", "uncertain"}))
    with api.client(directory) as client, render.progress("generations") as bar:
        shards = wait(
            directory, client=client, poll=api.poll(polling), deadline=polling.deadline,
            on_progress=render.wait_feed(bar, wait_progress), policy=api.policy(policy),
            on_event=lambda e: events(e.kind, e.file, e.batch_id, e.message),
        )  # fmt: skip
    if output.json:
        render.document({"directory": directory, "shards": shards, "progress": wait_progress(shards)})
        return
    render.show(render.shard_table(shards, title=str(directory)))
    render.unsettled(shards)
    render.unsent([s.file for s in shards if s.state == "pending"], directory)
