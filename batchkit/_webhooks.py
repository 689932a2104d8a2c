"""Webhook signatures (``Sync-Signature: t=<unix seconds>,v1=<hex>``) and notification parsing."""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "sign_payload"]

SIGNATURE_HEADER = "Sync-Signature"


def sign_payload(body: bytes | str, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Sync-Signature`` header value for ``body``: HMAC-SHA256 of ``"{t}.{body}"`` keyed by ``secret``."""
    raw = body.encode() if isinstance(body, str) else body
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
