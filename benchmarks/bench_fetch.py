"""Benchmark ``fetch_outputs``: 500 videos of 1 MB from a local server, against a bare concurrent httpx download.

    python benchmarks/bench_fetch.py            # 500 files × 1 MB, concurrency 8, best of 3
    python benchmarks/bench_fetch.py --quick    # 100 files × 1 MB, one run of each

The media host is a small HTTP/1.1 server in its own process (``--serve``: keep-alive, ``sendfile``,
``video/mp4``, a request counter at ``/_count``), so this process's CPU is the client's alone. The files
(``benchmarks/data/fetch-<n>x1MB/``, git-ignored) start like the sandbox's MP4, so fetch's sniffing accepts
them. Timed alternately in this process (each side first in turn, after an ``os.sync()`` so that no side pays for the
writeback of the one before), best of ``--repeat``, each into a fresh folder on the same disk:

* **bare**: one ``httpx.Client`` (pool of ``concurrency``), a thread pool of ``concurrency``, each file streamed
  in 1 MiB chunks straight to its final name: no verification, no hashing, no temporary file, no fsync;
* **fetch**: ``fetch_outputs`` as users get it (type and length checks, sha256, temporary file + rename, the
  ledger);
* **fetch, fsync=True**: the same, each file fsync'd before its rename (``FetchOptions(fsync=True)``): this one
  runs at the disk's write speed, not the network's.

Target: fetch ≥ 0.8 × the bare throughput. Then a re-run of the finished fetch must send **0** media requests
(counted by the server) and touch **0** files (inode, size and mtime of every file, the ledger included).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import _common
import httpx

from batchkit._handback.fetch import FetchItem, FetchOptions, fetch_outputs
from batchkit.sandbox._outputs import sample_bytes

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
TARGET = 0.8
MB = 1024 * 1024


# -- the media host (a child process) --------------------------------------------------------------------


def serve(folder: Path, port: int) -> None:
    """Serve ``folder`` on 127.0.0.1:``port`` until killed."""
    count = 0
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            nonlocal count
            name = self.path.split("?", 1)[0].lstrip("/")
            if name == "_count":
                body = str(count).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            with lock:
                count += 1
            path = folder / name
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.flush()
                self.connection.sendfile(fh)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    Server(("127.0.0.1", port), Handler).serve_forever()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(files: int) -> Path:
    """``files`` videos of 1 MB each (cached)."""
    folder = DATA / f"fetch-{files}x1MB"
    if (folder / "ready").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    head = sample_bytes()
    for i in range(files):
        tail = (f"{i:08d}".encode() * (MB // 8 + 1))[: MB - len(head)]
        (folder / f"v{i:05d}.mp4").write_bytes(head + tail)
    (folder / "ready").write_text("ok\n")
    return folder


# -- the two sides ------------------------------------------------------------------------------------------


def bare(urls: list[str], dest: Path, concurrency: int) -> None:
    """The floor: concurrent streamed GETs written straight to their names."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits, timeout=60) as http:

        def one(url: str) -> None:
            with http.stream("GET", url) as response, open(dest / url.rsplit("/", 1)[1], "wb") as out:
                response.raise_for_status()
                for chunk in response.iter_bytes(MB):
                    out.write(chunk)

        with cf.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, urls))


def tree(folder: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            out[str(path.relative_to(folder))] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return out


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--files", type=int, default=500, help="videos of 1 MB each")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side (the best counts)")
    parser.add_argument("--serve", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    if args.quick:  # 100 files, one run of each
        args.files, args.repeat = 100, 1
    _common.header()
    folder = prepare(args.files)
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(folder), str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/_count", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    sys.exit("the media host did not start")
                time.sleep(0.05)
        run(base, args)
    finally:
        server.kill()
        server.wait()


def run(base: str, args: argparse.Namespace) -> None:
    names = [f"v{i:05d}.mp4" for i in range(args.files)]
    urls = [f"{base}/{name}?sig=bench" for name in names]
    items = [
        FetchItem(f"req-{i:05d}", url, name) for i, (url, name) in enumerate(zip(urls, names, strict=True))
    ]
    total = args.files * MB
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-", dir=DATA))
    best: dict[str, float] = {}
    cpus: dict[str, float] = {}
    sides = {
        "bare": lambda dest: bare(urls, dest, args.concurrency),
        "fetch": lambda dest: fetch_outputs(
            items, dest, ledger_path=dest.parent / f"{dest.name}.parquet", concurrency=args.concurrency
        ),
        "fetch, fsync=True": lambda dest: fetch_outputs(
            items,
            dest,
            ledger_path=dest.parent / f"{dest.name}.parquet",
            concurrency=args.concurrency,
            options=FetchOptions(fsync=True),
        ),
    }
    try:
        labels = list(sides)
        for attempt in range(args.repeat):
            for label in labels[attempt % 3 :] + labels[: attempt % 3]:  # each side goes first in turn
                side = sides[label]
                dest = work / f"{label.replace(', ', '-').replace('=', '-')}-{attempt}"
                dest.mkdir()
                # Start every side with no dirty pages of the one before: else the kernel's writeback of its
                # 500 MB throttles whoever comes next.
                os.sync()
                cpu = time.process_time()
                start = time.perf_counter()
                side(dest)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu
                if elapsed < best.get(label, float("inf")):
                    best[label], cpus[label] = elapsed, cpu
                if attempt < args.repeat - 1:
                    shutil.rmtree(dest)
                    (dest.parent / f"{dest.name}.parquet").unlink(missing_ok=True)
        print(f"{args.files} files × 1 MB, concurrency {args.concurrency}, best of {args.repeat}:")
        for label, seconds in best.items():
            ratio = best["bare"] / seconds
            print(
                f"  {label:<20} {seconds:6.2f} s  {total / MB / seconds:7.1f} MB/s  {ratio:5.2f}× bare"
                f"  (CPU {cpus[label]:.2f} s)"
            )
        _common.ratio(
            "fetch throughput / bare throughput",
            best["bare"] / best["fetch"],
            target=TARGET,
            lower_is_better=False,
            quick=args.quick,
        )
        rerun(base, items, work / f"fetch-{args.repeat - 1}", args.concurrency)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rerun(base: str, items: list[FetchItem], dest: Path, concurrency: int) -> None:
    """Run the finished fetch again: count media requests on the server and files whose inode/size/mtime moved."""
    ledger = dest.parent / f"{dest.name}.parquet"
    before_files = {**tree(dest), "(ledger)": tree(ledger.parent)[ledger.name]}
    before_requests = int(httpx.get(f"{base}/_count").text)
    start = time.perf_counter()
    result = fetch_outputs(items, dest, ledger_path=ledger, concurrency=concurrency)
    elapsed = time.perf_counter() - start
    requests = int(httpx.get(f"{base}/_count").text) - before_requests
    after_files = {**tree(dest), "(ledger)": tree(ledger.parent)[ledger.name]}
    touched = sum(
        1 for key in set(before_files) | set(after_files) if before_files.get(key) != after_files.get(key)
    )
    print(
        f"re-run of the finished fetch: {len(result.present)} present, {requests} media request(s), "
        f"{touched} file(s) touched, {elapsed:.2f} s"
    )


if __name__ == "__main__":
    main()
