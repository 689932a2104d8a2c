"""``batchkit sandbox``: option parsing with CliRunner, the foreground server in a real subprocess."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import click
import httpx
import orjson
import pytest
from click.testing import CliRunner

from batchkit.cli._sandbox import parse_rule, sandbox

RUN_COMMAND = "from batchkit.cli._sandbox import sandbox; sandbox(prog_name='batchkit sandbox')"


@pytest.mark.parametrize(
    ("text", "pattern", "outcome", "code", "message"),
    [
        (
            "bad-take=FAILED:generation_pipeline_failed:take is broken",
            "bad-take",
            "FAILED",
            "generation_pipeline_failed",
            "take is broken",
        ),
        (
            r"[?&]mode=x\b=REJECTED:generation_video_missing",
            r"[?&]mode=x\b",
            "REJECTED",
            "generation_video_missing",
            "",
        ),
        ("lost=MISSING", "lost", "MISSING", "", ""),
        ("a=b=FAILED:code:message: with colons", "a=b", "FAILED", "code", "message: with colons"),
    ],
    ids=["full", "regex-with-equals", "missing", "colons-in-message"],
)
def test_rules_parse(text: str, pattern: str, outcome: str, code: str, message: str) -> None:
    rule = parse_rule(text)
    assert (rule.pattern, rule.outcome, rule.error_code, rule.message) == (pattern, outcome, code, message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no-outcome", "is not REGEX=OUTCOME"),
        ("x=SUCCEEDED:c", "is not REGEX=OUTCOME"),
        ("x=FAILED", "needs an error_code"),
        ("(=FAILED:c", "not a valid regular expression"),
    ],
)
def test_bad_rules_are_refused(text: str, expected: str) -> None:
    with pytest.raises(click.BadParameter, match=re.escape(expected)):
        parse_rule(text)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rule", "x=FAILED"], "needs an error_code"),
        (["--rate-limit-share", "0.7", "--server-error-share", "0.5"], "is more than 1"),
        (["--rate-limit-share", "2"], "not in the range"),
        (
            ["--min-records", "30", "--max-records", "10"],
            "--min-records (30) is larger than --max-records (10)",
        ),
        (["--concurrency-limit", "0"], "not in the range"),
    ],
    ids=["rule", "shares", "share-range", "limits", "concurrency"],
)
def test_bad_options_exit_2_with_a_message(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(sandbox, ["--port", "0", *args])
    assert result.exit_code == 2
    assert expected in result.output


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(sandbox, ["--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "--port" in result.output


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(sandbox, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--port",
        "--seed",
        "--concurrency-limit",
        "--rule",
        "--no-demo-rules",
        "--accept-key",
        "--latency",
    ):
        assert option in result.output


@pytest.fixture
def foreground() -> Iterator[tuple[subprocess.Popen[str], str, queue.Queue[str]]]:
    """``batchkit sandbox`` in a child process; yields it, its URL and a queue of its stderr lines."""
    args = [
        "--port", "0", "--seed", "3", "--accept-key", "cli-key", "--pending-seconds", "0", "--seconds-per-generation", "0",
        "--open-results",
        "--rule", "take-7=REJECTED:generation_video_missing:take 7 has no video",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_COMMAND, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr

    def pump() -> None:
        for line in stderr:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        url = ""
        deadline = time.monotonic() + 30
        while not url:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else ""
        yield proc, url, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_foreground_server_serves_until_ctrl_c(
    foreground: tuple[subprocess.Popen[str], str, queue.Queue[str]],
) -> None:
    proc, url, lines = foreground
    announced: list[str] = []
    while not any("Ctrl-C" in line for line in announced):
        announced.append(lines.get(timeout=10))
    text = "".join(announced)
    assert f"export SYNC_BASE_URL={url}" in text
    assert f"--base-url {url}" in text
    assert "take-7 → REJECTED generation_video_missing" in text

    records = [
        {
            "request_id": f"take-{i}",
            "endpoint": "/v2/generate",
            "payload": {
                "model": "lipsync-2",
                "input": [
                    {"type": "video", "url": f"https://media.test/take-{i}.mp4"},
                    {"type": "audio", "url": "https://media.test/a.wav"},
                ],
            },
        }
        for i in range(20)
    ]
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    with httpx.Client(base_url=url, headers={"x-api-key": "cli-key"}, timeout=10) as client:
        assert httpx.get(f"{url}/v2/batch", headers={"x-api-key": "other"}).status_code == 401
        created = client.post("/v2/batch", files={"input": ("b.jsonl", data, "application/jsonl")})
        assert created.status_code == 201
        batch = client.get(f"/v2/batch/{created.json()['id']}").json()
        assert batch["status"] == "COMPLETED"  # pending and processing times are 0
        signed = httpx.get(batch["outputUrl"]).headers["location"]  # --open-results: no key needed
        output = httpx.get(signed)  # without the key: httpx would forward x-api-key on a redirect
        by_id = {line["request_id"]: line for line in map(orjson.loads, output.content.splitlines())}
        assert by_id["take-7"]["status"] == "REJECTED"
        assert by_id["take-7"]["error"] == {
            "code": "generation_video_missing",
            "message": "take 7 has no video",
        }
        assert by_id["take-3"]["status"] == "COMPLETED"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    assert proc.stdout is not None
    assert proc.stdout.read() == ""


def test_missing_extra_is_a_clear_error() -> None:
    blocked = "import sys; sys.modules.update(starlette=None, uvicorn=None); " + RUN_COMMAND
    proc = subprocess.run(
        [sys.executable, "-c", blocked, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "pip install 'sync-batchkit[sandbox]'" in proc.stderr
    assert "starlette, uvicorn" in proc.stderr
    assert "Traceback" not in proc.stderr
