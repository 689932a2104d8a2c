"""Signed URLs: when one expires, and the URL without its signature (so a re-signed link hits the cache).

Recognised (query parameter names are matched without regard to case):

=====================================  ===========================================================
AWS S3 SigV4 (and R2, MinIO, Wasabi)   ``X-Amz-Date`` (``20260115T103000Z``) + ``X-Amz-Expires`` (seconds)
AWS S3 SigV2, legacy                   ``Expires`` (Unix seconds) with ``AWSAccessKeyId`` and ``Signature``
Google Cloud Storage V4                ``X-Goog-Date`` + ``X-Goog-Expires``
Google Cloud Storage V2                ``Expires`` (Unix seconds) with ``GoogleAccessId``
Azure Blob SAS                         ``se`` (ISO 8601 UTC, e.g. ``2026-01-15T10:30:00Z`` or a date)
CloudFront canned policy               ``Expires`` (Unix seconds) with ``Key-Pair-Id``
CloudFront custom policy               ``Policy`` (URL-safe base64 JSON; ``DateLessThan.AWS:EpochTime``)
others                                 a lone ``expires`` / ``exp`` of Unix seconds (many CDNs and the sandbox)
=====================================  ===========================================================
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["SIGNING_PARAMETERS", "unsigned", "url_expires_at"]

#: Query parameters that carry a signature or its terms, never the object's identity (lower case).
SIGNING_PARAMETERS: Final = frozenset(
    {
        "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
        "x-amz-signature", "x-amz-security-token", "x-amz-content-sha256", "x-amz-checksum-mode",
        "x-goog-algorithm", "x-goog-credential", "x-goog-date", "x-goog-expires", "x-goog-signedheaders",
        "x-goog-signature", "googleaccessid", "awsaccesskeyid", "signature", "expires", "key-pair-id", "policy",
        "se", "st", "sp", "sv", "sr", "sig", "spr", "skoid", "sktid", "skt", "ske", "sks", "skv", "sip", "ss",
        "srt", "exp",
    }
)  # fmt: skip


def _query(url: str) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)
    except ValueError:
        return {}
    return {k.lower(): v for k, v in pairs}


def _epoch(value: str) -> datetime | None:
    text = value.strip()
    if not text.isdigit() or len(text) > 12:
        return None
    return datetime.fromtimestamp(int(text), UTC)


def _compact(value: str) -> datetime | None:
    """``20260115T103000Z`` (the AWS and GCS V4 form)."""
    try:
        return datetime.strptime(value.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _iso(value: str) -> datetime | None:
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _policy(value: str) -> datetime | None:
    text = value.replace("-", "+").replace("_", "=").replace("~", "/")
    try:
        policy = json.loads(base64.b64decode(text + "=" * (-len(text) % 4)))
        epoch = policy["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"]
    except (binascii.Error, ValueError, KeyError, IndexError, TypeError):
        return None
    return datetime.fromtimestamp(int(epoch), UTC) if isinstance(epoch, int | float) else None


def _after(start: datetime | None, seconds: str) -> datetime | None:
    if start is None or not seconds.strip().isdigit():
        return None
    return start + timedelta(seconds=int(seconds))


def url_expires_at(url: str) -> datetime | None:
    """When a signed URL stops working (UTC), or None when it is not a signed URL batchkit recognises.

    >>> url_expires_at("https://b.s3.amazonaws.com/v.mp4?X-Amz-Date=20260115T103000Z&X-Amz-Expires=3600")
    datetime.datetime(2026, 1, 15, 11, 30, tzinfo=datetime.timezone.utc)
    """
    query = _query(url)
    if not query:
        return None
    if "x-amz-date" in query and "x-amz-expires" in query:
        return _after(_compact(query["x-amz-date"]), query["x-amz-expires"])
    if "x-goog-date" in query and "x-goog-expires" in query:
        return _after(_compact(query["x-goog-date"]), query["x-goog-expires"])
    if "policy" in query and "key-pair-id" in query:
        return _policy(query["policy"])
    if "se" in query and "sig" in query:
        return _iso(query["se"])
    for name in ("expires", "exp"):
        if name in query:
            return _epoch(query[name])
    return None


def unsigned(url: str) -> str:
    """``url`` without its signing parameters: the same object under a fresh signature maps to one key."""
    try:
        parts = urllib.parse.urlsplit(url)
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return url
    if not any(k.lower() in SIGNING_PARAMETERS for k, _ in pairs):
        return url
    kept = [(k, v) for k, v in pairs if k.lower() not in SIGNING_PARAMETERS]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
