"""Benchmark ``batchkit build`` against the naive per-row script, and its memory as sources grow.

    python benchmarks/bench_build.py                 # 1,000,000 rows vs naive on 100,000 (×10); RSS 1M vs 5M
    python benchmarks/bench_build.py --quick         # 100,000 rows vs naive on 10,000; RSS 100k vs 300k

Everything runs in one process tree, so the ratios compare like with like on this machine: each side is a
child process (the CLI exactly as a user runs it, and ``naive_build.py``), timed from start to exit. Peak
memory is the child's maximum resident set size (``wait4``). Data lives in ``benchmarks/data/`` (git-ignored).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
MAPPING = """\
request_id = "{customer_id}"
model = "lipsync-2"
video = "{video_url}"
audio = "{audio_url}"
output_file_name = "{customer_id}_{lang}"

[options]
sync_mode = "loop"
"""
NAMES = ["Anna", "Ben", "Chloé", "David", "Elif", "Farah", "Gustav", "Hana", "Ivan", "José", "Kenji", "Lena"]
LANGS = ["en", "de", "fr", "es"]
CLI = "import sys; from batchkit.cli import main; from batchkit.cli._build import build; main.add_command(build); main()"


def make_csv(rows: int) -> Path:
    """A campaign CSV of ``rows`` rows (cached by size): customer_id, first_name, lang, video_url, audio_url, script."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"campaign-{rows}.csv"
    if path.exists():
        return path
    rng = random.Random(rows)
    temp = path.with_suffix(".tmp")
    with temp.open("w", encoding="utf-8", newline="") as f:
        f.write("customer_id,first_name,lang,video_url,audio_url,script\n")
        block: list[str] = []
        for i in range(1, rows + 1):
            name = NAMES[rng.randrange(len(NAMES))]
            lang = LANGS[i % 4]
            block.append(
                f"C{i:08d},{name},{lang},https://cdn.example.com/videos/base_{i % 40:03d}.mp4,"
                f"https://cdn.example.com/audio/C{i:08d}_{lang}.wav,"
                f'"Hi {name}, thanks for being with us this year. Here is what is new for you."\n'
            )
            if len(block) == 10_000:
                f.write("".join(block))
                block.clear()
        f.write("".join(block))
    temp.replace(path)
    return path


def run(args: list[str]) -> tuple[float, int]:
    """Wall time (s) and peak RSS (bytes, the child's own ``ru_maxrss`` from ``wait4``) of a child process."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            sys.exit(f"{args[:4]} failed ({proc.returncode}): {errors.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024


def build(rows: int) -> tuple[float, int]:
    source = make_csv(rows)
    mapping = DATA / "campaign.toml"
    mapping.write_text(MAPPING)
    out = DATA / f"out-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    result = run(
        [sys.executable, "-c", CLI, "build", str(source), "--mapping", str(mapping), "--out", str(out)]
    )
    shutil.rmtree(out, ignore_errors=True)
    return result


def naive(rows: int) -> tuple[float, int]:
    source = make_csv(rows)
    out = DATA / f"naive-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    result = run([sys.executable, str(HERE / "naive_build.py"), str(source), str(out)])
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for the speed comparison")
    parser.add_argument("--naive-rows", type=int, default=100_000, help="rows the naive script runs (scaled)")
    parser.add_argument(
        "--memory-rows",
        type=int,
        nargs=2,
        default=(1_000_000, 5_000_000),
        help="two sizes for peak RSS (0 0: skip)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.naive_rows, args.memory_rows = 100_000, 10_000, (100_000, 300_000)
    _common.header()
    for rows in {args.rows, args.naive_rows, *[r for r in args.memory_rows if r]}:
        make_csv(rows)
    built, _ = build(args.rows)
    slow, _ = naive(args.naive_rows)
    scaled = slow * args.rows / args.naive_rows
    print(f"batchkit build, {args.rows:,} rows: {built:.2f} s ({args.rows / built:,.0f} rows/s)")
    print(f"naive script, {args.naive_rows:,} rows: {slow:.2f} s → {scaled:.1f} s scaled to {args.rows:,}")
    _common.ratio(
        "speed-up over the naive script", scaled / built, target=50, lower_is_better=False, quick=args.quick
    )
    small, large = args.memory_rows
    if small and large:
        _, peak_small = build(small)
        _, peak_large = build(large)
        print(
            f"peak RSS of build: {peak_small / 2**20:.0f} MiB at {small:,} rows, {peak_large / 2**20:.0f} MiB at {large:,}"
        )
        _common.ratio(
            f"memory ratio ({large:,} / {small:,} rows)",
            peak_large / peak_small,
            target=1.5,
            quick=args.quick,
        )


if __name__ == "__main__":
    main()
