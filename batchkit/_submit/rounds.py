"""Submit, then wait, and again while a shard comes back to send: what ``submit --wait`` and ``run`` do.

A shard can come back while waiting: its adopted batch turned out to be another's (released), or its lost
create was found never to have made a batch. Each round sends what is left and waits again, up to ``rounds``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._api.backoff import PollPolicy
from .._api.client import Client
from .journal import ShardRecord
from .reconcile import ReconcilePolicy
from .submit import OnEvent, OnProgress, SubmitResult, submit, wait

if TYPE_CHECKING:
    from .._probe.budget import Budget

__all__ = ["Sending", "submit_and_wait"]

#: ``on_round(stage, note)``: "submit" before each submit, "wait" before each wait.
OnRound = Callable[[str, str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sending:
    """How :func:`submit_and_wait` sends and waits: the webhook, the poll policy and deadline, how lost creates
    are settled, at most how many rounds; ``force``, ``rebind`` and ``budget`` apply to the first submit (see
    :func:`batchkit.submit`)."""

    webhook_url: str | None = None
    poll: PollPolicy | None = None
    deadline: float | None = None
    policy: ReconcilePolicy | None = None
    rounds: int = 3
    force: bool = False
    rebind: bool = False
    budget: Budget | None = None


def submit_and_wait(
    directory: str | Path,
    sending: Sending | None = None,
    *,
    client: Client,
    on_event: OnEvent | None = None,
    on_progress: OnProgress | None = None,
    on_round: OnRound | None = None,
) -> tuple[SubmitResult, list[ShardRecord]]:
    """Submit every shard, wait for every batch, and again while a shard comes back to send; return the last
    submit's result and the shards as the last wait left them. A ``deadline`` that passes raises
    :class:`batchkit.WaitTimeoutError` (waiting again later is safe)."""
    how = sending or Sending()
    folder = Path(directory)
    say = on_round or (lambda _stage, _note: None)
    result, shards = SubmitResult(), []
    for round_ in range(max(how.rounds, 1)):
        first = round_ == 0
        say("submit", "sending every shard not sent yet" if first else "sending the shards that came back")
        result = submit(
            folder, client=client, webhook_url=how.webhook_url, force=how.force and first, on_event=on_event,
            poll=how.poll, policy=how.policy, rebind=how.rebind and first, budget=how.budget if first else None,
        )  # fmt: skip
        shards = result.shards
        if result.realtime is not None or not result.submitted:
            break
        say("wait", "polling until every batch is done")
        shards = wait(folder, client=client, poll=how.poll, deadline=how.deadline, on_progress=on_progress,
                      on_event=on_event, policy=how.policy)  # fmt: skip
        if not any(s.state == "pending" for s in shards):
            break
    return result, shards
