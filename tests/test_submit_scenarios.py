"""The eight ways issue 8 lost money or rows, each replayed against the sandbox over loopback.

Every scenario ends with exactly one batch per shard and every completed row reported completed, or with a
one-line refusal (exit 2) that says the way out.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from conftest import fast_policy

from batchkit import JournalError, Limits, ValidationFailed
from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._report import Finding, Report
from batchkit._results.results import collect_results
from batchkit._retry.retry import retry_failed
from batchkit._shard.builddir import JOURNAL, SUBMISSION, load_manifest
from batchkit._shard.reshard import shard_file
from batchkit._submit.binding import Binding, check_server, write_binding
from batchkit._submit.journal import Journal
from batchkit._submit.recover import recover
from batchkit._submit.submit import resolve, submit, wait
from batchkit.cli import main
from batchkit.sandbox import Sandbox, serve

ROOT = Path(__file__).resolve().parents[1]
POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)
LIMITS = Limits(min_records=20, max_records=20)


def _lines(n: int, prefix: str = "s") -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "request_id": f"{prefix}-{i:04d}",
                "endpoint": "/v2/generate",
                "payload": {
                    "model": "lipsync-2",
                    "input": [
                        {"type": "video", "url": f"https://cdn.example.com/v/{i}.mp4"},
                        {"type": "audio", "url": f"https://cdn.example.com/a/{i}.wav"},
                    ],
                },
            }
        )
        + b"\n"
        for i in range(n)
    )


def _build(tmp_path: Path, name: str = "build", shards: int = 2, prefix: str = "s") -> Path:
    source = tmp_path / f"{name}.jsonl"
    source.write_bytes(_lines(20 * shards, prefix))
    out = tmp_path / name
    shard_file(source, out, limits=LIMITS)
    return out


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(pending_seconds=0.02, seconds_per_generation=0.0005, seed=5)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[Client]:
    with (
        serve(sandbox) as url,
        Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.001), sleep=lambda _s: None) as c,
    ):
        yield c


def _per_shard(sandbox: Sandbox, directory: Path) -> dict[str, int]:
    """How many sandbox batches hold each shard's request_ids."""
    ids = {s.file: set(_ids(directory / s.file)) for s in load_manifest(directory).shards}
    counts = dict.fromkeys(ids, 0)
    for batch in sandbox.batches:
        for file, mine in ids.items():
            if set(batch.request_ids) & mine:
                counts[file] += 1
    return counts


def _ids(path: Path) -> list[str]:
    return [orjson.loads(line)["request_id"] for line in path.read_bytes().splitlines()]


def _done(directory: Path, client: Client) -> None:
    submit(directory, client=client, policy=fast_policy(), poll=POLL)
    wait(directory, client=client, poll=POLL, policy=fast_policy())


def _cli(args: list[str], url: str | None = None, key: str | None = "k") -> tuple[int, str]:
    env = {"SYNC_API_KEY": key} if key else {}
    if url:
        env["SYNC_BASE_URL"] = url
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def _intent(directory: Path) -> str:
    """The journal as a crash leaves it between the intent and the answer, for the first shard."""
    with Journal.open(directory) as journal:
        journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in load_manifest(directory).shards])
        first = journal.shards()[0].file
        journal.record_intent(first, webhook_url=None)
    return first


# -- 1. a finished batch is always downloaded ---------------------------------------------------------------


def test_1_batches_finished_when_first_seen_are_downloaded(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    """Finished on create, found by reconciliation, or adopted by hand: outputUrl is recorded, every row
    completes, and retry selects nothing."""
    sandbox.configure(finished_on_create=True)
    directory = _build(tmp_path, shards=3)
    first = _intent(directory)
    client.batches.create(directory / first)  # the lost create: already COMPLETED when reconciled
    second = load_manifest(directory).shards[1].file
    submit(directory, client=client, policy=fast_policy(), poll=POLL)
    with Journal.open(directory) as journal:
        assert all(s.output_url for s in journal.shards())
        assert journal.shard(first).verified_at is not None
        journal.supersede(second, "test: adopt by hand instead")
        journal.record_intent(second, webhook_url=None)
    by_hand = client.batches.create(directory / second)
    resolve(directory, adopt={second: by_hand.id}, client=client)
    results = collect_results(directory, client=client)
    assert results.outcomes["completed"] == 60
    assert results.outcomes["missing"] == 0
    retried = retry_failed(directory, tmp_path / "retry", client=client)
    assert retried.selected == {}


# -- 2. another directory's batch is never adopted -----------------------------------------------------------


def test_2_a_foreign_batch_of_the_same_size_is_told_apart_by_content(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    """A lost create that made nothing, and someone else's finished batch of the same size: the foreign batch is
    judged by its output and left alone; the shard is sent once; every row completes."""
    directory = _build(tmp_path)
    first = _intent(directory)
    foreign = sandbox.add_foreign_batch(20, finished=True)
    submit(directory, client=client, policy=fast_policy(), poll=POLL)
    wait(directory, client=client, poll=POLL, policy=fast_policy())
    assert _per_shard(sandbox, directory) == {first: 1, load_manifest(directory).shards[1].file: 1}
    with Journal.open(directory) as journal:
        assert journal.shard(first).batch_id != foreign.id
        assert {c["batch_id"]: c["verdict"] for c in journal.candidates(first)} == {foreign.id: "not-ours"}
    results = collect_results(directory, client=client)
    assert results.outcomes["completed"] == 40


def test_2_several_running_candidates_keep_only_that_shard_uncertain(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    """Five running foreign batches of the same size: the shard stays uncertain with a short message (three
    ids and a count), the other shard is sent, status shows it, and results keep its rows pending."""
    sandbox.configure(pending_seconds=60)
    directory = _build(tmp_path)
    first = _intent(directory)
    foreign = [sandbox.add_foreign_batch(20) for _ in range(5)]
    result = submit(directory, client=client, policy=fast_policy(), poll=POLL)
    assert [s.file for s in result.uncertain] == [first]
    assert len(result.submitted) == 1
    note = result.uncertain[0].message or ""
    assert "5 batch(es)" in note
    assert "and 2 more" in note
    assert sum(b.id in note for b in foreign) == 3
    code, out = _cli(["status", directory, "--offline"])
    assert code == 0
    assert "uncertain" in out
    results = collect_results(directory, download=False)
    assert "submission-uncertain" in results.report.counts
    assert results.outcomes["pending"] == 40


# -- 3. one submitter per directory --------------------------------------------------------------------------


def test_3_a_second_process_is_refused_naming_the_holder(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    """While another process holds the directory, `batchkit submit` exits 2 with one line naming its pid and
    host, and creates nothing."""
    directory = _build(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from batchkit._submit.lock import directory_lock
                with directory_lock({str(directory)!r}, "batchkit submit"):
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        code, out = _cli(["submit", directory], url=client.base_url)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert code == 2
    assert f"pid {holder.pid}" in out
    assert "since" in out
    assert len(out.strip().splitlines()) == 1
    assert sandbox.batches == []
    code, _ = _cli(["submit", directory], url=client.base_url)  # the holder is gone: the lock is free
    assert code == 0
    assert len(sandbox.batches) == 2


# -- 4. a create the server finishes after the client is gone ------------------------------------------------


def test_4_an_immediate_resume_waits_for_a_create_still_in_flight(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    """The submitter died after sending; the server lands the batch while the resume waits out the in-flight
    horizon: the resume finds it instead of sending the shard again."""
    directory = _build(tmp_path)
    first = _intent(directory)
    policy = fast_policy()
    landed: list[str] = []

    def sleep(seconds: float) -> None:  # the server finishes the create during the first wait
        if not landed:
            landed.append(client.batches.create(directory / first).id)
        policy_time.sleep(seconds)

    policy_time = fast_policy()
    policy = type(policy)(skew=3600, in_flight=1.0, second_look=0.5, now=policy_time.now, sleep=sleep)
    events: list[str] = []
    submit(directory, client=client, policy=policy, poll=POLL, on_event=lambda e: events.append(e.kind))
    assert landed
    assert _per_shard(sandbox, directory) == dict.fromkeys(_per_shard(sandbox, directory), 1)
    with Journal.open(directory) as journal:
        assert journal.shard(first).batch_id == landed[0]
    assert "not-created" not in events


# -- 5. the journal is part of the directory's identity ------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "empty", "foreign"])
def test_5_a_lost_journal_is_refused_then_recovered_by_content(
    tmp_path: Path, sandbox: Sandbox, client: Client, damage: str
) -> None:
    """Missing, emptied or another directory's journal: status, results and submit refuse with the way out;
    `recover` finds every shard's batch by content; nothing is sent twice and every row completes."""
    directory = _build(tmp_path)
    _done(directory, client)
    journal = directory / JOURNAL
    if damage == "missing":
        journal.unlink()
    elif damage == "empty":
        journal.write_bytes(b"")
    else:
        other = _build(tmp_path, "other", prefix="o")
        _done(other, client)
        journal.write_bytes((other / JOURNAL).read_bytes())
    for suffix in ("-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    for args in (["status", directory], ["results", directory], ["submit", directory]):
        code, out = _cli(args, url=client.base_url)
        assert code == 2, out
        assert "batchkit recover" in out
        assert "Traceback" not in out
    before = len(sandbox.batches)
    found = recover(directory, client=client, policy=fast_policy())
    assert set(found.outcomes.values()) <= {"registry", "verified"}
    results = collect_results(directory, client=client)
    assert results.outcomes["completed"] == 40
    submit(directory, client=client, policy=fast_policy(), poll=POLL)
    assert len(sandbox.batches) == before


def test_5_recover_without_the_registry_finds_batches_by_content(
    tmp_path: Path, sandbox: Sandbox, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With this machine's registry gone too, recover still tells each shard's batch from a foreign one."""
    directory = _build(tmp_path)
    _done(directory, client)
    sandbox.add_foreign_batch(20, finished=True)
    (directory / JOURNAL).unlink()
    monkeypatch.setenv("BATCHKIT_STATE_DIR", str(tmp_path / "fresh-state"))
    found = recover(directory, client=client, policy=fast_policy())
    assert set(found.outcomes.values()) == {"verified"}
    assert collect_results(directory, client=client).outcomes["completed"] == 40


def test_5_damaged_cells_locked_databases_and_stray_rows_are_one_line_errors(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    directory = _build(tmp_path)
    _done(directory, client)
    path = directory / JOURNAL
    db = sqlite3.connect(path)
    db.execute("UPDATE shards SET metrics = 'not json' WHERE position = 1")
    db.commit()
    code, out = _cli(["status", directory, "--offline"])
    assert code == 2
    assert "not JSON" in out
    assert len(out.strip().splitlines()) == 1
    db.execute("UPDATE shards SET metrics = '{}', intent_at = 'yesterday' WHERE position = 1")
    db.commit()
    code, out = _cli(["status", directory, "--offline"])
    assert (code, "not a date" in out) == (2, True)
    db.execute("UPDATE shards SET intent_at = NULL")
    db.execute(
        "INSERT INTO shards (file, position, sha256, records, bytes, state, updated_at) VALUES ('../../etc/passwd', 9, 'x', 1, 1, 'pending', 'now')"
    )
    db.commit()
    code, out = _cli(["submit", directory], url=client.base_url)
    assert code == 2
    assert "no shard file of this build" in out
    db.execute("UPDATE shards SET file = 'build-0009.jsonl' WHERE position = 9")
    db.commit()
    code, out = _cli(["submit", directory], url=client.base_url)
    assert code == 0, out
    assert "retired" in out
    db.close()
    with Journal.open(directory) as journal:
        assert [r["file"] for r in journal.retired()] == ["build-0009.jsonl"]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with (
            pytest.raises(JournalError, match="locked by another program") as info,
            Journal.open(directory, busy_timeout=0.05) as journal,
        ):
            journal.record_status("build-0001.jsonl", status="COMPLETED", metrics={}, output_url=None)
        assert "\n" not in str(info.value)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


# -- 6. bound to one API -------------------------------------------------------------------------------------


def test_6_a_sandbox_directory_never_goes_on_against_the_real_api(tmp_path: Path, client: Client) -> None:
    directory = _build(tmp_path)
    _done(directory, client)
    for command in ("submit", "status", "wait", "results", "recover"):
        code, out = _cli([command, directory, "--base-url", "https://api.sync.so"], key="real-key")
        assert code == 2, (command, out)
        assert "never mix" in out


def test_6_a_move_between_real_hosts_needs_rebind(tmp_path: Path) -> None:
    directory = _build(tmp_path)
    write_binding(directory, Binding("j1", "https://api.sync.so", "api", "2026-11-26T10:00:00.000Z"))
    with Client(api_key="k", base_url="https://eu.api.example.com") as other:
        with pytest.raises(JournalError, match="--rebind"):
            check_server(directory, Binding("j1", "https://api.sync.so", "api", "x"), other)
        moved = check_server(directory, Binding("j1", "https://api.sync.so", "api", "x"), other, rebind=True)
    assert moved.server == "https://eu.api.example.com"
    data = orjson.loads((directory / SUBMISSION).read_bytes())
    assert data["rebinds"][0]["from"] == "https://api.sync.so"


# -- 7. nothing is recorded before it can succeed ------------------------------------------------------------


def test_7_no_key_no_bad_results_path_means_nothing_written(tmp_path: Path, client: Client) -> None:
    directory = _build(tmp_path)
    code, out = _cli(["submit", directory], url=client.base_url, key=None)
    assert code == 2
    assert "SYNC_API_KEY" in out
    assert not (directory / JOURNAL).exists()
    code, out = _cli(
        ["retry", directory, "--out", tmp_path / "rt", "--realtime", "--offline"],
        url=client.base_url,
        key=None,
    )
    assert code == 2
    assert not (tmp_path / "rt").exists()
    campaign = ["run", ROOT / "fixtures/campaign.csv", "--mapping", ROOT / "fixtures/campaign.toml"]
    code, out = _cli([*campaign, "--out", tmp_path / "live"], key=None)
    assert code == 2
    assert "SYNC_API_KEY" in out
    assert not (tmp_path / "live").exists()
    code, out = _cli(
        [*campaign, "--out", tmp_path / "odd", "--sandbox", "--results", tmp_path / "r.xls"], key=None
    )
    assert code == 2
    assert ".xlsx" in out
    assert not (tmp_path / "odd").exists()


def test_7_xlsx_without_the_excel_extra_fails_before_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "xlsxwriter" else real(name, *a)
    )
    campaign = ["run", ROOT / "fixtures/campaign.csv", "--mapping", ROOT / "fixtures/campaign.toml"]
    code, out = _cli(
        [*campaign, "--out", tmp_path / "x", "--sandbox", "--results", tmp_path / "r.xlsx"], key=None
    )
    assert code == 2
    assert "sync-batchkit[excel]" in out
    assert not (tmp_path / "x").exists()


# -- 8. honest exits and messages ----------------------------------------------------------------------------


def test_8_run_exits_1_when_the_server_refuses_every_shard(tmp_path: Path) -> None:
    with serve(Sandbox(limits=Limits(min_records=100))) as url:
        campaign = [
            "run",
            ROOT / "fixtures/campaign.csv",
            "--mapping",
            ROOT / "fixtures/campaign.toml",
            "--skip-invalid",
        ]
        code, out = _cli([*campaign, "--out", tmp_path / "c", *["--poll-initial", "0.05"]], url=url)
    assert code == 1
    assert "refused" in out


def test_8_run_shows_the_findings_that_stop_it(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text((ROOT / "fixtures/campaign.toml").read_text().replace("{audio_url}", "{audio_link}"))
    code, out = _cli(
        ["run", ROOT / "fixtures/campaign.csv", "--mapping", mapping, "--out", tmp_path / "o", "--sandbox"]
    )
    assert code == 1
    assert "audio_link" in out
    assert "report.json" in out


def test_8_validation_failed_names_its_first_findings() -> None:
    report = Report()
    for row in range(5):
        report.add(
            Finding(code="empty-value", severity="error", source="c.csv", row=row + 1, message="empty")
        )
    text = str(ValidationFailed(report))
    assert "c.csv row 1" in text
    assert "c.csv row 3" in text
    assert "and 2 more" in text


def test_8_inspect_shows_what_a_batch_holds_and_whose_it_is(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    directory = _build(tmp_path)
    _done(directory, client)
    with Journal.open(directory) as journal:
        shard = journal.shards()[1]
    code, out = _cli(["inspect", shard.batch_id, "--dir", directory, "--format", "json"], url=client.base_url)
    assert code == 0, out
    data = orjson.loads(out)
    assert data["matches"] == shard.file
    assert data["first_request_ids"][0] in _ids(directory / shard.file)
    assert data["known_to"][0]["shard"] == shard.file


def test_5_a_directory_stripped_of_journal_and_record_is_still_known(
    tmp_path: Path, sandbox: Sandbox, client: Client
) -> None:
    """journal.sqlite and submission.json both deleted: this machine's registry still knows the directory was
    submitted, so submit refuses (nothing sent) and recover gets every shard its batch back."""
    directory = _build(tmp_path)
    _done(directory, client)
    for name in (JOURNAL, f"{JOURNAL}-wal", f"{JOURNAL}-shm", SUBMISSION):
        (directory / name).unlink(missing_ok=True)
    before = len(sandbox.batches)
    code, out = _cli(["submit", directory], url=client.base_url)
    assert code == 2
    assert "batchkit recover" in out
    assert len(sandbox.batches) == before
    code, out = _cli(["recover", directory], url=client.base_url)
    assert code == 0, out
    assert collect_results(directory, client=client).outcomes["completed"] == 40
    code, _ = _cli(["submit", directory], url=client.base_url)
    assert code == 0
    assert len(sandbox.batches) == before
