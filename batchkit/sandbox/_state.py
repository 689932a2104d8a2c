"""Batches and generations as the sandbox keeps them, and how they advance with the clock.

Nothing here sleeps or runs in the background: every status, metric and output line is computed from the
creation facts and the clock at the moment it is read. Choices that look random are seeded: the processing
(and output) order from the sandbox seed and the file's sha256, output durations from the seed and the
request id, output generation ids from the seed, batch id and request id. Batch ids themselves are random,
so ids from an earlier sandbox run are never mistaken for current ones.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

import orjson

from .._validate.fastpath import fast_request_id
from .._wire.limits import Limits
from .._wire.rules import line_problems
from ._config import Rule
from ._upload import UploadLine, split_lines

__all__ = [
    "Clock",
    "ManualClock",
    "Result",
    "SandboxBatch",
    "SandboxGeneration",
    "SystemClock",
    "iso_z",
    "line_result",
    "payload_result",
]

OUTPUT_HOST: Final = "https://sandbox.invalid/out"
ResultStatus = Literal["COMPLETED", "FAILED", "REJECTED", "MISSING"]
#: Makes a completed generation's ``outputUrl`` from its id and the moment it finished (the media host's
#: signed link; without one, the unserved ``OUTPUT_HOST`` URL is used).
MediaUrl = Callable[[str, datetime], str]


class Clock(Protocol):
    """Where the sandbox reads time: a monotonic clock for progress and a UTC wall clock for timestamps."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Time that moves only when told to: ``clock.advance(1.5)``. For tests without sleeps.

    Both clocks move together; the wall clock starts at ``start`` (default: the real time now).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._elapsed = 0.0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            msg = f"a clock cannot go back ({seconds} s)"
            raise ValueError(msg)
        self._elapsed += seconds

    def monotonic(self) -> float:
        return self._elapsed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)


def iso_z(moment: datetime) -> str:
    """``2026-01-15T10:30:00.123Z``: UTC, milliseconds, ``Z`` (as Sync's API writes dates)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def truncate_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Result:
    """How one request ends: its status and, unless COMPLETED, an error code and message."""

    status: ResultStatus
    error_code: str | None = None
    message: str | None = None


COMPLETED: Final = Result("COMPLETED")


def _texts(payload: Mapping[str, Any]) -> list[str]:
    """The strings rules look at: every input ``url`` and every TTS ``provider.script``."""
    texts: list[str] = []
    items = payload.get("input")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        url = item.get("url")
        if isinstance(url, str):
            texts.append(url)
        provider = item.get("provider")
        if isinstance(provider, dict) and isinstance(provider.get("script"), str):
            texts.append(provider["script"])
    return texts


def rule_result(payload: Mapping[str, Any], rules: Sequence[Rule]) -> Result:
    texts = _texts(payload)
    for rule in rules:
        if rule.matches(texts):
            if rule.outcome == "MISSING":
                return Result("MISSING")
            return Result(rule.outcome, rule.error_code, rule.effective_message)
    return COMPLETED


@functools.lru_cache(maxsize=8)
def _known(models: tuple[str, ...]) -> frozenset[str]:
    return frozenset(models)


def _invalid(messages: list[str]) -> Result:
    shown = "; ".join(messages[:3]) + (f"; and {len(messages) - 3} more" if len(messages) > 3 else "")
    return Result("REJECTED", "invalid_request", f"invalid request: {shown}")


def line_result(line: UploadLine, limits: Limits, rules: Sequence[Rule]) -> Result:
    """A batch line's outcome: REJECTED ``invalid_request`` when batchkit's rules flag an error, else the rules'."""
    if fast_request_id(line.raw, limits.endpoint, _known(limits.known_models)) is None:
        errors = [
            f"{p.pointer or '/'}: {p.message}"
            for p in line_problems(line.obj, limits)
            if p.severity == "error"
        ]
        if errors:
            return _invalid(errors)
    return rule_result(line.obj["payload"], rules)


def payload_problems_text(payload: Any, limits: Limits) -> list[str]:
    """Every error of a generate payload (``POST /v2/generate``), as ``pointer: message`` strings."""
    if not isinstance(payload, dict):
        return ["body: must be a JSON object"]
    line = {"request_id": "generate", "endpoint": limits.endpoint, "payload": payload}
    problems = [p for p in line_problems(line, limits) if p.severity == "error"]
    return [f"{p.pointer.removeprefix('/payload') or '/'}: {p.message}" for p in problems]


def payload_result(payload: Mapping[str, Any], rules: Sequence[Rule]) -> Result:
    """A lone generation's outcome. It cannot go missing from an output file, so MISSING fails it instead."""
    result = rule_result(payload, rules)
    if result.status == "MISSING":
        return Result(
            "FAILED", "generation_pipeline_failed", "The generation was lost (sandbox MISSING rule)."
        )
    return result


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def _generation_id(seed: int, *parts: object) -> str:
    return str(uuid.UUID(int=_rng(seed, "generation", *parts).getrandbits(128), version=4))


def _duration(seed: int, request_id: str) -> float:
    return round(_rng(seed, "duration", request_id).uniform(3.0, 30.0), 3)


@dataclass(frozen=True, slots=True, eq=False)
class SandboxBatch:
    """A batch the sandbox accepted: the facts of its creation; status and metrics follow from the clock.

    ``created_at`` is the UTC wall time (millisecond precision, as listed); ``file_bytes`` the exact upload;
    ``results`` the planned outcome of each record, in input order. Dry runs never create one.
    """

    id: str
    created_at: datetime
    webhook_url: str | None
    request_ids: tuple[str, ...]
    file_bytes: bytes = field(repr=False)
    results: tuple[Result, ...] = field(repr=False)
    api_base: str = field(repr=False)
    started: float = field(repr=False)
    pending_seconds: float = field(repr=False)
    seconds_per_generation: float = field(repr=False)
    order: tuple[int, ...] = field(repr=False)
    _successes: tuple[int, ...] = field(repr=False)
    _failures: tuple[int, ...] = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        batch_id: str,
        created_at: datetime,
        started: float,
        data: bytes,
        lines: Sequence[UploadLine],
        results: Sequence[Result],
        webhook_url: str | None,
        api_base: str,
        pending_seconds: float,
        seconds_per_generation: float,
        seed: int,
    ) -> SandboxBatch:
        order = list(range(len(lines)))
        _rng(seed, "order", hashlib.sha256(data).hexdigest()).shuffle(order)
        if len(order) > 1 and order == sorted(order):
            order = order[1:] + order[:1]  # never the input order: consumers must match by request_id
        successes, failures = [0], [0]
        for index in order:
            ok = results[index].status == "COMPLETED"
            successes.append(successes[-1] + ok)
            failures.append(failures[-1] + (not ok))
        return cls(
            id=batch_id,
            created_at=truncate_ms(created_at),
            webhook_url=webhook_url,
            request_ids=tuple(line.request_id for line in lines),
            file_bytes=data,
            results=tuple(results),
            api_base=api_base,
            started=started,
            pending_seconds=pending_seconds,
            seconds_per_generation=seconds_per_generation,
            order=tuple(order),
            _successes=tuple(successes),
            _failures=tuple(failures),
        )

    @property
    def total(self) -> int:
        return len(self.request_ids)

    @property
    def processing_at(self) -> float:
        """The monotonic time processing starts."""
        return self.started + self.pending_seconds

    @property
    def finishes_at(self) -> float:
        """The monotonic time the batch becomes terminal."""
        return self.processing_at + self.total * self.seconds_per_generation

    @property
    def result_url(self) -> str:
        return f"{self.api_base}/v2/batches/{self.id}/result"

    def result_url_at(self, api_base: str | None) -> str:
        """The result URL as seen from ``api_base`` (a sandbox restarted from its state file has a new port)."""
        return f"{api_base or self.api_base}/v2/batches/{self.id}/result"

    def done(self, now: float) -> int:
        """How many requests have finished at monotonic time ``now``."""
        if now < self.processing_at:
            return 0
        if now >= self.finishes_at or self.seconds_per_generation == 0:
            return self.total
        return min(self.total, math.floor((now - self.processing_at) / self.seconds_per_generation + 1e-9))

    def status(self, now: float) -> str:
        if now < self.processing_at:
            return "PENDING"
        if self.done(now) < self.total:
            return "PROCESSING"
        return "COMPLETED" if self._successes[-1] else "FAILED"

    def is_active(self, now: float) -> bool:
        return self.status(now) in ("PENDING", "PROCESSING")

    def metrics(self, now: float) -> dict[str, int]:
        done = self.done(now)
        return {
            "total_generations": self.total,
            "success_count": self._successes[done],
            "failed_count": self._failures[done],
            "pending_count": self.total - done,
        }

    def to_wire(self, now: float, api_base: str | None = None) -> dict[str, Any]:
        """The Batch object as ``GET /v2/batch/{id}`` answers it (``outputUrl`` is "" until terminal)."""
        status = self.status(now)
        return {
            "id": self.id,
            "created_at": iso_z(self.created_at),
            "status": status,
            "metrics": self.metrics(now),
            "webhookUrl": self.webhook_url,
            "outputUrl": self.result_url_at(api_base) if status in ("COMPLETED", "FAILED") else "",
        }

    def finished_at(self, position: int) -> datetime:
        """The wall time the request at ``position`` of the processing order finished."""
        return self.created_at + timedelta(
            seconds=self.pending_seconds + (position + 1) * self.seconds_per_generation
        )

    def completed_generations(self, seed: int) -> dict[str, int]:
        """The generation id of every COMPLETED request, with the request's input index."""
        return {
            _generation_id(seed, self.id, self.request_ids[index]): index
            for index, result in enumerate(self.results)
            if result.status == "COMPLETED"
        }

    def generation_wire(
        self, index: int, now: float, seed: int, media: MediaUrl | None = None
    ) -> dict[str, Any]:
        """The Generation object of the request at input ``index`` as ``GET /v2/generate/{id}`` answers it."""
        obj = orjson.loads(split_lines(self.file_bytes)[index])
        request_id = obj["request_id"]
        position = self.order.index(index)
        result = self.results[index]
        generation_id = _generation_id(seed, self.id, request_id)
        done = position < self.done(now)
        return _generation(
            generation_id,
            obj["payload"],
            self.created_at,
            result,
            seed,
            request_id,
            status=None if done else ("PENDING" if now < self.processing_at else "PROCESSING"),
            output_url=media(generation_id, self.finished_at(position)) if media and done else None,
        )

    def output_jsonl(self, seed: int, media: MediaUrl | None = None) -> bytes:
        """output.jsonl: one line per request except MISSING ones, in processing (not input) order."""
        raws = split_lines(self.file_bytes)
        chunks: list[bytes] = []
        for position, index in enumerate(self.order):
            result = self.results[index]
            if result.status == "MISSING":
                continue
            obj = orjson.loads(raws[index])
            request_id = obj["request_id"]
            finished = self.created_at + timedelta(
                seconds=self.pending_seconds + (position + 1) * self.seconds_per_generation
            )
            response = None
            if result.status == "COMPLETED":
                generation_id = _generation_id(seed, self.id, request_id)
                response = _generation(
                    generation_id,
                    obj["payload"],
                    self.created_at,
                    result,
                    seed,
                    request_id,
                    output_url=media(generation_id, finished) if media is not None else None,
                )
            error = (
                None
                if result.status == "COMPLETED"
                else {"code": result.error_code, "message": result.message}
            )
            line = {
                "request_id": request_id,
                "endpoint": obj["endpoint"],
                "payload": obj["payload"],
                "status": result.status,
                "error": error,
                "response": response,
                "updated_at": iso_z(finished),
            }
            chunks.append(orjson.dumps(line) + b"\n")
        return b"".join(chunks)


def _generation(
    generation_id: str,
    payload: Mapping[str, Any],
    created_at: datetime,
    result: Result,
    seed: int,
    key: str,
    *,
    status: str | None = None,
    output_url: str | None = None,
) -> dict[str, Any]:
    """A Generation object (sync-api.md §4.6) for ``payload`` in ``status`` (default: the result's).

    ``output_url`` is the completed video's link (default: the unserved ``OUTPUT_HOST`` URL)."""
    status = status or result.status
    completed = status == "COMPLETED"
    failed = status in ("FAILED", "REJECTED")
    generation: dict[str, Any] = {
        "id": generation_id,
        "createdAt": iso_z(created_at),
        "status": status,
        "model": payload.get("model"),
        "input": payload.get("input"),
        "options": payload.get("options") or {},
        "outputUrl": (output_url or f"{OUTPUT_HOST}/{generation_id}.mp4") if completed else None,
        "outputDuration": _duration(seed, key) if completed else None,
        "error": result.message if failed else None,
        "error_code": result.error_code if failed else None,
    }
    if "segments" in payload:
        generation["segments"] = payload["segments"]
    if "webhookUrl" in payload:
        generation["webhookUrl"] = payload["webhookUrl"]
    return generation


@dataclass(frozen=True, slots=True, eq=False)
class SandboxGeneration:
    """A generation created with ``POST /v2/generate``: PENDING, PROCESSING, then its result's status."""

    id: str
    created_at: datetime
    payload: dict[str, Any] = field(repr=False)
    webhook_url: str | None
    idempotency_key: str | None
    result: Result = field(repr=False)
    body_digest: str = field(repr=False)
    started: float = field(repr=False)
    pending_seconds: float = field(repr=False)
    seconds_per_generation: float = field(repr=False)
    api_base: str = field(default="", repr=False)

    @property
    def finishes_at(self) -> float:
        return self.started + self.pending_seconds + self.seconds_per_generation

    def status(self, now: float) -> str:
        if now < self.started + self.pending_seconds:
            return "PENDING"
        if now < self.finishes_at:
            return "PROCESSING"
        return self.result.status

    def is_terminal(self, now: float) -> bool:
        return self.status(now) not in ("PENDING", "PROCESSING")

    def to_wire(self, now: float, seed: int, media: MediaUrl | None = None) -> dict[str, Any]:
        status = self.status(now)
        finished = self.created_at + timedelta(seconds=self.pending_seconds + self.seconds_per_generation)
        return _generation(
            self.id,
            self.payload,
            self.created_at,
            self.result,
            seed,
            self.id,
            status=status,
            output_url=media(self.id, finished) if media is not None and status == "COMPLETED" else None,
        )
