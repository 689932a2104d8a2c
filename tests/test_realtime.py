"""Realtime retries: requests sent one by one through POST /v2/generate, journaled, resumable, exactly once."""

from __future__ import annotations

import csv
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest

from batchkit import APIConnectionError
from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._errors import InputError
from batchkit._results.outputs import COLUMNS
from batchkit._results.realtime import realtime_outcomes, realtime_results
from batchkit._results.results import collect_results
from batchkit._retry.retry import RetryOptions, retry_failed
from batchkit._shard.builddir import load_manifest
from batchkit._submit.journal import Journal, idempotency_key
from batchkit._submit.realtime import (
    RealtimeEvent,
    read_realtime_lines,
    send_realtime,
)
from batchkit._submit.submit import submit, wait
from batchkit._wire.limits import Limits
from batchkit.sandbox import Fault, ManualClock, Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)
FAST_BACKOFF = RetryPolicy(initial=0.001, maximum=0.005)
LIMITS = Limits(min_records=20, max_records=25)
MAPPING = {"request_id": "{id}", "model": "lipsync-2", "video": "{video}", "audio": "{audio}"}
#: 1-based source rows and the sandbox marker each gets: 5 units to retry.
MARKS = {3: "fail", 8: "fail", 11: "reject", 17: "missing", 22: "fail"}
RETRIED = ["u003.r1", "u008.r1", "u011.r1", "u017.r1", "u022.r1"]


def write_source(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "video", "audio"])
        for i in range(1, 26):
            mark = f"?sandbox={MARKS[i]}" if i in MARKS else ""
            writer.writerow(
                [
                    f"u{i:03d}",
                    f"https://cdn.example.com/v/{i}.mp4",
                    f"https://cdn.example.com/a/{i}.wav{mark}",
                ]
            )
    return path


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=5)


@pytest.fixture
def url(sandbox: Sandbox) -> Iterator[str]:
    with serve(sandbox) as address:
        yield address


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(api_key="test-key", base_url=url, retry=RetryPolicy(initial=0.001, maximum=0.01)) as c:
        yield c


@pytest.fixture
def finished(tmp_path: Path, client: Client) -> Path:
    """25 rows, one batch, finished: 3 failed, 1 rejected, 1 missing."""
    directory = tmp_path / "build"
    build(write_source(tmp_path / "people.csv"), MAPPING, directory, BuildOptions(limits=LIMITS))
    submit(directory, client=client, poll=FAST_POLL)
    wait(directory, client=client, poll=FAST_POLL)
    return directory


def realtime(
    directory: Path, out: Path, client: Client, *, download: bool = True, concurrency: int = 3
) -> list[RealtimeEvent]:
    events: list[RealtimeEvent] = []
    lock = threading.Lock()

    def record(event: RealtimeEvent) -> None:
        with lock:
            events.append(event)

    options = RetryOptions(
        mode="realtime", poll=FAST_POLL, backoff=FAST_BACKOFF, download=download, concurrency=concurrency
    )
    retry_failed(directory, out, options, client=client, on_event=record)
    return events


def test_realtime_sends_each_unit_once_and_records_every_outcome(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Five units → five generations, each with its Idempotency-Key, polled to their end."""
    out = tmp_path / "rt"
    events = realtime(finished, out, client)
    assert len(sandbox.generations) == 5
    assert sorted(e.request_id for e in events if e.kind == "created") == RETRIED
    manifest = load_manifest(out)
    assert manifest.shards == []
    assert manifest.unsharded is not None
    assert (manifest.unsharded.mode, manifest.unsharded.records) == ("realtime", 5)
    requests = manifest.requests_frame()
    assert requests.select("request_id", "retry_of", "status", "shard").rows() == [
        (rid, rid.removesuffix(".r1"), "ok", None) for rid in RETRIED
    ]
    with Journal.open(out) as journal:
        records = journal.generations()
    assert [r.request_id for r in records] == RETRIED
    assert {g.idempotency_key for g in sandbox.generations} == {r.idempotency_key for r in records}
    assert all(r.idempotency_key.startswith(r.request_id + ".") for r in records)
    assert {g.id for g in sandbox.generations} == {r.generation_id for r in records}
    # the payload sent is the original line's payload, byte for byte
    lines = dict(read_realtime_lines(out))
    for generation, record in zip(
        sorted(sandbox.generations, key=lambda g: g.idempotency_key or ""),
        sorted(records, key=lambda r: r.idempotency_key),
        strict=True,
    ):
        assert generation.payload == orjson.loads(lines[record.request_id])["payload"]
    assert realtime_outcomes(out) == {
        "u003.r1": "failed",
        "u008.r1": "failed",
        "u011.r1": "rejected",
        "u017.r1": "failed",  # a lone generation cannot go missing: the sandbox fails it
        "u022.r1": "failed",
    }


def test_realtime_results_have_the_output_columns(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """realtime_results() reads like read_output(): the same columns, one row per finished request."""
    sandbox.configure(rules=(sandbox.config.rules[1],))  # only ?sandbox=reject still refuses
    out = tmp_path / "rt"
    realtime(finished, out, client)
    columns = realtime_results(out)
    assert tuple(columns) == COLUMNS
    frame = pl.DataFrame(columns)
    assert frame["request_id"].to_list() == RETRIED
    assert frame["result_status"].to_list() == [
        "COMPLETED",
        "COMPLETED",
        "REJECTED",
        "COMPLETED",
        "COMPLETED",
    ]
    completed = frame.filter(pl.col("result_status") == "COMPLETED")
    assert completed["output_url"].str.starts_with("http").all()
    assert completed["output_duration"].is_not_null().all()
    rejected = frame.filter(pl.col("result_status") == "REJECTED").row(0, named=True)
    assert rejected["error_code"] == "generation_media_metadata_missing"
    assert rejected["error_message"]
    assert frame["generation_id"].is_not_null().all()
    assert frame["result_line"].to_list() == [None] * 5


def test_a_lost_answer_is_resolved_by_the_idempotency_key(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The server makes the generation, the answer is lost; the resend gets the same generation back."""
    sandbox.inject(Fault(route="POST /v2/generate", kind="reset_after_accept", times=3))
    realtime(finished, tmp_path / "rt", client)
    assert len(sandbox.generations) == 5
    assert sandbox.requests[("POST", "/v2/generate")] == 8
    assert len(realtime_outcomes(tmp_path / "rt")) == 5


def test_a_run_that_dies_after_the_server_answered_resumes_without_a_duplicate(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Every create is lost (the server made them); the next run resends with the same keys: no duplicate."""
    sandbox.inject(Fault(route="POST /v2/generate", kind="reset_after_accept", times=None))
    out = tmp_path / "rt"
    events = realtime(finished, out, client)
    assert {e.kind for e in events} == {"uncertain"}
    assert len(sandbox.generations) == 5  # made on the server, unknown to the journal
    with Journal.open(out) as journal:
        assert {r.state for r in journal.generations()} == {"intent"}
    sandbox.clear_faults()
    again = realtime(finished, out, client)  # the same command: the retry directory is reused and resumed
    assert sorted(e.request_id for e in again if e.kind == "resent") == RETRIED
    assert len(sandbox.generations) == 5
    assert set(realtime_outcomes(out).values()) == {"failed", "rejected"}


def test_a_create_sent_just_before_a_crash_is_adopted(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The journal has an intent, the server has the generation: resuming adopts it instead of a second one."""
    out = tmp_path / "rt"
    collect_results(finished, client=client)  # results downloaded: the retry below needs no server
    dead = Client(api_key="k", base_url=f"http://127.0.0.1:{_free_port()}", retry=RetryPolicy(max_attempts=1))
    with dead, pytest.raises(APIConnectionError, match="nothing was sent"):
        realtime(finished, out, dead, download=False)  # the directory is written; no server to bind it to
    assert sandbox.generations == []
    with Journal.open(out) as journal:  # as a crash between the intent and the create leaves it
        journal.sync_generations(rid for rid, _ in read_realtime_lines(out))
        first = journal.generations()[0]
        journal.record_generation_intent(first.request_id)
    payload = orjson.loads(dict(read_realtime_lines(out))[first.request_id])["payload"]
    made = client.generations.create(
        payload, idempotency_key=first.idempotency_key
    )  # "just before the crash"
    realtime(finished, out, client)
    assert len(sandbox.generations) == 5
    with Journal.open(out) as journal:
        assert journal.generation(first.request_id).generation_id == made.id


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            Fault(route="POST /v2/generate", kind="status", status=429, times=12, retry_after=0),
            id="rate-limit",
        ),
        pytest.param(
            Fault(
                route="POST /v2/generate",
                kind="status",
                status=429,
                times=6,
                error_code="concurrency_limit_reached",
            ),
            id="concurrency-limit",
        ),
    ],
)
def test_a_429_storm_waits_and_sends_each_unit_once(
    finished: Path, url: str, sandbox: Sandbox, tmp_path: Path, fault: Fault
) -> None:
    sandbox.inject(fault)
    with Client(
        api_key="k", base_url=url, retry=RetryPolicy(max_attempts=2, initial=0.001, maximum=0.002)
    ) as c:
        events = realtime(finished, tmp_path / "rt", c)
    assert "rate-limited" in {e.kind for e in events}
    assert len(sandbox.generations) == 5
    assert len(realtime_outcomes(tmp_path / "rt")) == 5


def test_an_endless_429_stops_and_the_next_run_finishes(
    finished: Path, url: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Bounded: after max_rate_limit_waits the requests are left unsent, and a later run sends them."""
    out = tmp_path / "rt"
    sandbox.inject(Fault(route="POST /v2/generate", kind="status", status=429, times=None, retry_after=0))
    with Client(api_key="k", base_url=url, retry=RetryPolicy(max_attempts=1)) as c:
        result = retry_failed(
            finished,
            out,
            RetryOptions(mode="realtime", poll=FAST_POLL, backoff=FAST_BACKOFF, concurrency=5),
            client=c,
        )
        assert result.realtime is not None
        assert len(result.realtime.unsent) == 5
        assert sandbox.generations == []
        sandbox.clear_faults()
        resumed = send_realtime(out, client=c, poll=FAST_POLL, backoff=FAST_BACKOFF)
    assert resumed.done
    assert len(sandbox.generations) == 5


def test_a_refused_create_is_a_rejected_result(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.inject(Fault(route="POST /v2/generate", kind="status", status=400, times=1))
    out = tmp_path / "rt"
    events = realtime(finished, out, client, concurrency=1)
    [refused] = [e for e in events if e.kind == "refused"]
    assert len(sandbox.generations) == 4
    assert realtime_outcomes(out)[refused.request_id] == "rejected"
    row = (
        pl.DataFrame(realtime_results(out))
        .filter(pl.col("request_id") == refused.request_id)
        .row(0, named=True)
    )
    assert row["result_status"] == "REJECTED"
    assert row["error_code"]
    assert row["generation_id"] is None


def test_no_more_than_concurrency_generations_run_at_once(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def track(event: RealtimeEvent) -> None:
        nonlocal running, most
        with lock:
            running += event.kind == "created"
            running -= event.kind == "finished"
            most = max(most, running)

    retry_failed(
        finished,
        tmp_path / "rt",
        RetryOptions(mode="realtime", poll=FAST_POLL, concurrency=2),
        client=client,
        on_event=track,
    )
    assert 1 <= most <= 2
    assert running == 0
    assert len(sandbox.generations) == 5


def test_past_the_deadline_nothing_new_starts_and_a_later_run_finishes(tmp_path: Path) -> None:
    """Generations that never finish in time stay in the journal; later runs poll them and send the rest.

    The sandbox's clock moves only when told, so nothing finishes during a run; every run has a deadline.
    """
    clock = ManualClock()
    sandbox = Sandbox(pending_seconds=1.0, seconds_per_generation=0.001, clock=clock)
    directory = tmp_path / "build"
    build(write_source(tmp_path / "people.csv"), MAPPING, directory, BuildOptions(limits=LIMITS))
    with serve(sandbox) as url, Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.001)) as c:
        submit(directory, client=c, poll=FAST_POLL)
        clock.advance(5)
        wait(directory, client=c, poll=FAST_POLL)
        out = tmp_path / "rt"
        first = retry_failed(
            directory,
            out,
            RetryOptions(mode="realtime", poll=FAST_POLL, deadline=0.1, concurrency=2),
            client=c,
        ).realtime
        assert first is not None
        assert first.finished == []
        assert len(first.running) + len(first.unsent) == 5
        assert len(sandbox.generations) == len(first.running)
        runs = 0
        result = first
        while not result.done and runs < 5:  # each round: what was created before it can finish now
            clock.advance(5)
            result = send_realtime(out, client=c, poll=FAST_POLL, deadline=0.5)
            runs += 1
    assert result.done
    assert len(sandbox.generations) == 5


def test_failures_of_a_realtime_retry_can_be_retried_again(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A realtime directory's failed requests → .r2, read back from realtime.jsonl, linked to .r1."""
    first = tmp_path / "rt"
    realtime(finished, first, client)
    sandbox.configure(rules=())
    second = tmp_path / "rt2"
    realtime(first, second, client)
    requests = load_manifest(second).requests_frame()
    assert requests["retry_of"].to_list() == RETRIED
    assert requests["request_id"].to_list() == [rid.replace(".r1", ".r2") for rid in RETRIED]
    assert set(realtime_outcomes(second).values()) == {"completed"}
    assert len(sandbox.generations) == 10


def test_send_realtime_refuses_a_directory_with_shards(finished: Path) -> None:
    with pytest.raises(InputError, match="no requests to send one by one"):
        send_realtime(finished)


def test_an_edited_realtime_file_is_refused(finished: Path, client: Client, tmp_path: Path) -> None:
    out = tmp_path / "rt"
    realtime(finished, out, client)
    path = out / "realtime.jsonl"
    path.write_bytes(path.read_bytes().replace(b"lipsync-2", b"lipsync-9", 1))
    with pytest.raises(InputError, match="changed since"):
        send_realtime(out, client=client)


def test_idempotency_keys_are_valid_and_scoped(tmp_path: Path) -> None:
    """Keys are 1–128 of A-Z a-z 0-9 . _ ~ -, stable per journal, different across journals."""
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
    ids = ["c001.r1", "order 12/3", "x" * 200, "é"]
    keys = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        with Journal.open(tmp_path / name) as journal:
            keys.append([r.idempotency_key for r in journal.sync_generations(ids)])
        with Journal.open(tmp_path / name) as journal:  # reopened: the same keys
            assert [r.idempotency_key for r in journal.sync_generations(ids)] == keys[-1]
    for key in keys[0] + keys[1]:
        assert 1 <= len(key) <= 128
        assert set(key) <= allowed
    assert keys[0][0].startswith("c001.r1.")
    assert not set(keys[0]) & set(keys[1])
    assert idempotency_key("a", "s") == "a.s"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
