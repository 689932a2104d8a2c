"""kill -9 the submitter at random points, while the server is mid-create; after every resume the sandbox
holds exactly one batch per shard.

The sandbox's latency is spent *after* it has read an upload, and the batch is made whether or not the client
is still there, as a real server goes on working: a kill during a create leaves a batch the journal never
heard of, which the next run must find by content instead of sending again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from batchkit import Limits
from batchkit._shard.reshard import shard_file
from batchkit._submit.journal import Journal
from batchkit.sandbox import Sandbox, serve

SHARDS = 8
PER_SHARD = 20


def _build(tmp_path: Path) -> Path:
    lines = [
        orjson.dumps(
            {
                "request_id": f"row-{i:05d}",
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
        for i in range(SHARDS * PER_SHARD)
    ]
    source = tmp_path / "rows.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "build"
    shard_file(source, out, limits=Limits(min_records=PER_SHARD, max_records=PER_SHARD))
    return out


def _submitter(
    directory: Path, url: str, *, capture: bool = False, command: str = "submit"
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SYNC_API_KEY": "crash-test-key", "SYNC_BASE_URL": url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchkit",
            command,
            str(directory),
            "--poll-initial",
            "0.05",
            "--poll-max",
            "0.2",
            # A create whose answer was lost may land for 2 s (a create takes at most 0.15 s here).
            "--timeout",
            "1",
            "--in-flight",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
    )


def _batches_per_shard(sandbox: Sandbox) -> dict[str, int]:
    """How many sandbox batches hold each shard (a shard is known by its first request id)."""
    counts: dict[str, int] = {}
    for batch in sandbox.batches:
        first = batch.request_ids[0]
        counts[first] = counts.get(first, 0) + 1
    return counts


@pytest.mark.parametrize("seed", range(3))
def test_kill_9_at_random_points_never_duplicates_or_loses_a_shard(tmp_path: Path, seed: int) -> None:
    """Three kills at random moments during submission (often mid-create), then a full run: one batch per
    shard, none missing."""
    rng = random.Random(seed)
    directory = _build(tmp_path)
    # The latency spreads the creates over time, so the kills land between intent, upload, create and record.
    sandbox = Sandbox(latency=0.06, pending_seconds=5, seed=seed)
    with serve(sandbox) as url:
        for _ in range(3):
            process = _submitter(directory, url)
            time.sleep(rng.uniform(0.4, 1.0))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            time.sleep(0.1)  # the create the killed process left on the server lands (latency 0.06 s)
            assert all(n == 1 for n in _batches_per_shard(sandbox).values()), "a shard was submitted twice"
        # Then submit until every shard is settled. A shard whose lost create has several candidates (other
        # shards' batches of the same size, still running) stays uncertain until their outputs tell: `wait`
        # settles it, and the next submit sends it if none was its own.
        for _ in range(4):
            final = _submitter(directory, url, capture=True)
            _, stderr = final.communicate(timeout=60)
            assert final.returncode in (0, 3), stderr.decode()
            assert all(n == 1 for n in _batches_per_shard(sandbox).values()), "a shard was submitted twice"
            with Journal.open(directory, create=False) as journal:
                if all(s.state == "submitted" for s in journal.shards()):
                    break
            waited = _submitter(directory, url, capture=True, command="wait")
            _, stderr = waited.communicate(timeout=60)
            assert waited.returncode in (0, 3), stderr.decode()
        per_shard = _batches_per_shard(sandbox)
    assert len(per_shard) == SHARDS
    assert set(per_shard.values()) == {1}
    with Journal.open(directory, create=False) as journal:
        shards = journal.shards()
    assert {s.state for s in shards} == {"submitted"}
    assert {s.batch_id for s in shards} == {b.id for b in sandbox.batches}
