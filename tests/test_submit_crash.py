"""kill -9 the submitter at random points; after every resume the sandbox holds exactly one batch per shard."""

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


def _submitter(directory: Path, url: str, *, capture: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SYNC_API_KEY": "crash-test-key", "SYNC_BASE_URL": url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchkit",
            "submit",
            str(directory),
            "--poll-initial",
            "0.05",
            "--poll-max",
            "0.2",
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


@pytest.mark.parametrize("seed", range(5))
def test_kill_9_at_random_points_never_duplicates_or_loses_a_shard(tmp_path: Path, seed: int) -> None:
    """Two kills at random moments during submission, then a full run: one batch per shard, none missing."""
    rng = random.Random(seed)
    directory = _build(tmp_path)
    # Some latency spreads the creates over time, so the kills land between intent, create and record.
    sandbox = Sandbox(latency=0.03, pending_seconds=5, seed=seed)
    with serve(sandbox) as url:
        for _ in range(2):
            process = _submitter(directory, url)
            time.sleep(rng.uniform(0.35, 0.9))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            assert all(n == 1 for n in _batches_per_shard(sandbox).values()), "a shard was submitted twice"
        final = _submitter(directory, url, capture=True)
        _, stderr = final.communicate(timeout=60)
        assert final.returncode == 0, stderr.decode()
        per_shard = _batches_per_shard(sandbox)
    assert len(per_shard) == SHARDS
    assert set(per_shard.values()) == {1}
    with Journal.open(directory, create=False) as journal:
        shards = journal.shards()
    assert {s.state for s in shards} == {"submitted"}
    assert {s.batch_id for s in shards} == {b.id for b in sandbox.batches}
