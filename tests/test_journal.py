"""The submission journal: durable states, change detection, history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchkit import JournalError
from batchkit._shard.builddir import JOURNAL
from batchkit._submit.journal import Journal

SHARDS = [("c-0001.jsonl", "a" * 64, 29, 1000), ("c-0002.jsonl", "b" * 64, 29, 1001)]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal.open(tmp_path)
    j.sync_shards(SHARDS)
    return j


def test_new_shards_start_pending_in_manifest_order(journal: Journal) -> None:
    """Every shard of the manifest is known, pending, in order."""
    shards = journal.shards()
    assert [(s.file, s.state, s.position) for s in shards] == [
        ("c-0001.jsonl", "pending", 1),
        ("c-0002.jsonl", "pending", 2),
    ]


def test_intent_then_answer_survives_reopening(journal: Journal, tmp_path: Path) -> None:
    """An intent and the batch id that answers it are on disk before the calls return."""
    journal.record_intent("c-0001.jsonl", webhook_url="https://hooks.example.com/b")
    journal.close()
    reopened = Journal.open(tmp_path)
    shard = reopened.shard("c-0001.jsonl")
    assert shard.state == "intent"
    assert shard.intent_at is not None
    assert shard.webhook_url == "https://hooks.example.com/b"
    assert shard.attempts == 1
    reopened.record_submitted("c-0001.jsonl", "batch_1", status="PENDING", metrics={"total_generations": 29})
    reopened.close()
    again = Journal.open(tmp_path).shard("c-0001.jsonl")
    assert (again.state, again.batch_id, again.metrics) == ("submitted", "batch_1", {"total_generations": 29})


def test_an_intent_cannot_be_recorded_twice(journal: Journal) -> None:
    """A shard in flight or submitted cannot get a second intent: that would be a double submission."""
    journal.record_intent("c-0001.jsonl", webhook_url=None)
    with pytest.raises(JournalError, match="intent"):
        journal.record_intent("c-0001.jsonl", webhook_url=None)
    journal.record_submitted("c-0001.jsonl", "batch_1", status="PENDING", metrics={})
    with pytest.raises(JournalError, match="submitted"):
        journal.record_intent("c-0001.jsonl", webhook_url=None)


def test_not_sent_returns_a_shard_to_pending(journal: Journal) -> None:
    """A create that certainly made nothing leaves the shard pending, with the reason kept."""
    journal.record_intent("c-0002.jsonl", webhook_url=None)
    journal.record_not_sent("c-0002.jsonl", "connection refused")
    shard = journal.shard("c-0002.jsonl")
    assert (shard.state, shard.intent_at, shard.message) == ("pending", None, "connection refused")


def test_a_changed_shard_is_refused_once_sent(journal: Journal) -> None:
    """A shard whose bytes changed after it was sent cannot be silently re-journaled."""
    journal.record_intent("c-0001.jsonl", webhook_url=None)
    journal.record_submitted("c-0001.jsonl", "batch_1", status="PENDING", metrics={})
    changed = [("c-0001.jsonl", "f" * 64, 29, 1000), SHARDS[1]]
    with pytest.raises(JournalError, match="changed since it was submitted") as info:
        journal.sync_shards(changed)
    assert info.value.shard == "c-0001.jsonl"


def test_a_changed_unsent_shard_is_reset(journal: Journal) -> None:
    """An unsent shard that was rebuilt simply takes its new fingerprint."""
    journal.sync_shards([("c-0001.jsonl", "f" * 64, 30, 1100), SHARDS[1]])
    shard = journal.shard("c-0001.jsonl")
    assert (shard.sha256, shard.records, shard.bytes, shard.state) == ("f" * 64, 30, 1100, "pending")


def test_superseded_batches_stay_known(journal: Journal) -> None:
    """--force forgets the current batch but remembers its id, so reconciliation never adopts it again."""
    journal.record_intent("c-0001.jsonl", webhook_url=None)
    journal.record_submitted("c-0001.jsonl", "batch_old", status="COMPLETED", metrics={})
    journal.supersede("c-0001.jsonl", "resubmitted with --force")
    assert journal.shard("c-0001.jsonl").state == "pending"
    assert journal.shard("c-0001.jsonl").batch_id is None
    assert "batch_old" in journal.known_batch_ids()
    kinds = [e["kind"] for e in journal.events("c-0001.jsonl")]
    assert kinds == ["added", "intent", "created", "superseded"]


def test_status_updates_are_recorded_once_per_change(journal: Journal) -> None:
    """Polls update the status; only changes become history events."""
    journal.record_intent("c-0001.jsonl", webhook_url=None)
    journal.record_submitted("c-0001.jsonl", "batch_1", status="PENDING", metrics={})
    for status in ("PROCESSING", "PROCESSING", "COMPLETED"):
        journal.record_status("c-0001.jsonl", status=status, metrics={"success_count": 29}, output_url="")
    shard = journal.shard("c-0001.jsonl")
    assert shard.terminal
    assert shard.output_url is None
    statuses = [e["detail"]["status"] for e in journal.events("c-0001.jsonl") if e["kind"] == "status"]
    assert statuses == ["PROCESSING", "COMPLETED"]


def test_the_journal_holds_no_secret(journal: Journal, tmp_path: Path) -> None:
    """Nothing but ids, counts, times and messages is stored."""
    journal.record_intent("c-0001.jsonl", webhook_url=None)
    journal.record_submitted("c-0001.jsonl", "batch_1", status="PENDING", metrics={})
    journal.close()
    db = sqlite3.connect(tmp_path / JOURNAL)
    columns = {
        row[1]
        for table in ("shards", "events", "dry_runs")
        for row in db.execute(f"PRAGMA table_info({table})")
    }
    assert not {c for c in columns if "key" in c or "auth" in c or "header" in c}
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    """A journal that is not SQLite stops everything with a message, not a traceback."""
    (tmp_path / JOURNAL).write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="cannot open the submission journal"):
        Journal.open(tmp_path)


def test_opening_without_create_needs_a_journal(tmp_path: Path) -> None:
    """status and wait on a directory that was never submitted say what to do."""
    with pytest.raises(JournalError, match="batchkit submit"):
        Journal.open(tmp_path, create=False)
