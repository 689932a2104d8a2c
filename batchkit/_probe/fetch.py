"""One request to a media host: redirects followed by hand, bounded retries, deadline-aware timeouts, no key.

:func:`open_response` sends one HEAD or GET and returns the final, still-open streamed response (the caller
reads and closes it), or raises :class:`FetchError` with a reason fit for a finding. Redirects are followed
here rather than by httpx so that a loop is named as a loop (``A → B → A``) and every hop is checked (http or
https only, no credentials). Retries are a small explicit loop, like :mod:`batchkit._api.backoff`'s and for the same
reason: every wait, ``Retry-After`` included, must stay inside the URL's time budget and go through the
config's injectable ``sleep``; a library (stamina, tenacity) would add a dependency to do less.

Media hosts never see the API key: a client whose headers carry ``x-api-key`` is refused before anything is
sent (:class:`~batchkit.ConfigurationError`).
"""

from __future__ import annotations

import email.utils
import logging
import random
import urllib.parse
from datetime import UTC, datetime
from typing import Final

import httpx

from .._errors import ConfigurationError
from .config import Deadline, ProbeConfig, TimeBudgetExceeded

__all__ = ["FetchError", "check_url", "open_response", "redact", "release"]

log = logging.getLogger("batchkit")

_DRAIN_LIMIT: Final = 64 << 10
RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS: Final = frozenset({301, 302, 303, 307, 308})


class FetchError(Exception):
    """A media URL could not be fetched (internal: the probe reports it as ``media-unreachable``)."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


def redact(url: str | httpx.URL) -> str:
    """The URL for logs and messages: no credentials, no query string (signatures live there)."""
    try:
        parts = urllib.parse.urlsplit(str(url))
        host = parts.hostname or ""
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"


def check_url(url: str | httpx.URL) -> httpx.URL:
    """The URL parsed, or :class:`FetchError` when it cannot be probed (not http(s), no host, credentials)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        msg = f"not a URL that can be fetched ({exc})"
        raise FetchError(msg) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        msg = f"not an absolute http(s) URL (scheme {parsed.scheme or 'missing'!r})"
        raise FetchError(msg)
    if parsed.userinfo:
        msg = (
            f"refused to fetch {redact(parsed)}: the URL carries credentials (user:password@). Anyone who "
            "reads the batch file can use them; give Sync a signed URL or a public link instead"
        )
        raise FetchError(msg)
    return parsed


def release(response: httpx.Response) -> None:
    """Close ``response``, first reading the rest of a small body so its connection goes back to the pool.

    A body is read on only when nothing of it was read yet and its Content-Length says it is small, or when
    it is a HEAD's (none); any other is closed as it is, which drops the connection rather than reading an
    unknown amount or waiting on a server that stalled.
    """
    if not response.is_closed and not response.is_stream_consumed:
        length = response.headers.get("content-length", "")
        if response.request.method == "HEAD" or (length.isdigit() and int(length) <= _DRAIN_LIMIT):
            try:
                for _ in response.iter_raw():
                    pass
            except httpx.HTTPError:
                pass
    response.close()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _timeout(config: ProbeConfig, left: float) -> httpx.Timeout:
    return httpx.Timeout(
        connect=min(config.connect_timeout, left),
        read=min(config.read_timeout, left),
        write=min(config.read_timeout, left),
        pool=min(config.connect_timeout, left),
    )


def _describe(exc: httpx.TransportError, url: httpx.URL, config: ProbeConfig) -> str:
    where = redact(url)
    if isinstance(exc, httpx.ConnectTimeout):
        return f"{where}: no connection within {config.connect_timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"{where}: no answer within {config.read_timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"{where}: cannot connect ({exc or 'connection refused'})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{where}: the server broke off the answer ({exc})"
    return f"{where}: {type(exc).__name__} ({exc})"


def _send_one(
    client: httpx.Client,
    method: str,
    url: httpx.URL,
    headers: dict[str, str],
    config: ProbeConfig,
    deadline: Deadline,
) -> httpx.Response:
    """One hop with retries: a response of any status, or :class:`FetchError`."""
    attempt = 0
    while True:
        left = deadline.check(f"{method} {redact(url)}")
        request = client.build_request(method, url, headers=headers, timeout=_timeout(config, left))
        if "x-api-key" in request.headers:
            msg = "refusing to send an API key to a media host: probe with an httpx.Client without x-api-key"
            raise ConfigurationError(msg)
        problem: str
        wait: float | None = None
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException) and deadline.remaining() <= 0:
                msg = f"{method} {redact(url)}: no answer within the probe's time budget of {deadline.budget:g} s"
                raise TimeBudgetExceeded(msg) from None
            if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
                raise FetchError(_describe(exc, url, config)) from None
            problem = _describe(exc, url, config)
        else:
            if response.status_code not in RETRYABLE_STATUS:
                return response
            wait = _retry_after(response)
            problem = f"{redact(url)}: HTTP {response.status_code} {response.reason_phrase}".rstrip()
            if attempt >= config.retries:
                return response
            release(response)
        if attempt >= config.retries:
            raise FetchError(problem)
        attempt += 1
        delay = config.backoff * 2 ** (attempt - 1) * (1 - 0.25 * random.random())
        delay = min(wait, config.max_retry_after) if wait is not None else min(delay, config.backoff_max)
        if delay >= deadline.remaining():
            msg = f"{problem}; a retry in {delay:g} s would pass the time budget"
            raise FetchError(msg)
        log.debug("probe: %s; retry %d of %d in %.2f s", problem, attempt, config.retries, delay)
        config.sleep(delay)


def open_response(
    client: httpx.Client,
    method: str,
    url: str | httpx.URL,
    *,
    config: ProbeConfig,
    deadline: Deadline,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send ``method`` to ``url``, following up to ``config.max_redirects`` redirects; a streamed response.

    The response may have any final status (4xx and 5xx after retries included); the caller closes it.
    Raises :class:`FetchError` (loop, too many redirects, a hop that is not http(s) or carries credentials,
    no answer after retries) or :class:`TimeBudgetExceeded`.
    """
    current = check_url(url)
    all_headers = {"user-agent": config.user_agent, "accept-encoding": "identity", **(headers or {})}
    seen = [str(current)]
    while True:
        response = _send_one(client, method, current, all_headers, config, deadline)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUS or not location:
            return response
        release(response)
        try:
            target = check_url(current.join(location))
        except FetchError as exc:
            msg = f"{redact(current)} redirects to a URL that cannot be fetched: {exc}"
            raise FetchError(msg) from None
        if str(target) in seen:
            chain = " → ".join(redact(u) for u in [*seen[seen.index(str(target)) :], str(target)])
            msg = f"redirect loop: {chain}"
            raise FetchError(msg)
        if len(seen) > config.max_redirects:
            msg = (
                f"more than {config.max_redirects} redirects from {redact(seen[0])} (last: {redact(target)})"
            )
            raise FetchError(msg)
        log.debug("probe: %s → %d, following to %s", redact(current), response.status_code, redact(target))
        seen.append(str(target))
        current = target
