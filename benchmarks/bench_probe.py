"""Benchmark pre-flight: probing 1,000 media URLs against a bare HEAD of each, and estimating 1,000,000 requests.

    python benchmarks/bench_probe.py            # 1,000 URLs and 1,000,000 requests, best of 3 (9 for estimate)
    python benchmarks/bench_probe.py --quick    # 200 URLs and 200,000 requests, best of 2

**Probe.** The sandbox runs in its own process (``batchkit sandbox``), so its media host serves on the other
core. The URLs are distinct (nothing is cached) and campaign-like: 28-second MP4s of 18 MB with the index at
the end or first, 60 MB clips with the index at the end, WAV voice-overs and MP3s. Timed in one run,
alternately (a busy moment of a shared machine then hits every measure), best of ``--repeat``:

* **HEAD**: a bare concurrent HEAD of every URL (httpx, a thread pool of ``--concurrency`` workers);
* **probe**: ``probe_urls`` of other URLs of the same files with the same concurrency (``per_host`` =
  ``concurrency``: there is one host), with the default parser choice, with PyAV forced, with tinytag forced.

Reported: time and CPU seconds (this process and the server together) against HEAD (target ≤ 3× in time),
and body bytes read per file (median, max; target: median ≤ 256 KB).

**Estimate.** A 1,000,000-row request table (request_id, model, seconds, each, shard as requests.parquet keeps
it, an Int32) written to Parquet; timed alternately: ``pl.read_parquet`` of it, and
``estimate(frame, TablePrices(...))`` of the frame read. Target: estimate < 2× the read.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import polars as pl

from batchkit._probe import MediaInfo, ProbeConfig, TablePrices, estimate, probe_urls
from batchkit.sandbox._media import media_url

SHAPES: list[tuple[str, dict[str, object]]] = [
    ("clip.mp4", {"duration": 28, "size": "18M", "moov": "end"}),
    ("clip.mp4", {"duration": 28, "size": "18M"}),
    ("clip.mp4", {"duration": 25, "size": "60M", "moov": "end"}),
    ("voice.wav", {"duration": 27}),
    ("voice.mp3", {"duration": 27}),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _urls(base: str, n: int, tag: str) -> list[str]:
    """``n`` distinct URLs (their names carry ``tag``, so no two runs share one)."""
    urls = []
    for i in range(n):
        name, params = SHAPES[i % len(SHAPES)]
        stem, ext = name.split(".")
        urls.append(media_url(base, f"{tag}/{stem}-{i:05d}.{ext}", **params))
    return urls


def _cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, or of process ``pid`` from /proc."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _heads(urls: list[str], concurrency: int) -> None:
    with httpx.Client(limits=httpx.Limits(max_connections=concurrency)) as client:

        def head(url: str) -> int:
            return client.head(url).status_code

        with ThreadPoolExecutor(concurrency) as pool:
            statuses = list(pool.map(head, urls))
    if any(s != 200 for s in statuses):
        sys.exit("a HEAD failed: is the sandbox serving?")


def _probe(urls: list[str], concurrency: int, parser: str) -> dict[str, MediaInfo]:
    config = ProbeConfig(concurrency=concurrency, per_host=concurrency, parser=parser)  # type: ignore[arg-type]
    infos = probe_urls(urls, config=config)
    bad = [i for i in infos.values() if not i.ok or i.duration is None]
    if bad:
        sys.exit(f"{len(bad)} probe(s) failed, e.g. {bad[0]}")
    return infos


def _best(times: int, action: Callable[[], object]) -> float:
    results = []
    for _ in range(times):
        start = time.perf_counter()
        action()
        results.append(time.perf_counter() - start)
    return min(results)


MEASURES = [("HEAD", "bare concurrent HEAD"), ("auto", "`probe_urls` (default: tinytag where it reads fully, else PyAV)"),
            ("av", "`probe_urls`, PyAV forced"), ("tinytag", "`probe_urls`, tinytag forced")]  # fmt: skip


def bench_probe(n: int, concurrency: int, repeat: int) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "batchkit", "sandbox", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    infos: dict[str, dict[str, MediaInfo]] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.head(media_url(base, "warm.mp4"))
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    sys.exit("the sandbox did not start")
                time.sleep(0.1)
        _probe(_urls(base, 50, "warm"), concurrency, "av")  # warm: imports, connections, the server's files
        for run in range(repeat):  # alternately, so that a busy moment of the machine hits every measure
            for key, _ in MEASURES:
                urls = _urls(base, n, f"{key}-{run}")
                cpu_before, server_before, start = _cpu(), _cpu(server.pid), time.perf_counter()
                if key == "HEAD":
                    _heads(urls, concurrency)
                else:
                    infos[key] = _probe(urls, concurrency, key)
                seconds = time.perf_counter() - start
                spent = _cpu() - cpu_before + _cpu(server.pid) - server_before
                wall[key], cpu[key] = min(wall.get(key, seconds), seconds), min(cpu.get(key, spent), spent)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"\nPython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{n:,} distinct URLs, concurrency {concurrency}, best of {repeat}\n")  # fmt: skip
    print(
        "| measure | time | × HEAD | CPU, client + server | × HEAD | bytes read per file (median, max) | requests per file |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, label in MEASURES:
        if key == "HEAD":
            read = "0"
            requests = "1"
        else:
            sizes = [i.bytes_read for i in infos[key].values()]
            read = f"{statistics.median(sizes) / 1000:,.0f} KB, {max(sizes) / 1000:,.0f} KB"
            requests = f"{statistics.mean(i.requests for i in infos[key].values()):.1f}"
        print(
            f"| {label} | {wall[key]:.2f} s | {wall[key] / wall['HEAD']:.2f} | {cpu[key]:.2f} s | "
            f"{cpu[key] / cpu['HEAD']:.2f} | {read} | {requests} |"
        )
    print("\ntarget: probe / HEAD ≤ 3 (time), median bytes read per file ≤ 256 KB")


def bench_estimate(rows: int, repeat: int) -> None:
    rng = random.Random(3)
    models = ["lipsync-2", "lipsync-2-pro", "sync-3"]
    languages = ["en", "es", "fr", "de", "pt", "it", "ja", "zh"]
    frame = pl.DataFrame(
        {
            "request_id": [f"cust-{i:07d}-{languages[i % 8]}" for i in range(rows)],
            "model": [models[i % 3] for i in range(rows)],
            "seconds": [None if i % 97 == 0 else round(rng.uniform(3, 30), 2) for i in range(rows)],
            "each": [languages[i % 8] for i in range(rows)],
            "shard": pl.Series([i // 500 + 1 for i in range(rows)], dtype=pl.Int32),
        }
    )
    prices = TablePrices({"lipsync-2": 0.05, "lipsync-2-pro": 0.083, "sync-3": 0.12})
    with tempfile.TemporaryDirectory(prefix="batchkit-bench-estimate-") as folder:
        path = Path(folder) / "requests.parquet"
        frame.write_parquet(path)
        reads, estimates = [], []
        for _ in range(repeat):  # alternately, best of each
            start = time.perf_counter()
            loaded = pl.read_parquet(path)
            reads.append(time.perf_counter() - start)
            start = time.perf_counter()
            estimate(loaded, prices)
            estimates.append(time.perf_counter() - start)
        read_time, estimate_time = min(reads), min(estimates)
        result = estimate(loaded, prices)
    print(f"\n{rows:,} requests ({result.unknown:,} without a length), 3 models, 8 languages, "
          f"{len(result.by_shard):,} shards\n")  # fmt: skip
    print("| measure | time |")
    print("|---|---:|")
    print(f"| `pl.read_parquet(requests.parquet)` | {read_time * 1000:.0f} ms |")
    print(f"| `estimate(frame, TablePrices(...))` | {estimate_time * 1000:.0f} ms |")
    print(f"\nestimate / read = {estimate_time / read_time:.2f}  (target < 2)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--urls", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure; the best counts")
    parser.add_argument("--quick", action="store_true", help="200 URLs, 200,000 rows, two runs each")
    args = parser.parse_args()
    if args.quick:
        args.urls, args.rows, args.repeat = 200, 200_000, 2
    bench_probe(args.urls, args.concurrency, args.repeat)
    bench_estimate(args.rows, args.repeat * 3)


if __name__ == "__main__":
    main()
