"""The sandbox's media host: clips, pages and misbehaving servers under ``/_media/``, for probes and demos.

Every sandbox serves it: with ``serve() as url``, ``f"{url}/_media/clip.mp4?duration=31"`` is a 31-second
MP4, and ``sandbox.media.url("clip.mp4", duration=31)`` builds the same URL. ``sandbox.media`` also tells
tests what the host saw: requests by path, the most requests in flight at once per ``Host``, and every
request that carried ``x-api-key`` (which must never reach a media host).

**What is served** is chosen by the name's extension, or by ``as=``:

==============  ==============================================================================
``.mp4 .m4v``   an MP4 (video and audio)           ``.mov``  a QuickTime movie
``.m4a``        MP4 audio (AAC)                    ``.3gp``  a 3GPP clip (a container Sync does not list)
``.wav``        PCM silence                        ``.mp3``  MPEG-1 Layer III silence
``.html``       a cloud drive's "share" page       ``.json`` an API error body, ``.txt`` plain text
``as=empty``    zero bytes                         ``/_media/blob/{token}``  bytes stored with ``put()``
==============  ==============================================================================

**Parameters** (query string; sizes take a ``k``, ``M`` or ``G`` suffix, powers of 1000):

* shape: ``duration`` (seconds, default 10), ``tracks`` (``av``, ``v``, ``a``), ``moov`` (``start`` or
  ``end``: the index before or after the samples), ``size`` (total bytes: a 5 GB file is ``size=5G``, served
  lazily), ``fps``, ``width``, ``height``, ``rate`` (sample rate), ``channels``, ``brand`` (the ``ftyp``
  major brand);
* content: ``as`` (``mp4 mov m4a 3gp wav mp3 html json text empty``: e.g. an HTML page named ``.mp4``),
  ``ctype`` (the Content-Type to claim, e.g. ``text/plain`` for an MP4), ``truncate`` (the file is cut to
  that many bytes), ``version`` (changes the bytes' identity: a new ETag and Last-Modified). Signature
  parameters (``X-Amz-*``, ``X-Goog-*``, ``Expires``, ``Signature``, ``sig``, ``se``...) are accepted and
  ignored: a re-signed URL serves the same object with the same ETag, as a bucket would;
* HTTP: ``status`` (answer every request with it), ``head`` (answer HEAD with it: 403 like a presigned S3
  GET URL, 405), ``norange=1`` (ignore Range: 200 and the whole body), ``length`` (the Content-Length a HEAD
  claims: a lying header), ``chunked=1`` (no Content-Length at all), ``etag=0`` / ``lastmod=0`` (no
  validators), ``redirect`` (``N`` hops of 302 first, or ``loop``);
* timing: ``flaky=N`` (the first N requests of this exact URL answer 503 with ``Retry-After``, whose value
  ``retry_after`` sets, default 1), ``delay`` (seconds before each answer), ``hang=1`` (never answer; the
  request is held until the client goes away, at most two minutes), ``stall=N`` (send the headers and N bytes
  of the body, then nothing more).

Ranges: ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` answer 206 with ``Content-Range``; a start past the end
answers 416 with ``Content-Range: bytes */size``. HEAD answers the headers a GET would, without a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import re
import secrets
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._media_files import (
    ClipSpec,
    VirtualFile,
    html_page,
    json_page,
    mp3_file,
    mp4_file,
    text_page,
    wav_file,
)

__all__ = ["MEDIA_PREFIX", "MediaHost", "MediaRequest", "media_app", "media_file", "media_url"]

MEDIA_PREFIX: Final = "/_media"
HANG_SECONDS: Final = 120.0
_CHUNK: Final = 1 << 16
_EPOCH: Final = 1_767_225_600  # 2026-01-01T00:00:00Z: Last-Modified of version 0
_RANGE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*(?:,.*)?$")
_SIZE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgG]?)$")

_BY_EXTENSION: Final = {
    "mp4": "mp4",
    "m4v": "mp4",
    "mov": "mov",
    "qt": "mov",
    "m4a": "m4a",
    "3gp": "3gp",
    "wav": "wav",
    "mp3": "mp3",
    "html": "html",
    "htm": "html",
    "json": "json",
    "txt": "text",
}
_BRANDS: Final = {"mp4": b"isom", "mov": b"qt  ", "m4a": b"M4A ", "3gp": b"3gp4"}


class MediaParamError(ValueError):
    """A media URL's parameter cannot be used (answered 400)."""


def media_url(base: str, name: str = "clip.mp4", **params: object) -> str:
    """``{base}/_media/{name}?{params}``: ``media_url(url, "a.wav", duration=12)``.

    ``True`` is sent as ``1``; ``None`` values are left out.
    """
    query = urllib.parse.urlencode(
        {k: ("1" if v is True else "0" if v is False else v) for k, v in params.items() if v is not None}
    )
    path = f"{base.rstrip('/')}{MEDIA_PREFIX}/{urllib.parse.quote(name)}"
    return f"{path}?{query}" if query else path


def _size(name: str, text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        msg = f"{name}={text!r} is not a size in bytes (e.g. 1200, 18M, 5G)"
        raise MediaParamError(msg)
    number, unit = match.groups()
    return int(float(number) * {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[unit.lower()])


def _number(params: Mapping[str, str], name: str, default: float) -> float:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        msg = f"{name}={text!r} is not a number"
        raise MediaParamError(msg) from None


def media_file(name: str, params: Mapping[str, str], blobs: Mapping[str, tuple[bytes, str]]) -> VirtualFile:
    """The file a media path and its parameters describe (before ``truncate``)."""
    if name.startswith("blob/"):
        blob = blobs.get(name.removeprefix("blob/"))
        if blob is None:
            msg = f"no blob {name!r}: store bytes with sandbox.media.put(data) first"
            raise KeyError(msg)
        return VirtualFile((blob[0],), blob[1])
    kind = params.get("as") or _BY_EXTENSION.get(name.rsplit(".", 1)[-1].lower() if "." in name else "", "")
    duration = _number(params, "duration", 10.0)
    size = _size("size", params["size"]) if params.get("size") else None
    if kind in _BRANDS:
        tracks = params.get("tracks") or ("a" if kind == "m4a" else "av")
        if tracks not in ("av", "v", "a"):
            msg = f"tracks={tracks!r} must be av, v or a"
            raise MediaParamError(msg)
        moov = params.get("moov", "start")
        if moov not in ("start", "end"):
            msg = f"moov={moov!r} must be start or end"
            raise MediaParamError(msg)
        brand = (
            params.get("brand", "").encode("latin-1")[:4].ljust(4) if params.get("brand") else _BRANDS[kind]
        )
        try:
            spec = ClipSpec(
                duration=duration,
                tracks=tracks,  # type: ignore[arg-type]
                moov=moov,  # type: ignore[arg-type]
                size=size,
                fps=_number(params, "fps", 30.0),
                width=int(_number(params, "width", 640)),
                height=int(_number(params, "height", 360)),
                sample_rate=int(_number(params, "rate", 48000)),
                channels=int(_number(params, "channels", 2)),
                brand=brand,
            )
        except ValueError as exc:
            raise MediaParamError(str(exc)) from None
        return mp4_file(spec)
    if kind == "wav":
        return wav_file(
            duration,
            sample_rate=int(_number(params, "rate", 44100)),
            channels=int(_number(params, "channels", 1)),
            size=size,
        )
    if kind == "mp3":
        return mp3_file(duration)
    pages: dict[str, Callable[[], VirtualFile]] = {
        "html": lambda: html_page(name.rsplit("/", 1)[-1]),
        "json": json_page,
        "text": text_page,
        "empty": lambda: VirtualFile((), "application/octet-stream"),
    }
    if kind in pages:
        return pages[kind]()
    msg = (
        f"cannot tell what to serve for {name!r}: name it .mp4/.mov/.m4a/.3gp/.wav/.mp3/.html or pass as=..."
    )
    raise MediaParamError(msg)


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """One request the media host received."""

    method: str
    path: str
    query: str
    host: str
    range: str | None
    api_key_sent: bool


class MediaHost:
    """State of one sandbox's media host: blobs to serve, what it received, flaky-URL counters.

    Thread-safe: the server runs in its own thread while tests read from theirs.
    """

    def __init__(self, base_url: Callable[[], str | None] = lambda: None) -> None:
        self._base_url = base_url
        self._lock = threading.Lock()
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._log: list[MediaRequest] = []
        self._flaky: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._bytes_sent = 0
        self._overrides: dict[str, dict[str, str]] = {}

    def url(self, name: str = "clip.mp4", *, host: str | None = None, **params: object) -> str:
        """A media URL on the running sandbox: ``sandbox.media.url("a.wav", duration=12)``.

        ``host`` replaces the host name (``localhost`` instead of ``127.0.0.1``: another host for the same
        server, as far as per-host limits go).
        """
        base = self._base_url()
        if base is None:
            msg = "the sandbox is not being served: call this inside `with serve(sandbox):`"
            raise RuntimeError(msg)
        if host is not None:
            parts = urllib.parse.urlsplit(base)
            port = f":{parts.port}" if parts.port else ""
            base = f"{parts.scheme}://{host}{port}"
        return media_url(base, name, **params)

    def put(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store bytes to serve; returns the name to pass to :meth:`url` (``blob/<token>``)."""
        token = secrets.token_hex(8)
        with self._lock:
            self._blobs[token] = (bytes(data), content_type)
        return f"blob/{token}"

    def replace(self, name: str, **params: object) -> None:
        """Serve other bytes at the same URL from now on, as a re-uploaded file would be.

        ``params`` override the query's (``replace("clip.mp4", duration=40)``), and the file's ETag and
        Last-Modified change even when ``params`` is empty.
        """
        path = f"{MEDIA_PREFIX}/{urllib.parse.quote(name)}"
        with self._lock:
            current = self._overrides.get(path, {})
            version = int(current.get("version", "0")) + 1
            self._overrides[path] = {
                **current,
                **{k: str(v) for k, v in params.items()},
                "version": str(version),
            }

    @property
    def requests(self) -> list[MediaRequest]:
        """Every request received, in arrival order."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests received, optionally only of one method and/or path (``/_media/clip.mp4``)."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        )

    @property
    def key_leaks(self) -> list[MediaRequest]:
        """Requests that carried ``x-api-key`` to the media host."""
        return [r for r in self.requests if r.api_key_sent]

    def max_in_flight(self, host: str | None = None) -> int:
        """The most requests in flight at once, for one ``Host`` header value (``127.0.0.1:8000``) or any."""
        with self._lock:
            if host is not None:
                return self._max_in_flight[host]
            return max(self._max_in_flight.values(), default=0)

    @property
    def bytes_sent(self) -> int:
        """Body bytes sent, all requests together."""
        with self._lock:
            return self._bytes_sent

    def reset(self) -> None:
        """Forget received requests, flaky counters and in-flight maxima (blobs stay)."""
        with self._lock:
            self._log.clear()
            self._flaky.clear()
            self._max_in_flight.clear()
            self._bytes_sent = 0

    # -- used by the app ------------------------------------------------------------------------------

    def _enter(self, request: MediaRequest) -> None:
        with self._lock:
            self._log.append(request)
            self._in_flight[request.host] += 1
            self._max_in_flight[request.host] = max(
                self._max_in_flight[request.host], self._in_flight[request.host]
            )

    def _leave(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] -= 1

    def _params(self, path: str, query: str) -> dict[str, str]:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        with self._lock:
            override = self._overrides.get(path)
        if override:
            version = int(params.get("version", "0") or 0) + int(override["version"]) * 1000
            params = {**params, **override, "version": str(version)}
        return params

    def _flaky_turn(self, key: str) -> int:
        with self._lock:
            self._flaky[key] += 1
            return self._flaky[key]

    def _sent(self, n: int) -> None:
        with self._lock:
            self._bytes_sent += n

    def _file(self, name: str, params: Mapping[str, str]) -> VirtualFile:
        with self._lock:
            blobs = dict(self._blobs)
        return media_file(name, params, blobs)


# --------------------------------------------------------------------------------------------- ASGI


Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, stop)`` for a satisfiable single range, ``None`` for none, ``"unsatisfiable"`` else."""
    if header is None:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        stop = min(size, int(last) + 1) if last else size
        if start >= size or stop <= start:
            return "unsatisfiable"
        return start, stop
    if last:
        n = int(last)
        return (max(0, size - n), size) if n and size else "unsatisfiable"
    return None


_BEHAVIOUR: Final = frozenset({"flaky", "retry_after", "delay", "hang", "stall", "head"})
_SIGNING: Final = frozenset(
    {
        "expires",
        "signature",
        "sig",
        "se",
        "sp",
        "sv",
        "st",
        "sr",
        "policy",
        "key-pair-id",
        "googleaccessid",
        "awsaccesskeyid",
    }
)


def _signing(name: str) -> bool:
    """Signature parameters name no content: a re-signed URL serves the same object, as on a real bucket."""
    lowered = name.lower()
    return lowered in _SIGNING or lowered.startswith(("x-amz-", "x-goog-"))


def _identity(name: str, params: Mapping[str, str]) -> tuple[str, str]:
    """ETag and Last-Modified: they change with the parameters that shape the bytes and with ``version``."""
    shaping = sorted((k, v) for k, v in params.items() if k not in _BEHAVIOUR and not _signing(k))
    digest = hashlib.sha256(repr((name, shaping)).encode()).hexdigest()[:20]
    version = int(_number(params, "version", 0))
    return f'"{digest}"', email.utils.formatdate(_EPOCH + 86400 * version, usegmt=True)


async def _start(send: Send, status: int, headers: Mapping[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})


async def _plain(send: Send, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
    body = text.encode()
    await _start(
        send,
        status,
        {"content-type": "text/plain; charset=utf-8", "content-length": str(len(body)), **(headers or {})},
    )
    await send({"type": "http.response.body", "body": body})


class _Disconnect:
    """Watches ``receive`` for the client going away."""

    def __init__(self, receive: Receive) -> None:
        self.event = asyncio.Event()
        self._task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.event.set()
                return

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)

    def close(self) -> None:
        self._task.cancel()


class _MediaApp:
    """The ASGI app that serves ``/_media/{name}`` (a class, so that starlette mounts it as an ASGI app)."""

    def __init__(self, host: MediaHost) -> None:
        self._host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = self._host
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = MediaRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            host=headers.get("host", ""),
            range=headers.get("range"),
            api_key_sent="x-api-key" in headers,
        )
        host._enter(request)
        watch = _Disconnect(receive)
        try:
            await _serve(host, request, headers, send, watch)
        finally:
            watch.close()
            host._leave(request.host)


def media_app(host: MediaHost) -> Callable[[Scope, Receive, Send], Any]:
    """The ASGI app that serves ``/_media/{name}`` from ``host`` (mounted by the sandbox's app)."""
    return _MediaApp(host)


async def _serve(
    host: MediaHost, request: MediaRequest, headers: Mapping[str, str], send: Send, watch: _Disconnect
) -> None:
    params = host._params(request.path, request.query)
    name = urllib.parse.unquote(request.path.removeprefix(MEDIA_PREFIX + "/"))
    delay = _number(params, "delay", 0.0)
    if delay > 0:
        await watch.wait(delay)
    if params.get("hang") not in (None, "", "0"):
        await watch.wait(HANG_SECONDS)
        return
    if params.get("flaky"):
        turn = host._flaky_turn(f"{request.path}?{request.query}")
        if turn <= int(_number(params, "flaky", 0)):
            retry_after = params.get("retry_after", "1")
            await _plain(send, 503, "Service Unavailable (sandbox flaky=N)", {"retry-after": retry_after})
            return
    if params.get("status"):
        status = int(_number(params, "status", 500))
        await _plain(send, status, f"{status} (sandbox status={status})")
        return
    if params.get("redirect"):
        await _redirect(send, request, dict(urllib.parse.parse_qsl(request.query, keep_blank_values=True)))
        return
    if request.method == "HEAD" and params.get("head"):
        status = int(_number(params, "head", 405))
        await _plain(send, status, f"{status} (sandbox head={status})")
        return
    try:
        file = host._file(name, params)
        if params.get("truncate"):
            file = file.truncated(_size("truncate", params["truncate"]))
    except (MediaParamError, KeyError) as exc:
        await _plain(send, 400 if isinstance(exc, MediaParamError) else 404, str(exc).strip("'\""))
        return
    await _send_file(host, request, headers, params, file, send, watch)


async def _redirect(send: Send, request: MediaRequest, params: dict[str, str]) -> None:
    hops = params["redirect"]
    if hops in ("loop", "loop2"):
        params["redirect"] = "loop2" if hops == "loop" else "loop"
    else:
        left = int(_number(params, "redirect", 0)) - 1
        if left > 0:
            params["redirect"] = str(left)
        else:
            params.pop("redirect")
    location = request.path + ("?" + urllib.parse.urlencode(params) if params else "")
    await _plain(send, 302, "Found", {"location": location})


async def _send_file(
    host: MediaHost,
    request: MediaRequest,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    file: VirtualFile,
    send: Send,
    watch: _Disconnect,
) -> None:
    etag, last_modified = _identity(request.path, params)
    out: dict[str, str] = {"content-type": params.get("ctype") or file.content_type}
    if params.get("etag") != "0":
        out["etag"] = etag
    if params.get("lastmod") != "0":
        out["last-modified"] = last_modified
    norange = params.get("norange") not in (None, "", "0")
    chunked = params.get("chunked") not in (None, "", "0")
    if not norange:
        out["accept-ranges"] = "bytes"
    span = None if norange else _parse_range(headers.get("range"), file.size)
    if span == "unsatisfiable":
        await _plain(send, 416, "Range Not Satisfiable", {**out, "content-range": f"bytes */{file.size}"})
        return
    start, stop = span if isinstance(span, tuple) else (0, file.size)
    status = 206 if isinstance(span, tuple) else 200
    if status == 206:
        out["content-range"] = f"bytes {start}-{stop - 1}/{file.size}"
    if request.method == "HEAD":
        if params.get("length"):
            out["content-length"] = str(_size("length", params["length"]))
        elif not chunked:
            out["content-length"] = str(stop - start)
        await _start(send, status, out)
        await send({"type": "http.response.body", "body": b""})
        return
    if not chunked or status == 206:
        out["content-length"] = str(stop - start)
    await _start(send, status, out)
    stall = _size("stall", params["stall"]) if params.get("stall") else None
    sent = 0
    for piece in file.iter(start, stop, _CHUNK):
        await asyncio.sleep(0)  # uvicorn's send never waits once the client is gone: let the loop notice
        if watch.event.is_set():
            return
        if stall is not None and sent + len(piece) > stall:
            piece = piece[: stall - sent]
            if piece:
                host._sent(len(piece))
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await watch.wait(HANG_SECONDS)
            return
        host._sent(len(piece))  # counted first: a client that has the bytes must see them counted
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        sent += len(piece)
    await send({"type": "http.response.body", "body": b""})
