"""The official ``syncsdk`` client, unchanged, against the sandbox over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sync import (
    Audio,
    BadRequestError,
    BatchResponse,
    NotFoundError,
    PaymentRequiredError,
    Sync,
    TooManyRequestsError,
    UnauthorizedError,
    ValidationResponse,
    Video,
)

from batchkit.sandbox import Fault, ManualClock, Sandbox, serve

KEY = "sk-sdk-test"


def _write(path: Path, count: int = 20, *, suffix: str = "") -> Path:
    lines = []
    for i in range(count):
        payload = {
            "model": "lipsync-2",
            "input": [
                {"type": "video", "url": f"https://media.test/v{i}.mp4{suffix if i == 0 else ''}"},
                {"type": "audio", "url": f"https://media.test/a{i}.wav"},
            ],
        }
        lines.append(orjson.dumps({"request_id": f"row-{i}", "endpoint": "/v2/generate", "payload": payload}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sandbox(clock: ManualClock) -> Sandbox:
    return Sandbox(clock=clock, api_keys=(KEY,), pending_seconds=1, seconds_per_generation=0.1)


@pytest.fixture
def sdk(sandbox: Sandbox) -> Iterator[Sync]:
    with serve(sandbox) as url, httpx.Client(timeout=10, follow_redirects=True) as http:
        yield Sync(api_key=KEY, base_url=url, httpx_client=http)


def test_batch_create_get_and_list_parse(
    sdk: Sync, sandbox: Sandbox, clock: ManualClock, tmp_path: Path
) -> None:
    """batch.create with an open file, then get and list with filters, all parse into the SDK's models."""
    path = _write(tmp_path / "input.jsonl", suffix="?sandbox=fail")
    with path.open("rb") as handle:
        created = sdk.batch.create(input=handle, webhook_url="http://127.0.0.1:9/hook")
    assert isinstance(created, BatchResponse)
    assert created.status == "PENDING"
    assert created.output_url == ""
    assert created.metrics.total_generations == 20
    assert created.webhook_url == "http://127.0.0.1:9/hook"
    assert [b.id for b in sandbox.batches] == [created.id]
    assert sandbox.batches[0].file_bytes == path.read_bytes()

    fetched = sdk.batch.get(created.id)
    assert (fetched.id, fetched.status, fetched.created_at) == (
        created.id,
        "PENDING",
        sandbox.batches[0].created_at,
    )

    clock.advance(1.5)
    processing = sdk.batch.get(created.id)
    assert processing.status == "PROCESSING"
    assert processing.metrics.pending_count == 15

    since = clock.now() - timedelta(minutes=1)
    assert [b.id for b in sdk.batch.list(status="PROCESSING", created_after=since)] == [created.id]
    assert sdk.batch.list(status="COMPLETED") == []
    assert sdk.batch.list(created_after=clock.now() + timedelta(minutes=1)) == []
    assert [b.id for b in sdk.batch.list(created_before=datetime.now(UTC) + timedelta(days=1))] == [
        created.id
    ]

    clock.advance(10)
    done = sdk.batch.get(created.id)
    assert done.status == "COMPLETED"
    assert (done.metrics.success_count, done.metrics.failed_count) == (19, 1)
    assert done.output_url.endswith(f"/v2/batches/{created.id}/result")


def test_dry_run_parses_as_validation_response(sdk: Sync, sandbox: Sandbox, tmp_path: Path) -> None:
    with _write(tmp_path / "input.jsonl").open("rb") as handle:
        answer = sdk.batch.create(input=handle, dry_run=True)
    assert isinstance(answer, ValidationResponse)
    assert answer.status == "VALIDATED"
    assert sandbox.batches == []


def test_generations_create_and_get(sdk: Sync, clock: ManualClock) -> None:
    created = sdk.generations.create(
        model="lipsync-2",
        input=[Video(url="https://media.test/v.mp4"), Audio(url="https://media.test/a.wav")],
    )
    assert created.status == "PENDING"
    assert created.model == "lipsync-2"
    clock.advance(5)
    done = sdk.generations.get(created.id)
    assert done.status == "COMPLETED"
    assert done.output_url
    assert done.output_duration
    assert done.created_at == created.created_at


def test_sdk_errors_carry_the_sandbox_bodies(sdk: Sync, sandbox: Sandbox, tmp_path: Path) -> None:
    """401, 404, 400 (message list), 402 and 429 surface as the SDK's typed errors."""
    path = _write(tmp_path / "input.jsonl")
    with pytest.raises(NotFoundError) as missing:
        sdk.batch.get("batch_unknown")
    assert missing.value.body.message == "Batch not found"

    short = _write(tmp_path / "short.jsonl", count=3)
    with short.open("rb") as handle, pytest.raises(BadRequestError) as bad:
        sdk.batch.create(input=handle)
    assert bad.value.body.message == ["file has 3 record(s); a batch needs at least 20 records"]

    sandbox.inject(
        Fault(route="POST /v2/batch", kind="status", status=429, error_code="concurrency_limit_reached")
    )
    with path.open("rb") as handle, pytest.raises(TooManyRequestsError) as limited:
        sdk.batch.create(input=handle)
    assert limited.value.body.errorCode == "concurrency_limit_reached"

    sandbox.configure(batch_access=False)
    with path.open("rb") as handle, pytest.raises(PaymentRequiredError):
        sdk.batch.create(input=handle)
    assert sandbox.batches == []

    with httpx.Client(timeout=10) as http:
        stranger = Sync(api_key="not-the-key", base_url=sandbox.url, httpx_client=http)
        with pytest.raises(UnauthorizedError):
            stranger.batch.list()
