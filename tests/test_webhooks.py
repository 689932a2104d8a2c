"""Webhook signatures (Sync-Signature) and the batch and generation notification parsers."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from batchkit import BatchWebhook, ConfigurationError, GenerationWebhook
from batchkit._api.webhooks import (
    SIGNATURE_HEADER,
    parse_batch_webhook,
    parse_generation_webhook,
    sign_payload,
    verify_signature,
)
from batchkit._errors import WebhookVerificationError

SECRET = "whsec_test_0123456789abcdef"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
BODY = b'{"id":"batch_abc123","status":"COMPLETED","metrics":{"total_generations":5}}'


def test_the_header_is_sync_signature() -> None:
    assert SIGNATURE_HEADER == "Sync-Signature"


def test_a_signed_body_verifies() -> None:
    verify_signature(BODY, sign_payload(BODY, SECRET, timestamp=NOW), SECRET, now=NOW + 10)


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """Independent of sign_payload: the documented construction, keyed by the secret as UTF-8."""
    digest = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    verify_signature(BODY, f"t={NOW},v1={digest}", SECRET, now=NOW)
    assert sign_payload(BODY, SECRET, timestamp=NOW) == f"t={NOW},v1={digest}"


def test_a_str_body_is_taken_as_utf8() -> None:
    text = '{"id":"b","status":"COMPLETED","note":"héllo"}'
    verify_signature(text, sign_payload(text.encode(), SECRET, timestamp=NOW), SECRET, now=NOW)


def test_one_matching_v1_among_several_is_enough() -> None:
    good = sign_payload(BODY, SECRET, timestamp=NOW).split(",v1=")[1]
    header = f"t={NOW}, v1={'0' * 64}, v0=legacy, v1={good.upper()}"
    verify_signature(BODY, header, SECRET, now=NOW)


def test_a_body_signed_in_compact_form_verifies_from_a_pretty_raw_body() -> None:
    """Sync's Python sample signs json.dumps(payload, separators=(",", ":")); a reformatted raw body still passes."""
    payload = {"id": "batch_1", "status": "FAILED", "metrics": {"failed_count": 2}}
    compact = json.dumps(payload, separators=(",", ":"))
    pretty = json.dumps(payload, indent=2)
    verify_signature(pretty, sign_payload(compact, SECRET, timestamp=NOW), SECRET, now=NOW)


@pytest.mark.parametrize(
    ("body", "secret"),
    [
        pytest.param(BODY.replace(b"COMPLETED", b"FAILED"), SECRET, id="tampered-body"),
        pytest.param(BODY, SECRET + "x", id="wrong-secret"),
        pytest.param(BODY + b" ", SECRET + "x", id="both"),
    ],
)
def test_a_signature_that_does_not_match_is_refused(body: bytes, secret: str) -> None:
    header = sign_payload(BODY, SECRET, timestamp=NOW)
    with pytest.raises(WebhookVerificationError, match="matches the body") as info:
        verify_signature(body, header, secret, now=NOW)
    assert info.value.reason == "mismatch"


@pytest.mark.parametrize(
    ("offset", "needle"),
    [(301, "301 s old"), (-301, "301 s in the future"), (86_400, "86400 s old")],
)
def test_a_timestamp_outside_the_tolerance_is_a_replay(offset: int, needle: str) -> None:
    header = sign_payload(BODY, SECRET, timestamp=NOW)
    with pytest.raises(WebhookVerificationError, match=needle) as info:
        verify_signature(BODY, header, SECRET, now=NOW + offset)
    assert info.value.reason == "expired"


def test_the_tolerance_is_inclusive_and_configurable() -> None:
    header = sign_payload(BODY, SECRET, timestamp=NOW)
    verify_signature(BODY, header, SECRET, now=NOW + 300)
    verify_signature(BODY, header, SECRET, now=NOW - 300)
    verify_signature(BODY, header, SECRET, now=NOW + 10**9, tolerance=math.inf)
    with pytest.raises(WebhookVerificationError, match="outside the 5 s tolerance"):
        verify_signature(BODY, header, SECRET, now=NOW + 6, tolerance=5)


def test_the_default_clock_is_used_when_now_is_not_given() -> None:
    verify_signature(BODY, sign_payload(BODY, SECRET), SECRET)
    with pytest.raises(WebhookVerificationError, match="old"):
        verify_signature(BODY, sign_payload(BODY, SECRET, timestamp=NOW), SECRET)


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        pytest.param(None, "missing or empty", id="none"),
        pytest.param("", "missing or empty", id="empty"),
        pytest.param("v1=abc", "no t= timestamp", id="no-timestamp"),
        pytest.param(f"t={NOW}", "no v1= signature", id="no-signature"),
        pytest.param(f"t={NOW},v1=", "no v1= signature", id="empty-signature"),
        pytest.param("t=soon,v1=abc", "not a whole number", id="bad-timestamp"),
        pytest.param("t=١٢٣,v1=abc", "not a whole number", id="non-ascii-digits"),
        pytest.param(f"t={NOW},t={NOW},v1=abc", "two timestamps", id="two-timestamps"),
        pytest.param(f"t={NOW};v1=abc", "not a whole number", id="semicolons"),
        pytest.param("garbage", "not a key=value pair", id="garbage"),
    ],
)
def test_malformed_headers_are_refused_with_the_expected_format(header: str | None, needle: str) -> None:
    with pytest.raises(WebhookVerificationError, match=needle) as info:
        verify_signature(BODY, header, SECRET, now=NOW)
    assert info.value.reason == "malformed-header"
    assert "t=<unix seconds>,v1=<hex signature>" in str(info.value)


def test_a_non_ascii_signature_is_a_mismatch_not_a_crash() -> None:
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(BODY, f"t={NOW},v1=ünïcode", SECRET, now=NOW)
    assert info.value.reason == "mismatch"


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="signing secret"):
        verify_signature(BODY, sign_payload(BODY, ""), "")


@settings(max_examples=100)
@given(
    body=st.binary(min_size=1, max_size=300),
    secret=st.text(min_size=1, max_size=40),
    flip=st.integers(min_value=0),
)
def test_any_body_verifies_and_any_changed_byte_does_not(body: bytes, secret: str, flip: int) -> None:
    header = sign_payload(body, secret, timestamp=NOW)
    verify_signature(body, header, secret, now=NOW)
    position = flip % len(body)
    changed = body[:position] + bytes([body[position] ^ 0x01]) + body[position + 1 :]
    with pytest.raises(WebhookVerificationError):
        verify_signature(changed, header, secret, now=NOW)


# --------------------------------------------------------------------------------------------- parsers

#: The batch webhook example of Sync's batch guide (camelCase metrics and createdAt).
DOCS_BATCH_EXAMPLE = {
    "id": "batch_abc123",
    "createdAt": "2024-01-15T10:30:00Z",
    "status": "COMPLETED",
    "webhookUrl": "https://your-webhook-url.com/batch-webhook",
    "metrics": {"totalGenerations": 5, "successCount": 4, "failedCount": 1, "pendingCount": 0},
    "options": {},
    "outputUrl": "https://api.sync.so/v2/batches/batch_abc123/result",
}

#: The same notification in the BatchResponse schema's casing (snake_case created_at and metrics).
SCHEMA_BATCH_EXAMPLE = {
    "id": "batch_abc123",
    "created_at": "2024-01-15T10:30:00Z",
    "status": "COMPLETED",
    "webhookUrl": "https://your-webhook-url.com/batch-webhook",
    "metrics": {"total_generations": 5, "success_count": 4, "failed_count": 1, "pending_count": 0},
    "outputUrl": "https://api.sync.so/v2/batches/batch_abc123/result",
}


@pytest.mark.parametrize("payload", [DOCS_BATCH_EXAMPLE, SCHEMA_BATCH_EXAMPLE], ids=["camel", "snake"])
@pytest.mark.parametrize("form", ["bytes", "str", "mapping"])
def test_batch_webhook_parses_in_either_casing(payload: dict[str, Any], form: str) -> None:
    raw = json.dumps(payload)
    body: Any = {"bytes": raw.encode(), "str": raw, "mapping": payload}[form]
    event = parse_batch_webhook(body)
    assert isinstance(event, BatchWebhook)
    assert (event.id, event.status, event.is_terminal) == ("batch_abc123", "COMPLETED", True)
    assert (event.metrics.total_generations, event.metrics.success_count, event.metrics.failed_count) == (
        5,
        4,
        1,
    )
    assert event.created_at is not None
    assert event.created_at.isoformat() == "2024-01-15T10:30:00+00:00"
    assert event.output_url == "https://api.sync.so/v2/batches/batch_abc123/result"
    assert event.webhook_url == "https://your-webhook-url.com/batch-webhook"


def test_batch_webhook_keeps_unknown_keys() -> None:
    event = parse_batch_webhook({**SCHEMA_BATCH_EXAMPLE, "newField": 1})
    assert event.model_extra == {"newField": 1}


@pytest.mark.parametrize("key", ["error_code", "errorCode"])
def test_generation_webhook_reads_either_error_code_casing(key: str) -> None:
    body = {
        "id": "gen_1",
        "status": "FAILED",
        "createdAt": "2026-01-01T00:00:00Z",
        "model": "lipsync-2",
        "error": "The input video could not be downloaded",
        key: "generation_input_video_inaccessible",
        "outputUrl": None,
    }
    event = parse_generation_webhook(json.dumps(body))
    assert isinstance(event, GenerationWebhook)
    assert (event.id, event.status, event.error_code) == (
        "gen_1",
        "FAILED",
        "generation_input_video_inaccessible",
    )
    assert event.error == "The input video could not be downloaded"


def test_completed_generation_webhook_carries_the_output() -> None:
    body = {
        "id": "gen_2",
        "status": "COMPLETED",
        "created_at": "2026-01-01T00:00:00Z",
        "outputUrl": "https://cdn.example/out.mp4",
        "outputDuration": 12.5,
    }
    event = parse_generation_webhook(body)
    assert (event.output_url, event.output_duration) == ("https://cdn.example/out.mp4", 12.5)
    assert event.created_at is not None


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(b"{not json", "not JSON", id="not-json"),
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b"[1, 2]", "must be a JSON object, not list", id="array"),
        pytest.param(b'{"status": "COMPLETED"}', "has no id", id="no-id"),
        pytest.param(b'{"id": "b"}', "has no status", id="no-status"),
        pytest.param(b'{"id": "", "status": ""}', "has no id or status", id="empty-values"),
        pytest.param(b'{"id": 5, "status": "COMPLETED"}', "not a Sync", id="id-not-a-string"),
    ],
)
@pytest.mark.parametrize(
    "parse", [parse_batch_webhook, parse_generation_webhook], ids=["batch", "generation"]
)
def test_bodies_that_are_not_notifications_are_refused(body: bytes, needle: str, parse: Any) -> None:
    with pytest.raises(WebhookVerificationError, match=needle) as info:
        parse(body)
    assert info.value.reason == "invalid-body"


def test_verify_then_parse_end_to_end() -> None:
    """How a webhook handler uses both: verify the raw bytes, then parse them."""
    raw = json.dumps(DOCS_BATCH_EXAMPLE).encode()
    headers = {SIGNATURE_HEADER: sign_payload(raw, SECRET, timestamp=NOW)}
    verify_signature(raw, headers[SIGNATURE_HEADER], SECRET, now=NOW + 1)
    assert parse_batch_webhook(raw).metrics.failed_count == 1
