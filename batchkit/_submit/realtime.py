"""Sending requests one by one through ``POST /v2/generate``, journaled like batches.

A batch needs at least ``min_records`` requests; the few that are left after a retry can instead be sent as
single generations (``batchkit retry --realtime``). Such a directory has no shards: its canonical lines are in
``realtime.jsonl`` (the manifest's ``unsharded`` entry), and :func:`send_realtime` sends each line's payload
within a concurrency cap, journaled in the ``generations`` table of ``journal.sqlite``:

- the intent is committed before every create, the generation id as soon as it arrives;
- every create carries the request's ``Idempotency-Key`` (fixed in the journal), so a create whose answer was
  lost is simply sent again: the server answers with the generation it already made;
- a 429 (rate limit, or the plan's generation concurrency) waits and tries again, a bounded number of times;
- a refusal (400, 409, 422 ...) is final for that request and becomes its result (``REJECTED``);
- each worker then polls its generation (``GET /v2/generate/{id}``) until it is terminal, so at most
  ``concurrency`` generations run at once: set it to the plan's generation concurrency (1 to 15).

Running it again resumes: finished requests are skipped, created ones are polled, the rest are sent.
:func:`batchkit._results.realtime.realtime_results` reads the finished requests back as results.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from .._api.backoff import PollPolicy, RetryPolicy
from .._api.client import Client, given_or_default, require_api_key
from .._errors import (
    APIError,
    APIStatusError,
    AuthenticationError,
    InputError,
    PaymentRequiredError,
    RateLimitError,
)
from .._files import file_sha256
from .._shard.builddir import Manifest, load_manifest
from .._wire.responses import GENERATION_TERMINAL, Generation
from .binding import bind, open_journal
from .journal import GenerationRecord, Journal
from .lock import directory_lock

__all__ = [
    "RealtimeEvent",
    "RealtimeResult",
    "read_realtime_lines",
    "send_realtime",
]

log = logging.getLogger("batchkit")

#: Waits between tries after a 429 the client's own retries did not get past (the limits reset each minute).
DEFAULT_BACKOFF: Final = RetryPolicy(initial=2.0, multiplier=2.0, maximum=60.0)
#: Polls of a running generation: 2 s, then ×1.5, up to 30 s.
DEFAULT_REALTIME_POLL: Final = PollPolicy(initial=2.0, factor=1.5, maximum=30.0)

EventKind = Literal["created", "resent", "refused", "rate-limited", "uncertain", "finished", "poll-error"]


@dataclass(frozen=True, slots=True)
class RealtimeEvent:
    """Something that happened to one request, for progress output."""

    kind: EventKind
    request_id: str
    generation_id: str | None = None
    message: str | None = None


@dataclass(slots=True)
class RealtimeResult:
    """Every request of a realtime directory as the journal knows it after a run."""

    generations: list[GenerationRecord] = field(default_factory=list)

    @property
    def finished(self) -> list[GenerationRecord]:
        """Requests whose generation reached an end, or whose create was refused."""
        return [g for g in self.generations if g.terminal]

    @property
    def running(self) -> list[GenerationRecord]:
        """Generations created and not finished yet (past the deadline, or a poll failed)."""
        return [g for g in self.generations if g.state == "created" and not g.terminal]

    @property
    def unsent(self) -> list[GenerationRecord]:
        """Requests without a generation yet: never sent, or their answer was lost (resent next run)."""
        return [g for g in self.generations if g.state in ("pending", "intent")]

    @property
    def done(self) -> bool:
        return len(self.finished) == len(self.generations)

    @property
    def statuses(self) -> dict[str, int]:
        """Requests per final status (``REFUSED`` for a refused create); unfinished ones are left out."""
        counts: dict[str, int] = {}
        for g in self.finished:
            key = "REFUSED" if g.state == "refused" else str(g.status)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Counts and final statuses, as plain data."""
        return {"requests": len(self.generations), "finished": len(self.finished), "running": len(self.running),
                "unsent": len(self.unsent), "done": self.done, "statuses": self.statuses}  # fmt: skip


OnEvent = Callable[[RealtimeEvent], None]
OnProgress = Callable[[int, int], None]


def read_realtime_lines(directory: str | Path, manifest: Manifest | None = None) -> list[tuple[str, bytes]]:
    """``(request_id, canonical line)`` of every request of a realtime directory, in order."""
    folder = Path(directory)
    manifest = manifest or load_manifest(folder)
    info = manifest.unsharded
    if info is None or info.mode != "realtime":
        msg = (
            f"{folder} has no requests to send one by one; `batchkit retry DIR --out {folder} --realtime` "
            "makes such a directory (submit a directory with shards with `batchkit submit`)"
        )
        raise InputError(msg, path=folder)
    path = folder / info.file
    try:
        digest, _, _ = file_sha256(path)
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}; rebuild the directory with `batchkit retry`"
        raise InputError(msg, path=path) from exc
    if digest != info.sha256:
        msg = (
            f"{path} changed since `batchkit retry` wrote it (sha256 differs); the journal's requests no "
            "longer match it. Restore it, or retry into a new directory"
        )
        raise InputError(msg, path=path)
    lines: list[tuple[str, bytes]] = []
    for number, line in enumerate(data.splitlines(), 1):
        try:
            request_id = orjson.loads(line)["request_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            msg = f"{path}:{number} is not a batch line ({exc}); retry into a new directory"
            raise InputError(msg, path=path, line=number) from exc
        lines.append((str(request_id), line))
    return lines


def send_realtime(
    directory: str | Path,
    *,
    client: Client | None = None,
    concurrency: int = 3,
    poll: PollPolicy | None = None,
    deadline: float | None = None,
    backoff: RetryPolicy | None = None,
    max_rate_limit_waits: int = 20,
    on_event: OnEvent | None = None,
    on_progress: OnProgress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RealtimeResult:
    """Send every request of a realtime directory through ``POST /v2/generate`` and wait for each one.

    At most ``concurrency`` requests are in flight (created and not finished) at once. ``deadline``
    (seconds) stops waiting and starting: unfinished generations stay in the journal, and a later run polls
    them and sends what was not sent.
    ``backoff`` spaces the tries after a 429, at most ``max_rate_limit_waits`` per request in one run.
    ``on_progress(finished, total)`` is called from worker threads.
    """
    if concurrency < 1:
        msg = f"concurrency must be at least 1, not {concurrency}"
        raise InputError(msg)
    folder = Path(directory)
    lines = read_realtime_lines(folder)
    with given_or_default(client) as api:
        require_api_key(api)
        with directory_lock(folder, "batchkit retry --realtime"):
            with open_journal(folder, client=api, create=True) as journal:
                bind(folder, journal, api)
                records = journal.sync_generations(rid for rid, _ in lines)
            sender = _Sender(
                folder,
                api,
                {rid: orjson.loads(line)["payload"] for rid, line in lines},
                poll=poll or DEFAULT_REALTIME_POLL,
                backoff=backoff or DEFAULT_BACKOFF,
                max_waits=max_rate_limit_waits,
                stop_at=clock() + deadline if deadline is not None else None,
                emit=on_event or (lambda _event: None),
                progress=on_progress,
                sleep=sleep,
                clock=clock,
                total=len(records),
                done=sum(1 for r in records if r.terminal),
            )
            sender.run([r for r in records if not r.terminal], concurrency)
            with Journal.open(folder) as journal:
                return RealtimeResult(journal.generations())


class _Sender:
    """The workers of one :func:`send_realtime` run (each opens its own journal connection)."""

    def __init__(
        self,
        folder: Path,
        api: Client,
        payloads: dict[str, Any],
        *,
        poll: PollPolicy,
        backoff: RetryPolicy,
        max_waits: int,
        stop_at: float | None,
        emit: OnEvent,
        progress: OnProgress | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        total: int,
        done: int,
    ) -> None:
        self.folder = folder
        self.api = api
        self.payloads = payloads
        self.poll = poll
        self.backoff = backoff
        self.max_waits = max_waits
        self.stop_at = stop_at
        self.emit = emit
        self.progress = progress
        self.sleep = sleep
        self.clock = clock
        self.total = total
        self.done = done
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def run(self, records: list[GenerationRecord], concurrency: int) -> None:
        self._tick(0)
        if not records:
            return
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="batchkit-realtime") as pool:
            futures: list[Future[None]] = [pool.submit(self._one, record) for record in records]
            failure: BaseException | None = None
            pending: set[Future[None]] = set(futures)
            while pending and failure is None:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                failure = next((f.exception() for f in finished if f.exception() is not None), None)
            if failure is not None:  # stop starting new requests; those in flight end their current call
                self.stop.set()
                for future in pending:
                    future.cancel()
                raise failure

    def _tick(self, finished: int) -> None:
        with self._lock:
            self.done += finished
            if self.progress is not None:
                self.progress(self.done, self.total)

    def _past_deadline(self, delay: float = 0.0) -> bool:
        return self.stop_at is not None and self.clock() + delay > self.stop_at

    def _one(self, record: GenerationRecord) -> None:
        unsent = record.state in ("pending", "intent")
        if self.stop.is_set() or (unsent and self._past_deadline()):
            return  # past the deadline nothing new is started; a later run sends it
        with Journal.open(self.folder, create=False) as journal:
            generation_id = record.generation_id
            if unsent:
                generation_id = self._create(journal, record)
            if generation_id is not None and not journal.generation(record.request_id).terminal:
                self._wait(journal, record.request_id, generation_id)

    def _create(self, journal: Journal, record: GenerationRecord) -> str | None:
        """Send the create until it is answered; the generation id, or None (refused, or left for later)."""
        rid = record.request_id
        resend = record.state == "intent"
        waits = 0
        while not self.stop.is_set():
            journal.record_generation_intent(rid)
            try:
                generation = self.api.generations.create(
                    self.payloads[rid], idempotency_key=record.idempotency_key
                )
            except RateLimitError as exc:
                waits += 1
                delay = self.backoff.delay(waits, exc.retry_after)
                if waits > self.max_waits or self._past_deadline(delay):
                    message = (
                        f"still refused with 429 after {waits} tries ({exc}); run the same command again"
                    )
                    journal.record_generation_note(rid, "generation-rate-limited", message)
                    self.emit(RealtimeEvent("rate-limited", rid, None, message))
                    return None
                message = f"{exc.error_code or 'rate limited'}; trying again in {delay:.1f} s"
                journal.record_generation_note(rid, "generation-rate-limited", message)
                self.emit(RealtimeEvent("rate-limited", rid, None, message))
                self.sleep(delay)
                continue
            except (AuthenticationError, PaymentRequiredError):
                raise
            except APIStatusError as exc:
                if exc.status_code >= 500:
                    self._uncertain(journal, rid, exc)
                    return None
                code = exc.error_code or f"http-{exc.status_code}"
                message = exc.server_message or str(exc)
                journal.record_generation_refused(rid, error_code=code, message=message)
                self.emit(RealtimeEvent("refused", rid, None, f"{code}: {message}"))
                self._tick(1)
                return None
            except APIError as exc:
                self._uncertain(journal, rid, exc)
                return None
            if not generation.id:  # the client refuses an answer without an id; kept for the types
                self._uncertain(journal, rid, APIError("the answer has no generation id"))
                return None
            journal.record_generation_created(rid, generation.id, status=generation.status)
            self.emit(RealtimeEvent("resent" if resend else "created", rid, generation.id))
            if generation.status in GENERATION_TERMINAL:
                self._record(journal, rid, generation)
            return generation.id
        return None

    def _uncertain(self, journal: Journal, rid: str, exc: APIError) -> None:
        """No usable answer after the client's own retries: the generation may exist. Resent next run."""
        message = f"{exc}; the next run sends it again with the same Idempotency-Key (safe)"
        journal.record_generation_note(rid, "generation-uncertain", message)
        self.emit(RealtimeEvent("uncertain", rid, None, message))

    def _wait(self, journal: Journal, rid: str, generation_id: str) -> None:
        """Poll the generation until it is terminal (or the deadline, or a failed poll)."""
        delays = self.poll.delays()
        while not self.stop.is_set():
            delay = next(delays)
            if self._past_deadline(delay):
                return
            self.sleep(delay)
            try:
                generation = self.api.generations.get(generation_id)
            except (AuthenticationError, PaymentRequiredError):
                raise
            except APIError as exc:
                message = f"cannot poll {generation_id}: {exc}; the next run polls it again"
                journal.record_generation_note(rid, "generation-poll-error", message)
                self.emit(RealtimeEvent("poll-error", rid, generation_id, message))
                return
            if generation.status in GENERATION_TERMINAL:
                self._record(journal, rid, generation)
                return
            journal.record_generation_status(rid, status=generation.status)

    def _record(self, journal: Journal, rid: str, generation: Generation) -> None:
        journal.record_generation_status(
            rid,
            status=generation.status,
            output_url=generation.output_url,
            output_duration=generation.output_duration,
            error=generation.error,
            error_code=generation.error_code,
        )
        self.emit(RealtimeEvent("finished", rid, generation.id, generation.status))
        self._tick(1)
