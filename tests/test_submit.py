"""Journaled submission against the sandbox over loopback: once per shard, whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from conftest import fast_policy

from batchkit import JournalError, Limits, WaitTimeoutError
from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._shard.builddir import load_manifest
from batchkit._shard.reshard import shard_file
from batchkit._submit.journal import Journal, ShardRecord
from batchkit._submit.reconcile import ReconcilePolicy
from batchkit._submit.submit import SubmitEvent, refresh, resolve, submit, wait
from batchkit.sandbox import Fault, Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)
LIMITS = Limits(min_records=20, max_records=25)


def _lines(n: int, *, fail: set[int] = frozenset()) -> bytes:  # type: ignore[assignment]
    out = []
    for i in range(n):
        audio = f"https://cdn.example.com/a/{i}.wav" + ("?sandbox=fail" if i in fail else "")
        line = {
            "request_id": f"req-{i:04d}",
            "endpoint": "/v2/generate",
            "payload": {
                "model": "lipsync-2",
                "input": [
                    {"type": "video", "url": f"https://cdn.example.com/v/{i}.mp4"},
                    {"type": "audio", "url": audio},
                ],
            },
        }
        out.append(orjson.dumps(line))
    return b"\n".join(out) + b"\n"


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    """A build directory of three shards of 20 records."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(_lines(60, fail={3}))
    out = tmp_path / "build"
    shard_file(source, out, limits=LIMITS)
    return out


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=7)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[Client]:
    with (
        serve(sandbox) as url,
        # Retry waits are instant; the sandbox's clock (and wait()'s polling) stay real.
        Client(api_key="test-key", base_url=url, retry=RetryPolicy(initial=0.01), sleep=lambda _s: None) as c,
    ):
        yield c


def _submit(directory: Path, client: Client, **kwargs: object) -> list[SubmitEvent]:
    events: list[SubmitEvent] = []
    submit(directory, client=client, on_event=events.append, policy=fast_policy(), poll=FAST_POLL, **kwargs)  # type: ignore[arg-type]
    return events


def test_every_shard_is_submitted_once(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """Three shards → three batches; a second run sends nothing."""
    events = _submit(build_dir, client)
    assert [e.kind for e in events] == ["submitted"] * 3
    assert len(sandbox.batches) == 3
    with Journal.open(build_dir) as journal:
        shards = journal.shards()
    assert {s.state for s in shards} == {"submitted"}
    assert {s.batch_id for s in shards} == {b.id for b in sandbox.batches}
    again = _submit(build_dir, client)
    assert [e.kind for e in again] == ["skipped"] * 3
    assert len(sandbox.batches) == 3


def test_dry_run_creates_nothing_and_reports_verdicts(
    build_dir: Path, client: Client, sandbox: Sandbox
) -> None:
    """--dry-run asks the server about every shard; nothing is created."""
    result = submit(build_dir, client=client, dry_run=True, webhook_url="https://hooks.example.com/x")
    assert [v.valid for v in result.dry_runs] == [True, True, True]
    assert sandbox.dry_runs == 3
    assert sandbox.batches == []


def test_dry_run_reports_a_refusal_per_shard(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """A shard the server refuses is reported with the server's own message."""
    sandbox.configure(limits=Limits(min_records=21))
    result = submit(build_dir, client=client, dry_run=True)
    assert [v.valid for v in result.dry_runs] == [False, False, False]
    assert all("21" in (v.message or "") for v in result.dry_runs)
    assert sandbox.batches == []


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault(route="POST /v2/batch", kind="reset_after_accept"), id="reset-after-accept"),
        pytest.param(Fault(route="POST /v2/batch", kind="reset_before_accept"), id="reset-before-accept"),
        pytest.param(Fault(route="POST /v2/batch", kind="status", status=502), id="bad-gateway"),
        pytest.param(Fault(route="POST /v2/batch", kind="malformed_json"), id="malformed-answer"),
    ],
)
def test_a_lost_answer_never_makes_a_second_batch(
    build_dir: Path, client: Client, sandbox: Sandbox, fault: Fault
) -> None:
    """Whatever happened to the first create's answer, each shard ends with exactly one batch."""
    sandbox.inject(fault)
    events = _submit(build_dir, client)
    kinds = [e.kind for e in events]
    assert "uncertain" in kinds
    assert len(sandbox.batches) == 3
    with Journal.open(build_dir) as journal:
        assert {s.state for s in journal.shards()} == {"submitted"}
        assert {s.batch_id for s in journal.shards()} == {b.id for b in sandbox.batches}
    created_by_fault = fault.kind in ("reset_after_accept", "malformed_json")
    assert bool({"reconciled", "adopted"} & set(kinds)) is created_by_fault
    assert ("not-created" in kinds) is not created_by_fault


def test_an_interrupted_run_is_reconciled_on_the_next(
    build_dir: Path, client: Client, sandbox: Sandbox
) -> None:
    """A crash between the create and the journal write: the next run adopts the batch instead of resending."""
    first = _intent_without_answer(build_dir)
    orphan = client.batches.create(build_dir / first.file)  # the server got it; the journal never heard
    events = _submit(build_dir, client)
    assert (events[0].file, events[0].batch_id) == (first.file, orphan.id)
    assert events[0].kind in ("adopted", "reconciled")  # provisional while running, verified once finished
    assert len(sandbox.batches) == 3


def test_several_candidates_keep_the_shard_uncertain_until_content_tells(
    build_dir: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A lost create and a foreign batch of the same size: the shard stays uncertain (the others go on) until
    the outputs tell which one carries its ids; --adopt still settles it by hand."""
    sandbox.configure(pending_seconds=30)
    first = _intent_without_answer(build_dir)
    ours = client.batches.create(build_dir / first.file)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_bytes(_lines(20).replace(b"req-", b"other-"))
    other = client.batches.create(foreign)
    events = _submit(build_dir, client)
    assert [e.kind for e in events if e.file == first.file] == ["uncertain"]
    assert ours.id in (events[0].message or "")
    assert other.id in (events[0].message or "")
    assert len(sandbox.batches) == 4  # the two other shards were sent; nothing resent for the first
    with Journal.open(build_dir) as journal:
        assert journal.shard(first.file).state == "intent"
    sandbox.configure(pending_seconds=0.0)
    for batch in sandbox.batches:  # let every batch finish now
        object.__setattr__(batch, "pending_seconds", 0.0)
    again = _submit(build_dir, client)
    assert (again[0].kind, again[0].batch_id) == ("reconciled", ours.id)
    assert len(sandbox.batches) == 4
    with Journal.open(build_dir) as journal:
        assert journal.shard(first.file).verified_at is not None
        verdicts = {c["batch_id"]: c["verdict"] for c in journal.candidates(first.file)}
    assert verdicts == {ours.id: "ours", other.id: "not-ours"}


def test_adopt_by_hand_is_checked_by_content(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """--adopt of a batch that is another shard's is released once its output shows it."""
    first = _intent_without_answer(build_dir)
    wrong = client.batches.create(build_dir / "in-0002.jsonl")
    client.batches.wait(wrong.id, poll=FAST_POLL)
    resolve(build_dir, adopt={first.file: wrong.id}, client=client)
    with Journal.open(build_dir) as journal:
        shard = journal.shard(first.file)
    assert (shard.state, shard.batch_id) == ("intent", None)
    assert "not this shard's" in (shard.message or "")


def test_forget_settles_an_intent_that_made_nothing(
    build_dir: Path, client: Client, sandbox: Sandbox
) -> None:
    """--forget marks a lost create as not made; only an uncertain shard can be forgotten."""
    first = _intent_without_answer(build_dir)
    resolve(build_dir, forget=[first.file], client=client)
    with Journal.open(build_dir) as journal:
        assert journal.shard(first.file).state == "pending"
    with pytest.raises(JournalError, match="not an uncertain create"):
        resolve(build_dir, forget=[first.file], client=client)


def test_concurrency_limit_means_wait_not_fail(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """With room for one running batch, submit waits for each to finish before sending the next."""
    sandbox.configure(concurrency_limit=1, pending_seconds=0.3)
    events = _submit(build_dir, client)
    assert [e.kind for e in events].count("submitted") == 3
    assert "concurrency-wait" in [e.kind for e in events]
    assert len(sandbox.batches) == 3


def test_a_refused_shard_is_reported_and_the_rest_go_on(
    build_dir: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A 400 for one shard is recorded with the server's reason; the other shards are still sent."""
    body = orjson.dumps({"statusCode": 400, "message": ["line 2: bad"]}).decode()
    sandbox.inject(Fault(route="POST /v2/batch", kind="status", status=400, body=body))
    result = submit(build_dir, client=client, policy=fast_policy(), poll=FAST_POLL)
    assert [s.state for s in result.shards] == ["refused", "submitted", "submitted"]
    assert "line 2: bad" in (result.refused[0].message or "")
    again = submit(build_dir, client=client, policy=fast_policy(), poll=FAST_POLL)
    assert [s.state for s in again.shards] == ["submitted"] * 3


def test_a_bad_key_stops_with_a_clear_message(build_dir: Path, sandbox: Sandbox) -> None:
    """401 stops the run, names the shard, and leaves it certainly unsent."""
    sandbox.configure(api_keys=("right",))
    with (
        serve(sandbox) as url,
        Client(api_key="sk-wrong-8c1f", base_url=url) as bad,
        pytest.raises(JournalError, match=r"nothing was sent") as info,
    ):
        _submit(build_dir, bad)
    assert "sk-wrong-8c1f" not in str(info.value)
    assert "SYNC_API_KEY" in str(info.value)
    with Journal.open(build_dir) as journal:
        assert [s.state for s in journal.shards()] == ["pending"] * 3
    assert sandbox.batches == []


def test_force_submits_again_and_keeps_the_history(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """--force makes new batches; the old ids stay known so they are never adopted by mistake."""
    _submit(build_dir, client)
    old = {b.id for b in sandbox.batches}
    _submit(build_dir, client, force=True)
    assert len(sandbox.batches) == 6
    with Journal.open(build_dir) as journal:
        assert old <= journal.known_batch_ids()
        assert not old & {s.batch_id for s in journal.shards()}


def test_a_changed_shard_is_not_submitted(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """A shard edited after the build is refused before anything is sent."""
    shard = build_dir / "in-0002.jsonl"
    shard.write_bytes(shard.read_bytes().replace(b"req-0021", b"req-9999"))
    with pytest.raises(Exception, match="changed since they were built"):
        _submit(build_dir, client)
    assert sandbox.batches == []


def test_wait_polls_until_every_batch_is_done(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """wait returns when all batches are terminal, reporting progress on the way, one list per round."""
    _submit(build_dir, client)
    seen: list[int] = []
    shards = wait(build_dir, client=client, poll=FAST_POLL, on_progress=lambda s: seen.append(len(s)))
    assert {s.status for s in shards} == {"COMPLETED"}
    assert sum(s.metrics["failed_count"] for s in shards) == 1
    assert all(s.output_url for s in shards)
    rounds = len(seen)
    assert sandbox.requests[("GET", "/v2/batch")] == rounds + 1  # + the first submit's "which server?" look
    assert sandbox.requests[("GET", "/v2/batch/{id}")] == 0


def test_wait_gives_up_at_the_deadline(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """A deadline ends the wait with the batches still running named; waiting again later works."""
    sandbox.configure(pending_seconds=30)
    _submit(build_dir, client)
    with pytest.raises(WaitTimeoutError, match="still running"):
        wait(build_dir, client=client, poll=PollPolicy(initial=0.05, factor=1, maximum=0.05), deadline=0.2)


def test_refresh_falls_back_to_get_for_unlisted_batches(
    build_dir: Path, client: Client, sandbox: Sandbox
) -> None:
    """A batch missing from the list (older than the window) is fetched by id."""
    _submit(build_dir, client)
    with Journal.open(build_dir) as journal:
        shards = refresh(journal, client)
    assert all(s.status for s in shards)


def _intent_without_answer(directory: Path) -> ShardRecord:
    """The journal as a crash leaves it between "intent recorded" and "answer recorded", for the first shard."""
    with Journal.open(directory) as journal:
        journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in load_manifest(directory).shards])
        first = journal.shards()[0]
        journal.record_intent(first.file, webhook_url=None)
    return first


def test_a_429_storm_stops_with_nothing_created(build_dir: Path, client: Client, sandbox: Sandbox) -> None:
    """Rate limited on every attempt: a clear message naming the shard; the journal says it was not sent."""
    sandbox.configure(rate_limit_share=1.0)
    with pytest.raises(JournalError, match=r"nothing was sent.*429"):
        _submit(build_dir, client)
    sandbox.configure(rate_limit_share=0.0)
    assert sandbox.batches == []
    with Journal.open(build_dir) as journal:
        assert [s.state for s in journal.shards()] == ["pending"] * 3
    _submit(build_dir, client)
    assert len(sandbox.batches) == 3


def test_a_5xx_storm_stops_after_three_checked_attempts(
    build_dir: Path, client: Client, sandbox: Sandbox
) -> None:
    """Every create answered 503 (and nothing created): three attempts, each checked, then a clear stop."""
    sandbox.inject(Fault(route="POST /v2/batch", kind="status", status=503, times=None))
    events: list[SubmitEvent] = []
    with pytest.raises(JournalError, match="three creates in a row") as info:
        submit(build_dir, client=client, on_event=events.append, policy=fast_policy(), poll=FAST_POLL)
    assert info.value.shard == "in-0001.jsonl"
    mine = [e.kind for e in events if e.file == "in-0001.jsonl"]
    assert mine.count("not-created") == 3  # each lost create settled as "made nothing" before the next
    assert sandbox.batches == []


def test_a_timed_out_create_is_found_not_resent(build_dir: Path, sandbox: Sandbox) -> None:
    """The client gives up waiting, the server finishes the create later: the second look finds it."""
    sandbox.inject(Fault(route="POST /v2/batch", kind="slow", delay=0.4))
    events: list[SubmitEvent] = []
    # Real time here: the server really lands the create 0.4 s after the client gave up (at 0.2 s), well
    # inside the 2 s a create may be in flight; the look after that horizon finds it.
    policy = ReconcilePolicy(skew=60, in_flight=2.0, second_look=0.2)
    with (
        serve(sandbox) as url,
        Client(api_key="k", base_url=url, timeout=0.2, retry=RetryPolicy(initial=0.01)) as c,
    ):
        submit(build_dir, client=c, on_event=events.append, policy=policy, poll=FAST_POLL)
    kinds = [e.kind for e in events if e.file == "in-0001.jsonl"]
    assert kinds[0] == "uncertain"
    assert kinds[-1] in ("adopted", "reconciled")
    assert "not-created" not in kinds
    assert len(sandbox.batches) == 3


def test_a_failing_batch_list_during_reconciliation_names_the_shard(
    build_dir: Path, client: Client, sandbox: Sandbox
) -> None:
    """If the server cannot even be asked, nothing is resent and the message says to run again."""
    client.batches.list()  # the client knows which server it talks to before the list starts failing
    sandbox.inject(
        Fault(route="POST /v2/batch", kind="reset_after_accept"),
        Fault(route="GET /v2/batch", kind="status", status=503, times=None),
    )
    with pytest.raises(JournalError, match=r"in-0001\.jsonl: a create may have reached the server"):
        _submit(build_dir, client)
    with Journal.open(build_dir) as journal:
        assert journal.shard("in-0001.jsonl").state == "intent"
    sandbox.clear_faults()
    events = _submit(build_dir, client)
    assert events[0].kind in ("adopted", "reconciled")
    assert len(sandbox.batches) == 3
