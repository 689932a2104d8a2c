"""The HTTP client against the real sandbox over loopback sockets: the happy path, faults, and the key's safety.

The sandbox runs on a ManualClock, and the client's ``sleep`` advances that clock, so waits and backoffs are
instant and deterministic while every request still crosses a real socket.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchkit import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Batch,
    ConcurrencyLimitError,
    ConfigurationError,
    DryRunResult,
    GeneratePayload,
    NotFoundError,
    OutputLine,
    PaymentRequiredError,
    RateLimitError,
    ResultsError,
    ServerError,
)
from batchkit._api.backoff import NO_RETRY, PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._api.webhooks import SIGNATURE_HEADER, parse_batch_webhook, verify_signature
from batchkit.sandbox import Fault, ManualClock, Sandbox, serve

KEY = "sk-sandbox-SECRET-abcdef0123456789"
FAST_POLL = PollPolicy(initial=0.1, factor=2, maximum=1)


def payload(i: int, marker: str = "") -> dict[str, Any]:
    return {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": f"https://cdn.example.com/v{i}.mp4{marker}"},
            {"type": "audio", "url": f"https://cdn.example.com/a{i}.wav"},
        ],
    }


def shard(n: int = 20, *, prefix: str = "r", fail: frozenset[int] = frozenset()) -> bytes:
    """A batch file of ``n`` valid lines; the lines in ``fail`` carry the sandbox's ``?sandbox=fail`` marker."""
    lines = (
        {
            "request_id": f"{prefix}{i}",
            "endpoint": "/v2/generate",
            "payload": payload(i, "?sandbox=fail" * (i in fail)),
        }
        for i in range(n)
    )
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


@dataclass
class Env:
    sandbox: Sandbox
    url: str
    clock: ManualClock
    client: Client
    sleeps: list[float] = field(default_factory=list)


@contextlib.contextmanager
def running(
    *, retry: RetryPolicy | None = None, api_key: str | None = KEY, timeout: float = 10.0, **config: Any
) -> Iterator[Env]:
    clock = ManualClock()
    sandbox = Sandbox(clock=clock, **config)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    with serve(sandbox) as url:
        client = Client(
            api_key=api_key,
            base_url=url,
            timeout=timeout,
            retry=retry or RetryPolicy(jitter=0),
            sleep=sleep,
            clock=clock.monotonic,
        )
        with client:
            yield Env(sandbox, url, clock, client, sleeps)


@pytest.fixture
def env() -> Iterator[Env]:
    with running() as e:
        yield e


# --------------------------------------------------------------------------------------------- happy path


def test_create_wait_list_and_download_a_batch(env: Env, tmp_path: Path) -> None:
    """The whole cycle over real sockets, and the downloaded output holds one line per request."""
    created = env.client.batches.create(shard(fail=frozenset({3})))
    assert isinstance(created, Batch)
    assert created.status == "PENDING"
    assert created.metrics.total_generations == 20

    seen: list[str] = []
    done = env.client.batches.wait(created.id, poll=FAST_POLL, on_update=lambda b: seen.append(b.status))
    assert done.status == "COMPLETED"
    assert seen[-1] == "COMPLETED"
    assert (done.metrics.success_count, done.metrics.failed_count) == (19, 1)

    assert [b.id for b in env.client.batches.list(status="COMPLETED")] == [created.id]
    assert env.client.batches.list(status="PENDING") == []

    path = env.client.batches.download(done, tmp_path / "results" / f"{done.id}.output.jsonl")
    lines = [OutputLine.model_validate_json(raw) for raw in path.read_bytes().splitlines()]
    assert sorted(line.request_id for line in lines) == sorted(f"r{i}" for i in range(20))
    assert {line.request_id: line.effective_status for line in lines}["r3"] == "FAILED"
    assert env.sandbox.key_leaks == []
    assert list(path.parent.iterdir()) == [path]


def test_dry_run_validates_without_creating_a_batch(env: Env) -> None:
    result = env.client.batches.create(shard(), dry_run=True)
    assert isinstance(result, DryRunResult)
    assert result.status == "VALIDATED"
    assert env.sandbox.batches == []
    assert env.sandbox.dry_runs == 1


def test_list_filters_by_creation_time_newest_first(env: Env) -> None:
    first = env.client.batches.create(shard(prefix="a"))
    env.clock.advance(5)
    second = env.client.batches.create(shard(prefix="b"))
    assert isinstance(first, Batch)
    assert isinstance(second, Batch)
    assert first.created_at is not None
    assert second.created_at is not None
    assert [b.id for b in env.client.batches.list()] == [second.id, first.id]
    assert [b.id for b in env.client.batches.list(created_after=second.created_at)] == [second.id]
    assert [b.id for b in env.client.batches.list(created_before=second.created_at)] == [first.id]


def test_download_sends_the_key_only_to_the_api_host(tmp_path: Path) -> None:
    """The API's result URL wants the key; the signed URL on the other host never sees it."""
    with running(result_requires_key=True) as env:
        batch = env.client.batches.create(shard())
        assert isinstance(batch, Batch)
        done = env.client.batches.wait(batch.id, poll=FAST_POLL)
        env.client.batches.download(done, tmp_path / "o.jsonl")
        counts = env.sandbox.requests
    assert counts[("GET", "/v2/batches/{id}/result")] == 2  # without the key first, then with it
    assert counts[("GET", "/_signed/results/{name}")] == 1
    assert env.sandbox.key_leaks == []


def test_download_without_key_when_the_result_url_is_open(tmp_path: Path) -> None:
    with running(result_requires_key=False) as env:
        batch = env.client.batches.create(shard())
        assert isinstance(batch, Batch)
        done = env.client.batches.wait(batch.id, poll=FAST_POLL)
        env.client.batches.download(done.output_url or "", tmp_path / "o.jsonl")
        counts = env.sandbox.requests
    assert counts[("GET", "/v2/batches/{id}/result")] == 1
    assert len((tmp_path / "o.jsonl").read_bytes().splitlines()) == 20


def test_a_broken_download_is_retried_from_the_start_and_leaves_no_partial_file(
    env: Env, tmp_path: Path
) -> None:
    batch = env.client.batches.create(shard())
    assert isinstance(batch, Batch)
    done = env.client.batches.wait(batch.id, poll=FAST_POLL)
    env.sandbox.inject(Fault(route="GET /v2/batches/{id}/result", kind="reset_before_accept", times=2))
    env.sleeps.clear()
    path = env.client.batches.download(done, tmp_path / "o.jsonl")
    assert len(path.read_bytes().splitlines()) == 20
    assert (
        env.sandbox.requests[("GET", "/v2/batches/{id}/result")] == 4
    )  # 2 resets, then without and with key
    assert env.sandbox.requests[("GET", "/_signed/results/{name}")] == 1
    assert env.sleeps == [0.5, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["o.jsonl"]


def test_download_before_the_batch_finished_says_there_are_no_results(env: Env, tmp_path: Path) -> None:
    batch = env.client.batches.create(shard())
    assert isinstance(batch, Batch)
    with pytest.raises(ResultsError, match="no results yet"):
        env.client.batches.download(env.client.batches.get(batch.id), tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


def test_generations_create_and_get(env: Env) -> None:
    generation = env.client.generations.create(GeneratePayload.model_validate(payload(1)))
    assert generation.id
    env.clock.advance(60)
    fetched = env.client.generations.get(generation.id)
    assert (fetched.id, fetched.status) == (generation.id, "COMPLETED")


def test_an_idempotent_generation_is_retried_and_created_once(env: Env) -> None:
    env.sandbox.inject(Fault(route="POST /v2/generate", kind="reset_after_accept", times=1))
    generation = env.client.generations.create(payload(2), idempotency_key="row-2.try-1")
    assert len(env.sandbox.generations) == 1
    assert env.sandbox.generations[0].id == generation.id
    assert env.sandbox.requests[("POST", "/v2/generate")] == 2


def test_a_generation_without_idempotency_key_is_not_resent_after_a_reset(env: Env) -> None:
    env.sandbox.inject(Fault(route="POST /v2/generate", kind="reset_after_accept", times=1))
    with pytest.raises(APIConnectionError) as info:
        env.client.generations.create(payload(3))
    assert info.value.sent is True
    assert len(env.sandbox.generations) == 1
    assert env.sandbox.requests[("POST", "/v2/generate")] == 1


# --------------------------------------------------------------------------------------------- faults on create


def test_a_rate_limited_dry_run_stays_a_dry_run_on_every_retry(env: Env) -> None:
    """The official SDK turns this into a real, billed batch; batchkit resends dry_run=true each time."""
    env.sandbox.inject(Fault(route="POST /v2/batch", kind="status", status=429, times=2, retry_after=2))
    result = env.client.batches.create(shard(), dry_run=True, webhook_url="http://127.0.0.1:9/hook")
    assert isinstance(result, DryRunResult)
    assert env.sandbox.batches == []
    assert env.sandbox.dry_runs == 1
    assert env.sandbox.requests[("POST", "/v2/batch")] == 3
    assert env.sleeps == [2.0, 2.0]


@pytest.mark.parametrize(
    ("fault", "created", "kind"),
    [
        pytest.param(
            Fault(route="POST /v2/batch", kind="reset_after_accept"), 1, APIConnectionError, id="reset-after"
        ),
        pytest.param(
            Fault(route="POST /v2/batch", kind="reset_before_accept"),
            0,
            APIConnectionError,
            id="reset-before",
        ),
        pytest.param(Fault(route="POST /v2/batch", kind="status", status=503), 0, ServerError, id="503"),
        pytest.param(Fault(route="POST /v2/batch", kind="status", status=500), 0, ServerError, id="500"),
        pytest.param(Fault(route="POST /v2/batch", kind="malformed_json"), 1, APIError, id="malformed-json"),
    ],
)
def test_a_create_that_may_have_arrived_is_never_resent(
    env: Env, fault: Fault, created: int, kind: type[APIError]
) -> None:
    """One POST, whatever happened, and a message that says to check before resending."""
    env.sandbox.inject(fault)
    with pytest.raises(kind) as info:
        env.client.batches.create(shard())
    assert env.sandbox.requests[("POST", "/v2/batch")] == 1
    assert len(env.sandbox.batches) == created
    assert "before resending" in str(info.value)
    if isinstance(info.value, APIConnectionError):
        assert info.value.sent is True


def test_a_create_timeout_after_upload_is_not_resent() -> None:
    with running(timeout=0.3) as env:
        env.sandbox.inject(Fault(route="POST /v2/batch", kind="slow", delay=1.0))
        with pytest.raises(APITimeoutError) as info:
            env.client.batches.create(shard())
        assert info.value.sent is True
        assert env.sandbox.requests[("POST", "/v2/batch")] == 1


def test_concurrency_limit_raises_at_once_and_clears_when_a_batch_ends() -> None:
    with running(concurrency_limit=1) as env:
        first = env.client.batches.create(shard(prefix="a"))
        assert isinstance(first, Batch)
        with pytest.raises(ConcurrencyLimitError, match="wait for one to finish") as info:
            env.client.batches.create(shard(prefix="b"))
        assert info.value.error_code == "concurrency_limit_reached"
        assert env.sandbox.requests[("POST", "/v2/batch")] == 2
        env.client.batches.wait(first.id, poll=FAST_POLL)
        assert isinstance(env.client.batches.create(shard(prefix="b")), Batch)
        assert len(env.sandbox.batches) == 2


def test_nothing_listening_is_retried_then_reported_as_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    client = Client(
        api_key=KEY,
        base_url=f"http://127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=3, jitter=0),
        sleep=sleeps.append,
    )
    with client, pytest.raises(APIConnectionError, match="nothing was sent") as info:
        client.batches.create(shard())
    assert info.value.sent is False
    assert sleeps == [0.5, 1.0]


# --------------------------------------------------------------------------------------------- faults on reads


def test_a_5xx_storm_on_get_is_ridden_out(env: Env) -> None:
    batch = env.client.batches.create(shard())
    assert isinstance(batch, Batch)
    env.sandbox.inject(Fault(route="GET /v2/batch/{id}", kind="status", status=502, times=3))
    assert env.client.batches.get(batch.id).id == batch.id
    assert env.sandbox.requests[("GET", "/v2/batch/{id}")] == 4
    assert env.sleeps == [0.5, 1.0, 2.0]


def test_resets_and_timeouts_on_get_are_retried() -> None:
    with running(timeout=0.3) as env:
        batch = env.client.batches.create(shard())
        assert isinstance(batch, Batch)
        env.sandbox.inject(
            Fault(route="GET /v2/batch/{id}", kind="reset_before_accept", times=1),
            Fault(route="GET /v2/batch/{id}", kind="slow", delay=1.0, times=1),
        )
        assert env.client.batches.get(batch.id).id == batch.id
        assert env.sandbox.requests[("GET", "/v2/batch/{id}")] == 3


def test_a_429_storm_gives_up_after_max_attempts() -> None:
    with running(retry=RetryPolicy(max_attempts=4, jitter=0)) as env:
        env.sandbox.configure(rate_limit_share=1.0)
        with pytest.raises(RateLimitError, match="429"):
            env.client.batches.list()
        assert env.sandbox.requests[("GET", "/v2/batch")] == 4
        assert len(env.sleeps) == 3


def test_a_malformed_json_answer_is_a_clear_error(env: Env) -> None:
    batch = env.client.batches.create(shard())
    assert isinstance(batch, Batch)
    env.sandbox.inject(Fault(route="GET /v2/batch/{id}", kind="malformed_json"))
    with pytest.raises(APIError, match="not JSON"):
        env.client.batches.get(batch.id)


# --------------------------------------------------------------------------------------------- refusals


def test_a_wrong_key_is_401_with_what_to_do() -> None:
    with running(api_key="not-the-key", api_keys=(KEY,)) as env:
        with pytest.raises(AuthenticationError, match="SYNC_API_KEY") as info:
            env.client.batches.list()
        assert info.value.status_code == 401
        assert env.sandbox.requests[("GET", "/v2/batch")] == 1


def test_no_key_sends_nothing() -> None:
    with running(api_key=None) as env:
        with pytest.raises(ConfigurationError, match="no API key"):
            env.client.batches.create(shard())
        assert sum(env.sandbox.requests.values()) == 0


def test_a_plan_without_batch_access_is_402_naming_the_plans() -> None:
    with running(batch_access=False) as env, pytest.raises(PaymentRequiredError, match="Scale or Enterprise"):
        env.client.batches.create(shard())


def test_an_unknown_batch_is_404(env: Env) -> None:
    with pytest.raises(NotFoundError, match="batch_nope → 404"):
        env.client.batches.get("batch_nope")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        pytest.param(shard(19), "19", id="too-few"),
        pytest.param(shard(20) + shard(1), "r0", id="duplicate-id"),
    ],
)
def test_an_upload_the_server_refuses_is_400_with_its_messages(env: Env, content: bytes, needle: str) -> None:
    with pytest.raises(BadRequestError, match="POST /v2/batch → 400") as info:
        env.client.batches.create(content)
    assert needle in info.value.server_message
    assert env.sandbox.batches == []


# --------------------------------------------------------------------------------------------- secrets and webhooks


def test_the_key_appears_in_no_log_and_no_error(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """A run with retries, failures and a download, logged at DEBUG by every library: the key is nowhere."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with running() as env:
        texts.append(repr(env.client))
        env.sandbox.inject(Fault(route="POST /v2/batch", kind="status", status=429, times=1))
        batch = env.client.batches.create(shard())
        assert isinstance(batch, Batch)
        env.sandbox.inject(Fault(route="GET /v2/batch/{id}", kind="reset_before_accept", times=1))
        done = env.client.batches.wait(batch.id, poll=FAST_POLL)
        env.client.batches.download(done, tmp_path / "o.jsonl")
        with pytest.raises(APIError) as missing:
            env.client.batches.get("missing")
        with pytest.raises(APIError) as refused:
            env.client.batches.create(shard(3))
        for exc in (missing.value, refused.value):
            texts += [str(exc), repr(exc), str(getattr(exc, "body", ""))]
        env.sandbox.inject(Fault(route="POST /v2/batch", kind="reset_after_accept"))
        with pytest.raises(APIConnectionError) as reset:
            env.client.batches.create(shard())
        texts += [str(reset.value), repr(reset.value)]
        assert env.sandbox.key_leaks == []
    texts += [record.getMessage() for record in caplog.records]
    texts += [p.read_text() for p in tmp_path.iterdir()]
    assert any("retrying in" in text for text in texts)
    assert [text for text in texts if KEY in text] == []


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[bytes, str | None]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((body, self.headers.get(SIGNATURE_HEADER)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_sandbox_batch_webhook_verifies_and_parses() -> None:
    """A real delivery over loopback: verify the raw body with the signing secret, then parse it."""
    received: list[tuple[bytes, str | None]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with running(webhook_secret="whsec_e2e") as env:
            hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
            batch = env.client.batches.create(shard(fail=frozenset({0, 1})), webhook_url=hook)
            assert isinstance(batch, Batch)
            env.client.batches.wait(batch.id, poll=FAST_POLL)
            deliveries = env.sandbox.wait_for_webhooks(1)
    finally:
        server.shutdown()
        server.server_close()
    assert deliveries[0].ok
    body, header = received[0]
    verify_signature(body, header, "whsec_e2e")
    event = parse_batch_webhook(body)
    assert (event.id, event.status, event.metrics.failed_count) == (batch.id, "COMPLETED", 2)


def test_no_retry_policy_makes_one_attempt(env: Env) -> None:
    client = Client(api_key=KEY, base_url=env.url, retry=NO_RETRY, sleep=env.clock.advance)
    env.sandbox.inject(Fault(route="GET /v2/batch", kind="status", status=503))
    with client, pytest.raises(ServerError):
        client.batches.list()
    assert env.sandbox.requests[("GET", "/v2/batch")] == 1
