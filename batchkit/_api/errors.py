"""Turning HTTP failures into batchkit's exception tree, with messages that say what to do.

One place maps a non-2xx response to its :class:`APIStatusError` subclass (with the status code, the server's
``errorCode`` in either casing, its message, the parsed body and ``Retry-After``), and a transport failure to
:class:`APIConnectionError` with ``sent`` telling whether the request may have reached the server.
Messages name the method and path (never a query string: signed URLs carry their signature there) and never
the API key: a server that echoes it back has it replaced by ``***``.
"""

from __future__ import annotations

from typing import Any, Final

import httpx
import orjson

from .._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConcurrencyLimitError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitError,
    ServerError,
)
from .backoff import parse_retry_after

__all__ = ["API_KEY_ENV", "NOT_SENT", "error_from_response", "redact", "transport_error"]

API_KEY_ENV: Final = "SYNC_API_KEY"

#: Failures that happen before a single byte of the request left: resending cannot duplicate anything.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    404: NotFoundError,
    429: RateLimitError,
}


def redact(url: httpx.URL) -> str:
    """A URL fit for messages and logs: no query (signed URLs carry their signature there), no credentials."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def _server_details(body: Any) -> tuple[str, str | None]:
    """The server's message (a string or a list of strings, joined) and its ``errorCode`` (either casing)."""
    if not isinstance(body, dict):
        text = " ".join(str(body or "").split())
        return (text[:300] + "…" if len(text) > 300 else text), None
    message: Any = body.get("message")
    error: Any = body.get("error")
    code: Any = body.get("errorCode", body.get("error_code"))
    if isinstance(error, dict):
        code = code if code is not None else error.get("code")
        message = message or error.get("message")
    elif not message and isinstance(error, str):
        message = error
    if isinstance(message, list):
        message = "; ".join(str(part) for part in message)
    return (str(message) if message else ""), (str(code) if code is not None and code != "" else None)


def _hint(status: int, method: str, path: str, cls: type[APIStatusError], response: httpx.Response) -> str:
    batch_create = method == "POST" and path == "/v2/batch"
    if cls is ConcurrencyLimitError:
        return "Too many batches are running: wait for one to finish, then submit again"
    if status == 429:
        return "Rate limited: wait a little and retry"
    if status == 401:
        return f"Check the API key (api_key=... or {API_KEY_ENV}): it is missing, wrong or revoked"
    if status == 402:
        if batch_create:
            return "Insufficient credits or plan limits: the Batch API needs a Scale or Enterprise plan"
        return "Insufficient credits or plan limits"
    if status == 403:
        return "The API key is not allowed to do this"
    if status == 404:
        return "Check the id and the base URL"
    if status == 400 and batch_create:
        return (
            "Sync refused the file: fix the lines it names (`batchkit validate` finds most problems locally)"
        )
    if status >= 500 and method == "POST":
        return "The server failed; it may or may not have acted on the request, so check before resending"
    if status >= 500:
        return "The server failed; retry later"
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        target = redact(response.url.join(location)) if location else "nowhere"
        return f"Unexpected redirect to {target}: use the final address as the base URL"
    return ""


def _scrub(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` in its strings replaced by ``***``."""
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {_scrub(k, secret): _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret) for v in value]
    return value


def error_from_response(
    response: httpx.Response, *, method: str, path: str, secret: str | None = None
) -> APIStatusError:
    """Map a non-2xx response to the exception tree (the body must have been read).

    ``path`` is what the message names (never a query string). ``secret`` is scrubbed from the server's
    message and body text, should a server ever echo it back.
    """
    status = response.status_code
    text = response.text
    body: Any
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = text
    server_message, error_code = _server_details(body)
    if secret:
        server_message = server_message.replace(secret, "***")
        body = _scrub(body, secret)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIStatusError)
    if status == 429 and (
        error_code == "concurrency_limit_reached"
        or (error_code is None and "concurrency" in server_message.lower())
    ):
        cls = ConcurrencyLimitError
    message = f"{method} {path} → {status} {response.reason_phrase}".rstrip()
    if server_message:
        message += f": {server_message.rstrip('.')}"
    if error_code:
        message += f" (errorCode={error_code})"
    hint = _hint(status, method, path, cls, response)
    if hint:
        message += f". {hint}"
    return cls(
        message,
        status_code=status,
        error_code=error_code,
        server_message=server_message,
        body=body,
        retry_after=parse_retry_after(response.headers),
        method=method,
        url=redact(response.url),
    )


def transport_error(exc: httpx.TransportError, method: str, shown: str) -> APIConnectionError:
    sent = not isinstance(exc, NOT_SENT)
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not sent:
        message = f"{method} {shown}: nothing was sent ({detail}). Check the base URL and the network"
    elif method == "POST":
        message = (
            f"{method} {shown}: the connection failed after the request was sent ({detail}); "
            "the server may have acted on it, so check before resending"
        )
    else:
        message = f"{method} {shown}: the connection failed after the request was sent ({detail})"
    return cls(message, method=method, url=shown, sent=sent)
