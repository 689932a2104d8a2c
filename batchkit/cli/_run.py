"""``batchkit run``: build → validate → shard → submit → wait → results, resumable by running it again."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import click

from .._report import ValidationFailed
from .._run import RunOptions, RunResult, run
from .._submit.journal import ShardRecord
from .._submit.overview import wait_progress
from .._submit.rounds import Sending
from .._submit.submit import OnEvent, OnProgress
from . import _render as render
from ._build import failed
from ._common import command
from ._options import (
    Api,
    BudgetAsk,
    BuildJob,
    Output,
    api_options,
    budget_options,
    build_options,
    output_options,
    sending_options,
)
from ._probe import probing
from ._submit import submission_exit

_FAILED = (
    "invalid rows (pass --skip-invalid to leave them out) or too few, a shard refused, or nothing submitted"
)


@command("run", failed=_FAILED, unfinished="not finished yet (the --deadline passed; run it again later)")
@build_options(RunOptions)
@click.option(
    "--dry-run", is_flag=True, help="Build, then ask the server to validate every shard; nothing is created."
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the joined table [default: OUT/results.csv]; .csv, .parquet, .xlsx or .jsonl.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Send only a stratified sample of N requests (every [each] value and video) from OUT-sample; "
    "the full run (without --sample) then reuses what it completed.",
)
@sending_options(first_round=False)
@budget_options
@api_options
@output_options("the build, every shard, the dry-run verdicts and the results' summary", max_findings=20)
def run_command(
    job: BuildJob, dry_run: bool, results_path: Path | None, sample: int | None, sending: Sending, budget: BudgetAsk,
    api: Api, output: Output,
) -> None:  # fmt: skip
    """Build SOURCE into shards, submit them, wait, and join the results back to every row.

    Running it again resumes where it stopped: an unchanged build is reused, nothing is submitted twice
    (with --sandbox too: its account is kept in OUT/sandbox-state.ndjson). Like build, it fails on
    invalid rows unless --skip-invalid (then they end as invalid in the results). --probe checks every
    media URL first; --max-cost refuses before anything is sent when the estimate is over; --sample N
    tries a handful first; --reuse DIR does not send again what completed there.
    """
    assert isinstance(job.options, RunOptions)  # build_options(RunOptions) made it
    asked = budget.budget(live=not (api.sandbox or dry_run), confirm=render.confirm_estimate)
    with render.progress("generations") as bar:
        probe, _ = probing(job.options.probe, bar)
        options = dataclasses.replace(
            job.options, sandbox=api.sandbox, dry_run=dry_run, webhook_url=sending.webhook_url, poll=sending.poll,
            deadline=sending.deadline, results_path=results_path, policy=sending.policy, probe=probe,
            budget=asked, sample=sample,
        )  # fmt: skip
        events, on_event = render.submit_events(bar)

        def on_progress(shards: Sequence[ShardRecord]) -> None:
            p = wait_progress(shards)
            if bar.unit != "generations":
                bar.relabel("generations")
            bar.update(p.done, p.total or None, note=f"{p.batches_done:,}/{p.batches:,} batches done")

        try:
            result = _run(job, options, api, on_event, on_progress)
        except ValidationFailed as exc:
            failed(
                exc,
                job.out_dir,
                output,
                hint="fix them, or pass --skip-invalid to leave them out (they end as invalid)",
            )
    _show(result, events, output)


def _run(
    job: BuildJob, options: RunOptions, api: Api, on_event: OnEvent, on_progress: OnProgress
) -> RunResult:
    def on_stage(stage: str, note: str) -> None:
        render.stage(stage, note)

    if api.sandbox:
        return run(
            job.source,
            job.mapping,
            job.out_dir,
            options,
            on_stage=on_stage,
            on_event=on_event,
            on_progress=on_progress,
        )
    with api.client() as client:
        return run(job.source, job.mapping, job.out_dir, options, client=client, on_stage=on_stage,
                   on_event=on_event, on_progress=on_progress)  # fmt: skip


def _show(result: RunResult, events: render.Events, output: Output) -> None:
    submission = result.submission
    if output.json:
        render.document(result)
    elif submission.dry_runs:
        render.dry_run(submission.dry_runs)
    else:
        render.results(result.results, max_findings=output.max_findings, grid=result.by_each)
        render.say(f"wrote {result.results_path}")
        render.unsettled(submission.shards)
        events.summary("this run")
    submission_exit(submission, submission.shards, result.directory)
