"""The :class:`Sandbox`: one emulated Sync account, its batches and generations, and what tests inspect.

The web layer (``_app``) calls the underscored methods; everything else is for users and tests: the batches
and generations it holds, the webhooks it sent, request counts by route, leaked keys, and fault injection.
State is guarded by one lock, because the server runs in its own thread while a test reads from another.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from .._errors import install_hint
from ._config import Fault, SandboxConfig
from ._media import MediaHost
from ._outputs import OUTPUT_PREFIX, generation_wire, output_media
from ._persist import StateFile
from ._state import COMPLETED, Clock, Result, SandboxBatch, SandboxGeneration, SystemClock, line_result
from ._upload import UploadLine

if TYPE_CHECKING:
    pass

__all__ = ["KeyLeak", "Sandbox", "WebhookDelivery"]

log = logging.getLogger("batchkit.sandbox")

SIGNED_URL_SECONDS = 3600
MISSING_EXTRA = (
    "the sandbox needs the optional 'sandbox' extra (starlette, uvicorn, python-multipart): "
    f"{install_hint('sandbox')}"
)


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One webhook the sandbox sent (or skipped): where, what, and how the receiver answered."""

    kind: Literal["batch", "generation"]
    object_id: str
    url: str
    body: bytes
    signature: str
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class KeyLeak:
    """A request that carried ``x-api-key`` to the signed result host (which must never see the key)."""

    method: str
    path: str
    host: str


@dataclass(frozen=True, slots=True)
class Notification:
    kind: Literal["batch", "generation"]
    object_id: str
    url: str
    body: dict[str, Any]


class ConcurrencyLimitReached(Exception):
    """As many batches as ``concurrency_limit`` are PENDING or PROCESSING."""


class IdempotencyConflict(Exception):
    """An ``Idempotency-Key`` was reused with a different body."""


@dataclass(slots=True)
class _ArmedFault:
    fault: Fault
    remaining: int | None


class Sandbox:
    """An emulated Sync account: serve it with :func:`batchkit.sandbox.serve`, inspect it from tests.

    ``state_path`` keeps the account in a file (JSON Lines, appended as batches and generations are created):
    a sandbox started again with the same file, on any port and in any process, is the same account with the
    same batches, still progressing on the clock, so an interrupted ``run --sandbox`` resumes where it stopped.
    ``account_id`` names the account; every answer carries it in the ``x-batchkit-sandbox`` header.

    >>> sandbox = Sandbox(pending_seconds=0, seed=7)
    >>> sandbox.config.seed, sandbox.batches
    (7, [])
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock | None = None,
        state_path: str | Path | None = None,
        **overrides: Any,
    ) -> None:
        base = config or SandboxConfig()
        self._config = base.replace(**overrides) if overrides else base
        self.clock: Clock = clock or SystemClock()
        self._state = StateFile(state_path) if state_path is not None else None
        self.url: str | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._shares = random.Random(self._config.seed)
        self._signing_key = secrets.token_bytes(32)
        self._batches: dict[str, SandboxBatch] = {}
        self._generations: dict[str, SandboxGeneration] = {}
        self._by_idempotency_key: dict[str, str] = {}
        self._requests: Counter[tuple[str, str]] = Counter()
        self._faults: list[_ArmedFault] = []
        self._webhooks: list[WebhookDelivery] = []
        self._awaiting_webhook: dict[str, Literal["batch", "generation"]] = {}
        self._leaks: list[KeyLeak] = []
        self._dry_runs = 0
        #: The media host served under ``/_media/`` (see :mod:`batchkit.sandbox._media`).
        self.media = MediaHost(lambda: self.url)
        self.account_id = f"acct_{secrets.token_hex(8)}"
        if self._state is not None:
            self.account_id, batches, generations = self._state.load(self.clock, self._config.seed)
            self._batches = {b.id: b for b in batches}
            self._generations = {g.id: g for g in generations}
            self._by_idempotency_key = {g.idempotency_key: g.id for g in generations if g.idempotency_key}

    def __repr__(self) -> str:
        return f"<Sandbox url={self.url!r} batches={len(self._batches)} generations={len(self._generations)}>"

    # -- configuration -----------------------------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change settings while serving (``sandbox.configure(rate_limit_share=1.0)``); returns the new config.

        Batches already created keep the timing they were created with.
        """
        with self._lock:
            self._config = self._config.replace(**changes)
            if "seed" in changes:
                self._shares = random.Random(self._config.seed)
            return self._config

    # -- inspection --------------------------------------------------------------------------------------

    @property
    def batches(self) -> list[SandboxBatch]:
        """Every batch created, oldest first (dry runs create none)."""
        with self._lock:
            return list(self._batches.values())

    def batch(self, batch_id: str) -> SandboxBatch:
        with self._lock:
            return self._batches[batch_id]

    def batch_json(self, batch_id: str) -> dict[str, Any]:
        """The Batch object as the API would answer it now."""
        return self.batch(batch_id).to_wire(self.clock.monotonic())

    def output(self, batch_id: str) -> bytes | None:
        """The batch's output.jsonl, or None while it is not terminal."""
        batch = self.batch(batch_id)
        if batch.is_active(self.clock.monotonic()):
            return None
        return batch.output_jsonl(self._config.seed, output_media(self, batch))

    @property
    def generations(self) -> list[SandboxGeneration]:
        """Every generation created with ``POST /v2/generate``, oldest first."""
        with self._lock:
            return list(self._generations.values())

    @property
    def webhooks(self) -> list[WebhookDelivery]:
        """Every webhook sent or skipped, in the order they ended."""
        with self._lock:
            return list(self._webhooks)

    def wait_for_webhooks(self, count: int = 1, *, timeout: float = 10.0) -> list[WebhookDelivery]:
        """Block until at least ``count`` webhooks have ended; :class:`TimeoutError` after ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._webhooks) >= count, timeout=timeout):
                msg = f"{len(self._webhooks)} webhook(s) after {timeout} s, expected {count}"
                raise TimeoutError(msg)
            return list(self._webhooks)

    @property
    def requests(self) -> Counter[tuple[str, str]]:
        """HTTP requests received, by ``(method, route template)``, e.g. ``("GET", "/v2/batch/{id}")``."""
        with self._lock:
            return Counter(self._requests)

    @property
    def output_video_requests(self) -> int:
        """Requests for output videos (GET and HEAD of ``/_outputs/``, whatever their answer)."""
        with self._lock:
            return sum(n for (_, route), n in self._requests.items() if route.startswith(OUTPUT_PREFIX))

    @property
    def key_leaks(self) -> list[KeyLeak]:
        """Requests that carried ``x-api-key`` to the signed result URL (answered 400)."""
        with self._lock:
            return list(self._leaks)

    @property
    def dry_runs(self) -> int:
        """Dry runs that passed validation (they create nothing)."""
        with self._lock:
            return self._dry_runs

    # -- faults ------------------------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Arm faults; each applies to the next ``times`` requests of its route, in injection order."""
        with self._lock:
            self._faults.extend(_ArmedFault(f, f.times) for f in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """Faults still armed."""
        with self._lock:
            return [armed.fault for armed in self._faults]

    # -- used by the web layer ---------------------------------------------------------------------------

    def _key_accepted(self, key: str | None) -> bool:
        if not key:
            return False
        keys = self._config.api_keys
        return keys is None or any(hmac.compare_digest(key, k) for k in keys)

    def _count(self, method: str, route: str) -> None:
        with self._lock:
            self._requests[(method, route)] += 1

    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for armed in self._faults:
                if armed.fault.applies_to(route):
                    if armed.remaining is not None:
                        armed.remaining -= 1
                        if armed.remaining == 0:
                            self._faults.remove(armed)
                    return armed.fault
            return None

    def _draw_share(self) -> int | None:
        """The status a seeded share imposes on this request (429, 500, 502, 503), or None."""
        with self._lock:
            config = self._config
            if not config.rate_limit_share and not config.server_error_share:
                return None
            draw = self._shares.random()
            if draw < config.rate_limit_share:
                return 429
            if draw < config.rate_limit_share + config.server_error_share:
                return self._shares.choice((500, 502, 503))
            return None

    def _note_dry_run(self) -> None:
        with self._lock:
            self._dry_runs += 1

    def add_foreign_batch(
        self, records: int, *, finished: bool = False, fail: bool = False, api_base: str | None = None
    ) -> SandboxBatch:
        """A batch of ``records`` requests made by someone else on this account (another campaign, a colleague):
        its request_ids are its own, so its output names none of yours. ``finished`` makes it terminal already."""
        tag = secrets.token_hex(4)
        suffix = "?sandbox=fail" if fail else ""
        raws = [
            orjson.dumps(
                {
                    "request_id": f"foreign-{tag}-{i:04d}",
                    "endpoint": self._config.limits.endpoint,
                    "payload": {
                        "model": "lipsync-2",
                        "input": [
                            {"type": "video", "url": f"https://cdn.example.com/foreign/{tag}/{i}.mp4"},
                            {
                                "type": "audio",
                                "url": f"https://cdn.example.com/foreign/{tag}/{i}.wav{suffix}",
                            },
                        ],
                    },
                }
            )
            for i in range(records)
        ]
        lines = [
            UploadLine(n, orjson.loads(raw)["request_id"], raw, orjson.loads(raw))
            for n, raw in enumerate(raws, 1)
        ]
        results = [Result("FAILED", "generation_pipeline_failed", "foreign") if fail else COMPLETED] * records
        data = b"\n".join(raws) + b"\n"
        return self._store_batch(
            data, lines, results, None, api_base or self.url or "http://127.0.0.1", finished=finished
        )

    def _store_batch(
        self,
        data: bytes,
        lines: Sequence[UploadLine],
        results: Sequence[Result],
        webhook_url: str | None,
        api_base: str,
        *,
        finished: bool,
    ) -> SandboxBatch:
        config = self._config
        with self._lock:
            batch = SandboxBatch.create(
                batch_id=f"batch_{secrets.token_hex(12)}",
                created_at=self.clock.now(),
                started=self.clock.monotonic(),
                data=data,
                lines=lines,
                results=results,
                webhook_url=webhook_url,
                api_base=api_base,
                pending_seconds=0.0 if finished else config.pending_seconds,
                seconds_per_generation=0.0 if finished else config.seconds_per_generation,
                seed=config.seed,
            )
            self._batches[batch.id] = batch
            if webhook_url:
                self._awaiting_webhook[batch.id] = "batch"
            if self._state is not None:
                self._state.add_batch(batch)
        return batch

    def _create_batch(
        self, data: bytes, lines: Sequence[UploadLine], *, webhook_url: str | None, api_base: str
    ) -> SandboxBatch:
        config = self._config
        results: list[Result] = [line_result(line, config.limits, config.rules) for line in lines]
        with self._lock:
            now = self.clock.monotonic()
            if config.concurrency_limit is not None:
                active = sum(1 for b in self._batches.values() if b.is_active(now))
                if active >= config.concurrency_limit:
                    raise ConcurrencyLimitReached
            for _ in range(config.foreign_batches):
                self.add_foreign_batch(len(lines), api_base=api_base)
            batch = self._store_batch(
                data, lines, results, webhook_url, api_base, finished=config.finished_on_create
            )
        log.info("sandbox: created %s (%d records, webhook %s)", batch.id, batch.total, webhook_url or "none")
        return batch

    def _get_batch(self, batch_id: str) -> SandboxBatch | None:
        with self._lock:
            return self._batches.get(batch_id)

    def _list_batches(
        self,
        statuses: Iterable[str],
        after: datetime | None,
        before: datetime | None,
        api_base: str | None = None,
    ) -> list[dict[str, Any]]:
        wanted = set(statuses)
        with self._lock:
            now = self.clock.monotonic()
            batches = list(self._batches.values())
        chosen = [
            b
            for b in reversed(batches)
            if (after is None or b.created_at >= after) and (before is None or b.created_at < before)
        ]
        chosen.sort(key=lambda b: b.created_at, reverse=True)  # stable: creation order breaks ties
        wires = [b.to_wire(now, api_base) for b in chosen]
        return [w for w in wires if not wanted or w["status"] in wanted]

    def _create_generation(
        self,
        payload: dict[str, Any],
        *,
        digest: str,
        idempotency_key: str | None,
        result: Result,
        api_base: str = "",
    ) -> SandboxGeneration:
        with self._lock:
            if idempotency_key is not None and idempotency_key in self._by_idempotency_key:
                existing = self._generations[self._by_idempotency_key[idempotency_key]]
                if existing.body_digest != digest:
                    raise IdempotencyConflict
                return existing
            config = self._config
            webhook_url = payload.get("webhookUrl")
            generation = SandboxGeneration(
                id=str(uuid.uuid4()),
                created_at=self.clock.now(),
                payload=payload,
                webhook_url=webhook_url if isinstance(webhook_url, str) else None,
                idempotency_key=idempotency_key,
                result=result,
                body_digest=digest,
                started=self.clock.monotonic(),
                pending_seconds=config.pending_seconds,
                seconds_per_generation=config.seconds_per_generation,
                api_base=api_base,
            )
            self._generations[generation.id] = generation
            if idempotency_key is not None:
                self._by_idempotency_key[idempotency_key] = generation.id
            if generation.webhook_url:
                self._awaiting_webhook[generation.id] = "generation"
            if self._state is not None:
                self._state.add_generation(generation)
            return generation

    def _get_generation(self, generation_id: str) -> SandboxGeneration | None:
        with self._lock:
            return self._generations.get(generation_id)

    def _signature(self, batch_id: str, expires: int) -> str:
        return hmac.new(self._signing_key, f"{batch_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def _signed_query(self, batch_id: str) -> str:
        expires = int(time.time()) + SIGNED_URL_SECONDS
        return f"expires={expires}&sig={self._signature(batch_id, expires)}"

    def _signature_ok(self, batch_id: str, expires: str, signature: str) -> bool:
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(self._signature(batch_id, int(expires)), signature)

    def _record_leak(self, leak: KeyLeak) -> None:
        log.warning("sandbox: x-api-key sent to the signed result URL %s (a key leak)", leak.path)
        with self._lock:
            self._leaks.append(leak)

    def _due_notifications(self) -> list[Notification]:
        """Webhooks that are due (their batch or generation just became terminal), each handed out once."""
        with self._lock:
            if not self._awaiting_webhook:
                return []
            now = self.clock.monotonic()
            due: list[Notification] = []
            for object_id, kind in list(self._awaiting_webhook.items()):
                if kind == "batch":
                    batch = self._batches[object_id]
                    if batch.is_active(now) or batch.webhook_url is None:
                        continue
                    due.append(Notification(kind, object_id, batch.webhook_url, batch.to_wire(now)))
                else:
                    generation = self._generations[object_id]
                    if not generation.is_terminal(now) or generation.webhook_url is None:
                        continue
                    body = generation_wire(self, generation)
                    due.append(Notification(kind, object_id, generation.webhook_url, body))
                del self._awaiting_webhook[object_id]
            return due

    def _record_webhook(self, delivery: WebhookDelivery) -> None:
        with self._changed:
            self._webhooks.append(delivery)
            self._changed.notify_all()
