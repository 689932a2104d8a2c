"""Shards: write a build's shards from its spill, and re-shard an existing JSONL.

A build never holds all of its lines in memory: a :class:`batchkit._shard.spill.Spill` appends them to temporary
files in the output directory (with their sizes, and one provenance file per chunk), then :func:`finish`
plans the shards (:func:`batchkit._shard.plan.plan_shards`) and copies byte ranges into the shard files, writes
``requests.parquet``, ``report.json`` and last ``manifest.json``. :func:`shard_file` does the same for the
lines of an existing batch JSONL.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import polars as pl

from .._errors import InputError
from .._files import atomic_write, file_sha256, make_durable
from .._report import Finding, Report, ValidationFailed
from .._version import __version__
from .._wire.limits import DEFAULT_LIMITS, Limits
from .builddir import (
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
    write_manifest,
    write_requests,
    write_snapshot,
)
from .plan import plan_shards
from .spill import Spill

__all__ = [
    "BuildResult",
    "shard_file",
]

log = logging.getLogger("batchkit")

#: Whole-file findings that re-serializing fixes: reported as warnings by ``shard``, never blocking.
_FIXED_BY_SHARD: Final = {
    "utf8-bom": "the shards are written without it",
    "crlf-line-endings": "the shards are written with LF",
    "blank-line": "it was skipped",
}

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
    except OSError as exc:
        msg = f"cannot create {folder}: {exc.strerror or exc}"
        raise InputError(msg, path=folder) from exc
    for stale in folder.glob(".batchkit-build-*"):  # left behind by a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def safe_name(name: str) -> str:
    """A shard-name stem of ``[A-Za-z0-9_-]``: ``"Q3 campaign.v2"`` → ``"Q3_campaign_v2"``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "batch"


def clear_previous(out_dir: Path, name: str, *, keep: Sequence[str] = ()) -> None:
    """Remove the manifest and outputs of an earlier build of ``name`` (keeping the files in ``keep``)."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    pattern = re.compile(rf"^\.?{re.escape(name)}-\d{{4,}}\.jsonl(\.tmp|\.spill)?$")
    for path in out_dir.iterdir():
        if path.name in keep:
            continue
        outputs = (REQUESTS, SNAPSHOT, HELD, REALTIME, MEDIA, LENGTHS, REUSED)
        if pattern.match(path.name) or path.name in outputs or _EXTRA_SNAPSHOT.match(path.name):
            path.unlink(missing_ok=True)


#: Snapshots of the second and later sources of a build (``source-2.parquet`` ...), see :func:`snapshot_name`.
_EXTRA_SNAPSHOT: Final = re.compile(r"^source-\d+\.parquet$")


def snapshot_name(index: int) -> str:
    """File name of the snapshot of source number ``index`` (0-based) in a build directory."""
    return SNAPSHOT if index == 0 else f"source-{index + 1}.parquet"


def write_report(out_dir: Path, report: Report) -> None:
    atomic_write(out_dir / REPORT, report.to_json().encode() + b"\n")


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
    sizes = spill.sizes()
    if excluded:
        keep = ~pl.int_range(0, len(sizes), dtype=pl.Int64, eager=True).is_in(list(excluded))
        sizes = sizes.filter(keep)
    try:
        plan = plan_shards(sizes, limits)
    except ValidationFailed as exc:
        for finding in exc.report.findings:
            report.add(finding.model_copy(update={"source": sources[0].name}))
        clear_previous(out_dir, name)
        write_report(out_dir, report)
        raise ValidationFailed(report) from None
    clear_previous(out_dir, name, keep=spill.provisional)
    # everything is written to temporary names first, made durable at once, then renamed into place
    temps: list[tuple[Path, Path]] = []
    if snapshot is not None:
        info, temp = write_snapshot(snapshot, out_dir, sources[0])
        sources = [info, *sources[1:]]
        temps.append((temp, out_dir / SNAPSHOT))
    temps.extend(_copy_files(copies, out_dir))
    direct = _as_planned(spill, plan, excluded)
    if direct:
        shards, shard_temps = _provisional_shards(spill, name)
    else:
        shards, shard_temps = _write_shards(spill, plan, sorted(excluded), out_dir, name)
    temps.extend(shard_temps)
    requests, temp = write_requests(
        spill, plan, sorted(excluded), updates, out_dir / REQUESTS, as_planned=direct
    )
    temps.append((temp, out_dir / REQUESTS))
    spill.discard()
    make_durable([temp for temp, _ in temps])
    for temp, final in temps:
        os.replace(temp, final)
    written = {s.file for s in shards}
    pattern = re.compile(rf"^{re.escape(name)}-\d{{4,}}\.jsonl$")
    for path in out_dir.iterdir():
        if pattern.match(path.name) and path.name not in written:
            path.unlink(missing_ok=True)
    total = sum(s.bytes for s in shards)
    requested = sum(s.records for s in shards)
    reused = _reused(updates)
    counts = BuildCounts(
        rows=rows,
        units=spill.units,
        requests=requested,
        invalid=spill.units - requested - spill.skipped - spill.filtered - (reused or 0),
        shards=len(shards),
        bytes=total,
        skipped=spill.skipped,
        filtered=spill.filtered,
        reused=reused,
    )
    manifest = _conclude(
        out_dir,
        report,
        files=len(shards),
        manifest=Manifest(
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
        ),
    )
    log.info("wrote %d shard(s) of %d request(s) to %s", len(shards), counts.requests, out_dir)
    return BuildResult(
        report=report,
        manifest=manifest,
        out_dir=out_dir,
        shards=[out_dir / s.file for s in shards],
        counts=counts,
    )


def _reused(updates: pl.DataFrame | None) -> int | None:
    """Units an update marks ``reused`` (``build --reuse``: not sent, an earlier outcome carried), if any."""
    if updates is None or "status" not in updates.columns:
        return None
    count = int((updates.get_column("status") == "reused").sum())
    return count or None


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
    clear_previous(out_dir, name, keep=spill.provisional)
    temps = _copy_files(copies, out_dir)
    if snapshot is not None:
        info, temp_snapshot = write_snapshot(snapshot, out_dir, sources[0])
        sources = [info, *sources[1:]]
        temps.append((temp_snapshot, out_dir / SNAPSHOT))
    count = len(spill.sizes()) - len(excluded)
    temp = out_dir / f".{file}.tmp"
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
    spill.discard()
    temps += [(temp, out_dir / file), (requests_temp, out_dir / REQUESTS)]
    make_durable([t for t, _ in temps])
    for t, final in temps:
        os.replace(t, final)
    reused = _reused(updates)
    counts = BuildCounts(
        rows=rows,
        units=spill.units,
        requests=count,
        invalid=spill.units - count - spill.skipped - spill.filtered - (reused or 0),
        shards=0,
        bytes=size,
        skipped=spill.skipped,
        filtered=spill.filtered,
        reused=reused,
    )
    manifest = _conclude(
        out_dir,
        report,
        files=1,
        manifest=Manifest(
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
        ),
    )
    log.info("wrote %d %s request(s) to %s", count, mode, out_dir / file)
    return BuildResult(report=report, manifest=manifest, out_dir=out_dir, shards=[], counts=counts)


def _conclude(out_dir: Path, report: Report, *, files: int, manifest: Manifest) -> Manifest:
    """The last steps of every build: ``report.json``, then ``manifest.json`` (which marks it finished)."""
    report.stats.files = files
    report.stats.bytes = manifest.counts.bytes
    write_report(out_dir, report)
    write_manifest(out_dir, manifest)
    return manifest


def _copy_files(copies: Sequence[tuple[Path, str]], out_dir: Path) -> list[tuple[Path, Path]]:
    """Copy each ``(file, name)`` to a temporary name in ``out_dir``; the ``(temp, final)`` pairs."""
    temps: list[tuple[Path, Path]] = []
    for source, name in copies:
        temp = out_dir / f".{name}.tmp"
        try:
            shutil.copyfile(source, temp)
        except OSError as exc:
            msg = f"cannot copy {source} into {out_dir}: {exc.strerror or exc}"
            raise InputError(msg, path=source) from exc
        temps.append((temp, out_dir / name))
    return temps


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


def _provisional_shards(spill: Spill, name: str) -> tuple[list[ShardInfo], list[tuple[Path, Path]]]:
    spill.close()
    starts, ends = [], []
    position = 0
    for segment in spill.segments:
        starts.append(position)
        position += segment.records
        ends.append(position - 1)
    ids = _request_ids(spill, starts + ends)
    adopted, spill.segments = spill.segments, []  # the files become shards: the spill must not remove them
    shards, temps = [], []
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
    return shards, temps


def _request_ids(spill: Spill, positions: Sequence[int]) -> dict[int, str]:
    """request_id of the spilled lines at ``positions``."""
    frame = spill.scan().filter(pl.col("spill").is_in(sorted(set(positions)))).select("spill", "request_id")
    return dict(frame.collect().iter_rows())


def _write_shards(
    spill: Spill, plan: list[tuple[int, int]], excluded: list[int], out_dir: Path, name: str
) -> tuple[list[ShardInfo], list[tuple[Path, Path]]]:
    spill.close()
    all_runs = list(_runs(plan, excluded))
    bounds = sorted({i for runs in all_runs for run in runs for i in run})
    prefix = pl.concat([pl.Series([0], dtype=pl.Int64), spill.sizes().cum_sum()])
    offsets = dict(zip(bounds, prefix.gather(bounds).to_list(), strict=True))
    ids = _request_ids(spill, [runs[0][0] for runs in all_runs] + [runs[-1][1] - 1 for runs in all_runs])
    shards: list[ShardInfo] = []
    temps: list[tuple[Path, Path]] = []
    for number, runs in enumerate(all_runs, 1):
        file = f"{name}-{number:04d}.jsonl"
        temp = out_dir / f".{file}.tmp"
        digest = hashlib.sha256()
        size = 0
        with temp.open("wb") as out:
            for first, last in runs:
                for block in spill.read(offsets[first], offsets[last]):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
        temps.append((temp, out_dir / file))
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
    return shards, temps


# -- re-sharding an existing JSONL ---------------------------------------------------------------------------


def shard_file(
    jsonl_path: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    skip_invalid: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    chunk_lines: int = 100_000,
) -> BuildResult:
    """Validate an existing batch JSONL and re-shard it into a build directory (balanced, canonical).

    Invalid lines are findings by file and line; by default they fail the run (``report.json`` is written,
    no shard), with ``skip_invalid=True`` the valid lines are sharded and the rest reported.
    ``requests.parquet`` rows refer to the input: ``row`` is the record number, ``source_line`` the line.
    """
    from .._validate.validate import validate_lines

    path = Path(jsonl_path)
    if not path.is_file():
        msg = f"no such file: {path}" if not path.exists() else f"{path} is not a file"
        raise InputError(msg, path=path)
    folder = prepare_out_dir(out_dir, force=force)
    stem = safe_name(name or path.stem)
    try:
        with path.open("rb") as handle:
            checked = validate_lines(handle, file=str(path), limits=limits, file_checks=False)
        digest, size, _ = file_sha256(path)
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise InputError(msg, path=path) from exc
    report = Report(limits=limits)
    bad: dict[int, Finding] = {}
    for finding in checked.findings:
        if finding.code in _FIXED_BY_SHARD:
            finding = finding.model_copy(
                update={
                    "severity": "warning",
                    "message": f"{finding.message} ({_FIXED_BY_SHARD[finding.code]})",
                }
            )
        elif finding.severity == "error" and finding.line is not None:
            bad.setdefault(finding.line, finding)
        report.add(finding)
    report.stats.lines = checked.stats.lines
    report.stats.records = checked.stats.records
    if bad and not skip_invalid:
        clear_previous(folder, stem)
        write_report(folder, report)
        raise ValidationFailed(report)
    source = SourceInfo(
        name=path.name,
        path=str(path.resolve()),
        format="jsonl",
        sha256=digest,
        bytes=size,
        rows=checked.stats.records,
    )
    with Spill(folder) as spill:
        records = 0
        batch: list[tuple[Any, ...]] = []
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                text = raw.rstrip(b"\r\n")
                if lineno == 1:
                    text = text.removeprefix(b"\xef\xbb\xbf")
                if not text.strip():
                    continue
                records += 1
                batch.append(_shard_record(text, lineno, records, bad.get(lineno)))
                if len(batch) >= chunk_lines:
                    spill.add(_record_frame(batch))
                    batch = []
                    if progress is not None:
                        progress(records, checked.stats.records)
        if batch:
            spill.add(_record_frame(batch))
        spill.close()
        if progress is not None:
            progress(records, checked.stats.records)
        report.stats.valid_records = spill.spilled
        return finish(
            spill,
            out_dir=folder,
            name=stem,
            limits=limits,
            report=report,
            sources=[source],
            mapping=None,
            rows=records,
        )


def _shard_record(text: bytes, lineno: int, record: int, finding: Finding | None) -> tuple[Any, ...]:
    if finding is not None:
        return (finding.request_id, record, lineno, "invalid", finding.code, finding.message, None, False)
    obj = orjson.loads(text)
    rid = obj["request_id"]
    return (rid, record, lineno, "ok", None, None, orjson.dumps(obj).decode(), True)


def _record_frame(batch: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(
        batch,
        schema={
            "request_id": pl.String,
            "row": pl.Int64,
            "source_line": pl.Int64,
            "status": pl.String,
            "code": pl.String,
            "message": pl.String,
            "line": pl.String,
            "usable": pl.Boolean,
        },
        orient="row",
    )
