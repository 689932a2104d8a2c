"""Held requests: retry units kept for the next build (``batchkit retry --hold``, ``build --include-held``).

A held directory has no shards: its lines wait in ``held.jsonl`` with their provenance in
``requests.parquet``. The next build appends them after its own source's lines, takes the held directory's
sources after its own (so each unit still joins back to its own source row), and then marks the held
directory as consumed, so its requests can never be included, and sent, twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
import polars as pl

from .._errors import BatchkitError, InputError
from .._files import file_sha256
from .._report import Finding, Report
from .._shard.builddir import SourceInfo, load_manifest, write_manifest
from .._shard.spill import Spill
from .._shard.write import snapshot_name
from .._validate.validate import check_lines
from .._wire.limits import Limits

__all__ = ["RETRY_OF", "HeldRequests", "checked_line", "load_held", "mark_consumed", "take_sources"]

log = logging.getLogger("batchkit")

#: The column of ``requests.parquet`` that links a retried unit to the request_id it retries.
RETRY_OF: Final = "retry_of"


def checked_line(line: bytes, request_id: str, path: Path, number: int, error: type[BatchkitError]) -> bytes:
    """``line``, after making sure it holds ``request_id`` (else the directory was edited: ``error``)."""
    try:
        found = orjson.loads(line).get("request_id")
    except (orjson.JSONDecodeError, AttributeError):
        found = None
    if found != request_id:
        msg = f"{path}:{number} holds request_id {found!r}, but requests.parquet says {request_id!r}; was it edited?"
        raise error(msg)
    return line


def take_sources(
    sources: Sequence[SourceInfo], folder: Path, *, first_index: int
) -> tuple[list[SourceInfo], list[tuple[Path, str]]]:
    """The sources of another build directory as sources ``first_index…`` here, with their snapshots to copy."""
    taken: list[SourceInfo] = []
    copies: list[tuple[Path, str]] = []
    for offset, info in enumerate(sources):
        if info.snapshot:
            name = snapshot_name(first_index + offset)
            copies.append((folder / info.snapshot, name))
            info = info.model_copy(update={"snapshot": name})
        taken.append(info)
    return taken, copies


@dataclass(slots=True)
class HeldRequests:
    """The held requests a build includes (``build(..., include_held=[...])``), read and checked."""

    directories: list[Path] = field(default_factory=list)
    #: Their sources, to append to the build's own (their ``source`` indexes are already remapped).
    sources: list[SourceInfo] = field(default_factory=list)
    #: Snapshot files to copy into the build directory, as ``(file, name)``.
    copies: list[tuple[Path, str]] = field(default_factory=list)
    #: ``each`` variables of the held units.
    each: list[str] = field(default_factory=list)
    #: Per directory: the held file and its units (``request_id, source, row, source_line, <each>,
    #: retry_of, line``), in file order.
    parts: list[tuple[Path, pl.DataFrame]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(frame.height for _, frame in self.parts)

    def add_to(self, spill: Spill, report: Report, limits: Limits, names: Callable[[int], str]) -> None:
        """Validate the held lines against ``limits`` and spill them after the build's own lines.

        A held line that no longer passes is an invalid unit with findings (its file and line, and its
        source row); collisions with other request_ids are left to the build's duplicate search.
        """
        for path, frame in self.parts:
            first: dict[int, Finding] = {}

            def emit(
                finding: Finding, frame: pl.DataFrame = frame, first: dict[int, Finding] = first
            ) -> None:
                unit = frame.row((finding.line or 1) - 1, named=True)
                located = finding.model_copy(
                    update={
                        "source": names(unit["source"]),
                        "row": unit["row"],
                        "source_line": unit["source_line"],
                    }
                )
                report.add(located)
                if finding.severity == "error" and finding.line is not None:
                    first.setdefault(finding.line - 1, located)

            check_lines(
                (line.encode() for line in frame.get_column("line").to_list()),
                emit=emit,
                file=str(path),
                limits=limits,
            )
            codes = [first[i].code if i in first else None for i in range(frame.height)]
            messages = [first[i].message if i in first else None for i in range(frame.height)]
            spill.add(
                frame.with_columns(
                    pl.Series("code", codes, dtype=pl.String),
                    pl.Series("message", messages, dtype=pl.String),
                )
                .with_columns(
                    pl.when(pl.col("code").is_null())
                    .then(pl.lit("ok"))
                    .otherwise(pl.lit("invalid"))
                    .alias("status"),
                    pl.lit(True).alias("usable"),
                )
                .with_columns(pl.when(pl.col("status") == "ok").then(pl.col("line")).alias("line"))
            )


def load_held(paths: Sequence[str | Path], *, out_dir: Path, first_source: int) -> HeldRequests:
    """Read the held directories a build includes, refusing consumed, changed or foreign ones.

    Their sources become sources ``first_source, first_source + 1, …`` of the build into ``out_dir``.
    """
    held = HeldRequests()
    target = out_dir.resolve()
    for raw in paths:
        folder = Path(raw)
        if folder.resolve() == target:
            msg = f"--include-held {folder} is the build's own --out; build into a new directory"
            raise InputError(msg, path=folder)
        if folder.resolve() in (d.resolve() for d in held.directories):
            msg = f"--include-held {folder} is given twice"
            raise InputError(msg, path=folder)
        manifest = load_manifest(folder)
        info = manifest.unsharded
        if info is None or info.mode != "held":
            msg = (
                f"{folder} holds no requests for a later build; `batchkit retry DIR --out {folder} --hold` "
                "makes such a directory"
            )
            raise InputError(msg, path=folder)
        if info.consumed_by and Path(info.consumed_by) != target:
            msg = (
                f"{folder}'s held requests were already included in {info.consumed_by}; including them "
                "again would send them twice. Retry what fails there instead"
            )
            raise InputError(msg, path=folder)
        path = folder / info.file
        digest, _, _ = file_sha256(path) if path.is_file() else ("", 0, 0)
        if digest != info.sha256:
            msg = f"{path} is missing or changed since `batchkit retry --hold` wrote it; retry again into a new directory"
            raise InputError(msg, path=path)
        units = manifest.requests_frame().filter(pl.col("status") == "held")
        lines = path.read_bytes().splitlines()
        if len(lines) != units.height:
            msg = f"{path} has {len(lines):,} lines, but requests.parquet lists {units.height:,} held units"
            raise InputError(msg, path=path)
        for number, (line, request_id) in enumerate(
            zip(lines, units.get_column("request_id"), strict=True), 1
        ):
            checked_line(line, request_id, path, number, InputError)
        offset = first_source + len(held.sources)
        sources, copies = take_sources(manifest.sources, folder, first_index=offset)
        held.sources.extend(sources)
        held.copies.extend(copies)
        held.each.extend(v for v in manifest.each if v not in held.each)
        retry_of = (
            pl.col(RETRY_OF) if RETRY_OF in units.columns else pl.lit(None, dtype=pl.String).alias(RETRY_OF)
        )
        frame = units.select(
            "request_id",
            (pl.col("source") + offset).cast(pl.Int32).alias("source"),
            "row",
            "source_line",
            *manifest.each,
            retry_of,
            pl.Series("line", [line.decode() for line in lines], dtype=pl.String),
        )
        held.parts.append((path, frame))
        held.directories.append(folder)
    return held


def mark_consumed(held: HeldRequests, out_dir: Path) -> None:
    """Note in each held directory's manifest that the build in ``out_dir`` included its requests."""
    target = str(out_dir.resolve())
    for folder in held.directories:
        manifest = load_manifest(folder)
        assert manifest.unsharded is not None
        if manifest.unsharded.consumed_by == target:
            continue
        unsharded = manifest.unsharded.model_copy(update={"consumed_by": target})
        write_manifest(folder, manifest.model_copy(update={"unsharded": unsharded}))
        log.info("marked the held requests of %s as included in %s", folder, out_dir)
