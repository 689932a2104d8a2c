"""Webhook signatures (``Sync-Signature: t=<unix seconds>,v1=<hex>``) and notification parsing.

Sync signs each notification with HMAC-SHA256 over ``"{t}.{raw body}"``, keyed by the organisation's webhook
signing secret (``whsec_…``, used as UTF-8 text, not decoded) (``sync-api.md`` §7.3). Verify the raw request
body, before any JSON parsing.

What :func:`verify_signature` accepts: a signature over the raw body's exact bytes; or, because Sync's own
Python sample signs ``json.dumps(payload, separators=(",", ":"))``, a signature over that compact
re-serialisation of the body, provided the body is a UTF-8 JSON object that every JSON reader reads the same
way (no duplicate key, no ``NaN``, no lone surrogate, no byte-order mark). So a body that says exactly what
the signed one says, in other whitespace or escapes, verifies; one that differs in any key or value, or is
UTF-16, does not. Every failure raises
:class:`~batchkit.WebhookVerificationError`, whose ``reason`` says which check failed; answer such a request
with HTTP 400 and do not act on it.

Sync documents two headers: the webhooks guide and the Get Batch page say "Deliveries include a
Sync-Signature header signed with the organization webhook secret"; the payload-reference pages name
``X-Signature-Primary`` ("An HMAC signature of the payload") without a format. :func:`verify_signature` takes
either: give it the request's headers and it finds the signature in whichever is present (both are read in
the ``t=…,v1=…`` format, the only one documented).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from .._errors import ConfigurationError, WebhookVerificationError
from .._wire.responses import BatchWebhook, GenerationWebhook

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "SIGNATURE_HEADERS",
    "parse_batch_webhook",
    "parse_generation_webhook",
    "sign_payload",
    "signature_header",
    "verify_signature",
]

SIGNATURE_HEADER = "Sync-Signature"
#: Every header Sync documents for the signature, in the order they are looked for.
SIGNATURE_HEADERS: tuple[str, ...] = (SIGNATURE_HEADER, "X-Signature-Primary")
#: Seconds a signature stays acceptable; older (or future) timestamps are refused as replays.
DEFAULT_TOLERANCE = 300.0

W = TypeVar("W", BatchWebhook, GenerationWebhook)

_FORMAT = "expected 't=<unix seconds>,v1=<hex signature>'"
_MAX_DIGITS = 15  # a Unix time in seconds has 10 digits until the year 2286
_MAX_HEADER = 8192


def sign_payload(body: bytes | str, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Sync-Signature`` header value for ``body``: HMAC-SHA256 of ``"{t}.{body}"`` keyed by ``secret``."""
    raw = body.encode() if isinstance(body, str) else body
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def _read_header(header: str | None) -> tuple[int, list[bytes]] | str:
    """The timestamp and every ``v1`` signature of the header, or what is wrong with it.

    Unknown schemes (``v0=``, a future ``v2=``) are ignored.
    """
    if not isinstance(header, str) or not header.strip():
        return "it is missing or empty"
    if len(header) > _MAX_HEADER:
        return f"it is {len(header):,} characters long"
    timestamp: int | None = None
    signatures: list[bytes] = []
    for part in header.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key:
            return f"{part.strip()[:40]!r} is not a key=value pair"
        if key == "t":
            if timestamp is not None:
                return "it has two timestamps"
            if not (value.isascii() and value.isdigit()):
                return f"the timestamp {value[:20]!r} is not a whole number of seconds"
            if len(value) > _MAX_DIGITS:
                return f"the timestamp has {len(value):,} digits, not a Unix time in seconds"
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value.lower().encode("utf-8", "replace"))
    if timestamp is None:
        return "it has no t= timestamp"
    if not signatures:
        return "it has no v1= signature"
    return timestamp, signatures


def _matches(raw: bytes, timestamp: int, signatures: list[bytes], key: bytes) -> bool:
    expected = hmac.new(key, f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest().encode()
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _Duplicate
    return data


def _compact(raw: bytes) -> bytes | None:
    """``json.dumps(payload, separators=(",", ":"))``: the body as Sync's Python sample re-serialises it, for
    a body every JSON reader reads alike (strict UTF-8 JSON, an object, no duplicate key); else None."""
    try:
        if not isinstance(orjson.loads(raw), dict):  # strict: no NaN, no lone surrogate, UTF-8 only
            return None
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs)
        return json.dumps(data, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):  # orjson.JSONDecodeError and _Duplicate included
        return None


def signature_header(headers: Mapping[str, str]) -> str | None:
    """The signature among a request's ``headers`` (any letter case): ``Sync-Signature``, else
    ``X-Signature-Primary``; None when neither is there."""
    wanted = {name.lower(): rank for rank, name in enumerate(SIGNATURE_HEADERS)}
    found = sorted((wanted[k.lower()], v) for k, v in headers.items() if k.lower() in wanted)
    return found[0][1] if found else None


def verify_signature(
    body: bytes | str,
    header: str | Mapping[str, str] | None,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check that ``body`` is a genuine, fresh Sync notification; raise if not.

    ``header`` is the signature header's value, or the request's headers (any mapping; names in any case),
    in which the ``Sync-Signature`` header, else the ``X-Signature-Primary`` one, is used. ``secret`` is the
    webhook signing secret. The signature must match the raw body (or its compact re-serialisation, see the
    module docstring) for one of the header's ``v1=`` entries, compared in constant time, and the timestamp must lie within
    ``tolerance`` seconds of ``now`` (default: the clock); pass ``tolerance=math.inf`` to skip the replay
    check.

    Raises :class:`WebhookVerificationError` (``reason``: ``malformed-header``, ``mismatch``, ``expired``),
    or :class:`ConfigurationError` when ``secret`` is empty or ``tolerance``/``now`` is not a number
    (``tolerance=nan`` would silently turn the replay check off).
    """
    if not secret:
        msg = "no webhook signing secret: pass the whsec_… secret from sync.so/keys (webhooks tab)"
        raise ConfigurationError(msg)
    if isinstance(header, Mapping):
        header = signature_header(header)
        if header is None:
            msg = f"the request has no {' or '.join(SIGNATURE_HEADERS)} header; is it a Sync notification?"
            raise WebhookVerificationError(msg, reason="malformed-header")
    if not isinstance(tolerance, int | float) or math.isnan(tolerance) or tolerance < 0:
        msg = f"tolerance must be a number of seconds, 0 or more (math.inf skips the replay check), not {tolerance!r}"
        raise ConfigurationError(msg)
    if now is not None and (not isinstance(now, int | float) or not math.isfinite(now)):
        msg = f"now must be a finite Unix time in seconds, not {now!r}"
        raise ConfigurationError(msg)
    parsed = _read_header(header)
    if isinstance(parsed, str):
        msg = f"malformed {SIGNATURE_HEADER} header: {parsed}; {_FORMAT}"
        raise WebhookVerificationError(msg, reason="malformed-header")
    timestamp, signatures = parsed
    raw = body.encode() if isinstance(body, str) else bytes(body)
    key = secret.encode()
    if not _matches(raw, timestamp, signatures, key):
        compact = _compact(raw)
        if compact is None or compact == raw or not _matches(compact, timestamp, signatures, key):
            msg = (
                f"no v1 signature in the {SIGNATURE_HEADER} header matches the body: the signing secret is "
                "wrong, or the body was changed (verify the raw request body, before parsing it)"
            )
            raise WebhookVerificationError(msg, reason="mismatch")
    current = time.time() if now is None else now
    age = current - timestamp
    if not math.isinf(tolerance) and abs(age) > tolerance:
        when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
        msg = (
            f"the signature's timestamp {timestamp} is {when}, outside the {tolerance:g} s tolerance: "
            "a replayed request, or a clock out of sync"
        )
        raise WebhookVerificationError(msg, reason="expired")


def _load(body: bytes | str | Mapping[str, Any], kind: str) -> dict[str, Any]:
    if isinstance(body, Mapping):
        data: Any = dict(body)
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            msg = f"the {kind} webhook body is not JSON ({exc})"
            raise WebhookVerificationError(msg, reason="invalid-body") from None
    if not isinstance(data, dict):
        msg = f"the {kind} webhook body must be a JSON object, not {type(data).__name__}"
        raise WebhookVerificationError(msg, reason="invalid-body")
    missing = [key for key in ("id", "status") if not data.get(key)]
    if missing:
        msg = f"the {kind} webhook body has no {' or '.join(missing)}: is it a Sync {kind} notification?"
        raise WebhookVerificationError(msg, reason="invalid-body")
    return data


def _parse(model: type[W], body: bytes | str | Mapping[str, Any], kind: str) -> W:
    data = _load(body, kind)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = f"the {kind} webhook body is not a Sync {kind} notification ({where}: {first['msg']})"
        raise WebhookVerificationError(msg, reason="invalid-body") from None


def parse_batch_webhook(body: bytes | str | Mapping[str, Any]) -> BatchWebhook:
    """Parse a batch notification (a Batch object; ``created_at``/``createdAt``, snake or camel metrics).

    Raises :class:`WebhookVerificationError` (``reason="invalid-body"``) when the body is not JSON or has
    no ``id`` or ``status``. Verify the signature first with :func:`verify_signature`.
    """
    return _parse(BatchWebhook, body, "batch")


def parse_generation_webhook(body: bytes | str | Mapping[str, Any]) -> GenerationWebhook:
    """Parse a generation notification (``error_code``/``errorCode``, ``createdAt``/``created_at``).

    Raises :class:`WebhookVerificationError` (``reason="invalid-body"``) when the body is not JSON or has
    no ``id`` or ``status``. Verify the signature first with :func:`verify_signature`.
    """
    return _parse(GenerationWebhook, body, "generation")
