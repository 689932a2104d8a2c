"""How fast is `batchkit validate`? Ratios against baselines timed in the same run.

Generates a valid corpus (by default 1,000,000 lines in 2,000 files of 500) under ``benchmarks/data/`` (git
ignored; reused when present) and times, in one run:

  (a) ``batchkit validate DIR --format json`` as a subprocess (output to /dev/null), start-up included;
  (b) a bare loop that reads every file line by line and only ``orjson.loads`` each line (runs of (a) and
      (b) alternate, the best of each counts);
  (c) ``naive_validate.py`` (``json.loads`` + jsonschema with the exported batch-line schema, per line),
      timed on a subset and scaled linearly to the corpus.

Targets: (a)/(b) ≤ 1.5 and (c)/(a) ≥ 20. Then peak RSS of (a) on corpora of the same lines in 500 vs 2,000
files, and of 250k vs 1M lines: memory is flat in the number of files (files are streamed) and grows with the
number of lines only through the duplicate check, which remembers every request_id. Last, findings: peak RSS
of ``batchkit validate`` on one file of 1,000,000 lines of ``{}`` (three findings each), in text and in JSON
(target ≤ 300 MB for both: a report keeps the first findings of each code and counts the rest).

    python benchmarks/bench_validate.py            # full size (about 1 GB of corpora on disk, several minutes)
    python benchmarks/bench_validate.py --quick    # 100,000 lines in 200 files; 100,000 lines of {}
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from naive_validate import naive_validate  # noqa: E402

DATA = HERE / "data"
CDN = "https://cdn.example.com/campaigns/spring-2026"
SCRIPTS = [
    "Hi {name}, your spring offer is ready: 20% off everything until Sunday.",
    "¡Hola {name}! Tu descuento de primavera ya está listo.",
    "Bonjour {name} ! Votre remise de printemps vous attend.",
]


def line(file_no: int, row: int) -> bytes:
    """One realistic campaign line: recorded audio for most rows, text-to-speech for one in five."""
    rid = f"spring26-{file_no:05d}-{row:04d}"
    video = {"type": "video", "url": f"{CDN}/base/welcome-{file_no % 7}.mp4"}
    payload: dict[str, object]
    if row % 5:
        payload = {
            "model": "lipsync-2",
            "input": [video, {"type": "audio", "url": f"{CDN}/audio/{rid}.wav"}],
            "options": {"sync_mode": "cut_off", "temperature": 0.5},
        }
    else:
        script = SCRIPTS[row % len(SCRIPTS)].format(name=f"customer {row}")
        tts = {
            "type": "text",
            "provider": {"name": "elevenlabs", "voiceId": "EXAVITQu4vr4xnSDxMaL", "script": script},
        }
        payload = {"model": "lipsync-2-pro", "input": [video, tts], "options": {"sync_mode": "bounce"}}
    payload["webhookUrl"] = "https://hooks.example.com/sync/spring-2026"
    payload["outputFileName"] = rid.replace("-", "_")
    return orjson.dumps({"request_id": rid, "endpoint": "/v2/generate", "payload": payload}) + b"\n"


def corpus(lines: int, files: int) -> Path:
    """The corpus of ``lines`` valid lines in ``files`` files, generated once."""
    folder = DATA / f"corpus-{lines}-{files}"
    marker = folder / "COMPLETE"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    per_file, extra = divmod(lines, files)
    print(f"generating {lines:,} lines in {files:,} files under {folder} …", file=sys.stderr)
    for f in range(files):
        rows = per_file + (f < extra)
        (folder / f"batch-{f:05d}.jsonl").write_bytes(b"".join(line(f, r) for r in range(rows)))
    marker.write_text("")
    return folder


@dataclass
class Run:
    seconds: float
    max_rss: int  # bytes
    exit_code: int
    cpu: float = 0.0  # user + system seconds of the process


def cli(folder: Path, *options: str) -> Run:
    """``batchkit validate FOLDER --format json`` in a fresh interpreter; wall time and its own peak RSS."""
    argv = [sys.executable, "-m", "batchkit", "validate", str(folder), "--format", "json", *options]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(seconds, usage.ru_maxrss * 1024, proc.returncode, usage.ru_utime + usage.ru_stime)


def bare_loop(folder: Path) -> int:
    """Read every file line by line and parse each line with orjson: the floor for any validator."""
    n = 0
    for path in sorted(folder.glob("*.jsonl")):
        with path.open("rb") as handle:
            for raw in handle:
                orjson.loads(raw)
                n += 1
    return n


def best(times: int, action: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    results = []
    for _ in range(times):
        start = clock()
        action()
        results.append(clock() - start)
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--naive-lines", type=int, default=20_000, help="subset timed for (c), then scaled")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and (b); the best counts")
    parser.add_argument("--quick", action="store_true", help="100,000 lines in 200 files, no memory runs")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS comparisons")
    parser.add_argument(
        "--findings-lines", type=int, default=1_000_000, help="lines of {} for the findings run"
    )
    parser.add_argument("--no-findings", action="store_true", help="skip the findings memory run")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.files, args.no_memory = 100_000, 200, True
        args.findings_lines = min(args.findings_lines, 100_000)

    folder = corpus(args.lines, args.files)
    size = sum(p.stat().st_size for p in folder.glob("*.jsonl"))
    print(f"corpus: {args.lines:,} lines, {args.files:,} files, {size / 1e6:,.0f} MB", file=sys.stderr)
    memory: list[tuple[str, Run]] = []
    if not args.no_memory:
        few_files = corpus(args.lines, args.files // 4)
        fewer_lines = corpus(args.lines // 4, args.files)

    # Subprocesses first, while this process is small: a child's peak RSS starts from its parent's. (a) and
    # (b) alternate, so that a machine whose load changes during the run weighs on both alike.
    runs: list[Run] = []
    bare: list[float] = []
    bare_cpu: list[float] = []
    for _ in range(args.repeat):
        runs.append(cli(folder))
        wall, cpu = time.perf_counter(), time.process_time()
        bare_loop(folder)
        bare.append(time.perf_counter() - wall)
        bare_cpu.append(time.process_time() - cpu)
    if any(r.exit_code != 0 for r in runs):
        sys.exit(f"batchkit validate exited {runs[0].exit_code} on a corpus that should be valid")
    startup_rss = cli_startup()
    startup = best(args.repeat, cli_startup)
    if not args.no_memory:
        per_file = -(-args.lines // (args.files // 4))
        memory = [
            (f"{args.lines:,} lines in {args.files:,} files", runs[0]),
            (
                f"{args.lines:,} lines in {args.files // 4:,} files",
                cli(few_files, "--max-records", str(per_file), "--max-bytes", "50000000"),
            ),
            (f"{args.lines // 4:,} lines in {args.files:,} files", cli(fewer_lines)),
        ]
    a = min(r.seconds for r in runs)
    b = min(bare)
    a_cpu = min(r.cpu for r in runs)
    b_cpu = min(bare_cpu)
    from batchkit import validate_files

    in_process = best(args.repeat, lambda: validate_files([folder]))
    naive_lines = min(args.naive_lines, args.lines)
    c = best(1, lambda: naive_validate([folder], limit=naive_lines)) * args.lines / naive_lines

    per_line = 1e6 / args.lines
    print(f"\nPython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| measure | time | per line |")
    print("|---|---:|---:|")
    print(f"| (a) `batchkit validate DIR --format json` (subprocess) | {a:.2f} s | {a * per_line:.2f} µs |")
    print(f"| … of which start-up (`batchkit --version`) | {startup:.2f} s | |")
    print(f"| (a′) `validate_files` in-process | {in_process:.2f} s | {in_process * per_line:.2f} µs |")
    print(f"| (b) read + `orjson.loads` per line | {b:.2f} s | {b * per_line:.2f} µs |")
    print(
        f"| (c) `json.loads` + jsonschema per line ({naive_lines:,} timed) | {c:.1f} s | {c * per_line:.1f} µs |"
    )
    print(f"| (a) CPU time (user + system) | {a_cpu:.2f} s | {a_cpu * per_line:.2f} µs |")
    print(f"| (b) CPU time | {b_cpu:.2f} s | {b_cpu * per_line:.2f} µs |")
    print(
        f"\n(a)/(b) = {a / b:.2f} wall, {a_cpu / b_cpu:.2f} CPU  (target ≤ 1.5; in-process (a′)/(b) = {in_process / b:.2f})"
    )
    print("(on a machine shared with other work, wall time moves with their load; CPU time does not)")
    print(f"(c)/(a) = {c / a:.1f}  (target ≥ 20)")
    if not args.no_findings:
        findings(args.findings_lines)
    if not memory:
        return
    print("\n| corpus | peak RSS of (a) | time |")
    print("|---|---:|---:|")
    print(f"| (start-up only: `batchkit --version`) | {startup_rss / 2**20:.0f} MiB | |")
    for label, run in memory:
        if run.exit_code != 0:
            sys.exit(f"batchkit validate exited {run.exit_code} on {label}")
        print(f"| {label} | {run.max_rss / 2**20:.0f} MiB | {run.seconds:.2f} s |")


def findings(lines: int) -> None:
    """Peak RSS of validating ``lines`` lines of ``{}`` (three findings each), in text and in JSON."""
    path = DATA / f"empties-{lines}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}\n" * lines)
    print(f"\n| {lines:,} lines of `{{}}` ({3 * lines:,} findings) | peak RSS | time |")
    print("|---|---:|---:|")
    for label, options in (
        ("text, --max-findings 3", ["--max-findings", "3"]),
        ("--format json", ["--format", "json"]),
    ):
        argv = [sys.executable, "-m", "batchkit", "validate", str(path), *options]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 1:
            sys.exit(f"batchkit validate exited {os.waitstatus_to_exitcode(status)} on {path} (expected 1)")
        print(f"| {label} | {usage.ru_maxrss * 1024 / 2**20:.0f} MiB (target ≤ 300 MB) | {seconds:.1f} s |")


def cli_startup() -> int:
    proc = subprocess.Popen([sys.executable, "-m", "batchkit", "--version"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024


if __name__ == "__main__":
    main()
