"""Benchmark joining results: 1,000,000 output lines back to a 1,000,000-row source, exported to Parquet.

    python benchmarks/bench_results.py                    # 1,000,000 rows, best of 3
    python benchmarks/bench_results.py --quick            # 50,000 rows, best of 2
    python benchmarks/bench_results.py --profile          # also print where batchkit's time goes

Setup (cached in ``benchmarks/data/results-<rows>/``, git-ignored): the campaign CSV of ``bench_build.py``, a
real build directory made by ``batchkit.build`` (shards of 500), one output.jsonl per shard in Sync's
documented line shape (``request_id, endpoint, payload, status, error, response`` with a full Generation,
``updated_at``), in shuffled order, with ~2 % FAILED, ~1 % REJECTED and ~0.5 % left out (missing), and a
journal marking every shard submitted and COMPLETED with its output file present.

Timed in one process, alternately, best of ``--repeat``:

* **batchkit**: ``collect_results(DIR, download=False)`` + ``Results.write("x.parquet")``: read the manifest and
  ``requests.parquet``, read and check every output file, reconcile, re-read the source, join, export;
* **floor**: polars alone reading the same inputs: ``pl.read_csv(source, infer_schema=False)`` and
  ``pl.read_ndjson`` of every output file.

Target: batchkit ≤ 3× the floor.
"""

from __future__ import annotations

import cProfile
import gc
import hashlib
import pstats
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common
import orjson
import polars as pl
from bench_build import DATA, MAPPING, make_csv

from batchkit import Limits
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._results.results import collect_results
from batchkit._shard.builddir import RESULTS_DIR, load_manifest
from batchkit._submit.journal import Journal

TARGET = 3.0
FAILED, REJECTED, MISSING = 0.02, 0.01, 0.005


def prepare(rows: int) -> tuple[Path, Path]:
    """The source CSV and a finished build directory for it (cached)."""
    source = make_csv(rows)
    directory = DATA / f"results-{rows}"
    if (directory / "ready").exists():
        return source, directory
    shutil.rmtree(directory, ignore_errors=True)
    mapping = DATA / "results-campaign.toml"
    mapping.write_text(MAPPING)
    started = time.perf_counter()
    build(source, mapping, directory, BuildOptions(limits=Limits(max_records=500)))
    print(f"setup: built {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    write_outputs(directory)
    print(
        f"setup: wrote the output files and the journal in {time.perf_counter() - started:.1f} s", flush=True
    )
    (directory / "ready").write_text("")
    return source, directory


def write_outputs(directory: Path) -> None:
    manifest = load_manifest(directory)
    results = directory / RESULTS_DIR
    results.mkdir(exist_ok=True)
    rng = random.Random(7)
    created = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    batch_ids = [f"batch_{hashlib.sha256(s.sha256.encode()).hexdigest()[:24]}" for s in manifest.shards]
    for shard, batch_id in zip(manifest.shards, batch_ids, strict=True):
        out: list[bytes] = []
        for position, raw in enumerate((directory / shard.file).read_bytes().splitlines()):
            line = orjson.loads(raw)
            draw = rng.random()
            if draw < MISSING:
                continue
            status = (
                "FAILED"
                if draw < MISSING + FAILED
                else "REJECTED"
                if draw < MISSING + FAILED + REJECTED
                else "COMPLETED"
            )
            out.append(orjson.dumps(_output_line(line, status, position, created, rng)))
        rng.shuffle(out)
        (results / f"{batch_id}.output.jsonl").write_bytes(b"\n".join(out) + b"\n")
    with Journal.open(directory) as journal:
        journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in manifest.shards])
        journal._db.execute("PRAGMA synchronous=OFF")  # setup only: thousands of commits, nothing to protect
        for shard, batch_id in zip(manifest.shards, batch_ids, strict=True):
            journal.record_intent(shard.file, webhook_url=None)
            journal.record_submitted(shard.file, batch_id, status="PENDING", metrics={})
            journal.record_status(
                shard.file,
                status="COMPLETED",
                metrics={"total_generations": shard.records},
                output_url=f"https://api.sync.so/v2/batches/{batch_id}/result",
            )


def _output_line(
    line: dict[str, Any], status: str, position: int, created: datetime, rng: random.Random
) -> dict[str, Any]:
    payload = line["payload"]
    generation_id = f"{rng.getrandbits(128):032x}"
    completed = status == "COMPLETED"
    code = {"FAILED": "generation_pipeline_failed", "REJECTED": "generation_media_metadata_missing"}.get(
        status
    )
    message = {
        "FAILED": "The generation pipeline failed.",
        "REJECTED": "Could not read the media metadata.",
    }.get(status)
    response = {
        "id": generation_id,
        "createdAt": created.isoformat().replace("+00:00", "Z"),
        "status": status,
        "model": payload["model"],
        "input": payload["input"],
        "options": payload.get("options") or {},
        "outputUrl": f"https://cdn.sync.so/outputs/{generation_id}.mp4" if completed else None,
        "outputDuration": round(rng.uniform(3, 30), 3) if completed else None,
        "error": message,
        "error_code": code,
    }
    finished = created + timedelta(seconds=60 + position)
    return {
        "request_id": line["request_id"],
        "endpoint": line["endpoint"],
        "payload": payload,
        "status": status,
        "error": None if completed else {"code": code, "message": message},
        "response": None if status == "FAILED" else response,
        "updated_at": finished.isoformat().replace("+00:00", "Z"),
    }


def ours(directory: Path, target: Path) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    results = collect_results(directory, download=False)
    results.write(target)
    return time.perf_counter() - started, results.outcomes


def floor(source: Path, outputs: list[Path]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = pl.read_csv(source, infer_schema=False)
    lines = pl.read_ndjson(outputs)
    return time.perf_counter() - started, rows.height + lines.height


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="source rows (= requests)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side (the best counts)")
    parser.add_argument("--profile", action="store_true", help="profile one batchkit run (cumulative time)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = 50_000, 2
    _common.header()
    source, directory = prepare(args.rows)
    outputs = sorted((directory / RESULTS_DIR).glob("*.output.jsonl"))
    size = sum(p.stat().st_size for p in outputs)
    print(
        f"source {source.stat().st_size / 2**20:,.0f} MiB; {len(outputs):,} output files, {size / 2**20:,.0f} MiB",
        flush=True,
    )
    target = directory.parent / f"results-{args.rows}.parquet"
    best_ours = best_floor = float("inf")
    outcomes: dict[str, int] = {}
    for attempt in range(1, args.repeat + 1):
        gc.collect()
        took, counted = floor(source, outputs)
        best_floor = min(best_floor, took)
        print(f"run {attempt}: floor (polars reads) {took:.2f} s ({counted:,} rows)", flush=True)
        gc.collect()
        took, outcomes = ours(directory, target)
        best_ours = min(best_ours, took)
        print(f"run {attempt}: batchkit collect_results + write .parquet {took:.2f} s", flush=True)
    print(f"outcomes: {outcomes}")
    print(f"best: batchkit {best_ours:.2f} s, floor {best_floor:.2f} s")
    _common.ratio("batchkit / the floor", best_ours / best_floor, target=TARGET, quick=args.quick)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        ours(directory, target)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    target.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
