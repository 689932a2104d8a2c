"""Submit, wait for and list 200 shards (100,000 requests) against the sandbox with a fast clock.

The sandbox runs in its own process (``batchkit sandbox``), so the CPU time of this process is batchkit's
own work: building requests, the journal, parsing answers, polling. Reported:

* batchkit's share of the run: CPU seconds of this process / wall seconds of submit + wait + list;
* HTTP requests per shard, counted by an httpx event hook, by kind (creates, lists, gets).

    python benchmarks/bench_submit.py            # 200 shards × 500 requests
    python benchmarks/bench_submit.py --quick    # 20 shards × 100 requests
"""

from __future__ import annotations

import collections
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import httpx
import orjson

from batchkit import Client, Limits, PollPolicy
from batchkit._shard.reshard import shard_file
from batchkit._submit.submit import submit, wait


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _corpus(path: Path, shards: int, per_shard: int) -> None:
    with path.open("wb") as out:
        for i in range(shards * per_shard):
            line = {
                "request_id": f"cust-{i:07d}",
                "endpoint": "/v2/generate",
                "payload": {
                    "model": "lipsync-2",
                    "input": [
                        {"type": "video", "url": f"https://cdn.example.com/videos/base_{i % 50:03d}.mp4"},
                        {"type": "audio", "url": f"https://cdn.example.com/audio/{i:07d}.wav"},
                    ],
                    "options": {"sync_mode": "loop"},
                    "outputFileName": f"cust_{i:07d}",
                },
            }
            out.write(orjson.dumps(line) + b"\n")


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--per-shard", type=int, default=500)
    args = parser.parse_args()
    if args.quick:
        args.shards, args.per_shard = 20, 100
    _common.header()

    work = Path(tempfile.mkdtemp(prefix="batchkit-bench-submit-"))
    source = work / "requests.jsonl"
    _corpus(source, args.shards, args.per_shard)
    limits = Limits(min_records=args.per_shard, max_records=args.per_shard)
    build = work / "build"
    shard_file(source, build, limits=limits)

    port = _free_port()
    # Fast clock: each batch is pending 0.5 s, then finishes its 500 generations in 0.5 s.
    server = subprocess.Popen(
        [sys.executable, "-m", "batchkit", "sandbox", "--port", str(port), "--pending-seconds", "0.5",
         "--seconds-per-generation", str(0.5 / args.per_shard), "--max-records", str(args.per_shard)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(url + "/v2/batch", headers={"x-api-key": "bench"}, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        counts: collections.Counter[str] = collections.Counter()

        def count(request: httpx.Request) -> None:
            path = request.url.path
            kind = (
                "list"
                if path == "/v2/batch" and request.method == "GET"
                else request.method + " " + ("/v2/batch/{id}" if path.startswith("/v2/batch/") else path)
            )
            counts[kind] += 1

        http = httpx.Client(event_hooks={"request": [count]})
        with Client(api_key="bench", base_url=url, http_client=http) as client:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            submit(build, client=client)
            t_submit = time.perf_counter() - wall0
            shards = wait(build, client=client, poll=PollPolicy(initial=0.5, factor=1.5, maximum=2.0))
            listed = client.batches.list()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        http.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert all(s.status == "COMPLETED" for s in shards), "not every batch completed"
    assert len(listed) >= args.shards
    total = sum(counts.values())
    print(f"shards: {args.shards} × {args.per_shard} requests ({args.shards * args.per_shard:,} requests)")
    print(f"submit: {t_submit:.2f} s; submit + wait + list: {wall:.2f} s wall, batchkit CPU {cpu:.2f} s")
    print(f"batchkit's share of the run: {cpu / wall:.1%} (target ≤ 25%)")
    print(f"HTTP requests: {total} = {total / args.shards:.2f} per shard: {dict(sorted(counts.items()))}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
