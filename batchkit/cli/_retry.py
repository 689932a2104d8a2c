"""``batchkit retry``: what failed, went missing or was rejected, as a new build directory (or sent one by one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from .._report import ValidationFailed
from .._retry.retry import DEFAULT_ONLY, RETRYABLE, RetryOptions, retry_failed
from . import _render as render
from ._common import EXIT_FAILED, EXIT_NOT_FINISHED, command
from ._options import (
    Api,
    Output,
    Polling,
    api_options,
    directory_argument,
    group,
    limits_options,
    output_options,
    poll_options,
)

__all__ = ["retry_command"]


def _only(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
    if not names:
        msg = f"give one or more of {', '.join(RETRYABLE)}, separated by commas"
        raise click.BadParameter(msg, param_hint="--only")
    return names


def _retry(v: dict[str, Any]) -> RetryOptions:
    if v["realtime"] and v["hold"]:
        msg = "choose one of --realtime (send them one by one now) and --hold (keep them for the next build)"
        raise click.UsageError(msg)
    return RetryOptions(
        only=_only(v["only"]), review=v["review"], mode="realtime" if v["realtime"] else "held" if v["hold"] else "shards",
        force=v["force"], download=not v["offline"], source=v["source"], concurrency=v["concurrency"],
    )  # fmt: skip


_retry_options = group("retry", _retry, lambda: [
    click.Option(["--only"], default=",".join(DEFAULT_ONLY), show_default=True, help=f"Outcomes to retry, comma-separated: {', '.join(RETRYABLE)}."),
    click.Option(["--realtime"], is_flag=True, help="Send them one by one now (POST /v2/generate), journaled."),
    click.Option(["--concurrency"], type=click.IntRange(min=1), default=3, show_default=True,
                 help="With --realtime: generations running at once (your plan's limit: 1 to 15)."),
    click.Option(["--hold"], is_flag=True, help="Keep them for the next `batchkit build ... --include-held DIR2`."),
    click.Option(["--force"], is_flag=True, help="Replace another build in --out, or retry units retried before."),
    click.Option(["--offline"], is_flag=True, help="Use only results already downloaded to DIRECTORY."),
    click.Option(["--from-review", "review"], type=click.Path(path_type=Path, dir_okay=False, exists=True),
                 help="Retry the cards a reviewer rejected in this decisions CSV (from `batchkit review`), any outcome."),
    click.Option(["--source"], type=click.Path(path_type=Path, dir_okay=False, exists=True), help="The source file, if it moved since the build."),
])  # fmt: skip


@command(
    "retry",
    failed="too few for a batch, or lines that no longer pass",
    unfinished="requests sent one by one still run (run it again to resume)",
)
@directory_argument
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The new build directory.",
)
@_retry_options
@limits_options(of_directory=True)
@api_options
@poll_options
@output_options("what was selected per outcome, what was written, the realtime requests' state")
def retry_command(
    directory: Path,
    out_dir: Path,
    retry: RetryOptions,
    limits: dict[str, int],
    api: Api,
    polling: Polling,
    output: Output,
) -> None:
    """Build a new directory from the units of DIRECTORY that failed, went missing or were rejected.

    The lines are the ones that were sent, with new request_ids linked to the originals (c020 → c020.r1);
    the new directory's results join back to the same source rows. When fewer are left than a batch's
    minimum, send them one by one with --realtime, or keep them with --hold for your next build.
    Running the same retry again changes nothing (with --realtime: it resumes).
    """
    options = dataclasses.replace(retry, limit_changes=limits, deadline=polling.deadline,
                                  poll=api.poll(polling) if retry.mode == "realtime" else None)  # fmt: skip
    events = render.Events(
        render.REALTIME_STYLES, frozenset({"refused", "uncertain", "poll-error"}), width=12
    )
    with api.client(directory) as client, render.progress("generations") as bar:
        try:
            result = retry_failed(
                directory, out_dir, options, client=client, on_progress=lambda done, total: bar.update(done, total),
                on_event=lambda e: events(e.kind, e.request_id, e.generation_id, e.message) if e.kind != "finished" else None,
            )  # fmt: skip
        except ValidationFailed as exc:
            if output.json:
                render.document({"ok": False, "report": exc.report})
            else:
                render.not_retried(exc.report)
            raise SystemExit(EXIT_FAILED) from None
    if output.json:
        render.document(result)
    else:
        render.retried(result)
        events.summary("sent one by one")
    if result.realtime is not None and not result.realtime.done:
        raise SystemExit(EXIT_NOT_FINISHED)
