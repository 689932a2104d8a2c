"""The HTTP client against scripted answers (httpx.MockTransport): wire format, error mapping, retry rules."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from batchkit import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Batch,
    ConcurrencyLimitError,
    ConfigurationError,
    DryRunResult,
    GeneratePayload,
    InputError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitError,
    ResultsError,
    ServerError,
)
from batchkit._api.backoff import PollPolicy, RetryPolicy, call_with_retries, is_retryable, parse_retry_after
from batchkit._api.client import Client, error_from_response
from batchkit._errors import WaitTimeoutError

KEY = "sk-live-TOPSECRET-0123456789"
BASE = "https://api.sync.test"
LINES = b'{"request_id":"r1","endpoint":"/v2/generate","payload":{}}\n'


def batch_json(batch_id: str = "batch_1", status: str = "PENDING", **extra: Any) -> dict[str, Any]:
    return {
        "id": batch_id,
        "created_at": "2026-01-01T00:00:00Z",
        "status": status,
        "metrics": {"total_generations": 20, "success_count": 0, "failed_count": 0, "pending_count": 20},
        "webhookUrl": None,
        "outputUrl": "",
        **extra,
    }


Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Api:
    """A scripted server: gives its answers in order (the last one repeats) and records every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


@dataclass
class Rig:
    client: Client
    api: Api
    sleeps: list[float]


def rig(*answers: Answer, retry: RetryPolicy | None = None, **kwargs: Any) -> Rig:
    api = Api(*answers)
    sleeps: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(api))
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("base_url", BASE)
    client = Client(http_client=http, sleep=sleeps.append, retry=retry or RetryPolicy(jitter=0), **kwargs)
    return Rig(client, api, sleeps)


@dataclass
class Part:
    filename: str | None
    content_type: str
    data: bytes


def form(request: httpx.Request) -> dict[str, Part]:
    """The multipart form of a request, parsed with the standard library."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    assert isinstance(message, email.message.EmailMessage)
    parts: dict[str, Part] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts[name] = Part(part.get_filename(), part.get_content_type(), payload)
    return parts


def json_response(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# --------------------------------------------------------------------------------------------- create


def test_create_sends_the_documented_multipart_form(tmp_path: Path) -> None:
    """input part named after the file with application/octet-stream (as the SDKs, the official example and curl send it); dry_run always sent; webhook_url only if given."""
    path = tmp_path / "c-0001.jsonl"
    path.write_bytes(LINES)
    r = rig(json_response(201, batch_json()))
    batch = r.client.batches.create(path)
    assert isinstance(batch, Batch)
    assert batch.id == "batch_1"
    request = r.api.requests[0]
    assert (request.method, request.url.path, str(request.url.host)) == ("POST", "/v2/batch", "api.sync.test")
    assert request.headers["x-api-key"] == KEY
    parts = form(request)
    assert set(parts) == {"input", "dry_run"}
    assert parts["dry_run"].data == b"false"
    assert parts["input"] == Part("c-0001.jsonl", "application/octet-stream", LINES)


def test_dry_run_sends_true_and_returns_the_validation_result() -> None:
    """A dry run answers {"status": "VALIDATED"}: told apart from a Batch by the missing id."""
    r = rig(json_response(200, {"status": "VALIDATED"}))
    result = r.client.batches.create(LINES, dry_run=True, webhook_url="https://hooks.example.com/b")
    assert isinstance(result, DryRunResult)
    assert result.status == "VALIDATED"
    parts = form(r.api.requests[0])
    assert parts["dry_run"].data == b"true"
    assert parts["webhook_url"].data == b"https://hooks.example.com/b"
    assert parts["input"].filename == "input.jsonl"


def test_create_accepts_a_binary_file_object(tmp_path: Path) -> None:
    """An open binary file uploads its bytes under its base name."""
    path = tmp_path / "shard.jsonl"
    path.write_bytes(LINES)
    r = rig(json_response(201, batch_json()))
    with path.open("rb") as fh:
        r.client.batches.create(fh)
    assert form(r.api.requests[0])["input"] == Part("shard.jsonl", "application/octet-stream", LINES)


def text_file(path: Path) -> Any:
    path.write_bytes(LINES)
    return path.open(encoding="utf-8")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(lambda p: p / "missing.jsonl", "cannot read", id="missing-path"),
        pytest.param(lambda p: text_file(p / "t.jsonl"), "binary mode", id="text-mode"),
        pytest.param(lambda p: 42, "cannot upload a int", id="wrong-type"),
    ],
)
def test_create_refuses_unreadable_uploads_before_sending(
    tmp_path: Path, make: Callable[[Path], Any], needle: str
) -> None:
    """What cannot be uploaded is an InputError, and nothing reaches the server."""
    r = rig(json_response(201, batch_json()))
    file = make(tmp_path)
    try:
        with pytest.raises(InputError, match=needle):
            r.client.batches.create(file)
    finally:
        if hasattr(file, "close"):
            file.close()
    assert r.api.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(httpx.Response(201, text='{"id": "batch_1", "sta'), id="truncated-json"),
        pytest.param(httpx.Response(201, json={"status": "PENDING"}), id="no-id"),
    ],
)
def test_an_unreadable_create_answer_warns_that_the_batch_may_exist(answer: httpx.Response) -> None:
    """A 2xx the client cannot read may still have created a batch: the message says to check first."""
    r = rig(answer)
    with pytest.raises(APIError, match=r"may have been created, so check \(list batches\)"):
        r.client.batches.create(LINES)
    assert len(r.api.requests) == 1


def test_a_dry_run_answered_with_a_batch_returns_the_batch() -> None:
    """Should a server ignore dry_run and create a batch, the caller must learn its id."""
    r = rig(json_response(201, batch_json()))
    assert isinstance(r.client.batches.create(LINES, dry_run=True), Batch)


def test_create_refuses_a_webhook_url_that_is_not_http() -> None:
    r = rig(json_response(201, batch_json()))
    with pytest.raises(InputError, match="webhook_url"):
        r.client.batches.create(LINES, webhook_url="ftp://x")
    assert r.api.requests == []


def test_create_retry_after_429_resends_every_field_and_the_same_bytes() -> None:
    """The SDK bug batchkit fixes: each retry of a dry run keeps dry_run=true and webhook_url."""
    limited = json_response(
        429,
        {"statusCode": 429, "errorCode": "rate_limit_exceeded", "message": "slow down"},
        **{"Retry-After": "3"},
    )
    r = rig(limited, limited, json_response(200, {"status": "VALIDATED"}))
    result = r.client.batches.create(LINES, dry_run=True, webhook_url="https://hooks.example.com/b")
    assert isinstance(result, DryRunResult)
    assert len(r.api.requests) == 3
    for request in r.api.requests:
        parts = form(request)
        assert parts["dry_run"].data == b"true"
        assert parts["webhook_url"].data == b"https://hooks.example.com/b"
        assert parts["input"].data == LINES
    assert r.sleeps == [3.0, 3.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_is_never_retried_after_a_server_error(status: int) -> None:
    """A 5xx may have created a billed batch: raise at once for the journal to reconcile."""
    r = rig(json_response(status, {"message": "boom"}))
    with pytest.raises(ServerError) as info:
        r.client.batches.create(LINES)
    assert len(r.api.requests) == 1
    assert r.sleeps == []
    assert "may or may not have acted" in str(info.value)


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        pytest.param(httpx.ReadTimeout("read timed out"), APITimeoutError, id="read-timeout"),
        pytest.param(httpx.WriteTimeout("write timed out"), APITimeoutError, id="write-timeout"),
        pytest.param(httpx.RemoteProtocolError("Server disconnected"), APIConnectionError, id="reset"),
        pytest.param(httpx.ReadError("connection reset by peer"), APIConnectionError, id="read-error"),
    ],
)
def test_create_is_never_retried_after_the_upload_may_have_arrived(
    failure: Exception, kind: type[APIConnectionError]
) -> None:
    """A timeout or reset after sending: sent=True, one attempt, a message saying to check before resending."""
    r = rig(failure, json_response(201, batch_json()))
    with pytest.raises(kind) as info:
        r.client.batches.create(LINES)
    assert info.value.sent is True
    assert len(r.api.requests) == 1
    assert "check before resending" in str(info.value)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ConnectError("connection refused"), id="connect"),
        pytest.param(httpx.ConnectTimeout("connect timed out"), id="connect-timeout"),
        pytest.param(httpx.PoolTimeout("pool timed out"), id="pool-timeout"),
    ],
)
def test_create_is_retried_when_it_certainly_did_not_leave(failure: Exception) -> None:
    """Connect failures sent nothing: retried with exponential backoff, then the create goes through."""
    r = rig(failure, failure, failure, json_response(201, batch_json()))
    batch = r.client.batches.create(LINES, webhook_url="https://hooks.example.com/b")
    assert isinstance(batch, Batch)
    assert len(r.api.requests) == 4
    assert r.sleeps == [0.5, 1.0, 2.0]
    assert all(form(req)["webhook_url"].data == b"https://hooks.example.com/b" for req in r.api.requests)


def test_connect_failures_give_up_after_max_attempts_with_sent_false() -> None:
    r = rig(httpx.ConnectError("connection refused"), retry=RetryPolicy(max_attempts=3, jitter=0))
    with pytest.raises(APIConnectionError) as info:
        r.client.batches.create(LINES)
    assert info.value.sent is False
    assert "nothing was sent" in str(info.value)
    assert len(r.api.requests) == 3
    assert r.sleeps == [0.5, 1.0]


def test_concurrency_limit_raises_at_once_so_the_caller_waits_for_a_batch() -> None:
    body = {
        "statusCode": 429,
        "errorCode": "concurrency_limit_reached",
        "message": "Batch concurrency limit reached. Please wait for an existing batch to complete",
    }
    r = rig(json_response(429, body))
    with pytest.raises(ConcurrencyLimitError) as info:
        r.client.batches.create(LINES)
    assert len(r.api.requests) == 1
    assert info.value.error_code == "concurrency_limit_reached"
    assert "wait for one to finish" in str(info.value)


def test_a_concurrency_429_without_code_is_still_recognised_by_its_message() -> None:
    r = rig(json_response(429, {"message": "Batch concurrency limit reached."}))
    with pytest.raises(ConcurrencyLimitError):
        r.client.batches.create(LINES)
    assert len(r.api.requests) == 1


# --------------------------------------------------------------------------------------------- idempotent calls


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_get_retries_transient_statuses(status: int) -> None:
    r = rig(json_response(status, {"message": "later"}), json_response(200, batch_json(status="PROCESSING")))
    assert r.client.batches.get("batch_1").status == "PROCESSING"
    assert len(r.api.requests) == 2
    assert r.sleeps == [0.5]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("t"),
        httpx.RemoteProtocolError("Server disconnected"),
        httpx.ConnectError("refused"),
    ],
    ids=["read-timeout", "reset", "connect"],
)
def test_get_retries_every_transport_failure(failure: Exception) -> None:
    r = rig(failure, json_response(200, batch_json()))
    assert r.client.batches.get("batch_1").id == "batch_1"
    assert len(r.api.requests) == 2


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, BadRequestError), (401, AuthenticationError), (402, PaymentRequiredError), (404, NotFoundError)],
)
def test_get_does_not_retry_client_errors(status: int, kind: type[APIStatusError]) -> None:
    r = rig(json_response(status, {"message": "no"}))
    with pytest.raises(kind):
        r.client.batches.get("batch_1")
    assert len(r.api.requests) == 1


def test_retries_stop_at_max_attempts_and_raise_the_last_error() -> None:
    r = rig(json_response(503, {"message": "down"}), retry=RetryPolicy(max_attempts=4, jitter=0))
    with pytest.raises(ServerError, match="503"):
        r.client.batches.get("batch_1")
    assert len(r.api.requests) == 4
    assert r.sleeps == [0.5, 1.0, 2.0]


def test_backoff_is_capped_at_the_maximum() -> None:
    policy = RetryPolicy(max_attempts=6, initial=1, multiplier=10, maximum=30, jitter=0)
    r = rig(json_response(500, {}), retry=policy)
    with pytest.raises(ServerError):
        r.client.batches.get("b")
    assert r.sleeps == [1.0, 10.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(("header", "slept"), [("7", 7.0), ("0", 0.0), ("100000", 120.0)])
def test_retry_after_is_honoured_and_capped(header: str, slept: float) -> None:
    r = rig(json_response(503, {}, **{"Retry-After": header}), json_response(200, batch_json()))
    r.client.batches.get("batch_1")
    assert r.sleeps == [slept]


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    r = rig(
        json_response(429, {}, **{"Retry-After": email.utils.format_datetime(when, usegmt=True)}),
        json_response(200, batch_json()),
    )
    r.client.batches.get("batch_1")
    assert len(r.sleeps) == 1
    assert 0 < r.sleeps[0] <= 90


def test_parse_retry_after_reads_seconds_dates_and_milliseconds() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(httpx.Headers({"Retry-After": "2.5"})) == 2.5
    assert parse_retry_after(httpx.Headers({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}), now=now) == 30.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}), now=now) == 0.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"Retry-After": "-4"})) == 0.0
    assert parse_retry_after(httpx.Headers({})) is None


def test_list_sends_filters_as_utc_iso_and_parses_the_array() -> None:
    """Aware datetimes are converted to UTC; naive ones are taken as UTC (not local time)."""
    r = rig(json_response(200, [batch_json("b2"), batch_json("b1")]))
    after = datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    before = datetime(2026, 3, 2, 8, 0, 0, 250000)
    batches = r.client.batches.list(status="COMPLETED", created_after=after, created_before=before)
    assert [b.id for b in batches] == ["b2", "b1"]
    params = r.api.requests[0].url.params
    assert params["status"] == "COMPLETED"
    assert params["created_after"] == "2026-03-01T12:30:00Z"
    assert params["created_before"] == "2026-03-02T08:00:00.250000Z"


def test_list_without_filters_sends_no_query() -> None:
    r = rig(json_response(200, []))
    assert r.client.batches.list() == []
    assert r.api.requests[0].url.query == b""


def test_ids_are_quoted_into_the_path() -> None:
    r = rig(json_response(200, batch_json("a/b c")))
    r.client.batches.get("a/b c")
    assert r.api.requests[0].url.raw_path == b"/v2/batch/a%2Fb%20c"


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_ids_are_refused_locally(bad: str) -> None:
    r = rig(json_response(200, batch_json()))
    with pytest.raises(InputError, match="batch id"):
        r.client.batches.get(bad)
    with pytest.raises(InputError, match="generation id"):
        r.client.generations.get(bad)
    assert r.api.requests == []


# --------------------------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "text"),
    [
        pytest.param(
            400,
            {"statusCode": 400, "message": ["line 3: duplicate request_id", "line 9: bad endpoint"]},
            BadRequestError,
            None,
            "POST /v2/batch → 400 Bad Request: line 3: duplicate request_id; line 9: bad endpoint. Sync refused",
            id="400-list-message",
        ),
        pytest.param(
            401, {"message": "Unauthorized"}, AuthenticationError, None, "check the api key", id="401-hint"
        ),
        pytest.param(
            402,
            {"message": "Insufficient credits", "errorCode": "insufficient_credits"},
            PaymentRequiredError,
            "insufficient_credits",
            "POST /v2/batch → 402 Payment Required: Insufficient credits (errorCode=insufficient_credits). "
            "Insufficient credits or plan limits: the Batch API needs a Scale or Enterprise plan",
            id="402-camel-code",
        ),
        pytest.param(
            429,
            {"message": "Rate limit exceeded", "error_code": "rate_limit_exceeded"},
            RateLimitError,
            "rate_limit_exceeded",
            "(errorCode=rate_limit_exceeded)",
            id="429-snake-code",
        ),
        pytest.param(
            500, "<html>Bad Gateway</html>", ServerError, None, "<html>Bad Gateway</html>", id="5xx-text"
        ),
        pytest.param(418, {"message": "teapot"}, APIStatusError, None, "418", id="other"),
        pytest.param(
            422,
            {"error": {"code": "INVALID_INPUT", "message": "bad"}},
            APIStatusError,
            "INVALID_INPUT",
            ": bad (errorCode=INVALID_INPUT)",
            id="nested-error",
        ),
    ],
)
def test_every_status_maps_to_its_class_with_code_and_message(
    status: int, body: Any, kind: type[APIStatusError], code: str | None, text: str
) -> None:
    """One function maps a response: class by status, errorCode in either casing, message joined, hint."""
    response = (
        httpx.Response(status, text=body) if isinstance(body, str) else httpx.Response(status, json=body)
    )
    response.request = httpx.Request("POST", BASE + "/v2/batch")
    exc = error_from_response(response, method="POST", path="/v2/batch")
    assert type(exc) is kind
    assert exc.status_code == status
    assert exc.error_code == code
    assert exc.body == body
    assert text.lower() in str(exc).lower()


def test_a_404_says_to_check_the_id() -> None:
    r = rig(json_response(404, {"statusCode": 404, "message": "Batch not found"}))
    with pytest.raises(
        NotFoundError, match=r"GET /v2/batch/nope → 404 Not Found: Batch not found\. Check the id"
    ):
        r.client.batches.get("nope")


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        pytest.param(httpx.Response(200, text="<html>hello</html>"), "not JSON", id="html"),
        pytest.param(httpx.Response(200, json=["not", "a", "batch"]), "not a Batch", id="wrong-shape"),
        pytest.param(httpx.Response(200, json={"status": "PENDING"}), "not a Batch", id="no-id"),
    ],
)
def test_a_2xx_that_is_not_the_expected_json_is_a_clear_api_error(
    answer: httpx.Response, needle: str
) -> None:
    r = rig(answer)
    with pytest.raises(APIError, match=needle) as info:
        r.client.batches.get("batch_1")
    assert "Traceback" not in str(info.value)
    assert info.value.__cause__ is None


def test_list_that_is_not_an_array_is_a_clear_api_error() -> None:
    r = rig(json_response(200, {"data": []}))
    with pytest.raises(APIError, match="not a JSON array"):
        r.client.batches.list()


def test_an_api_redirect_is_not_followed_and_carries_no_key_elsewhere() -> None:
    r = rig(httpx.Response(302, headers={"location": "https://evil.example.com/v2/batch/b"}))
    with pytest.raises(APIStatusError, match=r"302.*evil\.example\.com") as info:
        r.client.batches.get("b")
    assert info.value.status_code == 302
    assert [str(req.url.host) for req in r.api.requests] == ["api.sync.test"]


# --------------------------------------------------------------------------------------------- key and base URL


def test_no_api_key_is_a_configuration_error_at_call_time() -> None:
    r = rig(json_response(200, batch_json()), api_key=None)
    assert "api_key=unset" in repr(r.client)
    with pytest.raises(
        ConfigurationError, match=re.escape("no API key: pass api_key=... or set SYNC_API_KEY")
    ):
        r.client.batches.get("b")
    assert r.api.requests == []


def test_environment_is_read_when_the_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_API_KEY", "from-env")
    monkeypatch.setenv("SYNC_BASE_URL", "http://127.0.0.1:8123/")
    api = Api(json_response(200, batch_json()))
    client = Client(http_client=httpx.Client(transport=httpx.MockTransport(api)))
    monkeypatch.setenv("SYNC_API_KEY", "changed-later")
    monkeypatch.setenv("SYNC_BASE_URL", "https://elsewhere.example.com")
    client.batches.get("b")
    assert api.requests[0].headers["x-api-key"] == "from-env"
    assert str(api.requests[0].url) == "http://127.0.0.1:8123/v2/batch/b"
    assert Client().base_url == "https://elsewhere.example.com"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_API_KEY", "from-env")
    monkeypatch.setenv("SYNC_BASE_URL", "https://env.example.com")
    client = Client(api_key="arg", base_url="https://arg.example.com")
    assert client.base_url == "https://arg.example.com"
    assert client._api_key == "arg"


def test_default_base_url_is_sync() -> None:
    assert Client().base_url == "https://api.sync.so"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.sync.so",
        "https://api.sync.so/",
        "http://localhost:8000",
        "http://127.0.0.1:9",
        "http://127.8.9.10",
        "http://[::1]:8000",
        "https://proxy.example.com/sync",
    ],
)
def test_accepted_base_urls(url: str) -> None:
    assert Client(base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://api.sync.so", "unencrypted"),
        ("http://10.0.0.5:8000", "unencrypted"),
        ("http://localhost.evil.com", "unencrypted"),
        ("ftp://api.sync.so", "https://host"),
        ("api.sync.so", "https://host"),
        ("https://user:pw@api.sync.so", "credentials"),
        ("https://api.sync.so/?x=1", "query"),
    ],
)
def test_refused_base_urls(url: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        Client(base_url=url)


def test_the_key_never_leaks_into_logs_exceptions_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    """Retries, errors, a server echoing the key: the key appears nowhere a user could paste it."""
    caplog.set_level(logging.DEBUG)
    echo = json_response(401, {"message": f"invalid key {KEY}"})
    r = rig(
        httpx.ConnectError("refused"),
        json_response(503, {"message": "down"}),
        echo,
        retry=RetryPolicy(max_attempts=3, jitter=0),
    )
    seen: list[str] = [repr(r.client), str(r.client.__dict__.keys())]
    with pytest.raises(AuthenticationError) as info:
        r.client.batches.get("batch_1")
    exc = info.value
    seen += [str(exc), repr(exc), str(exc.args), str(exc.body), exc.server_message]
    for failure in (json_response(500, {"message": KEY}), httpx.ReadTimeout("t")):
        r2 = rig(failure)
        with pytest.raises(APIError) as other:
            r2.client.batches.create(LINES)
        seen += [str(other.value), repr(other.value)]
    seen += [rec.getMessage() for rec in caplog.records]
    assert any("retrying in" in rec.getMessage() for rec in caplog.records)
    assert [text for text in seen if KEY in text] == []
    assert "***" in exc.server_message


def test_retry_decisions_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="batchkit")
    r = rig(json_response(503, {}), json_response(200, batch_json()))
    r.client.batches.get("batch_1")
    messages = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.DEBUG]
    assert "GET /v2/batch/batch_1: 503 on attempt 1, retrying in 0.50 s" in messages


def test_user_agent_and_json_accept_headers_are_sent() -> None:
    r = rig(json_response(200, batch_json()))
    r.client.batches.get("b")
    headers = r.api.requests[0].headers
    assert headers["user-agent"].startswith("batchkit/")
    assert headers["accept"] == "application/json"


def test_a_key_that_cannot_be_a_header_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        Client(api_key="abc\ndef")
    assert "abc" not in str(info.value)


def test_surrounding_whitespace_is_stripped_from_the_key() -> None:
    r = rig(json_response(200, batch_json()), api_key="  key-with-newline\n")
    r.client.batches.get("b")
    assert r.api.requests[0].headers["x-api-key"] == "key-with-newline"


def test_a_given_http_client_is_not_closed_but_an_own_one_is() -> None:
    http = httpx.Client(transport=httpx.MockTransport(Api(json_response(200, batch_json()))))
    with Client(api_key=KEY, http_client=http):
        pass
    assert not http.is_closed
    with Client(api_key=KEY) as own:
        inner = own._http
    assert inner.is_closed


# --------------------------------------------------------------------------------------------- wait


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def waiting_rig(*statuses: str) -> tuple[Client, Api, FakeClock]:
    clock = FakeClock()
    api = Api(*(json_response(200, batch_json(status=s)) for s in statuses))
    client = Client(
        api_key=KEY,
        base_url=BASE,
        http_client=httpx.Client(transport=httpx.MockTransport(api)),
        sleep=clock.sleep,
        clock=clock,
    )
    return client, api, clock


def test_wait_polls_with_backoff_until_terminal_and_reports_each_poll() -> None:
    client, api, clock = waiting_rig("PENDING", "PROCESSING", "PROCESSING", "PROCESSING", "COMPLETED")
    updates: list[str] = []
    batch = client.batches.wait(
        "batch_1",
        poll=PollPolicy(initial=5, factor=1.5, maximum=10),
        on_update=lambda b: updates.append(b.status),
    )
    assert batch.status == "COMPLETED"
    assert updates == ["PENDING", "PROCESSING", "PROCESSING", "PROCESSING", "COMPLETED"]
    assert clock.sleeps == [5.0, 7.5, 10.0, 10.0]
    assert len(api.requests) == 5


@pytest.mark.parametrize("terminal", ["COMPLETED", "FAILED"])
def test_wait_returns_at_once_for_a_finished_batch(terminal: str) -> None:
    client, _api, clock = waiting_rig(terminal)
    assert client.batches.wait("batch_1").status == terminal
    assert clock.sleeps == []


def test_wait_deadline_names_the_batch_and_its_last_status() -> None:
    client, api, clock = waiting_rig("PENDING", "PROCESSING")
    with pytest.raises(WaitTimeoutError) as info:
        client.batches.wait("batch_1", poll=PollPolicy(initial=5, factor=2, maximum=60), deadline=12)
    assert info.value.batch_id == "batch_1"
    assert info.value.status == "PROCESSING"
    assert "batch batch_1 is still PROCESSING after 12 s (0/20 generations done)" in str(info.value)
    assert clock.sleeps == [5.0, 7.0]  # the last wait is shortened to end at the deadline
    assert len(api.requests) == 3


# --------------------------------------------------------------------------------------------- download


def signed_host_server(
    body: bytes, *, api_needs_key: bool = False
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.sync.test":
            if api_needs_key and request.headers.get("x-api-key") != KEY:
                return httpx.Response(401, json={"message": "Unauthorized"})
            return httpx.Response(302, headers={"location": "https://files.example.net/out.jsonl?sig=abc123"})
        return httpx.Response(200, content=body)

    return handler, seen


@pytest.mark.parametrize("api_needs_key", [False, True], ids=["open", "needs-key"])
def test_download_follows_the_redirect_without_sending_the_key_elsewhere(
    tmp_path: Path, api_needs_key: bool
) -> None:
    handler, seen = signed_host_server(b'{"request_id":"r1"}\n', api_needs_key=api_needs_key)
    r = rig(handler)
    batch = Batch.model_validate(
        batch_json(status="COMPLETED", outputUrl=BASE + "/v2/batches/batch_1/result")
    )
    dest = r.client.batches.download(batch, tmp_path / "out" / "batch_1.output.jsonl")
    assert dest.read_bytes() == b'{"request_id":"r1"}\n'
    hosts = [(str(req.url.host), "x-api-key" in req.headers) for req in seen]
    expected = [("api.sync.test", False)]
    if api_needs_key:
        expected.append(("api.sync.test", True))
    expected.append(("files.example.net", False))
    assert hosts == expected
    assert list(dest.parent.iterdir()) == [dest]


def test_download_accepts_a_relative_output_url(tmp_path: Path) -> None:
    handler, seen = signed_host_server(b"x\n")
    r = rig(handler)
    r.client.batches.download("/v2/batches/b/result", tmp_path / "o.jsonl")
    assert str(seen[0].url) == BASE + "/v2/batches/b/result"


def test_download_without_a_key_works_when_none_is_needed(tmp_path: Path) -> None:
    handler, _ = signed_host_server(b"x\n")
    r = rig(handler, api_key=None)
    assert r.client.batches.download(BASE + "/v2/batches/b/result", tmp_path / "o").read_bytes() == b"x\n"


def test_download_that_needs_a_key_without_one_says_so(tmp_path: Path) -> None:
    handler, _ = signed_host_server(b"x\n", api_needs_key=True)
    r = rig(handler, api_key=None)
    with pytest.raises(AuthenticationError, match="SYNC_API_KEY"):
        r.client.batches.download(BASE + "/v2/batches/b/result", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_truncated_download_leaves_no_file_and_is_retried(tmp_path: Path) -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(200, content=b"half", headers={"content-length": "100"})
        return httpx.Response(200, content=b"whole\n")

    r = rig(handler)
    dest = r.client.batches.download(BASE + "/r", tmp_path / "o.jsonl")
    assert dest.read_bytes() == b"whole\n"
    assert calls["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl"]


def test_a_download_that_keeps_failing_leaves_nothing_behind(tmp_path: Path) -> None:
    r = rig(
        httpx.Response(200, content=b"half", headers={"content-length": "100"}),
        retry=RetryPolicy(max_attempts=2, jitter=0),
    )
    with pytest.raises(APIConnectionError, match="stopped at 4 of 100 bytes"):
        r.client.batches.download(BASE + "/r", tmp_path / "o.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_download_does_not_put_the_signature_in_messages(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.sync.test":
            return httpx.Response(302, headers={"location": "https://files.example.net/o?sig=SECRETSIG"})
        return httpx.Response(403, text="expired")

    r = rig(handler)
    with pytest.raises(APIStatusError) as info:
        r.client.batches.download(BASE + "/r", tmp_path / "o")
    assert "files.example.net/o" in str(info.value)
    assert "SECRETSIG" not in str(info.value)


@pytest.mark.parametrize("output_url", ["", None])
def test_download_of_a_batch_without_results_says_so(tmp_path: Path, output_url: str | None) -> None:
    r = rig(httpx.Response(200))
    batch = Batch.model_validate(batch_json(status="PROCESSING", outputUrl=output_url))
    with pytest.raises(ResultsError, match="batch batch_1 has no results yet"):
        r.client.batches.download(batch, tmp_path / "o")
    with pytest.raises(ResultsError, match="no results yet"):
        r.client.batches.download("", tmp_path / "o")
    assert r.api.requests == []


def test_download_onto_a_directory_is_an_input_error(tmp_path: Path) -> None:
    r = rig(httpx.Response(200, content=b"x\n"))
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="cannot write the download"):
        r.client.batches.download(BASE + "/r", tmp_path / "taken")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_too_many_redirects_stop(tmp_path: Path) -> None:
    r = rig(httpx.Response(302, headers={"location": "/again"}))
    with pytest.raises(APIError, match="too many redirects"):
        r.client.batches.download(BASE + "/r", tmp_path / "o")
    assert len(r.api.requests) == 11


# --------------------------------------------------------------------------------------------- generations


PAYLOAD = {
    "model": "lipsync-2",
    "input": [
        {"type": "video", "url": "https://v.example/v.mp4"},
        {"type": "audio", "url": "https://a.example/a.wav"},
    ],
}


def generation_json(status: str = "PENDING") -> dict[str, Any]:
    return {"id": "gen_1", "createdAt": "2026-01-01T00:00:00Z", "status": status, "model": "lipsync-2"}


def test_generation_create_sends_the_wire_json() -> None:
    r = rig(json_response(201, generation_json()))
    generation = r.client.generations.create(GeneratePayload.model_validate(PAYLOAD))
    assert generation.id == "gen_1"
    request = r.api.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v2/generate")
    assert request.headers["content-type"] == "application/json"
    assert httpx.Response(200, content=request.content).json() == PAYLOAD
    assert "idempotency-key" not in request.headers


def test_generation_create_without_key_is_not_retried_on_5xx_but_with_one_it_is() -> None:
    r = rig(json_response(500, {}), json_response(201, generation_json()))
    with pytest.raises(ServerError):
        r.client.generations.create(PAYLOAD)
    assert len(r.api.requests) == 1
    r = rig(json_response(500, {}), httpx.ReadTimeout("t"), json_response(201, generation_json()))
    assert r.client.generations.create(PAYLOAD, idempotency_key="row-17.v1").id == "gen_1"
    assert [req.headers["idempotency-key"] for req in r.api.requests] == ["row-17.v1"] * 3


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "ünïcode"])
def test_malformed_idempotency_keys_are_refused_locally(bad: str) -> None:
    r = rig(json_response(201, generation_json()))
    with pytest.raises(InputError, match="idempotency_key"):
        r.client.generations.create(PAYLOAD, idempotency_key=bad)
    assert r.api.requests == []


def test_generation_answer_without_id_is_an_api_error() -> None:
    r = rig(json_response(201, {"status": "PENDING"}))
    with pytest.raises(APIError, match="no generation id"):
        r.client.generations.create(PAYLOAD)


def test_generation_get_reads_either_error_code_casing() -> None:
    r = rig(
        json_response(200, {**generation_json("FAILED"), "errorCode": "generation_timeout", "error": "slow"})
    )
    generation = r.client.generations.get("gen_1")
    assert (generation.status, generation.error_code, generation.error) == (
        "FAILED",
        "generation_timeout",
        "slow",
    )
    assert r.api.requests[0].url.path == "/v2/generate/gen_1"


# --------------------------------------------------------------------------------------------- policies


def test_policies_refuse_nonsense() -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError, match="jitter"):
        RetryPolicy(jitter=2)
    with pytest.raises(ConfigurationError, match="multiplier"):
        RetryPolicy(multiplier=0.5)
    with pytest.raises(ConfigurationError, match="maximum"):
        PollPolicy(initial=10, maximum=5)
    with pytest.raises(ConfigurationError, match="factor"):
        PollPolicy(factor=0.9)


def test_poll_delays_grow_by_the_factor_up_to_the_maximum() -> None:
    delays = PollPolicy(initial=5, factor=1.5, maximum=60).delays()
    assert [next(delays) for _ in range(9)] == [
        5.0,
        7.5,
        11.25,
        16.875,
        25.3125,
        37.96875,
        56.953125,
        60.0,
        60.0,
    ]


@settings(max_examples=200)
@given(
    retry=st.integers(min_value=1, max_value=200),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    initial=st.floats(min_value=0, max_value=10),
    multiplier=st.floats(min_value=1, max_value=5),
    maximum=st.floats(min_value=0, max_value=100),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_backoff_stays_within_its_jitter_band_and_under_the_cap(
    retry: int, rand: float, initial: float, multiplier: float, maximum: float, jitter: float
) -> None:
    policy = RetryPolicy(initial=initial, multiplier=multiplier, maximum=maximum, jitter=jitter)
    base = min(maximum, initial * multiplier ** (retry - 1)) if multiplier ** (retry - 1) < 1e300 else maximum
    delay = policy.backoff(retry, rand=lambda: rand)
    assert 0 <= delay <= maximum
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9


@settings(max_examples=100)
@given(retry_after=st.floats(min_value=-10, max_value=1e6), cap=st.floats(min_value=0, max_value=1000))
def test_retry_after_always_wins_and_never_exceeds_the_cap(retry_after: float, cap: float) -> None:
    delay = RetryPolicy(max_retry_after=cap).delay(3, retry_after)
    assert delay == min(max(retry_after, 0.0), cap)


@pytest.mark.parametrize(
    ("exc", "create", "idempotent"),
    [
        (APIConnectionError("x", sent=False), True, True),
        (APIConnectionError("x", sent=True), False, True),
        (APITimeoutError("x", sent=True), False, True),
        (RateLimitError("x", status_code=429), True, True),
        (ConcurrencyLimitError("x", status_code=429), False, False),
        (ServerError("x", status_code=503), False, True),
        (APIStatusError("x", status_code=409), False, True),
        (BadRequestError("x", status_code=400), False, False),
        (APIError("x"), False, False),
    ],
)
def test_retry_rules_table(exc: Exception, create: bool, idempotent: bool) -> None:
    """The whole rule table in one place."""
    assert is_retryable(exc, "create") is create
    assert is_retryable(exc, "idempotent") is idempotent


def test_call_with_retries_does_not_touch_other_exceptions() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        raise ValueError("not an API error")

    with pytest.raises(ValueError, match="not an API error"):
        call_with_retries(boom, policy=RetryPolicy(), rule="idempotent", sleep=sleeps.append, what="x")
    assert (calls, sleeps) == ([1], [])
