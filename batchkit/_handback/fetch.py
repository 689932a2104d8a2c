"""``fetch_outputs``: the finished videos, downloaded into the user's storage, once, verified, resumable.

    items = [FetchItem("intro-de", url, "de/intro.mp4", generation_id="6533…"), ...]
    result = fetch_outputs(items, "s3://client-bucket/delivery", ledger_path="out/build/fetched.parquet")

What a run does, in order:

1. checks every item (a safe relative name, unique request_ids and names), the destination (it can be
   written: :class:`~batchkit._errors.InputError` otherwise) and takes the ledger's lock, all before any
   request;
2. skips every item the ledger lists at the same destination, for the same output, whose file is still
   there with the same size (and sha256 with ``verify_existing="sha256"``): a finished fetch run again sends
   no media request and touches no file;
3. downloads the rest, ``concurrency`` at a time over one connection pool, in chunks, with bounded retries
   and exponential backoff (honouring ``Retry-After``, capped) for 429/5xx answers, timeouts, resets and
   bodies cut short; each file is verified (a video, the announced length, not empty) and committed
   atomically (:mod:`~batchkit._handback.stores`), then recorded in the ledger at once
   (:mod:`~batchkit._handback.ledger`);
4. renews a link the media host refuses as expired (401, 403, 404, 410, or a 400 about an expired
   signature) through ``renew(item)`` (the generation's current ``outputUrl``), and tries it once more.

Every item ends as exactly one of: fetched now, already present, or an error finding whose code is in
:data:`FETCH_CODES`; run the fetch again to retry just those. On Ctrl-C the downloads in flight are
abandoned (their temporary files removed), what finished is kept in the ledger, and KeyboardInterrupt is
raised again. A full disk or a read-only file system stops new downloads; the items not tried then get a
``fetch-destination`` finding too.

The API key never reaches a media host: the HTTP client made here carries none, a given ``http`` client
that does is refused, and renewal goes through :class:`batchkit.Client`, which sends the key only to the API.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import os
import random
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx

from .._errors import BatchkitError, ConfigurationError, InputError
from .._report import Finding
from .._version import __version__
from .download import Cancelled, Expired, Failed, Transient, download_once, without_query
from .ledger import FetchLedger, LedgerEntry
from .naming import check_name, name_key
from .stores import Store, open_destination

if TYPE_CHECKING:
    from .._api.client import Client

__all__ = [
    "FETCH_CODES",
    "FetchItem",
    "FetchOptions",
    "FetchProgress",
    "FetchResult",
    "fetch_outputs",
    "renew_from",
]

log = logging.getLogger("batchkit")

#: Every finding code a fetch emits, with what it means. Codes never change meaning once published.
FETCH_CODES: Final[dict[str, str]] = {
    "fetch-failed": "the video could not be downloaded: an HTTP error, or retries ran out on 429/5xx/timeouts",
    "fetch-expired": "the media host refused the link as expired (or gone) and renewing it did not help",
    "fetch-no-url": "the request has no output URL to fetch, and none could be renewed",
    "fetch-not-video": "the media host answered with something that is not a video (an HTML or JSON page)",
    "fetch-empty": "the media host answered with an empty body",
    "fetch-truncated": "the body ended before its Content-Length every time it was tried",
    "fetch-destination": "the file could not be written at the destination (disk full, permissions, a folder in the way)",
    "fetch-name-collision": "two requests got the same file name; the later one was numbered (warning)",
}

_USER_AGENT: Final = f"batchkit/{__version__} (fetch)"
_WAKE_EVERY: Final = 0.2  # seconds between looks at pending signals while waiting for downloads
_QUEUED: Final = 4  # downloads submitted ahead, per worker, so that none idles while this thread records


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One video to fetch: whose (``request_id``), from where, and under which safe relative ``name``."""

    request_id: str
    output_url: str | None
    name: str
    generation_id: str | None = None


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """How a fetch retries, times out, streams and verifies. The defaults suit Sync's CDN.

    ``max_attempts`` counts every try of one URL (429/5xx, timeouts, resets, short bodies), waiting
    ``backoff`` × 2ⁿ seconds (at most ``backoff_max``, or the server's ``Retry-After`` up to
    ``retry_after_max``) between them; a renewed link starts again. ``timeout`` is per network read,
    ``connect_timeout`` per connection. ``verify_existing="sha256"`` re-reads files already present to
    compare their sha256 (the default compares sizes). ``sleep`` replaces the waits between tries (tests
    pass a no-op); by default a wait ends early when the fetch is stopping.

    ``fsync=True`` makes each local file durable before its rename, so that not even a power loss leaves a
    damaged file under its real name, at the cost of fetching at the disk's write speed instead of the
    network's (2–4× slower on the benchmark machine). Without it, as rsync does by default, a file is renamed
    into place only once its whole body is written and verified, so a killed process, Ctrl-C or a full disk
    never leaves a partial file; only an OS crash or a power loss could leave a damaged one, which the next
    run's size check catches (or its sha256 check, with ``verify_existing="sha256"``).
    """

    max_attempts: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    timeout: float = 60.0
    connect_timeout: float = 10.0
    chunk_size: int = 1 << 20
    verify_existing: Literal["size", "sha256"] = "size"
    fsync: bool = False
    sleep: Callable[[float], None] | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.chunk_size < 1 or self.timeout <= 0 or self.connect_timeout <= 0:
            msg = "FetchOptions: max_attempts and chunk_size must be ≥ 1, timeouts > 0"
            raise InputError(msg)
        if self.verify_existing not in ("size", "sha256"):
            msg = f"FetchOptions: verify_existing must be 'size' or 'sha256', not {self.verify_existing!r}"
            raise InputError(msg)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before try ``attempt + 1``."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        base: float = min(self.backoff * 2.0 ** (attempt - 1), self.backoff_max)
        return base * random.uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class FetchProgress:
    """Where a fetch stands. ``bytes_total`` is exact once every download still to finish has announced its
    length (until then None); ``bytes_estimate`` extrapolates from the lengths known so far."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int | None
    bytes_estimate: int | None


@dataclass(slots=True)
class FetchResult:
    """What a fetch did: files fetched now, files already present, and a finding for each item that failed."""

    destination: str
    ledger_path: Path
    fetched: list[LedgerEntry] = field(default_factory=list)
    present: list[LedgerEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    media_requests: int = 0
    renewed: int = 0
    bytes_fetched: int = 0

    @property
    def failed(self) -> list[str]:
        """The request_ids that have an error finding (run the fetch again to retry them)."""
        return [f.request_id for f in self.findings if f.severity == "error" and f.request_id is not None]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def files(self) -> dict[str, LedgerEntry]:
        """Every request whose video is at the destination now, fetched or present, by request_id."""
        return {entry.request_id: entry for entry in [*self.present, *self.fetched]}

    def to_dict(self) -> dict[str, Any]:
        """The counts, the request_ids that failed, and every finding, as plain data."""
        return {
            "ok": self.ok,
            "destination": self.destination,
            "ledger": str(self.ledger_path),
            "fetched": len(self.fetched),
            "present": len(self.present),
            "failed": self.failed,
            "bytes_fetched": self.bytes_fetched,
            "media_requests": self.media_requests,
            "renewed": self.renewed,
            "findings": [f.model_dump(mode="json", exclude_none=True) for f in self.findings],
        }


def renew_from(client: Client) -> Callable[[FetchItem], str | None]:
    """A ``renew`` for :func:`fetch_outputs`: the generation's current ``outputUrl`` from the API
    (``GET /v2/generate/{id}``, with the client's key, retries and key safety), or None without an id."""

    def renew(item: FetchItem) -> str | None:
        if not item.generation_id:
            return None
        return client.generations.get(item.generation_id).output_url or None

    return renew


# --------------------------------------------------------------------------------------------- checks


def _check_items(items: Sequence[FetchItem]) -> None:
    seen_ids: set[str] = set()
    seen_names: dict[str, str] = {}
    for item in items:
        if not isinstance(item, FetchItem):
            msg = f"fetch_outputs takes FetchItem objects, not {type(item).__name__}"
            raise InputError(msg)
        if item.request_id in seen_ids:
            msg = f"request {item.request_id!r} is listed twice: give each request once"
            raise InputError(msg)
        seen_ids.add(item.request_id)
        problem = check_name(item.name)
        if problem is not None:
            msg = f"request {item.request_id!r}: {problem}; make names with assign_names()"
            raise InputError(msg)
        key = name_key(item.name)
        if key in seen_names:
            msg = (
                f"requests {seen_names[key]!r} and {item.request_id!r} would both be saved as {item.name!r} "
                "(names are compared as case-insensitive file systems do): give each a name of its own"
            )
            raise InputError(msg)
        seen_names[key] = item.request_id


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every fetch (loading the CA bundle costs a noticeable fraction of a second)."""
    return httpx.create_ssl_context()


def _own_client(concurrency: int, options: FetchOptions) -> httpx.Client:
    """The media client: no API key, one pool of ``concurrency`` connections, redirects followed."""
    timeout = httpx.Timeout(options.timeout, connect=options.connect_timeout, pool=None)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(
        timeout=timeout,
        limits=limits,
        follow_redirects=True,
        headers={"user-agent": _USER_AGENT},
        verify=_ssl_context(),
    )


def _same_output(entry: LedgerEntry, item: FetchItem) -> bool:
    if entry.request_id != item.request_id:
        return False
    if entry.generation_id and item.generation_id:
        return entry.generation_id == item.generation_id
    if item.output_url:
        return entry.source == without_query(item.output_url)
    return True


# --------------------------------------------------------------------------------------------- progress


class _Progress:
    """Counts shared by the workers; calls ``on_progress`` under a lock, so never two at once."""

    def __init__(self, files_total: int, callback: Callable[[FetchProgress], None] | None) -> None:
        self._lock = threading.Lock()
        self._callback = callback
        self.files_total = files_total
        self.files_done = 0
        self.bytes_done = 0
        self._known = 0
        self._known_count = 0
        self._pending = 0  # downloads to finish whose length is not known yet

    def start(self, downloads: int, files_done: int) -> None:
        with self._lock:
            self._pending = downloads
            self.files_done = files_done
        self._emit()

    def length(self, size: int | None, seen: bool) -> None:
        with self._lock:
            if size is not None and not seen:
                self._known += size
                self._known_count += 1
                self._pending -= 1

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes_done += n
        self._emit()

    def finished(self, length_seen: bool) -> None:
        with self._lock:
            self.files_done += 1
            if not length_seen:
                self._pending -= 1
        self._emit()

    def _emit(self) -> None:
        if self._callback is None:
            return
        with self._lock:
            total = self._known if self._pending <= 0 else None
            estimate = None
            if self._known_count:
                estimate = self._known + round(self._known / self._known_count * max(self._pending, 0))
            snapshot = FetchProgress(self.files_done, self.files_total, self.bytes_done, total, estimate)
            self._callback(snapshot)


# --------------------------------------------------------------------------------------------- one item


@dataclass(slots=True)
class _Run:
    """What every worker shares."""

    http: httpx.Client
    store: Store
    options: FetchOptions
    renew: Callable[[FetchItem], str | None] | None
    progress: _Progress
    owns_http: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    renewed: int = 0

    def counted(self) -> None:
        with self.lock:
            self.requests += 1

    def wait(self, seconds: float) -> None:
        if self.options.sleep is not None:
            self.options.sleep(seconds)
        elif self.stop.wait(seconds):
            raise Cancelled


@dataclass(frozen=True, slots=True)
class _Outcome:
    item: FetchItem
    entry: LedgerEntry | None = None
    finding: Finding | None = None
    fatal: bool = False


def _finding(item: FetchItem, code: str, message: str, run: _Run) -> Finding:
    return Finding(
        code=code,
        severity="error",
        message=message,
        request_id=item.request_id,
        file=run.store.target(item.name),
    )


def _renewed(item: FetchItem, run: _Run, why: str) -> str:
    """A fresh link for ``item``, or :class:`Failed` (``fetch-expired``) saying why there is none."""
    if run.renew is None:
        msg = f"{why}; the link has probably expired, and no way to renew it was given (renew=...)"
        raise Failed(msg, code="fetch-expired")
    try:
        url = run.renew(item)
    except BatchkitError as exc:
        msg = f"{why}; asking the API for a fresh link failed too: {exc}"
        raise Failed(msg, code="fetch-expired") from None
    if not url:
        detail = (
            "the generation has no output URL now"
            if item.generation_id
            else "the request has no generation id"
        )
        msg = f"{why}; the link could not be renewed ({detail})"
        raise Failed(msg, code="fetch-expired")
    with run.lock:
        run.renewed += 1
    log.info("renewed the link of %s (%s)", item.request_id, why)
    return url


def _fetch_one(item: FetchItem, run: _Run) -> _Outcome:
    """Download one item, with retries and at most one renewal; never raises but for Cancelled."""
    length_seen = False

    def on_length(size: int | None) -> None:
        nonlocal length_seen
        run.progress.length(size, length_seen)
        length_seen = length_seen or size is not None

    try:
        url = item.output_url or None
        renewed = False
        if url is None:
            if run.renew is None:
                msg = "the request has no output URL (it did not complete, or the results lack it)"
                raise Failed(msg, code="fetch-no-url")
            url, renewed = _renewed(item, run, "the request has no output URL"), True
        attempt = 0
        while True:
            if run.stop.is_set():
                raise Cancelled
            attempt += 1
            try:
                done = download_once(
                    run.http,
                    url,
                    lambda: run.store.writer(item.name),
                    chunk_size=run.options.chunk_size,
                    stop=run.stop,
                    progress=run.progress.add,
                    on_length=on_length,
                    on_request=run.counted,
                )
                break
            except Expired as exc:
                if renewed:
                    msg = f"{exc.message}, again after renewing the link"
                    raise Failed(msg, code="fetch-expired") from None
                url, renewed, attempt = _renewed(item, run, exc.message), True, 0
            except Transient as exc:
                if attempt >= run.options.max_attempts:
                    code = "fetch-truncated" if exc.truncated else "fetch-failed"
                    msg = f"{exc.message} ({attempt} tries); run fetch again later"
                    raise Failed(msg, code=code) from None
                delay = run.options.delay(attempt, exc.retry_after)
                log.debug("%s: %s; try %d in %.1f s", item.request_id, exc.message, attempt + 1, delay)
                run.wait(delay)
    except Failed as exc:
        run.progress.finished(length_seen)
        return _Outcome(item, finding=_finding(item, exc.code, exc.message, run), fatal=exc.fatal)
    except Cancelled:
        raise
    except Exception as exc:  # a bug, or a file system raising what it should not: one item, not the run
        log.exception("fetching %s failed unexpectedly", item.request_id)
        run.progress.finished(length_seen)
        msg = f"unexpected {type(exc).__name__}: {exc}; run fetch again, and report it if it persists"
        return _Outcome(item, finding=_finding(item, "fetch-failed", msg, run))
    run.progress.finished(length_seen)
    entry = LedgerEntry(
        request_id=item.request_id,
        name=item.name,
        destination=run.store.target(item.name),
        bytes=done.size,
        sha256=done.sha256,
        fetched_at=datetime.now(UTC),
        source=without_query(item.output_url or url),
        generation_id=item.generation_id,
    )
    log.debug("fetched %s → %s (%d bytes)", item.request_id, entry.destination, done.size)
    return _Outcome(item, entry=entry)


# --------------------------------------------------------------------------------------------- the run


def _plan(
    items: Sequence[FetchItem], store: Store, ledger: FetchLedger, options: FetchOptions
) -> tuple[list[LedgerEntry], list[FetchItem]]:
    """Split the items into those already complete at the destination and those to download."""
    sizes = store.sizes([item.name for item in items])
    present: list[LedgerEntry] = []
    todo: list[FetchItem] = []
    for item in items:
        entry = ledger.get(store.target(item.name))
        ok = entry is not None and _same_output(entry, item) and sizes.get(item.name) == entry.bytes
        if ok and entry is not None and options.verify_existing == "sha256":
            try:
                ok = store.sha256(item.name) == entry.sha256
            except Exception:  # unreadable now: fetch it again
                ok = False
        if ok and entry is not None:
            present.append(entry)
        else:
            todo.append(item)
    return present, todo


def _run_pool(
    todo: Sequence[FetchItem], run: _Run, concurrency: int, done: Callable[[_Outcome], None]
) -> None:
    """Run the downloads, at most ``concurrency`` at once, handing each outcome to ``done`` as it ends.

    On any exception here (Ctrl-C), the downloads in flight are told to stop (and the connection pool is
    closed if it is ours, so none waits for a read timeout); their outcomes, and those of every download
    that still finished, are handed over before the exception goes on.
    """
    queue = iter(todo)
    halted: str | None = None
    running: dict[cf.Future[_Outcome], FetchItem] = {}
    skipped: list[FetchItem] = []
    pool = cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="batchkit-fetch")
    try:
        while True:
            while halted is None and len(running) < _QUEUED * concurrency:
                item = next(queue, None)
                if item is None:
                    break
                running[pool.submit(_fetch_one, item, run)] = item
            if not running:
                break
            # A timeout, so that Ctrl-C is seen at once: with some native libraries loaded (polars), a signal
            # no longer interrupts a thread blocked on a lock, only one that wakes up now and then.
            finished, _ = cf.wait(running, timeout=_WAKE_EVERY, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                running.pop(future)
                outcome = future.result()
                if outcome.fatal and halted is None and outcome.finding is not None:
                    halted = outcome.finding.message
                    log.warning("fetch: stopping new downloads: %s", halted)
                    waiting = [f for f in running if f.cancel()]  # queued, not started
                    skipped.extend(running.pop(f) for f in waiting)
                done(outcome)
    except BaseException:
        run.stop.set()
        if run.owns_http:
            run.http.close()
        pool.shutdown(wait=True, cancel_futures=True)
        for future in running:
            if future.done() and not future.cancelled() and future.exception() is None:
                done(future.result())
        raise
    pool.shutdown(wait=True)
    if halted is not None:
        for item in [*skipped, *queue]:
            run.progress.finished(False)
            msg = f"not fetched: the fetch stopped when {halted}"
            done(_Outcome(item, finding=_finding(item, "fetch-destination", msg, run)))


def fetch_outputs(
    items: Sequence[FetchItem],
    dest: str | os.PathLike[str] | Store,
    *,
    ledger_path: str | os.PathLike[str],
    concurrency: int = 8,
    http: httpx.Client | None = None,
    renew: Callable[[FetchItem], str | None] | None = None,
    on_progress: Callable[[FetchProgress], None] | None = None,
    options: FetchOptions | None = None,
) -> FetchResult:
    """Fetch every item's video into ``dest`` (see the module docstring) and return what happened.

    ``dest`` is a local folder, a ``file://`` URL, any fsspec URL, or a store from
    :func:`~batchkit._handback.stores.open_destination` (for storage options). ``ledger_path`` is a local
    file (``fetched.parquet``). ``http`` replaces the client made here (it must not carry ``x-api-key``);
    ``renew(item)`` gives a fresh URL for an expired one, and may be called from several threads at once.
    ``on_progress`` is called from the worker threads, never two calls at once.
    """
    opts = options or FetchOptions()
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        msg = f"concurrency must be a whole number from 1 to 256, not {concurrency!r}"
        raise InputError(msg)
    if http is not None and "x-api-key" in http.headers:
        msg = "the http client given to fetch_outputs carries x-api-key: media hosts must never see the key"
        raise ConfigurationError(msg)
    _check_items(items)
    store = dest if not isinstance(dest, str | os.PathLike) else open_destination(dest, fsync=opts.fsync)
    store.prepare()
    result = FetchResult(destination=store.url, ledger_path=Path(ledger_path))
    with FetchLedger.open(ledger_path) as ledger:
        present, todo = _plan(items, store, ledger, opts)
        result.present = present
        progress = _Progress(len(items), on_progress)
        progress.start(len(todo), len(present))
        if not todo:
            log.info("fetch: all %d file(s) already at %s; nothing to do", len(items), store.url)
            return result
        log.info("fetch: %d to download, %d already at %s", len(todo), len(present), store.url)
        client = http if http is not None else _own_client(concurrency, opts)
        run = _Run(client, store, opts, renew, progress, owns_http=http is None)
        outcomes: dict[str, _Outcome] = {}

        def done(outcome: _Outcome) -> None:
            outcomes[outcome.item.request_id] = outcome
            if outcome.entry is not None:
                ledger.record(outcome.entry)

        try:
            _run_pool(todo, run, min(concurrency, len(todo)), done)
        finally:
            if http is None:
                client.close()
            store.finish()
            result.media_requests, result.renewed = run.requests, run.renewed
        for item in todo:
            outcome = outcomes[item.request_id]
            if outcome.entry is not None:
                result.fetched.append(outcome.entry)
                result.bytes_fetched += outcome.entry.bytes
            elif outcome.finding is not None:
                result.findings.append(outcome.finding)
    log.info(
        "fetch: %d fetched (%d bytes), %d present, %d failed; %d media request(s), %d link(s) renewed",
        len(result.fetched),
        result.bytes_fetched,
        len(result.present),
        len(result.findings),
        result.media_requests,
        result.renewed,
    )
    return result
