"""The sandbox emulator, over real loopback sockets: endpoints, auth, validation, lifecycle, faults, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from batchkit import DEFAULT_LIMITS, Batch, BatchWebhook, GenerationWebhook, Limits, OutputLine
from batchkit.sandbox import (
    DEMO_RULES,
    Fault,
    ManualClock,
    Result,
    Rule,
    Sandbox,
    SandboxBatch,
    SandboxConfig,
    serve,
)
from batchkit.sandbox._upload import UploadRefused, parse_upload

KEY = "sk-sandbox-test"
AUTH = {"x-api-key": KEY}


# -- helpers -----------------------------------------------------------------------------------------------


def record(i: int | str, *, video: str = "", audio: str = "") -> dict[str, Any]:
    """A valid batch line; ``video``/``audio`` are appended to the input URLs (e.g. ``?sandbox=fail``)."""
    return {
        "request_id": f"req-{i}",
        "endpoint": "/v2/generate",
        "payload": {
            "model": "lipsync-2",
            "input": [
                {"type": "video", "url": f"https://media.test/v/{i}.mp4{video}"},
                {"type": "audio", "url": f"https://media.test/a/{i}.wav{audio}"},
            ],
        },
    }


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def batch_file(n: int = 20, special: dict[int, str] | None = None) -> bytes:
    """``n`` valid records; ``special`` maps a record index to a suffix for its video URL."""
    special = special or {}
    return jsonl([record(i, video=special.get(i, "")) for i in range(n)])


def upload(client: httpx.Client, data: bytes, **fields: str) -> httpx.Response:
    return client.post("/v2/batch", files={"input": ("batch.jsonl", data, "application/jsonl")}, data=fields)


@contextmanager
def running(sandbox: Sandbox | None = None, **config: Any) -> Iterator[tuple[Sandbox, httpx.Client]]:
    sandbox = sandbox or Sandbox(**config)
    with serve(sandbox) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        yield sandbox, client


def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for something the server does in the background (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


class Receiver:
    """A tiny webhook receiver on loopback (stdlib http.server in a thread)."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Sandbox, httpx.Client]]:
    """One server for tests that create nothing (refusals, auth)."""
    with running(api_keys=(KEY,)) as pair:
        yield pair


# -- serving -----------------------------------------------------------------------------------------------


def test_serve_yields_a_loopback_url_and_stops_listening_on_exit() -> None:
    """The URL has no trailing slash, answers while inside the block, and refuses connections after it."""
    with serve(pending_seconds=0) as url:
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith("/")
        assert httpx.get(f"{url}/v2/batch", headers=AUTH).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/batch", headers=AUTH)


def test_serve_refuses_a_sandbox_together_with_overrides() -> None:
    with pytest.raises(TypeError, match="not both"), serve(Sandbox(), seed=1):
        pass


def test_config_is_validated_and_hides_keys_in_repr() -> None:
    with pytest.raises(ValidationError, match="more than 1"):
        SandboxConfig(rate_limit_share=0.7, server_error_share=0.5)
    with pytest.raises(ValidationError, match="non-empty"):
        SandboxConfig(api_keys=("",))
    shown = repr(SandboxConfig(api_keys=("secret-key-1",), webhook_secret="whsec_secret"))
    assert "secret-key-1" not in shown
    assert "whsec_secret" not in shown
    assert "<1 key(s)>" in shown


def test_rules_need_a_valid_pattern_and_an_error_code() -> None:
    with pytest.raises(ValidationError, match="regular expression"):
        Rule(pattern="(", outcome="FAILED", error_code="x")
    with pytest.raises(ValidationError, match="needs an error_code"):
        Rule(pattern="x", outcome="REJECTED")
    assert Rule(pattern="x", outcome="MISSING").matches(["a-x-b"])


def test_fault_routes_are_checked() -> None:
    with pytest.raises(ValidationError, match="unknown route"):
        Fault(route="POST /v2/batches", kind="status")


# -- auth, plans, not found --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/batch"),
        ("GET", "/v2/batch"),
        ("GET", "/v2/batch/batch_x"),
        ("GET", "/v2/batches/batch_x/result"),
        ("POST", "/v2/generate"),
        ("GET", "/v2/generate/g_x"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["no-key", "wrong-key"])
def test_every_api_route_needs_the_key(
    shared: tuple[Sandbox, httpx.Client], method: str, path: str, key: str | None
) -> None:
    _, client = shared
    headers = {"x-api-key": key} if key else {}
    response = httpx.request(method, f"{client.base_url}{path}", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "message": "Unauthorized"}


def test_any_non_empty_key_is_accepted_by_default() -> None:
    with serve() as url:
        assert httpx.get(f"{url}/v2/batch", headers={"x-api-key": "anything"}).json() == []
        assert httpx.get(f"{url}/v2/batch", headers={"x-api-key": ""}).status_code == 401


def test_plans_without_batch_access_get_402() -> None:
    with running(batch_access=False) as (sandbox, client):
        response = upload(client, batch_file())
        assert response.status_code == 402
        assert "Scale and Enterprise" in response.json()["message"]
        assert sandbox.batches == []


@pytest.mark.parametrize(
    ("path", "message"),
    [("/v2/batch/batch_nope", "Batch not found"), ("/v2/generate/nope", "Generation not found")],
)
def test_unknown_ids_are_404(shared: tuple[Sandbox, httpx.Client], path: str, message: str) -> None:
    response = shared[1].get(path)
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "message": message}


def test_unknown_routes_and_methods_answer_in_json(shared: tuple[Sandbox, httpx.Client]) -> None:
    _, client = shared
    assert client.get("/v2/nothing").json() == {
        "statusCode": 404,
        "message": "Cannot GET /v2/nothing",
        "error": "Not Found",
    }
    assert client.delete("/v2/batch").status_code == 405


# -- upload validation -------------------------------------------------------------------------------------


def _dup_on_line_3() -> bytes:
    records = [record(i) for i in range(21)]
    records[2]["request_id"] = "req-0"
    return jsonl(records)


def _replace_line(index: int, raw: bytes) -> bytes:
    lines = batch_file(21).split(b"\n")
    lines[index] = raw
    return b"\n".join(lines)


def _with(index: int, **changes: Any) -> bytes:
    records = [record(i) for i in range(21)]
    records[index].update(changes)
    return jsonl(records)


def _without(index: int, key: str) -> bytes:
    records = [record(i) for i in range(21)]
    del records[index][key]
    return jsonl(records)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            _dup_on_line_3(), 'line 3: duplicate request_id "req-0" (first on line 1)', id="duplicate"
        ),
        pytest.param(
            _with(3, endpoint="/v2/lipsync"), 'line 4: endpoint must be "/v2/generate"', id="endpoint"
        ),
        pytest.param(_replace_line(1, b'{"request_id": '), "line 2: not valid JSON", id="bad-json"),
        pytest.param(_replace_line(4, b"[1, 2]"), "line 5: is a JSON array", id="not-object"),
        pytest.param(_replace_line(6, b""), "line 7: empty line", id="blank-line"),
        pytest.param(_without(2, "payload"), 'line 3: missing "payload"', id="no-payload"),
        pytest.param(_without(0, "request_id"), 'line 1: missing "request_id"', id="no-request-id"),
        pytest.param(_with(5, request_id=7), "line 6: request_id must be a non-empty string", id="int-id"),
        pytest.param(_with(5, payload=[]), "line 6: payload must be a JSON object", id="payload-array"),
        pytest.param(
            batch_file(19), "file has 19 record(s); a batch needs at least 20 records", id="too-few"
        ),
        pytest.param(
            batch_file(501), "file has 501 records; a batch holds at most 500 records", id="too-many"
        ),
        pytest.param(b"", "file is empty; a batch needs at least 20 records", id="empty"),
        pytest.param(b"\xef\xbb\xbf" + batch_file(20), "line 1: starts with a byte order mark", id="bom"),
        pytest.param(batch_file(20) + b'{"x": "\xff"}\n', "line 21: not valid UTF-8", id="bad-utf8"),
    ],
)
def test_bad_uploads_are_refused_naming_the_line(
    shared: tuple[Sandbox, httpx.Client], data: bytes, expected: str
) -> None:
    sandbox, client = shared
    response = upload(client, data)
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert any(message.startswith(expected) for message in body["message"]), body["message"]
    assert sandbox.batches == []


def test_a_file_over_the_byte_limit_is_refused() -> None:
    data = batch_file(20)
    with running(limits=Limits(max_bytes=len(data) - 1)) as (sandbox, client):
        response = upload(client, data)
        assert response.status_code == 400
        assert response.json()["message"] == [
            f"file is {len(data):,} bytes; the limit is {len(data) - 1:,} bytes (split it into smaller batches)"
        ]
        assert upload(client, data, dry_run="true").status_code == 400
        assert sandbox.batches == []


def test_an_enormous_upload_is_413() -> None:
    with running(limits=Limits(max_bytes=1000)) as (_, client):
        assert upload(client, b"x" * 1_100_000).status_code == 413


def test_every_problem_is_listed_not_just_the_first(shared: tuple[Sandbox, httpx.Client]) -> None:
    records = [record(i) for i in range(25)]
    records[4]["endpoint"] = "/v1/generate"
    records[9]["request_id"] = "req-1"
    messages = upload(shared[1], jsonl(records)).json()["message"]
    assert [m.split(":")[0] for m in messages] == ["line 5", "line 10"]


@pytest.mark.parametrize(
    ("fields", "files", "expected"),
    [
        ({"dry_run": "maybe"}, None, 'dry_run must be "true" or "false"'),
        ({"webhook_url": "ftp://h/x"}, None, "webhook_url must be an absolute http(s) URL"),
        (
            {},
            {"other": ("b.jsonl", b"{}", "application/jsonl")},
            'input: a JSONL file part named "input" is required',
        ),
    ],
    ids=["dry-run", "webhook-url", "no-input"],
)
def test_bad_form_fields_are_refused(
    shared: tuple[Sandbox, httpx.Client],
    fields: dict[str, str],
    files: dict[str, Any] | None,
    expected: str,
) -> None:
    files = files or {"input": ("batch.jsonl", batch_file(), "application/jsonl")}
    response = shared[1].post("/v2/batch", files=files, data=fields)
    assert response.status_code == 400
    assert any(m.startswith(expected) for m in response.json()["message"])


def test_a_json_body_is_refused(shared: tuple[Sandbox, httpx.Client]) -> None:
    response = shared[1].post("/v2/batch", json={"rows": []})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["message"][0]


# -- dry run, create, lifecycle ----------------------------------------------------------------------------


def test_dry_run_validates_and_creates_nothing() -> None:
    with running() as (sandbox, client):
        response = upload(client, batch_file(), dry_run="true", webhook_url="http://127.0.0.1:9/hook")
        assert (response.status_code, response.json()) == (200, {"status": "VALIDATED"})
        assert upload(client, batch_file(), dry_run="TRUE").json() == {"status": "VALIDATED"}
        assert sandbox.batches == []
        assert sandbox.dry_runs == 2
        assert client.get("/v2/batch").json() == []


def test_create_answers_201_with_the_documented_batch_shape() -> None:
    data = batch_file(23)
    with running() as (sandbox, client):
        response = upload(client, data, webhook_url="http://127.0.0.1:9/hook", dry_run="false")
        assert response.status_code == 201
        body = response.json()
        assert list(body) == ["id", "created_at", "status", "metrics", "webhookUrl", "outputUrl"]
        assert body["id"].startswith("batch_")
        assert body["created_at"].endswith("Z")
        assert body["status"] == "PENDING"
        assert body["outputUrl"] == ""
        assert body["webhookUrl"] == "http://127.0.0.1:9/hook"
        assert body["metrics"] == {
            "total_generations": 23,
            "success_count": 0,
            "failed_count": 0,
            "pending_count": 23,
        }
        [batch] = sandbox.batches
        assert batch.id == body["id"]
        assert batch.file_bytes == data
        assert batch.webhook_url == body["webhookUrl"]
        assert batch.request_ids == tuple(f"req-{i}" for i in range(23))
        assert Batch.model_validate(body).created_at == batch.created_at


def test_lifecycle_follows_the_clock() -> None:
    """PENDING for pending_seconds, then PROCESSING with growing metrics, then COMPLETED with an outputUrl."""
    clock = ManualClock()
    sandbox = Sandbox(clock=clock, pending_seconds=10, seconds_per_generation=1)
    with running(sandbox) as (_, client):
        batch_id = upload(client, batch_file(20, {0: "?sandbox=fail"})).json()["id"]

        def state() -> tuple[str, dict[str, int], str]:
            body = client.get(f"/v2/batch/{batch_id}").json()
            return body["status"], body["metrics"], body["outputUrl"]

        assert state()[0] == "PENDING"
        clock.advance(9.9)
        assert state()[0] == "PENDING"
        clock.advance(0.2)
        status, metrics, url = state()
        assert (status, metrics["pending_count"], url) == ("PROCESSING", 20, "")
        clock.advance(5)
        status, metrics, _ = state()
        assert status == "PROCESSING"
        assert metrics["success_count"] + metrics["failed_count"] == 5
        assert metrics["pending_count"] == 15
        clock.advance(15)
        status, metrics, url = state()
        assert status == "COMPLETED"
        assert metrics == {
            "total_generations": 20,
            "success_count": 19,
            "failed_count": 1,
            "pending_count": 0,
        }
        assert url == f"{client.base_url}/v2/batches/{batch_id}/result"


def test_a_batch_where_every_request_fails_is_failed() -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock)) as (_, client):
        data = jsonl([record(i, audio="?sandbox=fail") for i in range(20)])
        batch_id = upload(client, data).json()["id"]
        clock.advance(60)
        body = client.get(f"/v2/batch/{batch_id}").json()
        assert body["status"] == "FAILED"
        assert body["metrics"]["failed_count"] == 20
        assert body["outputUrl"].endswith(f"/v2/batches/{batch_id}/result")


# -- outcomes and output -----------------------------------------------------------------------------------


def _finished_output(data: bytes, **config: Any) -> tuple[list[dict[str, Any]], Sandbox, str]:
    clock = ManualClock()
    with running(Sandbox(clock=clock, **config)) as (sandbox, client):
        batch_id = upload(client, data).json()["id"]
        clock.advance(3600)
        location = client.get(client.get(f"/v2/batch/{batch_id}").json()["outputUrl"]).headers["location"]
        response = httpx.get(location)
        assert response.headers["content-type"] == "application/jsonl"
        assert response.content.endswith(b"\n")
        return [json.loads(line) for line in response.content.splitlines()], sandbox, batch_id


def test_rules_decide_statuses_and_error_codes() -> None:
    special = {
        1: "?sandbox=fail",
        2: "?x=1&sandbox=reject",
        3: "?sandbox=missing",
        4: "?sandbox=timeout",
        5: "?sandbox=inaccessible",
        6: "?sandbox=failure",  # \b: not the fail rule
    }
    lines, _, _ = _finished_output(batch_file(20, special))
    by_id = {line["request_id"]: line for line in lines}
    assert "req-3" not in by_id
    assert len(lines) == 19
    expected = {
        "req-1": ("FAILED", "generation_pipeline_failed"),
        "req-2": ("REJECTED", "generation_media_metadata_missing"),
        "req-4": ("FAILED", "generation_timeout"),
        "req-5": ("REJECTED", "generation_input_video_inaccessible"),
        "req-6": ("COMPLETED", None),
        "req-0": ("COMPLETED", None),
    }
    for request_id, (status, code) in expected.items():
        parsed = OutputLine.model_validate(by_id[request_id])
        assert (parsed.effective_status, parsed.effective_error_code) == (status, code), request_id


def test_custom_rules_match_tts_scripts_and_take_precedence() -> None:
    records = [record(i) for i in range(20)]
    records[7]["payload"]["input"][1] = {
        "type": "text",
        "provider": {"name": "elevenlabs", "voiceId": "v1", "script": "hello BROKEN world"},
    }
    rule = Rule(
        pattern="BROKEN", outcome="FAILED", error_code="elevenlabs_service_unavailable", message="tts down"
    )
    lines, _, _ = _finished_output(jsonl(records), rules=(rule, *DEMO_RULES))
    [line] = [line for line in lines if line["request_id"] == "req-7"]
    assert line["status"] == "FAILED"
    assert line["error"] == {"code": "elevenlabs_service_unavailable", "message": "tts down"}


def test_a_payload_that_breaks_generate_rules_is_rejected_as_invalid_request() -> None:
    records = [record(i) for i in range(20)]
    records[4]["payload"]["input"] = [{"type": "audio", "url": "https://media.test/a.wav"}]  # no video
    records[8]["payload"]["input"][0]["url"] = "not a url"
    lines, _, _ = _finished_output(jsonl(records))
    by_id = {line["request_id"]: line for line in lines}
    for request_id in ("req-4", "req-8"):
        assert by_id[request_id]["status"] == "REJECTED"
        assert by_id[request_id]["error"]["code"] == "invalid_request"
        assert by_id[request_id]["response"] is None
    assert "/payload/input/0/url" in by_id["req-8"]["error"]["message"]


def test_output_lines_have_the_documented_shape_in_a_shuffled_order() -> None:
    data = batch_file(30, {2: "?sandbox=fail"})
    lines, sandbox, batch_id = _finished_output(data)
    assert [line["request_id"] for line in lines] != [f"req-{i}" for i in range(30)]
    assert sorted(line["request_id"] for line in lines) == sorted(f"req-{i}" for i in range(30))
    keys = ["request_id", "endpoint", "payload", "status", "error", "response", "updated_at"]
    assert all(list(line) == keys for line in lines)
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["req-0"]["payload"] == record(0)["payload"]
    assert by_id["req-0"]["endpoint"] == "/v2/generate"
    done = by_id["req-0"]["response"]
    assert list(done) == [
        "id", "createdAt", "status", "model", "input", "options", "outputUrl", "outputDuration", "error", "error_code",
    ]  # fmt: skip
    assert done["status"] == "COMPLETED"
    media = httpx.URL(done["outputUrl"])  # a signed link to the sandbox's media host (tests/handback)
    assert (media.host, media.path) == ("localhost", f"/_outputs/{done['id']}.mp4")
    assert 3 <= done["outputDuration"] <= 30
    assert done["error"] is None
    failed = by_id["req-2"]
    assert failed["response"] is None
    assert failed["error"]["code"] == "generation_pipeline_failed"
    updated = [datetime.fromisoformat(line["updated_at"]) for line in lines]
    assert updated == sorted(updated)
    assert sandbox.output(batch_id) == b"".join(orjson.dumps(line) + b"\n" for line in lines)


def test_outcomes_are_deterministic_for_a_seed() -> None:
    """Order, generation ids and durations repeat for the same seed and input; another seed reshuffles."""
    data = batch_file(40)
    first, _, _ = _finished_output(data, seed=5)
    again, _, _ = _finished_output(data, seed=5)
    other, _, _ = _finished_output(data, seed=6)

    def strip(lines: list[dict[str, Any]]) -> list[Any]:
        return [(line["request_id"], line["response"]["outputDuration"]) for line in lines]

    assert strip(first) == strip(again)
    assert [line["request_id"] for line in first] != [line["request_id"] for line in other]


# -- result download ---------------------------------------------------------------------------------------


def test_result_download_redirects_to_another_host_that_needs_no_key() -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock)) as (sandbox, client):
        batch_id = upload(client, batch_file()).json()["id"]
        result_url = f"/v2/batches/{batch_id}/result"
        early = client.get(result_url)
        assert early.status_code == 404
        assert "no results yet" in early.json()["message"]
        clock.advance(60)
        assert httpx.get(f"{client.base_url}{result_url}").status_code == 401
        redirect = client.get(result_url)
        assert redirect.status_code == 302
        location = httpx.URL(redirect.headers["location"])
        assert location.host == "localhost"
        assert location.port == client.base_url.port
        assert location.path == f"/_signed/results/{batch_id}.jsonl"
        assert httpx.get(location).status_code == 200
        assert sandbox.key_leaks == []
        via_localhost = httpx.get(
            f"http://localhost:{client.base_url.port}{result_url}", headers=AUTH, follow_redirects=False
        )
        assert httpx.URL(via_localhost.headers["location"]).host == "127.0.0.1"


def test_sending_the_key_to_the_signed_url_is_a_recorded_leak() -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock)) as (sandbox, client):
        batch_id = upload(client, batch_file()).json()["id"]
        clock.advance(60)
        location = client.get(f"/v2/batches/{batch_id}/result").headers["location"]
        leaked = httpx.get(location, headers=AUTH)
        assert leaked.status_code == 400
        [leak] = sandbox.key_leaks
        assert (leak.host, leak.path) == ("localhost", f"/_signed/results/{batch_id}.jsonl")
        assert KEY not in repr(leak)


def test_a_tampered_signature_is_403() -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock)) as (_, client):
        batch_id = upload(client, batch_file()).json()["id"]
        clock.advance(60)
        location = httpx.URL(client.get(f"/v2/batches/{batch_id}/result").headers["location"])
        tampered = location.copy_merge_params({"sig": "0" * 64})
        assert httpx.get(tampered).status_code == 403
        assert httpx.get(location.copy_with(query=b"")).status_code == 403


def test_the_result_redirect_can_be_open() -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock, result_requires_key=False)) as (_, client):
        batch_id = upload(client, batch_file()).json()["id"]
        clock.advance(60)
        response = httpx.get(f"{client.base_url}/v2/batches/{batch_id}/result", follow_redirects=True)
        assert response.status_code == 200
        assert len(response.content.splitlines()) == 20


# -- list --------------------------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters_by_status_and_creation_time() -> None:
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    sandbox = Sandbox(clock=clock, pending_seconds=1.5, seconds_per_generation=0.01)
    with running(sandbox) as (_, client):
        ids = []
        for step in range(3):
            clock.advance(step and 1)
            ids.append(upload(client, batch_file()).json()["id"])
        first, second, third = ids  # created at 12:00:00, :01 and :02; now is 12:00:02

        def listed(**params: str) -> list[str]:
            response = client.get("/v2/batch", params=params)
            assert response.status_code == 200, response.text
            return [b["id"] for b in response.json()]

        assert listed() == [third, second, first]
        assert listed(status="COMPLETED") == [first]
        assert listed(status="PENDING") == [third, second]
        assert listed(created_after="2026-03-01T12:00:01Z") == [third, second]
        assert listed(created_after="2026-03-01T14:00:01+02:00") == [third, second]
        assert listed(created_before="2026-03-01T12:00:01.000Z") == [first]
        assert listed(created_after="2026-03-01T12:00:00.5Z", created_before="2026-03-01T12:00:01.5Z") == [
            second
        ]
        assert listed(created_after="2026-03-02T00:00:00Z") == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"created_after": "yesterday"}, "created_after must be an ISO 8601 date-time"),
        ({"created_before": "2026-13-01"}, "created_before must be an ISO 8601 date-time"),
        ({"status": "DONE"}, "status must be one of PENDING, JOBS_CREATED, PROCESSING, COMPLETED, FAILED"),
    ],
)
def test_list_refuses_bad_filters(
    shared: tuple[Sandbox, httpx.Client], params: dict[str, str], expected: str
) -> None:
    response = shared[1].get("/v2/batch", params=params)
    assert response.status_code == 400
    assert response.json()["message"][0].startswith(expected)


# -- webhooks ----------------------------------------------------------------------------------------------


def _verify(body: bytes, header: str, secret: str) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(int(fields["t"]) - time.time()) < 300


def test_batch_webhook_is_posted_signed_when_the_batch_ends() -> None:
    with Receiver() as receiver, running(pending_seconds=0, seconds_per_generation=0) as (sandbox, client):
        batch_id = upload(client, batch_file(), webhook_url=receiver.url).json()["id"]
        [delivery] = sandbox.wait_for_webhooks(1)
        assert delivery.ok
        assert delivery.kind == "batch"
        assert delivery.object_id == batch_id
        [(headers, body)] = receiver.received
        assert body == delivery.body
        assert _verify(body, headers["sync-signature"], "whsec_sandbox")
        assert not _verify(body, headers["sync-signature"], "whsec_other")
        notice = BatchWebhook.model_validate_json(body)
        assert (notice.id, notice.status, notice.metrics.success_count) == (batch_id, "COMPLETED", 20)
        assert notice.output_url == f"{client.base_url}/v2/batches/{batch_id}/result"


def test_a_hanging_receiver_delays_nothing_else() -> None:
    """While a delivery hangs, the API answers and other webhooks go out."""
    clock = ManualClock()
    with (
        socket.create_server(("127.0.0.1", 0)) as hanging,
        Receiver() as receiver,
        running(Sandbox(clock=clock, webhook_timeout=60)) as (sandbox, client),
    ):
        hanging.settimeout(10)
        stuck_url = f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"
        upload(client, batch_file(), webhook_url=stuck_url)
        clock.advance(60)
        connection, _ = hanging.accept()  # the delivery has started and will get no answer
        with connection:
            other = upload(client, batch_file(), webhook_url=receiver.url).json()["id"]
            assert client.get(f"/v2/batch/{other}").status_code == 200
            clock.advance(60)
            [delivery] = sandbox.wait_for_webhooks(1)
            assert delivery.object_id == other
            assert delivery.ok


def test_webhooks_to_other_hosts_are_skipped_by_default() -> None:
    with running(pending_seconds=0, seconds_per_generation=0) as (sandbox, client):
        upload(client, batch_file(), webhook_url="https://hooks.example.com/batch")
        [delivery] = sandbox.wait_for_webhooks(1)
        assert not delivery.ok
        assert delivery.status_code is None
        assert delivery.error is not None
        assert delivery.error.startswith("skipped: not a loopback URL")


def test_a_failing_receiver_is_recorded_and_the_server_goes_on() -> None:
    with (
        Receiver(status=500) as receiver,
        running(pending_seconds=0, seconds_per_generation=0) as (sandbox, client),
    ):
        upload(client, batch_file(), webhook_url=receiver.url)
        [delivery] = sandbox.wait_for_webhooks(1)
        assert delivery.status_code == 500
        assert not delivery.ok
        assert client.get("/v2/batch").status_code == 200


# -- faults ------------------------------------------------------------------------------------------------


def test_rate_limit_share_answers_429_with_retry_after() -> None:
    with running(rate_limit_share=1.0) as (sandbox, client):
        response = upload(client, batch_file())
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json() == {
            "statusCode": 429,
            "errorCode": "rate_limit_exceeded",
            "message": "Rate limit exceeded. Please try again later.",
            "error": "Too Many Requests",
        }
        assert sandbox.batches == []
        sandbox.configure(rate_limit_share=0.0)
        assert upload(client, batch_file()).status_code == 201


def test_server_error_share_answers_5xx_in_json_or_text() -> None:
    with running(server_error_share=1.0) as (_, client):
        responses = [client.get("/v2/batch") for _ in range(12)]
    assert {r.status_code for r in responses} == {500, 502, 503}
    assert all(r.text == "502 Bad Gateway" for r in responses if r.status_code == 502)
    assert all(r.json()["statusCode"] == r.status_code for r in responses if r.status_code != 502)


def test_shares_are_deterministic_for_a_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with running(seed=seed, rate_limit_share=0.3, server_error_share=0.3) as (_, client):
            return [client.get("/v2/batch").status_code for _ in range(12)]

    first = statuses(11)
    assert first == statuses(11)
    assert {429, 200} <= set(first)
    assert first != statuses(12)


def test_the_concurrency_cap_answers_429_until_a_batch_ends() -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock, concurrency_limit=2, pending_seconds=5)) as (sandbox, client):
        assert upload(client, batch_file()).status_code == 201
        assert upload(client, batch_file()).status_code == 201
        refused = upload(client, batch_file())
        assert refused.status_code == 429
        assert refused.json() == {
            "statusCode": 429,
            "errorCode": "concurrency_limit_reached",
            "message": "Batch concurrency limit reached. Please wait for an existing batch to complete or upgrade your plan.",
        }
        assert upload(client, batch_file(), dry_run="true").status_code == 200  # dry runs are not capped
        clock.advance(60)
        assert upload(client, batch_file()).status_code == 201
        assert len(sandbox.batches) == 3


def test_reset_after_accept_creates_the_batch_but_sends_no_response() -> None:
    with running() as (sandbox, client):
        sandbox.inject(Fault(route="POST /v2/batch", kind="reset_after_accept"))
        with pytest.raises(httpx.RemoteProtocolError):
            upload(client, batch_file())
        assert len(sandbox.batches) == 1
        assert sandbox.faults == []
        assert upload(client, batch_file()).status_code == 201  # the fault was used up
        assert len(sandbox.batches) == 2


def test_reset_before_accept_creates_nothing() -> None:
    with running() as (sandbox, client):
        sandbox.inject(Fault(route="POST /v2/batch", kind="reset_before_accept"))
        with pytest.raises(httpx.RemoteProtocolError):
            upload(client, batch_file())
        assert sandbox.batches == []
        assert sandbox.requests[("POST", "/v2/batch")] == 1


def test_malformed_json_answers_200_with_a_broken_body() -> None:
    with running() as (sandbox, client):
        sandbox.inject(Fault(route="POST /v2/batch", kind="malformed_json"))
        response = upload(client, batch_file())
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            response.json()
        assert len(sandbox.batches) == 1
        assert (
            response.content
            == client.get(f"/v2/batch/{sandbox.batches[0].id}").content[: len(response.content)]
        )


def test_status_faults_apply_the_given_number_of_times_then_stop() -> None:
    with running() as (sandbox, client):
        sandbox.inject(Fault(route="POST /v2/batch", kind="status", status=503, times=2))
        sandbox.inject(Fault(route="*", kind="status", status=500, body="boom", times=None))
        assert [upload(client, batch_file()).status_code for _ in range(2)] == [503, 503]
        assert client.get("/v2/batch").text == "boom"
        assert upload(client, batch_file()).status_code == 500
        sandbox.clear_faults()
        assert upload(client, batch_file()).status_code == 201
        assert len(sandbox.batches) == 1


def test_an_injected_concurrency_429_uses_the_documented_body() -> None:
    with running() as (sandbox, client):
        sandbox.inject(
            Fault(route="POST /v2/batch", kind="status", status=429, error_code="concurrency_limit_reached")
        )
        assert upload(client, batch_file()).json()["errorCode"] == "concurrency_limit_reached"


def test_a_slow_create_times_out_the_client_but_still_takes_effect() -> None:
    with running() as (sandbox, client):
        sandbox.inject(Fault(route="POST /v2/batch", kind="slow", delay=0.5))
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                "/v2/batch",
                files={"input": ("batch.jsonl", batch_file(), "application/jsonl")},
                timeout=httpx.Timeout(10, read=0.05),
            )
        until(lambda: len(sandbox.batches) == 1, "the slow create to land")


def test_latency_slows_every_api_answer() -> None:
    with running(latency=0.3) as (_, client), pytest.raises(httpx.ReadTimeout):
        client.get("/v2/batch", timeout=httpx.Timeout(10, read=0.05))


def test_requests_are_counted_by_method_and_route() -> None:
    with running() as (sandbox, client):
        batch_id = upload(client, batch_file()).json()["id"]
        for _ in range(3):
            client.get(f"/v2/batch/{batch_id}")
        client.get("/v2/batch")
        client.get("/v2/batch/batch_other")
        assert sandbox.requests == {
            ("POST", "/v2/batch"): 1,
            ("GET", "/v2/batch/{id}"): 4,
            ("GET", "/v2/batch"): 1,
        }


# -- generate ----------------------------------------------------------------------------------------------


def _payload(url: str = "https://media.test/v.mp4", **extra: Any) -> dict[str, Any]:
    return {
        "model": "lipsync-2",
        "input": [{"type": "video", "url": url}, {"type": "audio", "url": "https://media.test/a.wav"}],
        **extra,
    }


def test_generate_progresses_to_completed() -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock, pending_seconds=1, seconds_per_generation=1)) as (sandbox, client):
        created = client.post("/v2/generate", json=_payload())
        assert created.status_code == 201
        body = created.json()
        assert body["status"] == "PENDING"
        assert body["outputUrl"] is None
        assert body["model"] == "lipsync-2"
        path = f"/v2/generate/{body['id']}"
        clock.advance(1)
        assert client.get(path).json()["status"] == "PROCESSING"
        clock.advance(1)
        done = client.get(path).json()
        assert done["status"] == "COMPLETED"
        assert httpx.URL(done["outputUrl"]).path.endswith(f"{body['id']}.mp4")
        assert [g.id for g in sandbox.generations] == [body["id"]]


@pytest.mark.parametrize(
    ("suffix", "status", "code"),
    [
        ("?sandbox=fail", "FAILED", "generation_pipeline_failed"),
        ("?sandbox=reject", "REJECTED", "generation_media_metadata_missing"),
        ("?sandbox=missing", "FAILED", "generation_pipeline_failed"),
    ],
)
def test_generate_follows_the_rules(suffix: str, status: str, code: str) -> None:
    clock = ManualClock()
    with running(Sandbox(clock=clock)) as (_, client):
        generation_id = client.post(
            "/v2/generate", json=_payload(f"https://media.test/v.mp4{suffix}")
        ).json()["id"]
        clock.advance(10)
        body = client.get(f"/v2/generate/{generation_id}").json()
        assert (body["status"], body["error_code"]) == (status, code)
        assert body["error"]
        assert body["outputUrl"] is None


def test_generate_refuses_invalid_payloads_with_every_problem(shared: tuple[Sandbox, httpx.Client]) -> None:
    sandbox, client = shared
    bad = {"model": "lipsync-2", "input": [{"type": "audio", "url": "nope"}], "colour": "red"}
    response = client.post("/v2/generate", json=bad)
    assert response.status_code == 400
    messages = response.json()["message"]
    assert any(m.startswith("/colour") for m in messages)
    assert any(m.startswith("/input/0/url") for m in messages)
    assert (
        client.post("/v2/generate", content=b"{nope", headers={"content-type": "application/json"})
        .json()["message"][0]
        .startswith("body: not valid JSON")
    )
    assert sandbox.generations == []


def test_idempotency_key_returns_the_same_generation() -> None:
    with running() as (sandbox, client):
        first = client.post("/v2/generate", json=_payload(), headers={"Idempotency-Key": "order-42"})
        again = client.post("/v2/generate", json=_payload(), headers={"Idempotency-Key": "order-42"})
        assert first.json()["id"] == again.json()["id"]
        assert len(sandbox.generations) == 1
        other = client.post(
            "/v2/generate", json=_payload("https://media.test/w.mp4"), headers={"Idempotency-Key": "order-42"}
        )
        assert other.status_code == 409
        assert other.json()["errorCode"] == "IDEMPOTENCY_KEY_REUSED"
        bad = client.post("/v2/generate", json=_payload(), headers={"Idempotency-Key": "has space"})
        assert bad.status_code == 400
        assert bad.json()["errorCode"] == "INVALID_IDEMPOTENCY_KEY"
        unkeyed = [client.post("/v2/generate", json=_payload()).json()["id"] for _ in range(2)]
        assert len(set(unkeyed)) == 2
        assert len(sandbox.generations) == 3


def test_generation_webhook_is_signed() -> None:
    with (
        Receiver() as receiver,
        running(pending_seconds=0, seconds_per_generation=0, webhook_secret="whsec_x") as (
            sandbox,
            client,
        ),
    ):
        generation_id = client.post("/v2/generate", json=_payload(webhookUrl=receiver.url)).json()["id"]
        [delivery] = sandbox.wait_for_webhooks(1)
        assert delivery.kind == "generation"
        assert delivery.ok
        [(headers, body)] = receiver.received
        assert _verify(body, headers["sync-signature"], "whsec_x")
        notice = GenerationWebhook.model_validate_json(body)
        assert (notice.id, notice.status, notice.webhook_url) == (generation_id, "COMPLETED", receiver.url)


# -- pure parts (property tests) ---------------------------------------------------------------------------

_ids = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=12),
    min_size=2,
    max_size=60,
    unique=True,
)
_LIMITS = Limits(min_records=2, max_records=60)


def _records(ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for request_id in ids:
        line = record(0)
        line["request_id"] = request_id
        out.append(line)
    return out


@settings(max_examples=60, deadline=None)
@given(ids=_ids)
def test_any_file_of_unique_ids_within_limits_is_accepted_in_order(ids: list[str]) -> None:
    lines = parse_upload(jsonl(_records(ids)), _LIMITS)
    assert [line.request_id for line in lines] == ids
    assert [line.number for line in lines] == list(range(1, len(ids) + 1))


@settings(max_examples=60, deadline=None)
@given(ids=_ids, data=st.data())
def test_a_duplicate_is_refused_naming_both_lines(ids: list[str], data: st.DataObject) -> None:
    first = data.draw(st.integers(0, len(ids) - 1))
    later = data.draw(st.integers(first + 1, len(ids)))
    records = _records(ids)
    records.insert(later, dict(records[first]))
    with pytest.raises(UploadRefused) as refused:
        parse_upload(jsonl(records), Limits(min_records=2, max_records=61))
    assert refused.value.messages == [
        f"line {later + 1}: duplicate request_id {json.dumps(ids[first])} (first on line {first + 1})"
    ]


_statuses = st.sampled_from(["COMPLETED", "FAILED", "REJECTED", "MISSING"])


@settings(max_examples=80, deadline=None)
@given(
    outcomes=st.lists(_statuses, min_size=1, max_size=40),
    pending=st.floats(0, 5),
    per=st.floats(0, 1),
    times=st.lists(st.floats(0, 60), min_size=1, max_size=8),
)
def test_metrics_always_add_up_and_only_move_forward(
    outcomes: list[str], pending: float, per: float, times: list[float]
) -> None:
    records = _records([f"r{i}" for i in range(len(outcomes))])
    data = jsonl(records)
    lines = parse_upload(data, Limits(min_records=1, max_records=40))
    results = [Result(s, None if s == "COMPLETED" else "code", None) for s in outcomes]  # type: ignore[arg-type]
    batch = SandboxBatch.create(
        batch_id="batch_x", created_at=datetime.now(UTC), started=0.0, data=data, lines=lines, results=results,
        webhook_url=None, api_base="http://h", pending_seconds=pending, seconds_per_generation=per, seed=1,
    )  # fmt: skip
    rank = {"PENDING": 0, "PROCESSING": 1, "COMPLETED": 2, "FAILED": 2}
    previous = (-1, -1)
    for now in sorted(times):
        metrics = batch.metrics(now)
        assert metrics["success_count"] + metrics["failed_count"] + metrics["pending_count"] == len(outcomes)
        step = (rank[batch.status(now)], batch.done(now))
        assert step >= previous
        previous = step
    end = batch.finishes_at
    assert batch.status(end) == ("COMPLETED" if "COMPLETED" in outcomes else "FAILED")
    output = [orjson.loads(line) for line in batch.output_jsonl(seed=1).splitlines()]
    expected = {f"r{i}" for i, s in enumerate(outcomes) if s != "MISSING"}
    assert {line["request_id"] for line in output} == expected
    assert {line["status"] for line in output} <= {"COMPLETED", "FAILED", "REJECTED"}


def test_default_limits_are_the_documented_ones() -> None:
    assert SandboxConfig().limits == DEFAULT_LIMITS
    assert SandboxConfig().pending_seconds + 29 * SandboxConfig().seconds_per_generation < 1
    assert timedelta(seconds=SandboxConfig().pending_seconds) < timedelta(seconds=1)


# -- behaving like a server: late creates, foreign batches, finished on create, a persistent account ----------


def _upload(client: httpx.Client, data: bytes | None = None) -> httpx.Response:
    files = {"input": ("batch.jsonl", data or batch_file(), "application/octet-stream")}
    return client.post("/v2/batch", files=files, data={"dry_run": "false"}, headers={"x-api-key": "k"})


def test_latency_is_spent_after_the_upload_so_a_create_lands_without_its_client() -> None:
    """A client that gives up during the latency still gets its batch made, as a real server goes on working."""
    sandbox = Sandbox(latency=0.3)
    with serve(sandbox) as url, httpx.Client(base_url=url, timeout=0.05) as client:
        with pytest.raises(httpx.TimeoutException):
            _upload(client)
        deadline = time.monotonic() + 5
        while not sandbox.batches and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(sandbox.batches) == 1


def test_every_answer_names_the_account() -> None:
    sandbox = Sandbox()
    with serve(sandbox) as url, httpx.Client(base_url=url) as client:
        response = client.get("/v2/batch", headers={"x-api-key": "k"})
    assert response.headers["x-batchkit-sandbox"] == sandbox.account_id


def test_foreign_batches_of_the_same_size_appear_on_the_account() -> None:
    """A knob makes someone else's batch of the same size before each create; the Python API adds them too."""
    sandbox = Sandbox(foreign_batches=2, pending_seconds=0)
    with serve(sandbox) as url, httpx.Client(base_url=url) as client:
        created = _upload(client).json()
        extra = sandbox.add_foreign_batch(25, finished=True)  # (from Python: any size)
        listed = client.get("/v2/batch", headers={"x-api-key": "k"}).json()
    assert len(listed) == 4
    size = len(sandbox.batch(created["id"]).request_ids)
    assert sorted(b["metrics"]["total_generations"] for b in listed) == sorted([size, size, size, 25])
    ours = set(sandbox.batch(created["id"]).request_ids)
    assert not any(ours & set(b.request_ids) for b in sandbox.batches if b.id != created["id"])
    assert sandbox.batch_json(extra.id)["status"] == "COMPLETED"


def test_a_batch_can_be_finished_when_the_create_answers() -> None:
    sandbox = Sandbox(finished_on_create=True)
    with serve(sandbox) as url, httpx.Client(base_url=url) as client:
        created = _upload(client).json()
    assert created["status"] == "COMPLETED"
    assert created["outputUrl"]


def test_an_account_kept_in_a_state_file_survives_a_restart(tmp_path: Path) -> None:
    """Started again from its state file (another port), the sandbox has the same account and batches, still
    progressing on the clock, with result URLs on the new address."""
    state = tmp_path / "sandbox.jsonl"
    first = Sandbox(state_path=state, pending_seconds=0.05, seconds_per_generation=0.001)
    with serve(first) as url, httpx.Client(base_url=url) as client:
        created = _upload(client).json()
    again = Sandbox(state_path=state)
    assert again.account_id == first.account_id
    time.sleep(0.2)
    with serve(again) as url, httpx.Client(base_url=url) as client:
        batch = client.get(f"/v2/batch/{created['id']}", headers={"x-api-key": "k"}).json()
        assert batch["status"] == "COMPLETED"
        assert batch["outputUrl"].startswith(url)
        signed = client.get(batch["outputUrl"], headers={"x-api-key": "k"}).headers["location"]
        output = client.get(signed)
    assert output.status_code == 200
    assert len(output.content.splitlines()) == len(first.batch(created["id"]).request_ids)
