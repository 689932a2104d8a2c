"""The response models read what Sync sends, in every documented spelling, without failing on surprises."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from batchkit import (
    Batch,
    BatchWebhook,
    DryRunResult,
    Generation,
    GenerationWebhook,
    OutputLine,
)
from batchkit._wire.responses import BATCH_STATUSES, BATCH_TERMINAL, GENERATION_TERMINAL

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def test_batch_from_the_create_example() -> None:
    """sync-api.md §4.1: snake_case created_at and metrics, camelCase URLs, outputUrl empty until done."""
    batch = Batch.model_validate(
        {
            "id": "batch_abc123",
            "created_at": "2024-01-15T10:30:00Z",
            "status": "PENDING",
            "metrics": {"total_generations": 5, "success_count": 0, "failed_count": 0, "pending_count": 0},
            "webhookUrl": "https://h.example.com/w",
            "outputUrl": "",
        }
    )
    assert batch.created_at == CREATED
    assert batch.metrics.total_generations == 5
    assert batch.metrics.done == 0
    assert batch.webhook_url == "https://h.example.com/w"
    assert batch.output_url == ""
    assert not batch.is_terminal


def test_batch_webhook_in_camel_case() -> None:
    """The webhook example's camelCase createdAt and metrics read the same; unknown keys are kept."""
    hook = BatchWebhook.model_validate(
        {
            "id": "batch_abc123",
            "createdAt": "2024-01-15T10:30:00Z",
            "status": "COMPLETED",
            "webhookUrl": "https://your-webhook-url.com/batch-webhook",
            "metrics": {"totalGenerations": 5, "successCount": 4, "failedCount": 1, "pendingCount": 0},
            "options": {},
            "outputUrl": "https://api.sync.so/v2/batches/batch_abc123/result",
        }
    )
    assert hook.created_at == CREATED
    assert (hook.metrics.success_count, hook.metrics.failed_count, hook.metrics.done) == (4, 1, 5)
    assert hook.is_terminal
    assert hook.model_extra == {"options": {}}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"metrics": None}, id="null-metrics"),
        pytest.param({"metrics": {"pending_count": None}}, id="null-count"),
        pytest.param({"created_at": "yesterday"}, id="unparseable-date"),
        pytest.param({"webhookUrl": None, "outputUrl": None}, id="null-urls"),
        pytest.param({"status": "JOBS_CREATED", "brandNewField": [1]}, id="new-field"),
    ],
)
def test_batch_tolerates_surprises(changes: dict[str, Any]) -> None:
    """Nulls, unparseable dates and new fields never fail a poll."""
    batch = Batch.model_validate({"id": "b1", "status": "PROCESSING", **changes})
    assert batch.id == "b1"
    assert batch.metrics.pending_count == 0
    assert batch.created_at is None


def test_statuses() -> None:
    assert set(BATCH_TERMINAL) == {"COMPLETED", "FAILED"}
    assert set(BATCH_TERMINAL) < set(BATCH_STATUSES)
    assert "REJECTED" in GENERATION_TERMINAL
    assert "PROCESSING" not in GENERATION_TERMINAL
    assert not Batch(id="b", status="JOBS_CREATED").is_terminal


def test_dry_run_result() -> None:
    assert DryRunResult.model_validate({"status": "VALIDATED"}).status == "VALIDATED"


@pytest.mark.parametrize("key", ["error_code", "errorCode"])
def test_generation_error_code_in_both_casings(key: str) -> None:
    generation = Generation.model_validate(
        {"id": "g1", "status": "FAILED", key: "generation_timeout", "error": "took too long"}
    )
    assert generation.error_code == "generation_timeout"
    assert generation.error == "took too long"


def test_generation_fields_and_aliases() -> None:
    """camelCase wire names, outputMediaUrl as an alias of outputUrl, nested error objects as text."""
    generation = GenerationWebhook.model_validate(
        {
            "id": "g1",
            "createdAt": "2024-01-15T10:30:00Z",
            "status": "COMPLETED",
            "model": "lipsync-2",
            "input": [{"type": "video", "url": "https://v"}],
            "outputMediaUrl": "https://cdn.sync.so/g1.mp4",
            "outputDuration": 4.5,
            "segmentOutputUrl": "https://cdn.sync.so/g1-seg.mp4",
            "error": {"message": ["bad audio", "too long"]},
        }
    )
    assert generation.created_at == CREATED
    assert generation.output_url == "https://cdn.sync.so/g1.mp4"
    assert generation.output_duration == 4.5
    assert generation.segment_output_url == "https://cdn.sync.so/g1-seg.mp4"
    assert generation.error == "bad audio; too long"


def test_output_lines_from_the_guide() -> None:
    """The guide's two example lines: status, error and response as documented."""
    done = OutputLine.model_validate(
        {
            "request_id": "request-1",
            "endpoint": "/v2/generate",
            "payload": {"model": "lipsync-2"},
            "status": "COMPLETED",
            "error": None,
            "response": {"id": "g1", "status": "COMPLETED", "outputUrl": "https://cdn.sync.so/g1.mp4"},
            "updated_at": "2024-01-15T10:35:00Z",
        }
    )
    assert done.effective_status == "COMPLETED"
    assert done.response is not None
    assert done.response.output_url == "https://cdn.sync.so/g1.mp4"
    assert done.effective_error_code is None
    assert done.updated_at == datetime(2024, 1, 15, 10, 35, tzinfo=UTC)
    failed = OutputLine.model_validate(
        {
            "request_id": "request-2",
            "status": "FAILED",
            "error": {"code": "INVALID_INPUT", "message": "the audio could not be read"},
            "response": None,
        }
    )
    assert failed.effective_status == "FAILED"
    assert failed.effective_error_code == "INVALID_INPUT"
    assert failed.effective_error_message == "the audio could not be read"


@pytest.mark.parametrize(
    ("line", "status", "code", "message"),
    [
        pytest.param({"error": "boom"}, None, None, "boom", id="error-string"),
        pytest.param({"error": ["a", "b"]}, None, None, "a; b", id="error-list"),
        pytest.param(
            {"error": {"errorCode": 429, "message": ["x"]}}, None, "429", "x", id="error-camel-number"
        ),
        pytest.param({"error": ""}, None, None, None, id="error-empty"),
        pytest.param({"status": "failed", "errorCode": "E1"}, "FAILED", "E1", None, id="line-error-code"),
        pytest.param(
            {"response": {"status": "rejected", "error_code": "E2", "error": "no"}},
            "REJECTED",
            "E2",
            "no",
            id="from-response",
        ),
    ],
)
def test_output_line_effective_values(
    line: dict[str, Any], status: str | None, code: str | None, message: str | None
) -> None:
    """Status and error come from the line, else from the embedded generation, in any documented shape."""
    parsed = OutputLine.model_validate({"request_id": "r", **line})
    assert (parsed.effective_status, parsed.effective_error_code, parsed.effective_error_message) == (
        status,
        code,
        message,
    )


def test_output_line_keeps_unknown_keys_and_needs_request_id() -> None:
    parsed = OutputLine.model_validate({"request_id": 17, "generationId": "g9", "updated_at": "not a date"})
    assert parsed.request_id == "17"
    assert parsed.model_extra == {"generationId": "g9"}
    assert parsed.updated_at is None
    with pytest.raises(ValueError, match="request_id"):
        OutputLine.model_validate({"status": "COMPLETED"})


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200)
@given(error=JSON_VALUES, status=st.one_of(st.none(), st.text(max_size=10)), when=JSON_SCALARS)
def test_output_line_reads_any_error_shape(error: Any, status: str | None, when: Any) -> None:
    """Whatever the error field holds, the line parses and its error reads as text or None."""
    parsed = OutputLine.model_validate(
        {"request_id": "r", "error": error, "status": status, "updated_at": when}
    )
    assert parsed.effective_error_message is None or isinstance(parsed.effective_error_message, str)
    assert parsed.effective_error_code is None or isinstance(parsed.effective_error_code, str)


def test_a_null_alias_does_not_hide_the_other_casing() -> None:
    """{"error_code": null, "errorCode": "x"}: the value given wins over the null, whatever the key order."""
    from batchkit import Generation

    g = Generation.model_validate(
        {"error_code": None, "errorCode": "x", "outputUrl": None, "outputMediaUrl": "u"}
    )
    assert (g.error_code, g.output_url) == ("x", "u")
