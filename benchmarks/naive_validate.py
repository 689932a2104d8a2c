"""The naive validator the benchmark compares against: ``json.loads`` and jsonschema, one line at a time.

This is what a careful user would write without batchkit: parse each line with the standard library and check
it against the exported batch-line schema with jsonschema's Draft 2020-12 validator (compiled once).

    python benchmarks/naive_validate.py FILE_OR_DIR... [--limit N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "batch-line.schema.json"


def lines_of(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            with file.open("rb") as handle:
                yield from handle


def naive_validate(paths: Iterable[Path], *, limit: int | None = None) -> tuple[int, int]:
    """Validate up to ``limit`` lines; return (lines, lines with at least one error)."""
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    lines = bad = 0
    for raw in itertools.islice(lines_of(paths), limit):
        lines += 1
        try:
            obj = json.loads(raw)
        except ValueError:
            bad += 1
            continue
        if next(validator.iter_errors(obj), None) is not None:
            bad += 1
    return lines, bad


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="validate at most this many lines")
    args = parser.parse_args()
    start = time.perf_counter()
    lines, bad = naive_validate(args.paths, limit=args.limit)
    elapsed = time.perf_counter() - start
    print(f"{lines:,} lines, {bad:,} with errors, {elapsed:.2f} s ({lines / elapsed:,.0f} lines/s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
