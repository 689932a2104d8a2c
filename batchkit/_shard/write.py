"""Shards: write a build's shards from its spill, with everything else a finished build directory holds.

A build never holds all of its lines in memory: a :class:`batchkit._shard.spill.Spill` appends them to temporary
files in the output directory (with their sizes, and one provenance file per chunk), then :func:`finish`
plans the shards (:func:`batchkit._shard.plan.plan_shards`) and copies byte ranges into the shard files, writes
``requests.parquet``, ``findings.ndjson``, ``report.json`` and ``manifest.json``.

Nothing is half-written: every file is written under a temporary name first, the manifest too, and only
when all of them are on disk is the earlier build removed and are they renamed into place, the manifest last.
A build that fails on the way (a full disk, a lost permission, Ctrl-C) removes its temporary files, leaves
the earlier build as it was, and says why in one :class:`InputError` (:func:`writing`).
:func:`batchkit._shard.reshard.shard_file` does the same for the lines of an existing batch JSONL.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from .._errors import InputError
from .._files import atomic_write, deferred_interrupts, describe_oserror, make_durable, sync_dir, writing
from .._report import Report, ValidationFailed
from .._version import __version__
from .._wire.limits import Limits
from .builddir import (
    FINDINGS,
    HELD,
    JOURNAL,
    LENGTHS,
    MANIFEST,
    MEDIA,
    REALTIME,
    REPORT,
    REQUESTS,
    REUSED,
    SNAPSHOT,
    BuildCounts,
    Manifest,
    RetryInfo,
    ShardInfo,
    SourceInfo,
    UnshardedInfo,
    load_manifest,
    write_requests,
    write_snapshot,
)
from .plan import plan_shards
from .spill import Spill

__all__ = ["BuildResult", "fail_build", "finish", "prepare_out_dir", "safe_name", "start_report"]

log = logging.getLogger("batchkit")

#: The longest shard-name stem: a shard's file name stays far below any file system's 255 bytes.
MAX_NAME: Final = 100
#: Temporary files of a build that a killed build may have left behind: removed before the next one.
_STALE: Final = re.compile(r"^\..+\.(tmp|spill)$")

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class BuildResult:
    """What :func:`batchkit.build` and :func:`shard_file` wrote."""

    report: Report
    manifest: Manifest
    out_dir: Path
    shards: list[Path]
    counts: BuildCounts


# -- writing -------------------------------------------------------------------------------------------------


def prepare_out_dir(out_dir: str | Path, *, force: bool) -> Path:
    """Create the output directory; refuse one that was already submitted unless ``force``."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        msg = f"{folder} exists and is not a directory; choose another --out"
        raise InputError(msg, path=folder)
    if (folder / JOURNAL).exists() and not force:
        msg = (
            f"{folder} was already submitted (it has {JOURNAL}); rebuilding would change shards that are "
            "on their way. Build into a new directory, or pass --force to rebuild anyway"
        )
        raise InputError(msg, path=folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".batchkit-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        msg = f"cannot write into {folder}: {describe_oserror(exc)}; choose another --out or fix its permissions"
        raise InputError(msg, path=folder) from None
    for stale in folder.iterdir():  # left behind by a build that was killed
        if stale.name.startswith(".batchkit-build-"):
            shutil.rmtree(stale, ignore_errors=True)
        elif _STALE.match(stale.name) and stale.is_file():
            stale.unlink(missing_ok=True)
    return folder


def safe_name(name: str) -> str:
    """A shard-name stem of ``[A-Za-z0-9_-]``, at most :data:`MAX_NAME` long: ``"Q3 campaign.v2"`` →
    ``"Q3_campaign_v2"``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:MAX_NAME].strip("_") or "batch"


def clear_previous(out_dir: Path, name: str, *, keep: Sequence[str] = ()) -> None:
    """Remove the manifest and outputs of an earlier build, whatever its name (keeping the files in ``keep``).

    The earlier build's own manifest says which shards are its own; shards named like ``name``'s are removed
    too, and so are the temporary files of a build of ``name``.
    """
    names = {name}
    listed: set[str] = set()
    with contextlib.suppress(InputError):
        earlier = load_manifest(out_dir)
        names.add(earlier.name)
        listed = {shard.file for shard in earlier.shards}
        if earlier.unsharded is not None:
            listed.add(earlier.unsharded.file)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    patterns = [re.compile(rf"^\.?{re.escape(n)}-\d{{4,}}\.jsonl(\.tmp|\.spill)?$") for n in names]
    outputs = {REQUESTS, SNAPSHOT, HELD, REALTIME, REPORT, FINDINGS, MEDIA, LENGTHS, REUSED}
    for path in out_dir.iterdir():
        if path.name in keep or "/" in path.name:
            continue
        if (
            path.name in listed
            or path.name in outputs
            or any(p.match(path.name) for p in patterns)
            or _EXTRA_SNAPSHOT.match(path.name)
        ):
            path.unlink(missing_ok=True)


#: Snapshots of the second and later sources of a build (``source-2.parquet`` ...), see :func:`snapshot_name`.
_EXTRA_SNAPSHOT: Final = re.compile(r"^source-\d+\.parquet$")


def snapshot_name(index: int) -> str:
    """File name of the snapshot of source number ``index`` (0-based) in a build directory."""
    return SNAPSHOT if index == 0 else f"source-{index + 1}.parquet"


def start_report(out_dir: Path, limits: Limits) -> Report:
    """The report of a build into ``out_dir``: it streams every finding to ``findings.ndjson`` (under a
    temporary name until the build ends)."""
    report = Report(limits=limits)
    with writing(out_dir):
        report.stream_to(out_dir / FINDINGS)
    return report


def _report_bytes(report: Report) -> bytes:
    """``report.json``: the report with its retained findings, naming ``findings.ndjson`` for all of them."""
    named = report.model_copy(update={"findings_file": FINDINGS if report.findings_file else None})
    return named.to_json().encode() + b"\n"


def write_report(out_dir: Path, report: Report) -> None:
    """Complete ``findings.ndjson`` and write ``report.json`` (a build that stops with findings)."""
    with writing(out_dir):
        report.close()
        atomic_write(out_dir / REPORT, _report_bytes(report))


def fail_build(
    out_dir: Path, name: str, report: Report, *, invalid_units: dict[str, int] | None = None
) -> ValidationFailed:
    """A build stopped by its findings: the earlier build is removed, the report written; raise the result."""
    with writing(out_dir):
        clear_previous(out_dir, name)
    write_report(out_dir, report)
    return ValidationFailed(report, invalid_units=invalid_units)


def finish(
    spill: Spill,
    *,
    out_dir: Path,
    name: str,
    limits: Limits,
    report: Report,
    sources: list[SourceInfo],
    mapping: dict[str, Any] | None,
    rows: int,
    excluded: Sequence[int] = (),
    updates: pl.DataFrame | None = None,
    snapshot: pl.DataFrame | None = None,
    unsharded: Literal["held", "realtime"] | None = None,
    retry: RetryInfo | None = None,
    copies: Sequence[tuple[Path, str]] = (),
) -> BuildResult:
    """Plan and write the shards, ``requests.parquet``, ``report.json``, then ``manifest.json``.

    ``excluded`` are spilled lines that must not be sent after all (later duplicates), ``updates`` the
    ``unit, status, code, message`` that replace those of the spilled provenance. ``snapshot`` (the rows
    of an in-memory source) is written as ``source.parquet`` and recorded in the first source's entry.
    Raises :class:`ValidationFailed` (after writing ``report.json``) when no shard plan exists.

    ``unsharded`` writes no shard: every line goes, in order, to one file (``held.jsonl`` for a later
    build, ``realtime.jsonl`` to send one by one), whatever the count; ``retry`` is recorded in the manifest.
    ``copies`` are ``(file, name)`` pairs copied into the directory with the other files (the snapshots of
    sources taken over from another build directory).
    """
    spill.close()
    if unsharded is not None:
        return _finish_unsharded(
            spill,
            out_dir=out_dir,
            name=name,
            limits=limits,
            report=report,
            sources=sources,
            mapping=mapping,
            rows=rows,
            excluded=excluded,
            updates=updates,
            mode=unsharded,
            retry=retry,
            copies=copies,
            snapshot=snapshot,
        )
    plan = _plan(spill, excluded, limits, report, out_dir, name, sources[0].name)
    # everything is written to temporary names first, made durable at once, then renamed into place
    temps: list[tuple[Path, Path]] = []
    with writing(out_dir), _removed_on_failure(temps):
        if snapshot is not None:
            info, temp = write_snapshot(snapshot, out_dir, sources[0])
            sources = [info, *sources[1:]]
            temps.append((temp, out_dir / SNAPSHOT))
        _copy_files(copies, out_dir, temps)
        direct = _as_planned(spill, plan, excluded)
        if direct:
            shards = _provisional_shards(spill, name, temps)
        else:
            shards = _write_shards(spill, plan, sorted(excluded), out_dir, name, temps)
        requests, temp = write_requests(
            spill, plan, sorted(excluded), updates, out_dir / REQUESTS, as_planned=direct
        )
        temps.append((temp, out_dir / REQUESTS))
        spill.discard()
        counts = _counts(
            spill, rows, sum(s.records for s in shards), len(shards), sum(s.bytes for s in shards), updates
        )
        manifest = Manifest(
            batchkit_version=__version__,
            name=name,
            limits=limits,
            sources=sources,
            mapping=mapping,
            each=spill.each,
            counts=counts,
            shards=shards,
            requests=requests,
            retry=retry,
        )
        _settle(out_dir, name, report, manifest, temps, files=len(shards))
    log.info("wrote %d shard(s) of %d request(s) to %s", len(shards), counts.requests, out_dir)
    return BuildResult(
        report=report,
        manifest=manifest,
        out_dir=out_dir,
        shards=[out_dir / s.file for s in shards],
        counts=counts,
    )


def _finish_unsharded(
    spill: Spill,
    *,
    out_dir: Path,
    name: str,
    limits: Limits,
    report: Report,
    sources: list[SourceInfo],
    mapping: dict[str, Any] | None,
    rows: int,
    excluded: Sequence[int],
    updates: pl.DataFrame | None,
    mode: Literal["held", "realtime"],
    retry: RetryInfo | None,
    copies: Sequence[tuple[Path, str]],
    snapshot: pl.DataFrame | None = None,
) -> BuildResult:
    """:func:`finish` for a directory without shards: one lines file, ``requests.parquet``, the manifest."""
    file = HELD if mode == "held" else REALTIME
    temps: list[tuple[Path, Path]] = []
    with writing(out_dir), _removed_on_failure(temps):
        _copy_files(copies, out_dir, temps)
        if snapshot is not None:
            info, temp_snapshot = write_snapshot(snapshot, out_dir, sources[0])
            sources = [info, *sources[1:]]
            temps.append((temp_snapshot, out_dir / SNAPSHOT))
        count = len(spill.sizes()) - len(excluded)
        temp = out_dir / f".{file}.tmp"
        temps.append((temp, out_dir / file))
        digest = hashlib.sha256()
        size = 0
        with temp.open("wb") as out:
            for runs in _runs([(0, count)], sorted(excluded)):
                for first, last in runs:
                    begin, end = _offsets(spill, first, last)
                    for block in spill.read(begin, end):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
        requests, requests_temp = write_requests(
            spill,
            [],
            sorted(excluded),
            updates,
            out_dir / REQUESTS,
            as_planned=False,
            unsharded_status="held" if mode == "held" else "ok",
        )
        temps.append((requests_temp, out_dir / REQUESTS))
        spill.discard()
        counts = _counts(spill, rows, count, 0, size, updates)
        manifest = Manifest(
            batchkit_version=__version__,
            name=name,
            limits=limits,
            sources=sources,
            mapping=mapping,
            each=spill.each,
            counts=counts,
            shards=[],
            requests=requests,
            unsharded=UnshardedInfo(
                mode=mode, file=file, records=count, bytes=size, sha256=digest.hexdigest()
            ),
            retry=retry,
        )
        _settle(out_dir, name, report, manifest, temps, files=1)
    log.info("wrote %d %s request(s) to %s", count, mode, out_dir / file)
    return BuildResult(report=report, manifest=manifest, out_dir=out_dir, shards=[], counts=counts)


def _plan(
    spill: Spill,
    excluded: Sequence[int],
    limits: Limits,
    report: Report,
    out_dir: Path,
    name: str,
    source: str,
) -> list[tuple[int, int]]:
    """The shard plan of the spilled lines less ``excluded``; no plan fails the build (its findings named
    after ``source``)."""
    sizes = spill.sizes()
    if excluded:
        keep = ~pl.int_range(0, len(sizes), dtype=pl.Int64, eager=True).is_in(list(excluded))
        sizes = sizes.filter(keep)
    try:
        return plan_shards(sizes, limits)
    except ValidationFailed as exc:
        for finding in exc.report.iter_findings():
            report.add(finding.model_copy(update={"source": source}))
        raise fail_build(out_dir, name, report) from None


def _counts(
    spill: Spill, rows: int, requests: int, shards: int, size: int, updates: pl.DataFrame | None
) -> BuildCounts:
    """The manifest's counts: every unit is a request, invalid, skipped, filtered or reused."""
    reused = _reused(updates)
    return BuildCounts(
        rows=rows,
        units=spill.units,
        requests=requests,
        invalid=spill.units - requests - spill.skipped - spill.filtered - (reused or 0),
        shards=shards,
        bytes=size,
        skipped=spill.skipped,
        filtered=spill.filtered,
        reused=reused,
    )


def _reused(updates: pl.DataFrame | None) -> int | None:
    """Units an update marks ``reused`` (``build --reuse``: not sent, an earlier outcome carried), if any."""
    if updates is None or "status" not in updates.columns:
        return None
    count = int((updates.get_column("status") == "reused").sum())
    return count or None


@contextlib.contextmanager
def _removed_on_failure(temps: list[tuple[Path, Path]]) -> Iterator[None]:
    """Remove every temporary file of ``temps`` (those not renamed yet) when the block fails."""
    try:
        yield
    except BaseException:
        for temp, _ in temps:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        raise


def _write_temp(final: Path, data: bytes) -> Path:
    temp = final.with_name(f".{final.name}.tmp")
    try:
        with temp.open("wb") as handle:
            handle.write(data)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _settle(
    out_dir: Path,
    name: str,
    report: Report,
    manifest: Manifest,
    temps: list[tuple[Path, Path]],
    *,
    files: int,
) -> None:
    """The last steps of every build: ``report.json`` and ``manifest.json`` join the other temporary files,
    all are made durable, the earlier build is removed, then everything is renamed into place, the findings
    and the report next to last and the manifest (which marks the build finished) last."""
    report.stats.files = files
    report.stats.bytes = manifest.counts.bytes
    temps.append((_write_temp(out_dir / REPORT, _report_bytes(report)), out_dir / REPORT))
    temps.append((_write_temp(out_dir / MANIFEST, manifest.to_bytes()), out_dir / MANIFEST))
    make_durable([temp for temp, _ in temps])
    with deferred_interrupts():  # all of it or nothing: a Ctrl-C waits for the manifest
        clear_previous(out_dir, name, keep=[temp.name for temp, _ in temps])
        *others, (report_temp, report_final), (manifest_temp, manifest_final) = temps
        for temp, final in others:
            os.replace(temp, final)
        report.close()
        os.replace(report_temp, report_final)
        os.replace(manifest_temp, manifest_final)
        sync_dir(out_dir)
    manifest._bind(out_dir)
    written = {s.file for s in manifest.shards}
    pattern = re.compile(rf"^{re.escape(name)}-\d{{4,}}\.jsonl$")
    for path in out_dir.iterdir():
        if pattern.match(path.name) and path.name not in written:
            path.unlink(missing_ok=True)


def _copy_files(copies: Sequence[tuple[Path, str]], out_dir: Path, temps: list[tuple[Path, Path]]) -> None:
    """Copy each ``(file, name)`` to a temporary name in ``out_dir``, adding the ``(temp, final)`` pairs to
    ``temps`` (before writing, so a failed copy is cleaned up too)."""
    for source, name in copies:
        temp = out_dir / f".{name}.tmp"
        temps.append((temp, out_dir / name))
        try:
            shutil.copyfile(source, temp)
        except OSError as exc:
            msg = f"cannot copy {source} into {out_dir}: {describe_oserror(exc)}"
            raise InputError(msg, path=source) from None


def _offsets(spill: Spill, first: int, last: int) -> tuple[int, int]:
    """Byte offsets of spilled lines ``first..last`` (end exclusive)."""
    sizes = spill.sizes()
    return int(sizes.head(first).sum()), int(sizes.head(last).sum())


def _runs(plan: list[tuple[int, int]], excluded: list[int]) -> Iterator[list[tuple[int, int]]]:
    """For each shard, the ranges of spilled lines it copies (skipping the excluded ones)."""
    position = 0
    skip = 0
    for start, end in plan:
        count = end - start
        runs: list[tuple[int, int]] = []
        while count:
            while skip < len(excluded) and excluded[skip] < position:
                skip += 1
            if skip < len(excluded) and excluded[skip] == position:
                position += 1
                skip += 1
                continue
            stop = excluded[skip] if skip < len(excluded) else position + count
            length = min(count, stop - position)
            runs.append((position, position + length))
            position += length
            count -= length
        yield runs


def _as_planned(spill: Spill, plan: list[tuple[int, int]], excluded: Sequence[int]) -> bool:
    """True when the provisional shard files are exactly the planned shards."""
    counts = [end - start for start, end in plan]
    segments = spill.segments
    return (
        not excluded
        and counts == spill.layout
        and len(segments) == len(counts)
        and all(s.records == n for s, n in zip(segments, counts, strict=True))
    )


def _provisional_shards(spill: Spill, name: str, temps: list[tuple[Path, Path]]) -> list[ShardInfo]:
    spill.close()
    starts, ends = [], []
    position = 0
    for segment in spill.segments:
        starts.append(position)
        position += segment.records
        ends.append(position - 1)
    ids = _request_ids(spill, starts + ends)
    adopted, spill.segments = spill.segments, []  # the files become shards: the spill must not remove them
    shards = []
    for number, (segment, first, last) in enumerate(zip(adopted, starts, ends, strict=True), 1):
        file = f"{name}-{number:04d}.jsonl"
        temps.append((segment.path, spill.out_dir / file))
        shards.append(
            ShardInfo(
                file=file,
                records=segment.records,
                bytes=segment.bytes,
                sha256=segment.digest.hexdigest(),
                first_request_id=ids[first],
                last_request_id=ids[last],
            )
        )
    return shards


def _request_ids(spill: Spill, positions: Sequence[int]) -> dict[int, str]:
    """request_id of the spilled lines at ``positions``."""
    frame = spill.scan().filter(pl.col("spill").is_in(sorted(set(positions)))).select("spill", "request_id")
    return dict(frame.collect().iter_rows())


def _write_shards(
    spill: Spill,
    plan: list[tuple[int, int]],
    excluded: list[int],
    out_dir: Path,
    name: str,
    temps: list[tuple[Path, Path]],
) -> list[ShardInfo]:
    spill.close()
    all_runs = list(_runs(plan, excluded))
    bounds = sorted({i for runs in all_runs for run in runs for i in run})
    prefix = pl.concat([pl.Series([0], dtype=pl.Int64), spill.sizes().cum_sum()])
    offsets = dict(zip(bounds, prefix.gather(bounds).to_list(), strict=True))
    ids = _request_ids(spill, [runs[0][0] for runs in all_runs] + [runs[-1][1] - 1 for runs in all_runs])
    shards: list[ShardInfo] = []
    for number, runs in enumerate(all_runs, 1):
        file = f"{name}-{number:04d}.jsonl"
        temp = out_dir / f".{file}.tmp"
        temps.append((temp, out_dir / file))
        digest = hashlib.sha256()
        size = 0
        with temp.open("wb") as out:
            for first, last in runs:
                for block in spill.read(offsets[first], offsets[last]):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
        shards.append(
            ShardInfo(
                file=file,
                records=sum(last - first for first, last in runs),
                bytes=size,
                sha256=digest.hexdigest(),
                first_request_id=ids[runs[0][0]],
                last_request_id=ids[runs[-1][1] - 1],
            )
        )
    return shards
