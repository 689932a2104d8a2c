"""The sandbox's HTTP face: starlette routes for the Batch and Generate APIs, behind a fault gate.

Request flow: the :class:`_Gate` (outermost ASGI app) counts the request by route, then, for ``/v2/*`` only,
adds ``latency``, applies an injected :class:`Fault` or a seeded 429/5xx share, and otherwise hands the
request to starlette. Bodies and status codes follow sync-api.md: errors are ``{"statusCode", "message"}``
(``message`` a list for validation errors), batches are snake_case with camelCase ``webhookUrl`` and
``outputUrl``.

Dropping a connection without any response (the ``reset_*`` faults) needs the server's transport: ASGI has no
message for it, and an exception makes uvicorn answer 500. The gate reaches the transport through uvicorn's
``send`` callable and aborts it, then waits for uvicorn to notice the disconnect so it writes nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import orjson
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._wire.checks import is_http_url
from .._wire.responses import BATCH_STATUSES
from ._config import ROUTES, Fault
from ._estimate import estimate_routes
from ._media import MEDIA_PREFIX, media_app
from ._notify import Notifier
from ._outputs import OUTPUT_ROUTE, batch_generation_wire, generation_wire, output_video_response
from ._sandbox import ConcurrencyLimitReached, IdempotencyConflict, KeyLeak, Sandbox
from ._state import payload_problems_text, payload_result
from ._upload import UploadRefused, parse_upload

__all__ = ["ConnectionDropped", "build_app", "route_of"]

log = logging.getLogger("batchkit.sandbox")

_TEMPLATES: Final = tuple(dict.fromkeys(route.split(" ", 1)[1] for route in ROUTES))
_MATCHERS: Final = tuple(
    (re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", template) + "$"), template) for template in _TEMPLATES
)
_IDEMPOTENCY_KEY: Final = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_OFFSET_AS_SPACE: Final = re.compile(r" (\d\d:?\d\d)$")

RATE_LIMITED: Final = {
    "statusCode": 429,
    "errorCode": "rate_limit_exceeded",
    "message": "Rate limit exceeded. Please try again later.",
    "error": "Too Many Requests",
}
CONCURRENCY_LIMITED: Final = {
    "statusCode": 429,
    "errorCode": "concurrency_limit_reached",
    "message": "Batch concurrency limit reached. Please wait for an existing batch to complete or upgrade your plan.",
}


class ConnectionDropped(Exception):
    """Raised instead of dropping a connection when the server does not expose its transport."""


def route_of(path: str) -> str:
    """The route template a path belongs to (``/v2/batch/abc`` → ``/v2/batch/{id}``), else the path."""
    for regex, template in _MATCHERS:
        if regex.match(path):
            return template
    return path


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(
    status: int,
    message: str | list[str],
    *,
    error: str | None = None,
    error_code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"statusCode": status}
    if error_code is not None:
        body["errorCode"] = error_code
    body["message"] = message
    if error is not None:
        body["error"] = error
    return _json(status, body, headers)


def _bad_request(messages: list[str]) -> Response:
    return _error(400, messages, error="Bad Request")


def _server_error(status: int) -> Response:
    if status == 502:  # a gateway in front of the API answers in plain text, not JSON
        return Response("502 Bad Gateway", status_code=502, media_type="text/plain")
    if status == 503:
        return _error(503, "Service Unavailable", headers={"Retry-After": "1"})
    return _error(status, "Internal server error")


def _status_response(status: int) -> Response:
    if status == 429:
        return _json(429, RATE_LIMITED, {"Retry-After": "1"})
    return _server_error(status)


def _fault_response(fault: Fault) -> Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    if fault.body is not None:
        return Response(fault.body, status_code=fault.status, media_type="text/plain", headers=headers)
    if fault.status == 429 and fault.error_code == "concurrency_limit_reached":
        return _json(429, CONCURRENCY_LIMITED, headers)
    if fault.error_code is not None:
        return _error(
            fault.status, f"Injected fault {fault.status}", error_code=fault.error_code, headers=headers
        )
    if headers is None:
        return _status_response(fault.status)
    if fault.status == 429:
        return _json(429, RATE_LIMITED, headers)
    return _error(fault.status, "Injected fault", headers=headers)


async def _drain(receive: Receive) -> bytes:
    """Read the whole request body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app an already-read body, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _drop(receive: Receive, send: Send) -> None:
    """Close the connection at once, with no HTTP response at all."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        msg = "cannot drop the connection: the server does not expose its transport (serve with uvicorn)"
        raise ConnectionDropped(msg)
    transport.abort()
    while (await receive())["type"] != "http.disconnect":
        pass


async def _discard(message: Message) -> None:
    return None


def _announcing(send: Send, account_id: str) -> Send:
    """A ``send`` that adds ``x-batchkit-sandbox: <account>`` to the response head (and keeps ``__self__``,
    through which a connection is dropped)."""

    async def announce(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"x-batchkit-sandbox", account_id.encode())]
            message = {**message, "headers": headers}
        await send(message)

    announce.__self__ = getattr(send, "__self__", None)  # type: ignore[attr-defined]
    return announce


class _Capture:
    """An ASGI ``send`` that keeps the response instead of sending it."""

    def __init__(self) -> None:
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.body += message.get("body", b"")


class _Gate:
    """Counts every request; delays, faults and rate-limits the API ones; passes the rest to starlette."""

    def __init__(self, sandbox: Sandbox, app: ASGIApp) -> None:
        self._sandbox = sandbox
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        sandbox = self._sandbox
        method: str = scope["method"]
        path: str = scope["path"]
        template = route_of(path)
        sandbox._count(method, template)
        if not path.startswith("/v2/"):
            await self._app(scope, receive, send)
            return
        send = _announcing(send, sandbox.account_id)
        latency = sandbox.config.latency
        if latency:  # a server works after reading the request, whether or not the client is still there
            body = await _drain(receive)
            receive = _replay(body, receive)
            await asyncio.sleep(latency)
        fault = sandbox._take_fault(f"{method} {template}")
        if fault is not None:
            log.info("sandbox: fault %s on %s %s", fault.kind, method, path)
            await self._apply(fault, scope, receive, send)
            return
        status = sandbox._draw_share()
        if status is not None:
            log.info("sandbox: seeded share answers %d to %s %s", status, method, path)
            await _status_response(status)(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def _apply(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        if fault.kind == "status":
            await _fault_response(fault)(scope, receive, send)
        elif fault.kind == "reset_before_accept":
            await _drain(receive)
            await _drop(receive, send)
        elif fault.kind == "reset_after_accept":
            await self._app(scope, receive, _discard)
            await _drop(receive, send)
        elif fault.kind == "malformed_json":
            capture = _Capture()
            await self._app(scope, receive, capture)
            broken = capture.body[: len(capture.body) // 2] or b'{"id": '
            await Response(broken, status_code=200, media_type="application/json")(scope, receive, send)
        else:  # slow: read the request first, so it takes effect even if the client gives up meanwhile
            body = await _drain(receive)
            await asyncio.sleep(fault.delay)
            await self._app(scope, _replay(body, receive), send)


def _parse_time(name: str, value: str) -> datetime:
    text = _OFFSET_AS_SPACE.sub(r"+\1", value.strip())  # an unencoded '+' in a query arrives as a space
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{name} must be an ISO 8601 date-time such as 2026-01-15T10:30:00Z (got {value!r})"
        raise ValueError(msg) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _other_host(host: str) -> str:
    """The signed result URL lives on another host name for the same server, as a storage bucket would."""
    return {"127.0.0.1": "localhost", "localhost": "127.0.0.1", "::1": "localhost"}.get(host, "127.0.0.1")


class _Api:
    """The route handlers, bound to one sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def _denied(self, request: Request) -> Response | None:
        if self.sandbox._key_accepted(request.headers.get("x-api-key")):
            return None
        return _error(401, "Unauthorized")

    async def create_batch(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        sandbox = self.sandbox
        config = sandbox.config
        if not config.batch_access:
            return _error(
                402,
                "The Batch API is available on the Scale and Enterprise plans only; upgrade your plan.",
                error="Payment Required",
            )
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return _bad_request(
                ['input: send multipart/form-data with the JSONL file in a part named "input"']
            )
        largest = 4 * config.limits.max_bytes + 1_000_000
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > largest:
            return _error(
                413, f"upload is {int(length):,} bytes; requests over {largest:,} bytes are refused"
            )
        problems: list[str] = []
        try:
            async with request.form(max_files=8, max_fields=16) as form:
                parts = form.getlist("input")
                data = b""
                if not parts:
                    problems.append('input: a JSONL file part named "input" is required')
                elif len(parts) > 1:
                    problems.append(f'input: send one file part named "input" (got {len(parts)})')
                else:
                    part = parts[0]
                    data = await part.read() if isinstance(part, UploadFile) else part.encode()
                webhook_url = form.get("webhook_url")
                dry_run_text = form.get("dry_run")
        except HTTPException as exc:
            return _bad_request([f"multipart body: {exc.detail}"])
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening any more
        if isinstance(webhook_url, UploadFile) or isinstance(dry_run_text, UploadFile):
            problems.append("webhook_url and dry_run must be text parts, not files")
            webhook_url = dry_run_text = None
        webhook_url = webhook_url or None
        if webhook_url is not None and not is_http_url(webhook_url):
            problems.append(f"webhook_url must be an absolute http(s) URL (got {webhook_url!r})")
        dry_run = (dry_run_text or "false").strip().lower()
        if dry_run not in ("true", "false"):
            problems.append(f'dry_run must be "true" or "false" (got {dry_run_text!r})')
        if problems:
            return _bad_request(problems)
        try:
            lines = parse_upload(data, config.limits)
        except UploadRefused as exc:
            return _bad_request(exc.messages)
        if dry_run == "true":
            sandbox._note_dry_run()
            return _json(200, {"status": "VALIDATED"})
        api_base = str(request.base_url).rstrip("/")
        try:
            batch = sandbox._create_batch(data, lines, webhook_url=webhook_url, api_base=api_base)
        except ConcurrencyLimitReached:
            return _json(429, CONCURRENCY_LIMITED)
        return _json(201, batch.to_wire(sandbox.clock.monotonic()))

    async def list_batches(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        query = request.query_params
        statuses = [s for value in query.getlist("status") for s in value.split(",") if s]
        problems = [
            f"status must be one of {', '.join(BATCH_STATUSES)} (got {s!r})"
            for s in statuses
            if s not in BATCH_STATUSES
        ]
        bounds: dict[str, datetime | None] = {}
        for name in ("created_after", "created_before"):
            value = query.get(name)
            try:
                bounds[name] = _parse_time(name, value) if value else None
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            return _bad_request(problems)
        base = str(request.base_url).rstrip("/")
        found = self.sandbox._list_batches(statuses, bounds["created_after"], bounds["created_before"], base)
        return _json(200, found)

    async def get_batch(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        batch = self.sandbox._get_batch(request.path_params["id"])
        if batch is None:
            return _error(404, "Batch not found")
        return _json(200, batch.to_wire(self.sandbox.clock.monotonic(), str(request.base_url).rstrip("/")))

    async def result(self, request: Request) -> Response:
        sandbox = self.sandbox
        if sandbox.config.result_requires_key and (denied := self._denied(request)) is not None:
            return denied
        batch_id = request.path_params["id"]
        batch = sandbox._get_batch(batch_id)
        if batch is None:
            return _error(404, "Batch not found")
        now = sandbox.clock.monotonic()
        if batch.is_active(now):
            status = batch.status(now)
            return _error(
                404,
                f"Batch {batch_id} has no results yet (status {status}); wait until it is COMPLETED or FAILED",
            )
        url = request.url
        host = _other_host(url.hostname or "127.0.0.1")
        netloc = f"{host}:{url.port}" if url.port else host
        location = (
            f"{url.scheme}://{netloc}/_signed/results/{batch_id}.jsonl?{sandbox._signed_query(batch_id)}"
        )
        return Response(status_code=302, headers={"location": location})

    async def signed_result(self, request: Request) -> Response:
        sandbox = self.sandbox
        if "x-api-key" in request.headers:
            sandbox._record_leak(KeyLeak(request.method, request.url.path, request.url.hostname or ""))
            return _bad_request(
                ["x-api-key must not be sent to a signed result URL; fetch it without your key"]
            )
        name: str = request.path_params["name"]
        batch_id = name.removesuffix(".jsonl")
        query = request.query_params
        if not sandbox._signature_ok(batch_id, query.get("expires", ""), query.get("sig", "")):
            return _error(403, "Invalid or expired signature")
        batch = sandbox._get_batch(batch_id)
        output = sandbox.output(batch_id) if batch is not None else None
        if output is None:
            return _error(404, "Result not found")
        return Response(output, media_type="application/jsonl")

    async def create_generation(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        sandbox = self.sandbox
        config = sandbox.config
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
            return _error(
                400,
                "Idempotency-Key must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -",
                error_code="INVALID_IDEMPOTENCY_KEY",
            )
        try:
            payload = orjson.loads(await request.body())
        except ClientDisconnect:
            return Response(status_code=499)
        except orjson.JSONDecodeError as exc:
            return _bad_request([f"body: not valid JSON ({exc.msg} at column {exc.colno})"])
        problems = payload_problems_text(payload, config.limits)
        if problems:
            return _bad_request(problems)
        digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
        try:
            generation = sandbox._create_generation(
                payload,
                digest=digest,
                idempotency_key=key,
                result=payload_result(payload, config.rules),
                api_base=str(request.base_url).rstrip("/"),
            )
        except IdempotencyConflict:
            return _error(
                409,
                "This Idempotency-Key was already used with a different request body.",
                error_code="IDEMPOTENCY_KEY_REUSED",
            )
        return _json(201, generation_wire(sandbox, generation))

    async def get_generation(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        generation = self.sandbox._get_generation(request.path_params["id"])
        if generation is None:
            batch_generation = batch_generation_wire(self.sandbox, request.path_params["id"])
            if batch_generation is not None:
                return _json(200, batch_generation)
            return _error(404, "Generation not found")
        return _json(200, generation_wire(self.sandbox, generation))

    async def output_video(self, request: Request) -> Response:
        def leak(method: str, path: str, host: str) -> None:
            self.sandbox._record_leak(KeyLeak(method, path, host))

        return await output_video_response(self.sandbox, request, leak)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        reason = "Not Found" if exc.status_code == 404 else "Method Not Allowed"
        message = f"Cannot {request.method} {request.url.path}"
        return _error(exc.status_code, message, error=reason, headers=exc.headers)
    return _error(exc.status_code, str(exc.detail))


def build_app(sandbox: Sandbox) -> ASGIApp:
    """The sandbox as an ASGI app; its lifespan runs the webhook notifier."""
    api = _Api(sandbox)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
            task = asyncio.create_task(Notifier(sandbox, client).run(), name="batchkit-sandbox-webhooks")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = [
        Route("/v2/batch", api.create_batch, methods=["POST"]),
        Route("/v2/batch", api.list_batches, methods=["GET"]),
        Route("/v2/batch/{id}", api.get_batch, methods=["GET"]),
        Route("/v2/batches/{id}/result", api.result, methods=["GET"]),
        Route("/v2/generate", api.create_generation, methods=["POST"]),
        Route("/v2/generate/{id}", api.get_generation, methods=["GET"]),
        Route("/_signed/results/{name}", api.signed_result, methods=["GET"]),
        *estimate_routes(sandbox),
        Route(MEDIA_PREFIX + "/{name:path}", media_app(sandbox.media), methods=["GET", "HEAD"]),
        Route(OUTPUT_ROUTE, api.output_video, methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    return _Gate(sandbox, app)
