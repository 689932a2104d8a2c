"""Submitting a build directory: journaled creates, reconciliation by content, dry runs, status and waiting.

The rule that keeps money safe: before each create, the intent is committed to the journal; the batch id is
committed as soon as it arrives. A create whose answer was lost (timeout, reset, 5xx after the upload) leaves
an *uncertain* intent, and nothing is sent for that shard again until :mod:`batchkit._submit.reconcile` has
settled it by content: its batch found (adopted, verified by the request_ids of its output), or certainly
not created (no candidate left, and the create can no longer be in flight). Uncertain shards never block the
others. One process at a time works on a directory (:mod:`batchkit._submit.lock`), and a directory stays
bound to the API it was first submitted to (:mod:`batchkit._submit.binding`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from .._api.backoff import PollPolicy
from .._api.client import Client, given_or_default, require_api_key
from .._errors import (
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
from .binding import bind, open_journal, server_identity
from .journal import Journal, ShardRecord
from .lock import directory_lock
from .reconcile import ReconcilePolicy, Reconciler

if TYPE_CHECKING:
    from .._probe.budget import Budget
    from .realtime import RealtimeResult

__all__ = [
    "DryRunVerdict",
    "ReconcilePolicy",
    "SubmitEvent",
    "SubmitResult",
    "refresh",
    "resolve",
    "status",
    "submit",
    "wait",
]

log = logging.getLogger("batchkit")

EventKind = Literal[
    "submitted",
    "reconciled",
    "adopted",
    "verified",
    "released",
    "not-created",
    "refused",
    "concurrency-wait",
    "uncertain",
    "in-flight-wait",
    "skipped",
    "retired",
    "dry-run",
]
#: Creates of one shard in one run whose answer was lost, before the run stops for that shard.
MAX_UNCERTAIN: Final = 3  # ("three" in the message that stops the run)


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
    #: Shards of an earlier build that the manifest no longer lists (their journal rows were retired).
    retired: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[ShardRecord]:
        return [s for s in self.shards if s.state == "refused"]

    @property
    def uncertain(self) -> list[ShardRecord]:
        """Shards whose lost create is not settled yet (candidates still running, or still in flight)."""
        return [s for s in self.shards if s.state == "intent"]

    @property
    def submitted(self) -> list[ShardRecord]:
        return [s for s in self.shards if s.state == "submitted"]


OnEvent = Callable[[SubmitEvent], None]
OnProgress = Callable[[Sequence[ShardRecord]], None]


def _manifest_shards(directory: Path) -> Manifest:
    manifest = load_manifest(directory)
    changed = verify_shards(directory)
    if changed:
        details = "; ".join(f"{f.file}: {f.message}" for f in changed)
        msg = f"shards of {directory} changed since they were built ({details}); rebuild before submitting"
        raise InputError(msg, path=directory)
    return manifest


def reconciler(folder: Path, journal: Journal, api: Client, policy: ReconcilePolicy | None) -> Reconciler:
    return Reconciler(folder, journal, api, server_identity(api, probe=True)[1], policy or ReconcilePolicy())


def submit(
    directory: str | Path,
    *,
    client: Client | None = None,
    dry_run: bool = False,
    webhook_url: str | None = None,
    force: bool = False,
    on_event: OnEvent | None = None,
    poll: PollPolicy | None = None,
    policy: ReconcilePolicy | None = None,
    rebind: bool = False,
    budget: Budget | None = None,
) -> SubmitResult:
    """Submit every shard of a build directory once, safely resumable after any crash.

    ``dry_run`` asks the server to validate every shard without creating anything. ``force`` submits shards
    that already have a batch again (the old batch ids stay in the journal's history). ``policy`` says how
    lost creates are settled (clock skew, how long a create may be in flight, the second look). ``rebind``
    allows a directory bound to one real API host to go on against another. The API key is checked before
    anything is written; the directory's lock is held throughout. ``budget``
    (:class:`batchkit.Budget`) estimates the directory first and raises :class:`batchkit.BudgetError`, before
    anything is sent or journaled, when it is over, of unknown cost, or not confirmed.
    """
    folder = Path(directory)
    manifest = _manifest_shards(folder)
    with given_or_default(client) as api:
        require_api_key(api)
        emit = on_event or (lambda _event: None)
        if budget is not None and not dry_run:
            from .._build.estimate import check_budget

            check_budget(folder, budget, client=api)
        if manifest.unsharded is not None:
            return _unsharded(folder, manifest, api, dry_run=dry_run, poll=poll)
        with directory_lock(folder, "batchkit submit"):
            if dry_run:
                return _dry_run(folder, manifest, api, webhook_url, emit)
            with open_journal(folder, client=api, create=True, rebind=rebind) as journal:
                retired = journal.sync_shards(
                    [(s.file, s.sha256, s.records, s.bytes) for s in manifest.shards]
                )
                for file in retired:
                    emit(
                        SubmitEvent(
                            "retired", file, None, "no longer in the manifest; its journal row is retired"
                        )
                    )
                try:
                    ctx = reconciler(folder, journal, api, policy)
                except APIError as exc:
                    msg = f"{folder}: nothing was sent; the server could not be asked which it is ({exc})"
                    raise JournalError(msg) from exc
                _settle_all(ctx, emit)
                if force:
                    for shard in journal.shards():
                        if shard.state == "submitted":
                            journal.supersede(shard.file, "resubmitted with --force")
                sender = _Sender(ctx, webhook_url, emit, poll or PollPolicy())
                for shard in journal.shards():
                    if shard.state == "submitted":
                        note = "already submitted" + (
                            " (adopted; checked by content once it finishes)" if shard.provisional else ""
                        )
                        emit(SubmitEvent("skipped", shard.file, shard.batch_id, note))
                    elif shard.state in ("pending", "refused"):
                        sender.send(shard)
                sender.finish_in_flight()
                return SubmitResult(shards=journal.shards(), retired=retired)


def _settle_all(ctx: Reconciler, emit: OnEvent) -> None:
    """Every uncertain shard looked for, every finished provisional adoption checked by content."""
    refresh(ctx.journal, ctx.api, ctx, emit)


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
    with open_journal(folder, client=api, create=True) as journal:
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


class _Sender:
    """Sends the shards of one submit run; lost answers go to the reconciler, never straight to a resend."""

    def __init__(self, ctx: Reconciler, webhook_url: str | None, emit: OnEvent, poll: PollPolicy) -> None:
        self.ctx = ctx
        self.webhook_url = webhook_url
        self.emit = emit
        self.poll = poll
        self.lost: dict[str, int] = {}
        self.errors: dict[str, APIError] = {}
        self.bound = False

    def send(self, shard: ShardRecord) -> None:
        """Create the shard's batch until answered; a lost answer leaves it uncertain (settled later)."""
        ctx, journal = self.ctx, self.ctx.journal
        if not self.bound:
            try:
                bind(ctx.folder, journal, ctx.api)
            except APIError as exc:
                msg = f"{shard.file} was not sent: {exc}. Nothing was created; run the same command again"
                raise JournalError(msg, shard=shard.file) from exc
            self.bound = True
        uncertain: APIError
        while True:
            journal.record_intent(shard.file, webhook_url=self.webhook_url, at=ctx.policy.now())
            try:
                answer = ctx.api.batches.create(ctx.folder / shard.file, webhook_url=self.webhook_url)
            except ConcurrencyLimitError:
                journal.record_not_sent(shard.file, "batch concurrency limit reached")
                self.emit(
                    SubmitEvent("concurrency-wait", shard.file, None, "waiting for a running batch to finish")
                )
                _wait_for_slot(journal, ctx.api, self.poll, ctx.policy.sleep)
                continue
            except BadRequestError as exc:
                message = exc.server_message or str(exc)
                journal.record_refused(shard.file, message)
                self.emit(SubmitEvent("refused", shard.file, None, message))
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
                if isinstance(
                    answer, DryRunResult
                ):  # the client raises instead; kept so the types stay honest
                    msg = f"the server answered a real submission of {shard.file} like a dry run"
                    raise JournalError(msg, shard=shard.file)
                journal.record_submitted(
                    shard.file,
                    answer.id,
                    status=answer.status,
                    metrics=answer.metrics.model_dump(),
                    output_url=answer.output_url,
                    created_at=answer.created_at,
                )
                ctx.record_created(shard.file, answer.id)
                self.emit(SubmitEvent("submitted", shard.file, answer.id))
                return
            self.lost[shard.file] = self.lost.get(shard.file, 0) + 1
            journal.record_uncertain(shard.file, str(uncertain))
            self.emit(SubmitEvent("uncertain", shard.file, None, str(uncertain)))
            self.errors[shard.file] = uncertain
            # The create may have reached the server: look now (an answer may be there), then go on.
            outcome = _settle(ctx, journal.shard(shard.file), self.emit)
            if outcome != "not-created":
                return
            if self.lost[shard.file] >= MAX_UNCERTAIN:
                self._give_up(shard.file, uncertain)
            shard = journal.shard(shard.file)

    def _give_up(self, file: str, error: APIError) -> None:
        msg = (
            f"{file}: three creates in a row got no usable answer ({error}); none of them "
            "created a batch. Stopping; run the same command again later"
        )
        raise JournalError(msg, shard=file) from error

    def finish_in_flight(self) -> None:
        """Wait until the uncertain shards with no candidate can no longer be in flight; send those not created."""
        ctx, journal = self.ctx, self.ctx.journal
        while True:
            waiting = [
                s
                for s in journal.shards()
                if s.state == "intent" and ctx.notes.get(s.file, "").startswith("no batch found")
            ]
            if not waiting:
                return
            until = min(ctx.policy.horizon(s, ctx.api) for s in waiting)
            delay = (until - ctx.policy.now()).total_seconds()
            if delay > 0:
                names = ", ".join(s.file for s in waiting)
                self.emit(
                    SubmitEvent(
                        "in-flight-wait",
                        waiting[0].file,
                        None,
                        f"waiting {delay:.0f} s until a lost create can no longer land ({names})",
                    )
                )
                ctx.policy.sleep(delay + 0.001)
            for shard in waiting:
                outcome = _settle(ctx, journal.shard(shard.file), self.emit)
                if outcome == "not-created":
                    if self.lost.get(shard.file, 0) >= MAX_UNCERTAIN:
                        self._give_up(shard.file, self.errors.get(shard.file) or APIError("no answer"))
                    self.send(journal.shard(shard.file))


def _settle(ctx: Reconciler, shard: ShardRecord, emit: OnEvent) -> str:
    """:meth:`Reconciler.settle` with events, and a failure to ask the server turned into a message."""
    try:
        outcome = ctx.settle(shard)
    except (APIConnectionError, ServerError, RateLimitError) as exc:
        msg = (
            f"{shard.file}: a create may have reached the server, and checking the batch list failed too "
            f"({exc}). Nothing was resent; run the same command again to check once more"
        )
        raise JournalError(msg, shard=shard.file) from exc
    after = ctx.journal.shard(shard.file)
    if outcome == "verified":
        emit(
            SubmitEvent(
                "reconciled",
                shard.file,
                after.batch_id,
                "found the batch of a lost create (its output carries this shard's ids)",
            )
        )
    elif outcome == "adopted":
        emit(
            SubmitEvent(
                "adopted",
                shard.file,
                after.batch_id,
                "the only candidate for a lost create; checked by content once it finishes",
            )
        )
    elif outcome == "not-created":
        emit(SubmitEvent("not-created", shard.file, None, "the lost create made no batch; sending again"))
    else:
        emit(SubmitEvent("uncertain", shard.file, None, ctx.notes.get(shard.file)))
    return outcome


def resolve(
    directory: str | Path,
    *,
    adopt: dict[str, str] | None = None,
    forget: Sequence[str] = (),
    client: Client | None = None,
) -> None:
    """Settle uncertain shards by hand: adopt a batch id for a shard, or forget its lost create.

    An adopted batch is recorded with all the server says of it and checked by content once its output is
    available, like an automatic adoption (a batch whose output is another shard's is released again).
    """
    folder = Path(directory)
    with given_or_default(client) as api:
        if adopt:
            require_api_key(api)
        with (
            directory_lock(folder, "batchkit submit --adopt/--forget"),
            open_journal(folder, client=api if adopt else None) as journal,
        ):
            ctx = reconciler(folder, journal, api, None)
            for file, batch_id in (adopt or {}).items():
                shard = journal.shard(file)
                if shard.state == "submitted":
                    msg = f"{file} already has batch {shard.batch_id}; nothing to adopt"
                    raise JournalError(msg, shard=file)
                holder = next((s for s in journal.shards() if s.batch_id == batch_id), None)
                if holder is not None:
                    msg = f"batch {batch_id} is already {holder.file}'s; adopt another batch for {file}"
                    raise JournalError(msg, shard=file)
                batch = api.batches.get(batch_id)
                journal.record_submitted(
                    file,
                    batch.id,
                    status=batch.status,
                    metrics=batch.metrics.model_dump(),
                    how="adopted",
                    output_url=batch.output_url,
                    created_at=batch.created_at,
                )
                ctx.verify(journal.shard(file), batch)
            for file in forget:
                shard = journal.shard(file)
                if shard.state != "intent":
                    msg = f"{file} is {shard.state}, not an uncertain create; nothing to forget"
                    raise JournalError(msg, shard=file)
                journal.record_not_sent(file, "forgotten by hand")


def refresh(
    journal: Journal, api: Client, ctx: Reconciler | None = None, emit: OnEvent | None = None
) -> list[ShardRecord]:
    """Update every submitted shard still running or finished without an outputUrl (one batch list, then a get
    for any not listed), and record everything the server says.

    With ``ctx`` (the directory's lock is held): finished provisional adoptions are checked by content (a
    mismatch releases the batch) and uncertain shards are looked for again.
    """
    say = emit or (lambda _event: None)
    shards = journal.shards()
    stale = [
        s
        for s in shards
        if s.state == "submitted" and s.batch_id and (not s.terminal or not s.output_url or s.provisional)
    ]
    if stale:
        times = [t for s in stale for t in (s.batch_created_at, s.submitted_at) if t is not None]
        since = min(times) - timedelta(minutes=10) if times else None
        listed = {b.id: b for b in api.batches.list(created_after=since)}
        for shard in stale:
            assert shard.batch_id is not None
            batch = listed.get(shard.batch_id)
            if batch is None or (batch.is_terminal and not batch.output_url):
                batch = api.batches.get(
                    shard.batch_id
                )  # not listed, or finished without outputUrl: ask again
            journal.record_status(
                shard.file,
                status=batch.status,
                metrics=batch.metrics.model_dump(),
                output_url=batch.output_url,
                created_at=batch.created_at,
            )
            if ctx is not None and shard.provisional:
                verdict = ctx.verify(journal.shard(shard.file), batch)
                if verdict == "ours":
                    say(
                        SubmitEvent(
                            "verified", shard.file, batch.id, "its output carries this shard's request_ids"
                        )
                    )
                elif verdict == "not-ours":
                    say(SubmitEvent("released", shard.file, batch.id, ctx.notes.get(shard.file)))
    if ctx is not None:
        for shard in journal.shards():
            if shard.state == "intent":
                _settle(ctx, shard, say)
    return journal.shards()


def status(
    directory: str | Path, *, client: Client | None = None, offline: bool = False
) -> list[ShardRecord]:
    """Every shard of a submitted directory with its batch id, status and metrics (fresh from the API unless
    ``offline``). Uncertain shards are looked for again when no other process holds the directory."""
    folder = Path(directory)
    if offline:
        with open_journal(folder) as journal:
            return journal.shards()
    with given_or_default(client) as api:
        require_api_key(api)
        from .lock import try_directory_lock

        with (
            try_directory_lock(folder, "batchkit status") as held,
            open_journal(folder, client=api) as journal,
        ):
            return refresh(journal, api, reconciler(folder, journal, api, None) if held else None)


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
    on_event: OnEvent | None = None,
    policy: ReconcilePolicy | None = None,
) -> list[ShardRecord]:
    """Poll until every submitted batch of the directory is COMPLETED or FAILED and every uncertain shard is
    settled; return the shards. Adopted batches are checked by content as they finish.

    ``deadline`` (seconds) bounds the wait; past it, :class:`WaitTimeoutError` names the batches still running.
    A shard released on the way (its adopted batch was another's) or found not created is left pending:
    ``batchkit submit`` sends it.
    """
    folder = Path(directory)
    with given_or_default(client) as api:
        require_api_key(api)
        started = time.monotonic()
        sleep = (policy or ReconcilePolicy()).sleep
        with directory_lock(folder, "batchkit wait"), open_journal(folder, client=api) as journal:
            ctx = reconciler(folder, journal, api, policy)
            delays = (poll or PollPolicy()).delays()
            while True:
                shards = refresh(journal, api, ctx, on_event)
                if on_progress is not None:
                    on_progress(shards)
                running = [
                    s for s in shards if (s.state == "submitted" and not s.terminal) or s.state == "intent"
                ]
                if not running:
                    return shards
                delay = next(delays)
                if deadline is not None and time.monotonic() - started + delay > deadline:
                    names = ", ".join(
                        f"{s.file} ({s.batch_id or 'uncertain'}: {s.status or s.state})" for s in running
                    )
                    msg = f"gave up waiting after {deadline:g} s; still running: {names}. Run `batchkit wait` again later"
                    raise WaitTimeoutError(msg)
                sleep(delay)
