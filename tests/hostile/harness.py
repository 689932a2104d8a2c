"""Running a command against hostile input, and the invariants every run must keep.

:func:`invoke` runs ``batchkit ...`` in this process (click's runner, in a watchdog thread, so a hang is a
failure and not a stuck suite); :func:`spawn` runs it as a real process (its own stderr, a memory limit, a
hard timeout). Either returns an :class:`Outcome`, which :func:`check` holds to the promises: exit status 0,
1 or 2; no traceback and no "unexpected failure" anywhere in the output; nothing half-written in the output
directory or the temporary directory; and, for a build that finished, every source row in exactly one place.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from batchkit.cli import main

#: Generous: a hang becomes a failure, a slow machine does not.
TIMEOUT = 120.0
#: Files a command writes under a temporary name, and must never leave behind.
_TEMPORARY = re.compile(r"^\.(.+\.(tmp|spill)|batchkit-(build|probe|errors)-.*)$")
_SHARD = re.compile(r"^.+-\d{4,}\.jsonl$")


@dataclass
class Invocation:
    """One command line over the corpus: ``argv`` (paths as given), the directory it may write, the source
    it reads (for the row accounting), what it is."""

    id: str
    argv: list[str]
    out: Path | None = None
    rows: int | None = None  # data rows of the source a build reads, when known
    blank: int = 0
    writes: list[Path] = field(default_factory=list)  # other files it may write (--report)


@dataclass
class Outcome:
    invocation: Invocation
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None
    temp: Path | None = None


def invoke(invocation: Invocation, temp: Path, *, timeout: float = TIMEOUT) -> Outcome:
    """Run in this process with click's runner; ``temp`` is the temporary directory for the run."""
    box: dict[str, object] = {}

    def target() -> None:
        previous = tempfile.tempdir
        tempfile.tempdir = str(temp)
        try:
            box["result"] = CliRunner().invoke(main, invocation.argv, catch_exceptions=True)
        finally:
            tempfile.tempdir = previous

    worker = threading.Thread(target=target, name=f"hostile {invocation.id}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        pytest.fail(
            f"{invocation.id}: still running after {timeout:.0f} s (a hang): batchkit {' '.join(invocation.argv)}"
        )
    result = box["result"]
    exception = result.exception  # type: ignore[attr-defined]
    if isinstance(exception, SystemExit):
        exception = None
    return Outcome(invocation, result.exit_code, result.stdout, result.stderr, exception, temp)  # type: ignore[attr-defined]


def spawn(
    invocation: Invocation,
    temp: Path,
    *,
    timeout: float = TIMEOUT,
    memory: int | None = 2 << 30,
    file_size: int | None = None,
    signal_after: float | None = None,
) -> Outcome:
    """Run as a real process (``python -m batchkit``) with an address-space limit, and optionally a file-size
    limit (a disk that fills) or a SIGINT after ``signal_after`` seconds (Ctrl-C)."""

    def limits() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if file_size is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "BATCHKIT_"))}
    env["TMPDIR"] = str(temp)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchkit", *invocation.argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limits,
        env=env,
    )
    try:
        if signal_after is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(signal_after)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(
            f"{invocation.id}: still running after {timeout:.0f} s (a hang): batchkit {' '.join(invocation.argv)}"
        )
    return Outcome(
        invocation, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), None, temp
    )


def check(outcome: Outcome, *, codes: Sequence[int] = (0, 1, 2, 3)) -> None:
    """Every promise a run keeps, whatever its input."""
    where = f"{outcome.invocation.id}: batchkit {' '.join(outcome.invocation.argv)}"
    text = outcome.stdout + outcome.stderr
    assert outcome.exception is None, f"{where}: raised {outcome.exception!r}"
    assert "Traceback (most recent call last)" not in text, f"{where}: a traceback\n{text[-3000:]}"
    assert "unexpected failure" not in text, f"{where}: {text[-2000:]}"
    assert "Aborted!" not in text, where
    assert outcome.exit_code in codes, f"{where}: exit {outcome.exit_code}\n{text[-2000:]}"
    if outcome.exit_code == 2:
        assert "error:" in outcome.stderr.lower(), f"{where}: exit 2 without an error line\n{text[-2000:]}"
    if outcome.temp is not None:
        left = sorted(p.name for p in outcome.temp.iterdir())
        assert left == [], f"{where}: left in the temporary directory: {left}"
    for path in outcome.invocation.writes:
        if path.parent.is_dir():  # a writer's temporary file is .NAME.tmp or .NAME.<unique>.tmp
            half = [
                p.name for p in path.parent.glob(f".{glob.escape(path.name)}.*") if p.name.endswith(".tmp")
            ]
            assert not half, f"{where}: half-written {path}: {half}"
    if outcome.invocation.out is not None and outcome.invocation.out.is_dir():
        check_directory(outcome.invocation.out, where)
        if (
            outcome.exit_code == 0
            and outcome.invocation.rows is not None
            and (outcome.invocation.out / "manifest.json").exists()
        ):
            check_rows(outcome.invocation.out, outcome.invocation.rows, outcome.invocation.blank, where)


def check_directory(folder: Path, where: str) -> None:
    """Nothing half-written: no temporary file; a manifest lists exactly the shards there, unchanged;
    without a manifest, no shard at all."""
    from batchkit import load_manifest, verify_shards

    names = sorted(p.name for p in folder.iterdir())
    temporary = [n for n in names if _TEMPORARY.match(n)]
    assert temporary == [], f"{where}: temporary files left in {folder}: {temporary}"
    shards = {n for n in names if _SHARD.match(n)}
    if "manifest.json" not in names:
        assert shards == set(), f"{where}: shards without a manifest in {folder}: {sorted(shards)}"
        return
    manifest = load_manifest(folder)
    assert verify_shards(folder, manifest) == [], f"{where}: the manifest and the shards disagree"
    assert shards == {s.file for s in manifest.shards}, f"{where}: shards the manifest does not list"
    report = orjson.loads((folder / "report.json").read_bytes())
    findings = folder / "findings.ndjson"
    if findings.exists():
        with findings.open("rb") as handle:
            assert sum(1 for _ in handle) == sum(report["counts"].values()), f"{where}: findings lost"


def check_rows(folder: Path, rows: int, blank: int, where: str) -> None:
    """Every source row in exactly one place: one request unit (in exactly one shard line, or invalid and in
    no shard) or one blank-row finding."""
    from batchkit import load_manifest

    manifest = load_manifest(folder)
    units = manifest.requests_frame().filter(pl.col("source") == 0)
    seen = units.get_column("row").to_list()
    assert len(seen) == len(set(seen)), f"{where}: a source row became two units"
    blanks = [
        f["row"]
        for f in map(orjson.loads, (folder / "findings.ndjson").read_bytes().splitlines())
        if f["code"] == "blank-row"
    ]
    assert not set(blanks) & set(seen), f"{where}: a blank row also became a unit"
    assert sorted([*seen, *blanks]) == list(range(1, rows + blank + 1)), (
        f"{where}: source rows lost or invented"
    )
    ok = units.filter(pl.col("status") == "ok")
    assert units.filter(pl.col("status") != "ok").get_column("shard").null_count() == units.height - ok.height
    placed: dict[tuple[int, int], str] = {}
    for number, shard in enumerate(manifest.shards, 1):
        for n, raw in enumerate((folder / shard.file).read_bytes().splitlines(), 1):
            placed[(number, n)] = orjson.loads(raw)["request_id"]
    units_at = {(s, n): rid for rid, s, n in ok.select("request_id", "shard", "shard_line").iter_rows()}
    assert units_at == placed, f"{where}: shard lines and units disagree"


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[bool]:
    """Make ``folder`` read-only for the run (as root, with a read-only bind mount); yields False when that
    cannot be done here."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield True
        finally:
            folder.chmod(0o755)
        return
    mounted = (
        subprocess.run(
            ["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True
        ).returncode
        == 0
    )
    if mounted:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, check=False)
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True, check=False)
