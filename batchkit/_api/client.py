"""The HTTP client for Sync's Batch API: ``Client`` with ``batches`` and ``generations`` resources.

Typed results are the lenient models of :mod:`batchkit._wire.responses`; every failure is one of the exception
tree of :mod:`batchkit._errors` (status code, the server's ``errorCode`` and message, what to do). Retries
follow :mod:`batchkit._api.backoff`: idempotent calls retry, a batch create retries only what certainly did not
reach the server (and always resends the same form fields: ``dry_run`` and ``webhook_url`` included).

The API key is sent only as ``x-api-key`` and only to the base URL's origin. It never appears in logs,
exception messages or ``repr(client)``; signed download URLs are logged without their query string.
"""

from __future__ import annotations

import builtins
import ipaddress
import logging
import os
import re
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ValidationError

from .._errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    InputError,
    ResultsError,
    WaitTimeoutError,
)
from .._files import sync_dir
from .._version import __version__
from .._wire.checks import is_http_url
from .._wire.models import GeneratePayload
from .._wire.responses import Batch, DryRunResult, Generation
from .backoff import (
    DEFAULT_POLL,
    DEFAULT_RETRY,
    PollPolicy,
    RetryPolicy,
    RetryRule,
    call_with_retries,
)
from .errors import API_KEY_ENV, error_from_response, redact, transport_error

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "Batches",
    "Client",
    "Generations",
    "error_from_response",
    "given_or_default",
]

log = logging.getLogger("batchkit")

DEFAULT_BASE_URL: Final = "https://api.sync.so"
BASE_URL_ENV: Final = "SYNC_BASE_URL"

#: What ``batches.create`` uploads: a path, the bytes themselves, or a file opened in binary mode.
FileInput = str | os.PathLike[str] | bytes | IO[bytes]

M = TypeVar("M", bound=BaseModel)

_USER_AGENT = f"batchkit/{__version__}"
#: The batchkit sandbox names its emulated account in this header of every answer.
SANDBOX_HEADER: Final = "x-batchkit-sandbox"
_MAX_REDIRECTS = 10
_CHUNK = 1 << 16
_IDEMPOTENCY_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")


# --------------------------------------------------------------------------------------------- helpers


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_CREDENTIALS = re.compile(r"(?<=//)[^/?#@]*@")


def _shown(text: str, secret: str | None) -> str:
    """A base URL for messages: credentials, query, fragment and the API key itself replaced, so no secret is
    ever echoed (a key given as the base URL by mistake included)."""
    if secret:
        text = text.replace(secret, "***")
    text = _CREDENTIALS.sub("***@", text)
    for mark in ("?", "#"):
        head, sep, _ = text.partition(mark)
        text = head + (sep + "***" if sep else "")
    return repr(text if len(text) <= 120 else text[:119] + "…")


def _base_url(raw: str, *, secret: str | None = None) -> httpx.URL:
    """Parse and check a base URL: https, or http only for a loopback host; no credentials, query or fragment.

    Messages never repeat what could be a secret (the user part, the query).
    """
    text = raw.strip()
    shown = _shown(text, secret)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        msg = f"base URL {shown} is not a URL; use e.g. {DEFAULT_BASE_URL}"
        raise ConfigurationError(msg) from None
    if url.scheme not in ("http", "https") or not url.host:
        msg = f"base URL {shown} must look like https://host[:port]; use e.g. {DEFAULT_BASE_URL}"
        raise ConfigurationError(msg)
    if url.userinfo or url.query or url.fragment:
        msg = (
            f"base URL {shown} must not carry credentials, a query or a fragment: give only https://host[:port] "
            f"(the API key goes in {API_KEY_ENV} or --api-key)"
        )
        raise ConfigurationError(msg)
    if url.scheme == "http" and not _is_loopback(url.host):
        msg = (
            f"refusing the plain http:// base URL {shown}: the API key would travel unencrypted. "
            "Use https://, or http:// only for a loopback host (localhost, 127.0.0.1, ::1) such as the sandbox"
        )
        raise ConfigurationError(msg)
    return url.copy_with(path=url.path.rstrip("/") or "")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host.lower(), url.port or default)


def _iso(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``. A naive datetime is taken as UTC (not local time, unlike the SDK)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _segment(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"{kind} id must be a non-empty string, not {value!r}"
        raise InputError(msg)
    return urllib.parse.quote(value, safe="")


def _parse(response: httpx.Response, model: type[M], what: str) -> M:
    return _validate(model, _json(response, what), response, what)


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        snippet = " ".join(response.text.split())[:120]
        msg = f"{what} → {response.status_code}, but the body is not JSON ({snippet!r}): is the base URL Sync's API?"
        raise APIError(msg, method=what.split()[0], url=redact(response.url)) from None


def _validate(model: type[M], data: Any, response: httpx.Response, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        msg = (
            f"{what} → {response.status_code}, but the body is not a {model.__name__} "
            f"({where}: {first['msg']}); is the base URL Sync's API?"
        )
        raise APIError(msg, method=what.split()[0], url=redact(response.url)) from None


def require_api_key(client: Client) -> None:
    """Fail before anything is recorded or sent when ``client`` has no key (``ConfigurationError``)."""
    client._require_key()


def _read_upload(file: FileInput) -> tuple[str, bytes]:
    """The part's filename and the exact bytes to send on every attempt."""
    if isinstance(file, bytes | bytearray | memoryview):
        return "input.jsonl", bytes(file)
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        try:
            return path.name, path.read_bytes()
        except OSError as exc:
            msg = f"{path}: cannot read the batch file ({exc.strerror or exc})"
            raise InputError(msg, path=path) from None
    if hasattr(file, "read"):
        content = file.read()
        if not isinstance(content, bytes | bytearray):
            msg = "the batch file must be opened in binary mode: open(path, 'rb')"
            raise InputError(msg)
        name = getattr(file, "name", None)
        return (os.path.basename(name) if isinstance(name, str) and name else "input.jsonl"), bytes(content)
    msg = f"cannot upload a {type(file).__name__}: pass a path, bytes or a file opened with open(path, 'rb')"
    raise InputError(msg)


# --------------------------------------------------------------------------------------------- client


@contextmanager
def given_or_default(client: Client | None) -> Iterator[Client]:
    """The caller's client, left open; or one from the environment, closed when the block ends."""
    if client is not None:
        yield client
        return
    with Client() as made:
        yield made


class Client:
    """A client for Sync's Batch API (or the batchkit sandbox).

    ``api_key`` defaults to ``$SYNC_API_KEY`` and ``base_url`` to ``$SYNC_BASE_URL``, else
    ``https://api.sync.so``, both read here, when the client is built. A client without a key can be
    built; calls that need one raise :class:`ConfigurationError`. ``timeout`` applies to every request, also
    through a given ``http_client`` (which the client then does not close). ``sleep`` and ``clock`` are used
    for every wait and deadline, so tests can run instantly.

    >>> with Client(api_key="k", base_url="http://127.0.0.1:8000") as client:
    ...     client
    <batchkit.Client base_url='http://127.0.0.1:8000' api_key=set>
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = 60.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        key = key.strip() if key else None
        if key and not (key.isascii() and key.isprintable()):
            msg = "the API key holds characters that cannot go in an HTTP header: copy it again from sync.so"
            raise ConfigurationError(msg)
        self._api_key: str | None = key or None
        self._base = _base_url(
            base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL, secret=key
        )
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._retry = retry if retry is not None else DEFAULT_RETRY
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(follow_redirects=False)
        self._sleep = sleep
        self._clock = clock
        self._sandbox_id: str | None = None
        self.batches = Batches(self)
        self.generations = Generations(self)

    @property
    def base_url(self) -> str:
        """The API's base URL, e.g. ``https://api.sync.so``."""
        return str(self._base)

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    @property
    def timeout(self) -> float:
        """How long a request may be on its way once it leaves: its upload (write) plus the wait for the
        answer (read), in seconds."""
        parts = (self._timeout.write, self._timeout.read)
        return float(sum(p for p in parts if p is not None)) or 60.0

    @property
    def is_loopback(self) -> bool:
        """The base URL is a loopback host (a sandbox, a test server)."""
        return _is_loopback(self._base.host)

    @property
    def sandbox_id(self) -> str | None:
        """The account id a batchkit sandbox announced in its last answer (None for any other server)."""
        return self._sandbox_id

    def __repr__(self) -> str:
        return f"<batchkit.Client base_url={self.base_url!r} api_key={'set' if self._api_key else 'unset'}>"

    def close(self) -> None:
        """Close the connection pool (unless the caller passed its own ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- plumbing

    def _require_key(self) -> str:
        if self._api_key is None:
            msg = f"no API key: pass api_key=... or set {API_KEY_ENV}"
            raise ConfigurationError(msg)
        return self._api_key

    def _url(self, path: str) -> httpx.URL:
        return httpx.URL(str(self._base) + path)

    def _is_api_origin(self, url: httpx.URL) -> bool:
        return _origin(url) == _origin(self._base)

    def _call(
        self,
        method: str,
        path: str,
        *,
        rule: RetryRule,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One API call with retries; returns a 2xx response or raises from the exception tree."""
        key = self._require_key()
        url = self._url(path)
        what = f"{method} {path}"
        all_headers = {"accept": "application/json", "user-agent": _USER_AGENT, **(headers or {})}
        all_headers["x-api-key"] = key

        def attempt() -> httpx.Response:
            try:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    content=content,
                    data=data,
                    files=files,
                    headers=all_headers,
                    timeout=self._timeout,
                    follow_redirects=False,  # a redirect must never carry x-api-key elsewhere
                )
            except httpx.TransportError as exc:
                raise transport_error(exc, method, redact(url)) from exc
            announced = response.headers.get(SANDBOX_HEADER)
            if announced and self.is_loopback:
                self._sandbox_id = announced
            if not response.is_success:
                raise error_from_response(response, method=method, path=path, secret=key)
            return response

        return call_with_retries(attempt, policy=self._retry, rule=rule, sleep=self._sleep, what=what)


class Batches:
    """``client.batches``: create, get, list, wait for and download batches."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, file: FileInput, *, webhook_url: str | None = None, dry_run: bool = False
    ) -> Batch | DryRunResult:
        """Upload a batch file (``POST /v2/batch``); a dry run only validates it and returns DryRunResult.

        The file is read once, and every attempt sends the same bytes and the same form fields. Only a
        create that certainly did not reach the server, or was refused with a rate-limit 429, is retried:
        after a 5xx, a timeout or a reset the batch may exist, and the error says so.

        When it raises, the batch certainly does not exist only after an :class:`APIConnectionError` with
        ``sent=False`` or an :class:`APIStatusError` below 500; after anything else (a 5xx, ``sent=True``,
        a 2xx whose body cannot be read) it may, and must be reconciled before the file is sent again.
        """
        if webhook_url is not None and not is_http_url(webhook_url):
            msg = f"webhook_url {webhook_url!r} is not an absolute http(s) URL"
            raise InputError(msg)
        name, content = _read_upload(file)
        data = {"dry_run": "true" if dry_run else "false"}
        if webhook_url is not None:
            data["webhook_url"] = webhook_url
        what = "POST /v2/batch"
        response = self._client._call(
            "POST",
            "/v2/batch",
            rule="create",
            data=data,
            files={"input": (name, content, "application/octet-stream")},
        )
        try:
            body = _json(response, what)
            if isinstance(body, dict) and "id" in body:
                batch = _validate(Batch, body, response, what)
                log.info("created batch %s from %s (%d bytes)", batch.id, name, len(content))
                return batch
            if not dry_run:
                msg = f"{what} → {response.status_code}, but the answer names no batch id"
                raise APIError(msg, method="POST", url=redact(response.url))
            result = _validate(DryRunResult, body, response, what)
        except APIError as exc:
            if dry_run:
                raise
            msg = f"{exc}; the batch may have been created, so check (list batches) before resending"
            raise APIError(msg, method="POST", url=exc.url) from None
        log.info("dry run of %s: %s", name, result.status)
        return result

    def get(self, batch_id: str) -> Batch:
        """The batch's current status, metrics and ``output_url`` (``GET /v2/batch/{id}``)."""
        path = f"/v2/batch/{_segment('batch', batch_id)}"
        response = self._client._call("GET", path, rule="idempotent")
        return _parse(response, Batch, f"GET {path}")

    def list(
        self,
        *,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> builtins.list[Batch]:
        """The organisation's batches, newest first (``GET /v2/batch``; Sync does not paginate it).

        Datetimes are sent as ISO 8601 UTC with ``Z``; a naive datetime is taken as UTC, not local time.
        """
        params: dict[str, str] = {}
        if status is not None:
            params["status"] = status
        if created_after is not None:
            params["created_after"] = _iso(created_after)
        if created_before is not None:
            params["created_before"] = _iso(created_before)
        what = "GET /v2/batch"
        response = self._client._call("GET", "/v2/batch", rule="idempotent", params=params)
        body = _json(response, what)
        if not isinstance(body, builtins.list):
            msg = f"{what} → {response.status_code}, but the body is not a JSON array of batches"
            raise APIError(msg, method="GET", url=redact(response.url))
        return [_validate(Batch, item, response, what) for item in body]

    def wait(
        self,
        batch_id: str,
        *,
        poll: PollPolicy | None = None,
        deadline: float | None = None,
        on_update: Callable[[Batch], None] | None = None,
    ) -> Batch:
        """Poll until the batch is COMPLETED or FAILED and return it.

        Waits follow ``poll`` (5 s × 1.5 up to 60 s by default); ``on_update(batch)`` runs after every poll.
        With ``deadline`` (seconds from now) a batch still running then raises :class:`WaitTimeoutError`
        naming it and its last status; waiting again later is safe.
        """
        client = self._client
        delays = (poll or DEFAULT_POLL).delays()
        started = client._clock()
        while True:
            batch = self.get(batch_id)
            if on_update is not None:
                on_update(batch)
            if batch.is_terminal:
                return batch
            delay = next(delays)
            if deadline is not None:
                remaining = deadline - (client._clock() - started)
                if remaining <= 0:
                    m = batch.metrics
                    msg = (
                        f"batch {batch_id} is still {batch.status} after {deadline:g} s "
                        f"({m.done}/{m.total_generations} generations done); "
                        "waiting again later is safe (`batchkit wait`)"
                    )
                    raise WaitTimeoutError(msg, batch_id=batch_id, status=batch.status, batch=batch)
                delay = min(delay, remaining)
            log.debug("batch %s is %s; next poll in %.1f s", batch_id, batch.status, delay)
            client._sleep(delay)

    def download(self, batch_or_output_url: Batch | str, dest: str | os.PathLike[str]) -> Path:
        """Save a finished batch's output.jsonl at ``dest`` and return ``dest``.

        Tries without the API key first and adds it only if the API's own host answers 401/403; follows
        redirects itself, never sending the key to another host. The body streams to a temporary file
        beside ``dest`` that is fsync'd and renamed into place, so ``dest`` exists only when complete.
        """
        client = self._client
        if isinstance(batch_or_output_url, Batch):
            batch = batch_or_output_url
            raw = batch.output_url or ""
            if not raw.strip():
                msg = (
                    f"batch {batch.id} has no results yet (status {batch.status}, empty outputUrl): "
                    "wait until it is COMPLETED or FAILED, then download"
                )
                raise ResultsError(msg)
        else:
            raw = batch_or_output_url
            if not raw or not raw.strip():
                msg = "the output URL is empty: the batch has no results yet; wait until it is COMPLETED or FAILED"
                raise ResultsError(msg)
        try:
            start = client._base.join(raw.strip())
        except httpx.InvalidURL as exc:
            msg = f"the output URL is not a URL ({exc})"
            raise ResultsError(msg) from None
        target = Path(dest)
        what = f"GET {redact(start)}"
        try:
            result = call_with_retries(
                lambda: self._download_once(start, target),
                policy=client._retry,
                rule="idempotent",
                sleep=client._sleep,
                what=what,
            )
        except OSError as exc:
            msg = f"{target}: cannot write the download ({exc.strerror or exc})"
            raise InputError(msg, path=target) from None
        log.info("downloaded %s to %s", what.removeprefix("GET "), result)
        return result

    def _download_once(self, start: httpx.URL, target: Path) -> Path:
        client = self._client
        url, with_key, hops = start, False, 0
        while True:
            shown = redact(url)
            headers = {"user-agent": _USER_AGENT}
            api_origin = client._is_api_origin(url)
            if with_key and api_origin:
                headers["x-api-key"] = client._require_key()
            try:
                with client._http.stream(
                    "GET", url, headers=headers, timeout=client._timeout, follow_redirects=False
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        hops += 1
                        if not location or hops > _MAX_REDIRECTS:
                            msg = f"GET {shown}: {'too many redirects' if location else 'a redirect without Location'}"
                            raise APIError(msg, method="GET", url=shown)
                        url = response.url.join(location)
                        log.debug("GET %s → %d, following to %s", shown, response.status_code, redact(url))
                        continue
                    if (
                        response.status_code in (401, 403)
                        and api_origin
                        and not with_key
                        and client.has_api_key
                    ):
                        log.debug(
                            "GET %s → %d without the key; retrying with it", shown, response.status_code
                        )
                        with_key = True
                        continue
                    if not response.is_success:
                        response.read()
                        raise error_from_response(response, method="GET", path=shown, secret=client._api_key)
                    return _stream_to(response, target, shown)
            except httpx.TransportError as exc:
                raise transport_error(exc, "GET", shown) from exc


def _stream_to(response: httpx.Response, target: Path, shown: str) -> Path:
    """Write the body to a temporary file beside ``target``, check its length, fsync, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            written = 0
            for chunk in response.iter_bytes(_CHUNK):
                fh.write(chunk)
                written += len(chunk)
            # Content-Length counts the bytes on the wire: compressed ones when a Content-Encoding applies.
            encoded = response.headers.get("content-encoding", "identity").strip().lower() not in (
                "",
                "identity",
            )
            received = response.num_bytes_downloaded if encoded else written
            expected = response.headers.get("content-length")
            if expected is not None and expected.isdigit() and received != int(expected):
                msg = f"GET {shown}: the download stopped at {received:,} of {int(expected):,} bytes"
                raise APIConnectionError(msg, method="GET", url=shown, sent=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(target.parent)
    return target


class Generations:
    """``client.generations``: single generate requests (``POST /v2/generate``, ``GET /v2/generate/{id}``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, payload: GeneratePayload | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Generation:
        """Start one generation. A ``GeneratePayload`` is sent as its wire form, a mapping as given.

        Without ``idempotency_key`` it retries like a batch create (only what certainly did not reach the
        server, or a rate-limit 429); with one (1–128 of ``A-Z a-z 0-9 . _ ~ -``) resending is safe, so it
        retries like a GET.
        """
        body = payload.to_wire() if isinstance(payload, GeneratePayload) else dict(payload)
        try:
            content = orjson.dumps(body)
        except TypeError as exc:
            msg = f"the generate payload cannot be sent as JSON: {exc}"
            raise InputError(msg) from None
        headers = {"content-type": "application/json"}
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 128 or not set(idempotency_key) <= _IDEMPOTENCY_KEY_CHARS:
                msg = f"idempotency_key {idempotency_key!r} must be 1–128 of A-Z a-z 0-9 . _ ~ -"
                raise InputError(msg)
            headers["idempotency-key"] = idempotency_key
        rule: RetryRule = "idempotent" if idempotency_key is not None else "create"
        what = "POST /v2/generate"
        response = self._client._call("POST", "/v2/generate", rule=rule, content=content, headers=headers)
        generation = _parse(response, Generation, what)
        if not generation.id:
            msg = f"{what} → {response.status_code}, but the answer has no generation id"
            raise APIError(msg, method="POST", url=redact(response.url))
        return generation

    def get(self, generation_id: str) -> Generation:
        """A generation's status and output (``GET /v2/generate/{id}``)."""
        path = f"/v2/generate/{_segment('generation', generation_id)}"
        response = self._client._call("GET", path, rule="idempotent")
        return _parse(response, Generation, f"GET {path}")
