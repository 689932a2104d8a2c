"""Servers for the fetch tests, all on loopback: the sandbox, a media host that misbehaves, moto's S3.

The fixtures are defined here and imported by the test modules that use them (``*_fixture``, registered under
their short names): a ``conftest.py`` in this folder would shadow ``tests/conftest.py``, which other tests
import by name."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchkit import Client
from batchkit._handback.fetch import FetchItem, FetchOptions
from batchkit._handback.naming import NameRequest, assign_names
from batchkit.sandbox import ManualClock, Sandbox, serve
from batchkit.sandbox._outputs import sample_bytes

MP4 = sample_bytes()
#: No waiting between tries in tests; small chunks so stops and progress are seen often.
FAST = FetchOptions(sleep=lambda seconds: None, chunk_size=64 * 1024, timeout=5.0)


def tree(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``folder`` (hidden ones too): relative path → (inode, size, mtime in ns)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            out[path.relative_to(folder).as_posix()] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return out


# -- the sandbox ----------------------------------------------------------------------------------------


def record(i: int, *, video: str = "") -> dict[str, Any]:
    return {
        "request_id": f"req-{i:03d}",
        "endpoint": "/v2/generate",
        "payload": {
            "model": "lipsync-2",
            "input": [
                {"type": "video", "url": f"https://media.test/v/{i}.mp4{video}"},
                {"type": "audio", "url": f"https://media.test/a/{i}.wav"},
            ],
            "outputFileName": f"take_{i:03d}",
        },
    }


@dataclass
class SandboxBatch:
    """A finished sandbox batch and what fetching its outputs needs; counters count from its creation."""

    sandbox: Sandbox
    clock: ManualClock
    client: Client
    lines: list[dict[str, Any]]
    _media_before: int = 0
    _renewals_before: int = 0
    _leaks_before: int = 0

    def items(self, template: str | None = None) -> list[FetchItem]:
        done = [line for line in self.lines if line["status"] == "COMPLETED"]
        naming = assign_names(
            [NameRequest(line["request_id"], line["payload"].get("outputFileName")) for line in done],
            template,
        )
        return [
            FetchItem(line["request_id"], line["response"]["outputUrl"], name, line["response"]["id"])
            for line, name in zip(done, naming.names, strict=True)
        ]

    @property
    def media_requests(self) -> int:
        """Requests the sandbox's media host received since this batch was made."""
        return self.sandbox.output_video_requests - self._media_before

    @property
    def renewals(self) -> int:
        """``GET /v2/generate/{id}`` calls since this batch was made."""
        return self.sandbox.requests[("GET", "/v2/generate/{id}")] - self._renewals_before

    @property
    def key_leaks(self) -> list[Any]:
        return self.sandbox.key_leaks[self._leaks_before :]


@pytest.fixture(scope="module", name="sandbox_server")
def sandbox_server_fixture() -> Iterator[tuple[Sandbox, ManualClock, Client]]:
    """One served sandbox (manual clock, instant batches) for a test module."""
    clock = ManualClock()
    sandbox = Sandbox(clock=clock, pending_seconds=0, seconds_per_generation=0)
    with serve(sandbox) as url, Client(api_key="sk-test", base_url=url) as client:
        yield sandbox, clock, client


@pytest.fixture(name="finished_batch")
def finished_batch_fixture(
    sandbox_server: tuple[Sandbox, ManualClock, Client], tmp_path: Path
) -> SandboxBatch:
    """A new finished batch of 20 requests (2 of them failed) on the module's sandbox."""
    sandbox, clock, client = sandbox_server
    records = [record(i, video="?sandbox=fail" if i in (4, 9) else "") for i in range(20)]
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    before = (
        sandbox.output_video_requests,
        sandbox.requests[("GET", "/v2/generate/{id}")],
        len(sandbox.key_leaks),
    )
    batch = client.batches.create(data)
    output = client.batches.download(client.batches.get(batch.id), tmp_path / "output.jsonl")
    lines = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    return SandboxBatch(sandbox, clock, client, lines, *before)


# -- a media host that misbehaves on purpose -------------------------------------------------------------


@dataclass
class MediaHost:
    """A loopback HTTP server whose paths choose its behaviour (see ``_Handler.do_GET``)."""

    url: str
    requests: Counter[str] = field(default_factory=Counter)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    flaky_failures: int = 2
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, prefix: str = "/") -> int:
        with self.lock:
            return sum(n for path, n in self.requests.items() if path.startswith(prefix))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        host = self.server.host
        path = self.path.split("?", 1)[0]
        with host.lock:
            host.requests[path] += 1
            seen = host.requests[path]
            host.headers.append({k.lower(): v for k, v in self.headers.items()})
        kind = path.split("/")[1]
        if kind == "ok":
            self._send(200, MP4, "video/mp4")
        elif kind == "octet":
            self._send(200, MP4, "application/octet-stream")
        elif kind == "webm":
            self._send(200, b"\x1a\x45\xdf\xa3" + b"\0" * 200, None)
        elif kind == "html":
            self._send(200, b"<!DOCTYPE html><html><body>Sign in to continue</body></html>", "text/html")
        elif kind == "octet-html":
            self._send(200, b"<html><body>Access denied</body></html>", "application/octet-stream")
        elif kind == "video-json":
            self._send(200, b'{"error": "not found"}', "video/mp4")
        elif kind == "empty":
            self._send(200, b"", "video/mp4")
        elif kind == "gone":
            self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        elif kind == "expired":
            self._send(
                400,
                b"<Error><Code>ExpiredToken</Code><Message>Request has expired</Message></Error>",
                "application/xml",
            )
        elif kind == "teapot":
            self._send(418, b"I'm a teapot", "text/plain")
        elif kind == "flaky":
            if seen <= host.flaky_failures:
                self._send(503, b"busy", "text/plain", Retry_After="7")
            else:
                self._send(200, MP4, "video/mp4")
        elif kind == "truncate":
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(MP4)))
            self.end_headers()
            self.wfile.write(MP4[: len(MP4) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif kind == "slow":
            host.release.wait(10)
            self._send(200, MP4, "video/mp4")
        elif kind == "hang":  # a big body: the first 256 KiB, then nothing until released, then the rest
            size = 4 * 1024 * 1024
            body = MP4 + b"\0" * (size - len(MP4))
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(body[: 256 * 1024])
            self.wfile.flush()
            host.release.wait(10)
            with contextlib.suppress(OSError):
                for start in range(256 * 1024, size, 64 * 1024):
                    self.wfile.write(body[start : start + 64 * 1024])
                    time.sleep(0.01)
        else:
            self._send(404, b"no such behaviour", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    host: MediaHost


@pytest.fixture(name="media_host")
def media_host_fixture() -> Iterator[MediaHost]:
    """The misbehaving media host, on a free loopback port, for one test."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.host = MediaHost(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.host
    finally:
        server.host.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def item(host: MediaHost, path: str, name: str | None = None, **fields: Any) -> FetchItem:
    """A fetch item for ``path`` on the media host, named after it."""
    request_id = fields.pop("request_id", path.strip("/").replace("/", "-"))
    return FetchItem(
        request_id, f"{host.url}{path}?sig=secret", f"{request_id}.mp4" if name is None else name, **fields
    )


# -- moto's S3 server ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3:
    endpoint: str
    options: dict[str, Any]

    def bucket(self, name: str) -> str:
        httpx.put(f"{self.endpoint}/{name}").raise_for_status()
        return name


@pytest.fixture(scope="module", name="s3")
def s3_fixture() -> Iterator[S3]:
    """moto's standalone S3 server in a subprocess on loopback, with dummy credentials."""
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto's S3 server did not start")
                time.sleep(0.05)
        options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            "skip_instance_cache": True,
        }
        yield S3(endpoint, options)
    finally:
        proc.kill()  # a throwaway server: no need to wait for a graceful stop
        proc.wait(10)


def wait_for(condition: Callable[[], bool], what: str = "the condition", timeout: float = 20.0) -> None:
    """Poll until ``condition()`` holds (a wait for an event, never a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)
