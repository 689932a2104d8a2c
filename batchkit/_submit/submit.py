"""Submitting a build directory: journaled creates, reconciliation after crashes, dry runs, status and waiting.

The rule that keeps money safe: before each create, the intent is committed to the journal; the batch id is
committed as soon as it arrives. A create whose answer was lost (timeout, reset, 5xx after the upload) leaves
an *uncertain* intent, and nothing is sent for that shard again until the server's batch list has been
searched for it: one match → adopt it; none → it was not created, send again; several → stop and say so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .._api.backoff import PollPolicy
from .._api.client import Client
from .._errors import (
    AmbiguousSubmissionError,
    APIConnectionError,
    APIError,
    APIStatusError,
    BadRequestError,
    ConcurrencyLimitError,
    InputError,
    JournalError,
    RateLimitError,
    ServerError,
    WaitTimeoutError,
)
from .._shard.builddir import Manifest, load_manifest, verify_shards
from .._wire.responses import Batch, DryRunResult
from .journal import Journal, ShardRecord

if TYPE_CHECKING:
    from .._probe.budget import Budget
    from .realtime import RealtimeResult

__all__ = ["DryRunVerdict", "SubmitEvent", "SubmitResult", "refresh", "resolve", "status", "submit", "wait"]

log = logging.getLogger("batchkit")

EventKind = Literal[
    "submitted", "reconciled", "not-created", "refused", "concurrency-wait", "uncertain", "skipped", "dry-run"
]


@dataclass(frozen=True, slots=True)
class SubmitEvent:
    """Something that happened to one shard, for progress output."""

    kind: EventKind
    file: str
    batch_id: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class DryRunVerdict:
    """What the server said about one shard in a dry run."""

    file: str
    valid: bool
    message: str | None


@dataclass(slots=True)
class SubmitResult:
    """The state of every shard after a submit run (and, for dry runs, the server's verdicts)."""

    shards: list[ShardRecord] = field(default_factory=list)
    dry_runs: list[DryRunVerdict] = field(default_factory=list)
    #: For a ``retry --realtime`` directory: its requests, sent one by one instead of in batches.
    realtime: RealtimeResult | None = None

    @property
    def refused(self) -> list[ShardRecord]:
        return [s for s in self.shards if s.state == "refused"]


OnEvent = Callable[[SubmitEvent], None]
OnProgress = Callable[[Sequence[ShardRecord]], None]


def _client(client: Client | None) -> Client:
    return client if client is not None else Client()


def _manifest_shards(directory: Path) -> Manifest:
    manifest = load_manifest(directory)
    changed = verify_shards(directory)
    if changed:
        details = "; ".join(f"{f.file}: {f.message}" for f in changed)
        msg = f"shards of {directory} changed since they were built ({details}); rebuild before submitting"
        raise InputError(msg, path=directory)
    return manifest


def submit(
    directory: str | Path,
    *,
    client: Client | None = None,
    dry_run: bool = False,
    webhook_url: str | None = None,
    force: bool = False,
    on_event: OnEvent | None = None,
    poll: PollPolicy | None = None,
    reconcile_window: float = 600.0,
    settle: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    budget: Budget | None = None,
) -> SubmitResult:
    """Submit every shard of a build directory once, safely resumable after any crash.

    ``dry_run`` asks the server to validate every shard without creating anything. ``force`` submits shards
    that already have a batch again (the old batch ids stay in the journal's history). ``reconcile_window`` is
    how far before a lost create (in seconds) the server's batch list is searched, allowing for clock skew;
    ``settle`` is how long to wait before searching, so a create still in flight can appear. ``budget``
    (:class:`batchkit.Budget`) estimates the directory first and raises :class:`batchkit.BudgetError`, before
    anything is sent or journaled, when it is over, of unknown cost, or not confirmed.
    """
    folder = Path(directory)
    manifest = _manifest_shards(folder)
    api = _client(client)
    emit = on_event or (lambda _event: None)
    if budget is not None and not dry_run:
        from .._build.estimate import check_budget

        check_budget(folder, budget, client=api)
    if manifest.unsharded is not None:
        return _unsharded(folder, manifest, api, dry_run=dry_run, poll=poll)
    if dry_run:
        return _dry_run(folder, manifest, api, webhook_url, emit)
    with Journal.open(folder) as journal:
        journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in manifest.shards])
        for shard in journal.shards():
            if shard.state == "intent":
                _reconcile_or_explain(journal, api, shard, reconcile_window, emit)
        if force:
            for shard in journal.shards():
                if shard.state == "submitted":
                    journal.supersede(shard.file, "resubmitted with --force")
        for shard in journal.shards():
            if shard.state == "submitted":
                emit(SubmitEvent("skipped", shard.file, shard.batch_id, "already submitted"))
                continue
            _send(
                folder,
                journal,
                api,
                shard,
                webhook_url,
                emit,
                poll or PollPolicy(),
                reconcile_window,
                settle,
                sleep,
            )
        return SubmitResult(shards=journal.shards())


def _unsharded(
    folder: Path, manifest: Manifest, api: Client, *, dry_run: bool, poll: PollPolicy | None
) -> SubmitResult:
    """A directory without shards: held requests are refused here; realtime ones are sent one by one."""
    assert manifest.unsharded is not None
    if manifest.unsharded.mode == "held":
        msg = (
            f"{folder} holds requests kept for a later build, not batch files; include them with "
            f"`batchkit build SOURCE --mapping MAPPING --out DIR --include-held {folder}`"
        )
        raise InputError(msg, path=folder)
    if dry_run:
        msg = f"{folder} is sent one request at a time (retry --realtime); there is no batch file to dry-run"
        raise InputError(msg, path=folder)
    from .realtime import send_realtime

    return SubmitResult(realtime=send_realtime(folder, client=api, poll=poll))


def _dry_run(
    folder: Path, manifest: Manifest, api: Client, webhook_url: str | None, emit: OnEvent
) -> SubmitResult:
    verdicts: list[DryRunVerdict] = []
    with Journal.open(folder) as journal:
        for shard in manifest.shards:
            try:
                answer = api.batches.create(folder / shard.file, webhook_url=webhook_url, dry_run=True)
            except BadRequestError as exc:
                verdict = DryRunVerdict(shard.file, False, exc.server_message or str(exc))
            else:
                if isinstance(answer, Batch):  # a server that ignored dry_run: say so loudly
                    msg = f"the server created batch {answer.id} for a dry run of {shard.file}; cancel it if unwanted"
                    raise JournalError(msg, shard=shard.file)
                verdict = DryRunVerdict(shard.file, answer.status == "VALIDATED", None)
            journal.record_dry_run(
                shard.file, shard.sha256, "VALID" if verdict.valid else "REFUSED", verdict.message
            )
            emit(SubmitEvent("dry-run", shard.file, None, verdict.message or "VALIDATED"))
            verdicts.append(verdict)
        return SubmitResult(shards=journal.shards(), dry_runs=verdicts)


def _send(
    folder: Path,
    journal: Journal,
    api: Client,
    shard: ShardRecord,
    webhook_url: str | None,
    emit: OnEvent,
    poll: PollPolicy,
    window: float,
    settle: float,
    sleep: Callable[[float], None],
) -> None:
    uncertain_rounds = 0
    uncertain: APIError
    while True:
        journal.record_intent(shard.file, webhook_url=webhook_url)
        try:
            answer = api.batches.create(folder / shard.file, webhook_url=webhook_url)
        except ConcurrencyLimitError:
            journal.record_not_sent(shard.file, "batch concurrency limit reached")
            emit(SubmitEvent("concurrency-wait", shard.file, None, "waiting for a running batch to finish"))
            _wait_for_slot(journal, api, poll, sleep)
            continue
        except BadRequestError as exc:
            message = exc.server_message or str(exc)
            journal.record_refused(shard.file, message)
            emit(SubmitEvent("refused", shard.file, None, message))
            return
        except APIConnectionError as exc:
            if not exc.sent:
                journal.record_not_sent(shard.file, str(exc))
                msg = f"{shard.file} was not sent: {exc}. Nothing was created; run the same command again"
                raise JournalError(msg, shard=shard.file) from exc
            uncertain = exc
        except RateLimitError as exc:
            journal.record_not_sent(shard.file, str(exc))
            msg = (
                f"{shard.file} was not sent: still rate limited after every retry ({exc}). "
                "Nothing was created; run the same command again in a minute"
            )
            raise JournalError(msg, shard=shard.file) from exc
        except APIStatusError as exc:
            if exc.status_code < 500:
                journal.record_not_sent(shard.file, str(exc))
                msg = f"{shard.file} was refused: {exc}"
                raise JournalError(msg, shard=shard.file) from exc
            uncertain = exc
        except APIError as exc:  # a 2xx whose body could not be read: the batch may exist
            uncertain = exc
        else:
            if isinstance(answer, DryRunResult):  # the client raises instead; kept so the types stay honest
                msg = f"the server answered a real submission of {shard.file} like a dry run"
                raise JournalError(msg, shard=shard.file)
            journal.record_submitted(
                shard.file, answer.id, status=answer.status, metrics=answer.metrics.model_dump()
            )
            emit(SubmitEvent("submitted", shard.file, answer.id))
            return
        # The create may have reached the server: find out before anything is sent again.
        journal.record_uncertain(shard.file, str(uncertain))
        emit(SubmitEvent("uncertain", shard.file, None, str(uncertain)))
        uncertain_rounds += 1
        if settle:
            sleep(settle)
        look_again = (lambda: sleep(settle)) if settle else None
        if _reconcile_or_explain(
            journal, api, journal.shard(shard.file), window, emit, second_look=look_again
        ):
            return
        if uncertain_rounds >= 3:
            msg = (
                f"{shard.file}: three creates in a row got no usable answer ({uncertain}); none of them "
                "created a batch. Stopping; run the same command again later"
            )
            raise JournalError(msg, shard=shard.file) from uncertain


def _reconcile_or_explain(
    journal: Journal,
    api: Client,
    shard: ShardRecord,
    window: float,
    emit: OnEvent,
    *,
    second_look: Callable[[], None] | None = None,
) -> bool:
    """:func:`_reconcile`, with a failure to ask the server turned into a message that names the shard.

    With ``second_look``, an empty answer is not trusted at once: ``second_look()`` (a pause) and a second
    search come first, so a create the server is still working on has time to appear.
    """
    try:
        if second_look is not None and _reconcile(journal, api, shard, window, emit, conclude=False):
            return True
        if second_look is not None:
            second_look()
        return _reconcile(journal, api, shard, window, emit)
    except (APIConnectionError, ServerError, RateLimitError) as exc:
        msg = (
            f"{shard.file}: a create may have reached the server, and checking the batch list failed too "
            f"({exc}). Nothing was resent; run the same command again to check once more"
        )
        raise JournalError(msg, shard=shard.file) from exc


def _reconcile(
    journal: Journal, api: Client, shard: ShardRecord, window: float, emit: OnEvent, *, conclude: bool = True
) -> bool:
    """Settle an uncertain intent from the server's batch list. True when the shard has a batch now.

    No candidate means the create made nothing (recorded only when ``conclude``); several stop everything.
    """
    assert shard.intent_at is not None
    since = shard.intent_at - timedelta(seconds=window)
    known = journal.known_batch_ids()
    candidates = [
        batch
        for batch in api.batches.list(created_after=since)
        if batch.id not in known
        and (batch.created_at is None or batch.created_at >= since)
        and batch.metrics.total_generations in (shard.records, 0)
    ]
    if len(candidates) == 1:
        batch = candidates[0]
        journal.record_submitted(
            shard.file, batch.id, status=batch.status, metrics=batch.metrics.model_dump(), how="reconciled"
        )
        emit(
            SubmitEvent(
                "reconciled", shard.file, batch.id, "found the batch created by an interrupted submit"
            )
        )
        return True
    if not candidates:
        if not conclude:
            return False
        journal.record_not_sent(shard.file, "reconciled: the server has no batch for this create")
        emit(
            SubmitEvent(
                "not-created", shard.file, None, "the interrupted create made no batch; sending again"
            )
        )
        return False
    ids = ", ".join(b.id for b in candidates)
    msg = (
        f"{shard.file}: an interrupted create may have made one of these batches, and nothing tells which: {ids}. "
        f"Look at them, then run `batchkit submit DIR --adopt {shard.file}=BATCH_ID` for the right one, "
        f"or `--forget {shard.file}` if none is it"
    )
    raise AmbiguousSubmissionError(msg, shard=shard.file)


def resolve(
    directory: str | Path,
    *,
    adopt: dict[str, str] | None = None,
    forget: Sequence[str] = (),
    client: Client | None = None,
) -> None:
    """Settle uncertain shards by hand: adopt a batch id for a shard, or forget its lost create."""
    with Journal.open(directory, create=False) as journal:
        for file, batch_id in (adopt or {}).items():
            shard = journal.shard(file)
            if shard.state == "submitted":
                msg = f"{file} already has batch {shard.batch_id}; nothing to adopt"
                raise JournalError(msg, shard=file)
            batch = _client(client).batches.get(batch_id)
            journal.record_submitted(
                file, batch.id, status=batch.status, metrics=batch.metrics.model_dump(), how="adopted"
            )
        for file in forget:
            shard = journal.shard(file)
            if shard.state != "intent":
                msg = f"{file} is {shard.state}, not an uncertain create; nothing to forget"
                raise JournalError(msg, shard=file)
            journal.record_not_sent(file, "forgotten by hand")


def refresh(journal: Journal, api: Client) -> list[ShardRecord]:
    """Update the status of every submitted, unfinished shard: one batch list, then a get for any not listed."""
    open_shards = [s for s in journal.shards() if s.state == "submitted" and not s.terminal and s.batch_id]
    if not open_shards:
        return journal.shards()
    since = min(s.submitted_at for s in open_shards if s.submitted_at) - timedelta(minutes=10)
    listed = {b.id: b for b in api.batches.list(created_after=since)}
    for shard in open_shards:
        assert shard.batch_id is not None
        batch = listed.get(shard.batch_id) or api.batches.get(shard.batch_id)
        journal.record_status(
            shard.file, status=batch.status, metrics=batch.metrics.model_dump(), output_url=batch.output_url
        )
    return journal.shards()


def status(
    directory: str | Path, *, client: Client | None = None, offline: bool = False
) -> list[ShardRecord]:
    """Every shard of a submitted directory with its batch id, status and metrics (fresh from the API unless
    ``offline``)."""
    with Journal.open(directory, create=False) as journal:
        return journal.shards() if offline else refresh(journal, _client(client))


def _wait_for_slot(journal: Journal, api: Client, poll: PollPolicy, sleep: Callable[[float], None]) -> None:
    """Wait until one of this directory's running batches finishes, or one poll interval if none runs."""
    running = {s.file for s in journal.shards() if s.state == "submitted" and not s.terminal}
    for delay in poll.delays():
        sleep(delay)
        if not running:
            return
        shards = refresh(journal, api)
        if any(s.file in running and s.terminal for s in shards):
            return


def wait(
    directory: str | Path,
    *,
    client: Client | None = None,
    poll: PollPolicy | None = None,
    deadline: float | None = None,
    on_progress: OnProgress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ShardRecord]:
    """Poll until every submitted batch of the directory is COMPLETED or FAILED; return the shards.

    ``deadline`` (seconds) bounds the wait; past it, :class:`WaitTimeoutError` names the batches still running.
    """
    api = _client(client)
    started = time.monotonic()
    with Journal.open(directory, create=False) as journal:
        delays = (poll or PollPolicy()).delays()
        while True:
            shards = refresh(journal, api)
            if on_progress is not None:
                on_progress(shards)
            running = [s for s in shards if s.state == "submitted" and not s.terminal]
            if not running:
                return shards
            delay = next(delays)
            if deadline is not None and time.monotonic() - started + delay > deadline:
                names = ", ".join(f"{s.file} ({s.batch_id}: {s.status})" for s in running)
                msg = f"gave up waiting after {deadline:g} s; still running: {names}. Run `batchkit wait` again later"
                raise WaitTimeoutError(msg)
            sleep(delay)
