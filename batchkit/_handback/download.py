"""One output video over HTTP: stream it into a :class:`~batchkit._handback.stores.Writer`, verified.

:func:`download_once` is a single GET. It opens the writer only once the answer looks like a video, streams
the body in chunks (hashing them with sha256 on the way), and commits the file only when it is complete:

* the status is 2xx; ``401 403 404 410`` (or a ``400`` that says the signature expired) raise
  :class:`Expired`, which the caller answers by renewing the link; ``408 425 429 500 502 503 504`` and
  transport errors raise :class:`Transient` with the server's ``Retry-After``;
* the content type is ``video/*`` (and the body does not start like an HTML, XML or JSON page), or a generic
  binary type (``application/octet-stream``, ``binary/octet-stream``, ``application/mp4``, none) whose first
  bytes are an ISO media file (MP4/MOV: a ``ftyp``, ``moov``, ``mdat``, ``wide``, ``free`` or ``skip`` box)
  or EBML (WebM, Matroska); anything else is ``fetch-not-video``;
* the body has as many bytes as ``Content-Length`` said (a shorter one is ``fetch-truncated``, retried), and
  at least one (``fetch-empty``).

The request carries no API key (the client that sends it has none) and asks for ``identity`` encoding, so
the bytes written are the bytes counted. URLs appear in messages and logs without their query string.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Final

import httpx

from .stores import StoreError, Writer

__all__ = [
    "EXPIRED_STATUSES",
    "RETRYABLE_STATUSES",
    "Cancelled",
    "Downloaded",
    "Expired",
    "Failed",
    "Transient",
    "download_once",
    "looks_like_video",
    "retry_after",
    "without_query",
]

EXPIRED_STATUSES: Final = frozenset({401, 403, 404, 410})
RETRYABLE_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_GENERIC_TYPES: Final = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/mp4"})
_ISO_BOXES: Final = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_EBML: Final = b"\x1a\x45\xdf\xa3"
_SNIFF: Final = 16
_SNIPPET: Final = 512


class Failed(Exception):
    """The download of one item failed for good: a finding ``code`` and a one-line message."""

    def __init__(self, message: str, *, code: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


class Expired(Exception):
    """The media host refused the link as expired, missing or forbidden: renew it and try once more."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Transient(Exception):
    """A failure worth retrying: a 429/5xx, a timeout, a reset, a body cut short."""

    def __init__(self, message: str, *, retry_after: float | None = None, truncated: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.truncated = truncated


class Cancelled(Exception):
    """The fetch is stopping (Ctrl-C, or a full disk): the file was abandoned and cleaned up."""


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A file now complete at its destination."""

    size: int
    sha256: str


def without_query(url: str) -> str:
    """``url`` without its query and fragment (signed URLs carry secrets there)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (now if now is not None else time.time()))


def looks_like_video(head: bytes) -> bool:
    """True when ``head`` (the first bytes) starts an ISO media file (MP4, MOV) or an EBML one (WebM, MKV)."""
    if head.startswith(_EBML):
        return True
    return len(head) >= 8 and head[4:8] in _ISO_BOXES


def _looks_like_a_page(head: bytes) -> bool:
    return head.lstrip()[:1] in (b"<", b"{", b"[")


def _snippet(data: bytes) -> str:
    text = " ".join(data.decode("utf-8", "replace").split())
    return text[:80] + ("…" if len(text) > 80 else "")


def _read_some(response: httpx.Response) -> bytes:
    data = b""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= _SNIPPET:
                break
    except httpx.HTTPError:
        pass
    return data[:_SNIPPET]


def _status_problem(response: httpx.Response, shown: str) -> Exception:
    status = response.status_code
    body = _read_some(response)
    said = f" ({_snippet(body)!r})" if body.strip() else ""
    what = f"GET {shown} → {status} {response.reason_phrase}{said}"
    if status in EXPIRED_STATUSES or (status == 400 and b"expire" in body.lower()):
        return Expired(what)
    if status in RETRYABLE_STATUSES:
        return Transient(what, retry_after=retry_after(response.headers.get("retry-after")))
    return Failed(f"{what}; check the output URL in the results", code="fetch-failed")


@dataclass(slots=True)
class _Sink:
    """The body's way into the writer: counting, hashing, reporting progress, stopping when told."""

    writer: Writer
    stop: threading.Event
    progress: Callable[[int], None]
    digest: hashlib._Hash
    size: int = 0

    def write(self, chunk: bytes) -> None:
        if self.stop.is_set():
            raise Cancelled
        self.digest.update(chunk)
        self.writer.write(chunk)
        self.size += len(chunk)
        self.progress(len(chunk))


def download_once(
    http: httpx.Client,
    url: str,
    open_writer: Callable[[], Writer],
    *,
    chunk_size: int,
    stop: threading.Event,
    progress: Callable[[int], None],
    on_length: Callable[[int | None], None],
    on_request: Callable[[], None],
) -> Downloaded:
    """GET ``url`` once and store the body through a writer from ``open_writer`` (see the module docstring).

    ``progress(n)`` follows the bytes written (``progress(-n)`` takes back an abandoned attempt's);
    ``on_length`` gets the announced size; ``on_request`` runs as the request is sent.
    """
    shown = without_query(url)
    on_request()
    try:
        with http.stream(
            "GET", url, headers={"accept-encoding": "identity"}, follow_redirects=True
        ) as response:
            if not response.is_success:
                raise _status_problem(response, shown)
            return _store(response, shown, open_writer, chunk_size, stop, progress, on_length)
    except httpx.TimeoutException as exc:
        msg = f"GET {shown}: timed out ({type(exc).__name__})"
        raise Transient(msg) from None
    except httpx.TransportError as exc:
        msg = f"GET {shown}: {type(exc).__name__}: {exc}"
        raise Transient(msg) from None


def _store(
    response: httpx.Response,
    shown: str,
    open_writer: Callable[[], Writer],
    chunk_size: int,
    stop: threading.Event,
    progress: Callable[[int], None],
    on_length: Callable[[int | None], None],
) -> Downloaded:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    header = response.headers.get("content-length", "").strip()
    expected = int(header) if header.isdigit() else None
    encoded = response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    if not content_type.startswith("video/") and content_type not in _GENERIC_TYPES:
        body = _read_some(response)
        msg = (
            f"GET {shown} answered {content_type} ({_snippet(body)!r}), not a video: the link may lead to a "
            "login or error page; check the output URL in the results"
        )
        raise Failed(msg, code="fetch-not-video")
    on_length(expected)
    chunks = response.iter_bytes(chunk_size)
    head = b""
    pending: list[bytes] = []
    try:
        for chunk in chunks:  # gather the first bytes to see what the body is before writing anything
            pending.append(chunk)
            head += chunk[: _SNIFF - len(head)]
            if len(head) >= _SNIFF:
                break
    except httpx.TransportError as exc:
        got = sum(len(chunk) for chunk in pending)
        msg = f"GET {shown}: the body stopped after {got:,} bytes ({type(exc).__name__})"
        raise Transient(msg, truncated=True) from None
    if not head:
        msg = f"GET {shown} answered {response.status_code} with an empty body, not a video"
        raise Failed(msg, code="fetch-empty")
    page = _looks_like_a_page(head)
    if page or (not content_type.startswith("video/") and not looks_like_video(head)):
        msg = (
            f"GET {shown} answered {content_type or 'no content type'} with a body that is not a video "
            f"({_snippet(b''.join(pending)[:_SNIPPET])!r}); check the output URL in the results"
        )
        raise Failed(msg, code="fetch-not-video")
    try:
        writer = open_writer()
    except StoreError as exc:
        raise Failed(str(exc), code="fetch-destination", fatal=exc.fatal) from None
    sink = _Sink(writer, stop, progress, hashlib.sha256())
    try:
        for chunk in pending:
            sink.write(chunk)
        for chunk in chunks:
            sink.write(chunk)
        received = response.num_bytes_downloaded if encoded else sink.size
        if expected is not None and received != expected:
            msg = f"GET {shown}: the body stopped at {received:,} of {expected:,} bytes"
            raise Transient(msg, truncated=True)
        writer.commit(sink.size)
    except StoreError as exc:
        writer.abort()
        progress(-sink.size)
        raise Failed(str(exc), code="fetch-destination", fatal=exc.fatal) from None
    except httpx.TransportError as exc:
        writer.abort()
        progress(-sink.size)
        msg = f"GET {shown}: the body stopped after {sink.size:,} bytes ({type(exc).__name__})"
        raise Transient(msg, truncated=True) from None
    except BaseException:
        writer.abort()
        progress(-sink.size)
        raise
    return Downloaded(sink.size, sink.digest.hexdigest())
