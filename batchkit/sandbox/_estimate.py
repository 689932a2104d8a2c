"""The sandbox's cost-estimate endpoints, priced from a documented table of made-up sandbox prices.

* ``POST /v2/generations/estimate`` with ``{model, duration, fps?}`` (Sync's newer endpoint) answers
  ``{estimatedFrameCount, estimatedGenerationCost, estimatedCredits: null}``: frames are ``duration × fps``
  (fps 30 by default), cost is ``duration × price``. A model without a price answers ``422
  cost_estimate_unavailable``; a missing or non-positive ``duration`` or ``fps`` answers 400.
* ``POST /v2/analyze/cost`` with a generate-shaped body (the SDK's older endpoint) answers a one-item list
  ``[{estimatedFrameCount, estimatedGenerationCost}]``. The sandbox fetches nothing: it reads the durations
  of its own media URLs from their ``duration`` parameter (10 s when absent) and bills the output's length
  as Sync's ``sync_mode`` makes it (``cut_off``, the default here: the shorter input; ``silence``: the longer;
  the others: the audio's). An input it cannot time (another host, a TTS script) answers 422.

Both need ``x-api-key`` like every ``/v2`` route. Prices are ``SandboxConfig.prices`` (USD per second of
input, by model), :data:`batchkit.sandbox._config.SANDBOX_PRICES` by default. They are the sandbox's own, for demos and tests: they are
not Sync's prices.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from starlette.routing import Route

    from ._sandbox import Sandbox

__all__ = ["DEFAULT_FPS", "analyze_cost", "estimate_cost", "estimate_routes"]

DEFAULT_FPS: Final = 30.0
_MEDIA_DEFAULT_SECONDS: Final = 10.0


class EstimateRefused(Exception):
    """An estimate the sandbox will not give: ``status`` 400 (bad fields) or 422 (cannot be priced)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _positive(value: Any, name: str, *, required: bool) -> float | None:
    if value is None and not required:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise EstimateRefused(
            400,
            f"{name} must be a finite, positive number of {'seconds' if name == 'duration' else 'frames per second'}",
        )
    return float(value)


def estimate_cost(body: Any, prices: Mapping[str, float]) -> dict[str, Any]:
    """The answer of ``POST /v2/generations/estimate`` to ``body``; raises :class:`EstimateRefused`."""
    if not isinstance(body, dict):
        raise EstimateRefused(400, "the body must be a JSON object {model, duration, fps?}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise EstimateRefused(400, "model must be a non-empty string, e.g. lipsync-2")
    duration = _positive(body.get("duration"), "duration", required=True)
    fps = _positive(body.get("fps"), "fps", required=False) or DEFAULT_FPS
    assert duration is not None
    price = prices.get(model)
    if price is None:
        raise EstimateRefused(422, f"no price for model {model!r} in this sandbox")
    return {
        "estimatedFrameCount": float(math.ceil(duration * fps)),
        "estimatedGenerationCost": round(duration * price, 6),
        "estimatedCredits": None,
    }


def _media_seconds(url: Any) -> float:
    if not isinstance(url, str):
        raise EstimateRefused(422, "the sandbox can time only inputs given by url")
    parts = urllib.parse.urlsplit(url)
    if not parts.path.startswith("/_media/"):
        raise EstimateRefused(
            422, f"the sandbox cannot time {parts.netloc}{parts.path}: only its own /_media/ URLs"
        )
    query = dict(urllib.parse.parse_qsl(parts.query))
    try:
        seconds = float(query.get("duration", _MEDIA_DEFAULT_SECONDS))
    except ValueError:
        raise EstimateRefused(
            422, f"duration={query['duration']!r} in {parts.path} is not a number"
        ) from None
    return seconds


def analyze_cost(body: Any, prices: Mapping[str, float]) -> list[dict[str, Any]]:
    """The answer of ``POST /v2/analyze/cost`` to a generate-shaped ``body``; raises :class:`EstimateRefused`."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), list):
        raise EstimateRefused(400, "the body must be a generate request: {model, input: [...], options?}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise EstimateRefused(400, "model must be a non-empty string, e.g. lipsync-2")
    video = audio = None
    for item in body["input"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "video" and video is None:
            video = _media_seconds(item.get("url"))
        elif kind in ("audio", "text") and audio is None:
            if kind == "text":
                raise EstimateRefused(422, "the sandbox cannot time a text-to-speech input")
            audio = _media_seconds(item.get("url"))
    if video is None or audio is None:
        raise EstimateRefused(400, "input needs one video and one audio item")
    options = body.get("options")
    mode = options.get("sync_mode", "cut_off") if isinstance(options, dict) else "cut_off"
    seconds = min(video, audio) if mode == "cut_off" else max(video, audio) if mode == "silence" else audio
    price = prices.get(model)
    if price is None:
        raise EstimateRefused(422, f"no price for model {model!r} in this sandbox")
    return [
        {
            "estimatedFrameCount": float(math.ceil(seconds * DEFAULT_FPS)),
            "estimatedGenerationCost": round(seconds * price, 6),
        }
    ]


def estimate_routes(sandbox: Sandbox) -> list[Route]:
    """Starlette routes for both endpoints (imports the web stack only when called)."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def answer(status: int, body: Any) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    def refused(exc: EstimateRefused) -> Response:
        if exc.status == 422:
            return answer(
                422, {"statusCode": 422, "errorCode": "cost_estimate_unavailable", "message": str(exc)}
            )
        return answer(exc.status, {"statusCode": exc.status, "message": [str(exc)], "error": "Bad Request"})

    async def handle(request: Request, compute: Any) -> Response:
        if not sandbox._key_accepted(request.headers.get("x-api-key")):
            return answer(401, {"statusCode": 401, "message": "Unauthorized"})
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return answer(400, {"statusCode": 400, "message": [f"body: not valid JSON ({exc.msg})"]})
        try:
            return answer(200, compute(body, sandbox.config.prices))
        except EstimateRefused as exc:
            return refused(exc)

    async def generations_estimate(request: Request) -> Response:
        return await handle(request, estimate_cost)

    async def analyze(request: Request) -> Response:
        return await handle(request, analyze_cost)

    return [
        Route("/v2/generations/estimate", generations_estimate, methods=["POST"]),
        Route("/v2/analyze/cost", analyze, methods=["POST"]),
    ]
