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

**Estimate.** A real build of 1,000,000 requests (125,000 rows × 8 languages) with a ``lengths.parquet`` as a
probe writes it (3 models, lengths of 3–30 s, one in 97 unknown). Timed alternately, best of each:
``pl.read_parquet`` of the table ``estimate_directory`` prices (model and each categorical, as
``lengths.parquet`` keeps them, seconds, the shard an Int32) against ``estimate(frame, TablePrices(...))`` of
it (target: estimate < 2× the read), and ``pl.read_parquet(DIR/requests.parquet)`` against the whole
``estimate_directory(DIR, TablePrices(...))`` (manifest, requests.parquet, lengths.parquet, estimate).
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

from batchkit import build, estimate_directory, load_manifest
from batchkit._build.estimate import request_lengths
from batchkit._build.preflight import each_labels, lengths_frame, write_lengths
from batchkit._probe import MediaInfo, ProbeConfig, TablePrices, estimate, probe_urls
from batchkit._shard.builddir import LENGTHS, REQUESTS
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


def _build_directory(folder: Path, rows: int) -> Path:
    """A real build of ``rows`` requests (8 languages per source row), with a ``lengths.parquet`` as a probe
    would write it (3 models, lengths of 3–30 s, one in 97 unknown)."""
    languages = ["en", "es", "fr", "de", "pt", "it", "ja", "zh"]
    source = pl.DataFrame({"id": [f"c{i:07d}" for i in range(rows // 8)]}).with_columns(
        video=pl.lit("https://cdn.example.com/base.mp4"),
        **{
            f"audio_{lang}": pl.lit("https://cdn.example.com/a/") + pl.col("id") + f"_{lang}.wav"
            for lang in languages
        },
    )
    source.write_csv(folder / "campaign.csv")
    mapping = {"request_id": "{id}_{lang}", "model": "lipsync-2", "video": "{video}", "audio": "{audio_{lang}}",
               "each": {"lang": languages}}  # fmt: skip
    out = folder / "campaign"
    build(folder / "campaign.csv", mapping, out)
    requests = load_manifest(out).requests_frame()
    rng = random.Random(3)
    models = ["lipsync-2", "lipsync-2-pro", "sync-3"]
    lengths = [
        (i, models[i % 3], None if i % 97 == 0 else round(rng.uniform(3, 30), 2))
        for i in range(requests.height)
    ]
    table = lengths_frame(requests.get_column("request_id"), each_labels(requests, ["lang"]), lengths)
    write_lengths(table, out / LENGTHS)
    return out


def bench_estimate(rows: int, repeat: int) -> None:
    prices = TablePrices({"lipsync-2": 0.05, "lipsync-2-pro": 0.083, "sync-3": 0.12})
    with tempfile.TemporaryDirectory(prefix="batchkit-bench-estimate-") as name:
        folder = Path(name)
        out = _build_directory(folder, rows)
        table = request_lengths(out)  # what estimate_directory prices: model, seconds, each, shard
        path = folder / "lengths.parquet"
        table.write_parquet(path)
        loaded = pl.read_parquet(path)
        measures: dict[str, Callable[[], object]] = {
            "read": lambda: pl.read_parquet(path),
            "estimate": lambda: estimate(loaded, prices),
            "requests": lambda: pl.read_parquet(out / REQUESTS),
            "directory": lambda: estimate_directory(out, prices),
        }
        times: dict[str, list[float]] = {key: [] for key in measures}
        for _ in range(repeat):  # alternately, best of each
            for key, action in measures.items():
                start = time.perf_counter()
                action()
                times[key].append(time.perf_counter() - start)
        best = {key: min(values) for key, values in times.items()}
        result = estimate_directory(out, prices)
    print(f"\n{rows:,} requests ({result.unknown:,} without a length), 3 models, 8 languages, "
          f"{len(result.by_shard):,} shards\n")  # fmt: skip
    print("| measure | time | ratio |")
    print("|---|---:|---:|")
    print(
        f"| `pl.read_parquet` of the table priced (model and each categorical, seconds, shard) | {best['read'] * 1000:.0f} ms | 1 |"
    )
    print(
        f"| `estimate(frame, TablePrices(...))` of it | {best['estimate'] * 1000:.0f} ms | {best['estimate'] / best['read']:.2f} |"
    )
    print(f"| `pl.read_parquet(DIR/requests.parquet)` of the build | {best['requests'] * 1000:.0f} ms | 1 |")
    print(f"| `estimate_directory(DIR, TablePrices(...))`: manifest, requests.parquet, lengths.parquet, estimate | "
          f"{best['directory'] * 1000:.0f} ms | {best['directory'] / best['requests']:.2f} |")  # fmt: skip
    print(
        f"\nestimate / read = {best['estimate'] / best['read']:.2f}  (target < 2); "
        f"estimate_directory / read of requests.parquet = {best['directory'] / best['requests']:.2f}"
    )


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
