"""The sandbox's output host: a small real MP4 behind every completed generation's ``outputUrl``.

(The media host of :mod:`batchkit.sandbox._media` serves made-up *input* media for probes; this one serves
what a generation made, behind links that expire.) Output links look like a storage bucket's signed URLs:
another host name for the same server (``localhost`` for ``127.0.0.1`` and back, as the signed result URL),
``/_outputs/{generation_id}.mp4?expires=…&sig=…``.
``expires`` is a Unix time on the sandbox clock (``output_url_seconds`` after the generation finished, for
the links in output.jsonl; after now, for the links the Generate API answers), so a :class:`ManualClock`
can make every link expire without waiting. The host answers:

* ``400`` when the request carries ``x-api-key`` (recorded as a :class:`KeyLeak`: hosts of media never see it);
* ``404`` for a generation that does not exist or has not completed;
* ``403`` for a forged signature, or an expired link (ask ``GET /v2/generate/{id}`` for a fresh one);
* else the video: ``video/mp4``, ``Content-Length``, an ``ETag`` (the sha256 of the bytes), ``Accept-Ranges``
  and ``206`` answers to ``Range`` requests (starlette's ``FileResponse``), ``HEAD`` as well.

The video is ``sample.mp4`` beside this module (made once with PyAV by ``tests/handback/sample_mp4.py``);
serving it needs nothing but the ``sandbox`` extra. Every completed generation gets the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import urllib.parse
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ._config import SandboxConfig
    from ._state import Clock, MediaUrl, SandboxBatch, SandboxGeneration

__all__ = [
    "OUTPUT_PREFIX",
    "OUTPUT_ROUTE",
    "batch_generation_wire",
    "generation_wire",
    "output_media",
    "output_url",
    "output_video_response",
    "sample_bytes",
    "sample_path",
]

OUTPUT_PREFIX: Final = "/_outputs/"
OUTPUT_ROUTE: Final = OUTPUT_PREFIX + "{name}"


class Sandbox(Protocol):
    """What the output host reads of a :class:`~batchkit.sandbox.Sandbox` (which imports this module)."""

    url: str | None
    clock: Clock
    _signing_key: bytes
    _batches: dict[str, SandboxBatch]

    @property
    def _lock(self) -> AbstractContextManager[Any]: ...

    @property
    def config(self) -> SandboxConfig: ...

    def _get_generation(self, generation_id: str) -> SandboxGeneration | None: ...


#: Per sandbox: (seed, batch id) → the generation id of each COMPLETED request → its input index.
_INDEX: weakref.WeakKeyDictionary[Sandbox, dict[tuple[int, str], dict[str, int]]] = (
    weakref.WeakKeyDictionary()
)


def sample_path() -> Path:
    """The MP4 file every output link serves."""
    return Path(str(resources.files("batchkit.sandbox") / "sample.mp4"))


@functools.cache
def sample_bytes() -> bytes:
    return sample_path().read_bytes()


@functools.cache
def _etag() -> str:
    return f'"{hashlib.sha256(sample_bytes()).hexdigest()[:32]}"'


def _other_host(host: str) -> str:
    return {"127.0.0.1": "localhost", "localhost": "127.0.0.1", "::1": "localhost"}.get(host, "127.0.0.1")


def _signature(sandbox: Sandbox, generation_id: str, expires: int) -> str:
    message = f"media:{generation_id}:{expires}".encode()
    return hmac.new(sandbox._signing_key, message, hashlib.sha256).hexdigest()


def output_url(sandbox: Sandbox, api_base: str, generation_id: str, valid_from: datetime) -> str:
    """A signed link to the video of ``generation_id``, valid ``output_url_seconds`` after ``valid_from``."""
    expires = math.ceil(valid_from.timestamp() + sandbox.config.output_url_seconds)
    base = urllib.parse.urlsplit(api_base)
    host = _other_host(base.hostname or "127.0.0.1")
    netloc = f"{host}:{base.port}" if base.port else host
    query = urllib.parse.urlencode({"expires": expires, "sig": _signature(sandbox, generation_id, expires)})
    return f"{base.scheme or 'http'}://{netloc}{OUTPUT_PREFIX}{generation_id}.mp4?{query}"


def output_media(sandbox: Sandbox, batch: SandboxBatch) -> MediaUrl | None:
    """The links written into a batch's output.jsonl: valid from the moment each request finished."""
    api_base = sandbox.url or batch.api_base  # where it is served now (a restarted sandbox has a new port)
    if not api_base:
        return None
    return lambda generation_id, finished: output_url(sandbox, api_base, generation_id, finished)


def generation_wire(sandbox: Sandbox, generation: SandboxGeneration) -> dict[str, Any]:
    """A lone generation as the Generate API answers it now: a completed one with a link fresh from now."""
    api_base = sandbox.url or generation.api_base
    media: MediaUrl | None = None
    if api_base:
        media = lambda generation_id, _finished: output_url(  # noqa: E731
            sandbox, api_base, generation_id, sandbox.clock.now()
        )
    return generation.to_wire(sandbox.clock.monotonic(), sandbox.config.seed, media)


def _find_batch_generation(sandbox: Sandbox, generation_id: str) -> tuple[SandboxBatch, int] | None:
    seed = sandbox.config.seed
    with sandbox._lock:
        index = _INDEX.setdefault(sandbox, {})
        for batch in sandbox._batches.values():
            ids = index.get((seed, batch.id))
            if ids is None:
                ids = index[(seed, batch.id)] = batch.completed_generations(seed)
            if generation_id in ids:
                return batch, ids[generation_id]
    return None


def batch_generation_wire(sandbox: Sandbox, generation_id: str) -> dict[str, Any] | None:
    """A batch request's completed generation as ``GET /v2/generate/{id}`` answers it (a fresh link), or None."""
    found = _find_batch_generation(sandbox, generation_id)
    if found is None:
        return None
    batch, position = found
    api_base = sandbox.url or batch.api_base
    media: MediaUrl | None = None
    if api_base:
        media = lambda gid, _finished: output_url(sandbox, api_base, gid, sandbox.clock.now())  # noqa: E731
    return batch.generation_wire(position, sandbox.clock.monotonic(), sandbox.config.seed, media)


def _completed(sandbox: Sandbox, generation_id: str) -> bool:
    generation = sandbox._get_generation(generation_id)
    now = sandbox.clock.monotonic()
    if generation is not None:
        return generation.status(now) == "COMPLETED"
    found = _find_batch_generation(sandbox, generation_id)
    if found is None:
        return False
    batch, index = found
    return batch.order.index(index) < batch.done(now)


def _check(
    sandbox: Sandbox, generation_id: str, expires: str, signature: str
) -> Literal["ok", "forged", "expired"]:
    if not expires.isdigit() or not hmac.compare_digest(
        _signature(sandbox, generation_id, int(expires)), signature
    ):
        return "forged"
    return "expired" if int(expires) < sandbox.clock.now().timestamp() else "ok"


async def output_video_response(
    sandbox: Sandbox, request: Request, on_key_leak: Callable[[str, str, str], None]
) -> Response:
    """Answer ``GET``/``HEAD /_outputs/{generation_id}.mp4`` (see the module docstring).

    ``on_key_leak(method, path, host)`` records a request that carried ``x-api-key``."""
    from starlette.responses import FileResponse, JSONResponse

    if "x-api-key" in request.headers:
        on_key_leak(request.method, request.url.path, request.url.hostname or "")
        refusal = ["x-api-key must not be sent to an output host; fetch output videos without your key"]
        return JSONResponse({"statusCode": 400, "message": refusal}, status_code=400)
    name: str = request.path_params["name"]
    generation_id = name.removesuffix(".mp4")
    if not name.endswith(".mp4") or not _completed(sandbox, generation_id):
        return JSONResponse({"statusCode": 404, "message": "No such output video"}, status_code=404)
    query = request.query_params
    verdict = _check(sandbox, generation_id, query.get("expires", ""), query.get("sig", ""))
    if verdict != "ok":
        message = (
            "The signed URL has expired: ask GET /v2/generate/{id} for a fresh outputUrl"
            if verdict == "expired"
            else "Invalid signature"
        )
        return JSONResponse({"statusCode": 403, "message": message}, status_code=403)
    return FileResponse(sample_path(), media_type="video/mp4", headers={"etag": _etag()})
