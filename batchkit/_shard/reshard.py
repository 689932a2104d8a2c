"""Re-shard an existing batch JSONL: validate it, then write its valid lines as a build directory.

Two passes over the file, each a block at a time (:func:`batchkit._validate.reading.blocks`), so memory does
not grow with the file or with its findings: the first validates every line, streaming the findings to the
report (and so to ``findings.ndjson``) and the first error of each bad line to a temporary file; the second
reads the lines again beside those first errors and spills every line, valid or not, to the build.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson
import polars as pl

from .._errors import InputError
from .._files import describe_oserror, file_sha256, open_input, writing
from .._report import Finding, Report
from .._validate.reading import TooLong, blocks, split_lines
from .._validate.validate import check_lines
from .._wire.limits import DEFAULT_LIMITS, Limits
from .builddir import SourceInfo
from .spill import Spill
from .write import BuildResult, Progress, fail_build, finish, prepare_out_dir, safe_name, start_report

__all__ = ["shard_file"]

#: Whole-file findings that re-serializing fixes: reported as warnings by ``shard``, never blocking.
_FIXED_BY_SHARD: Final = {
    "utf8-bom": "the shards are written without it",
    "crlf-line-endings": "the shards are written with LF",
    "blank-line": "it was skipped",
}
_BOM: Final = b"\xef\xbb\xbf"


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

    Invalid lines are findings by file and line; by default they fail the run (``report.json`` and
    ``findings.ndjson`` are written, no shard), with ``skip_invalid=True`` the valid lines are sharded and the
    rest reported. ``requests.parquet`` rows refer to the input: ``row`` is the record number,
    ``source_line`` the line. Raises :class:`InputError` for a path that is not a regular file.
    """
    path = Path(jsonl_path)
    with open_input(path):  # a FIFO or a directory is refused before anything is created
        pass
    folder = prepare_out_dir(out_dir, force=force)
    stem = safe_name(name or path.stem)
    report = start_report(folder, limits)
    try:
        with _FirstErrors(folder) as bad:
            records = _check(path, report, bad, limits)
            if bad.count and not skip_invalid:
                raise fail_build(folder, stem, report, invalid_units=bad.by_code())
            digest, size, _ = _fingerprint(path)
            source = SourceInfo(
                name=path.name,
                path=str(path.resolve()),
                format="jsonl",
                sha256=digest,
                bytes=size,
                rows=records,
            )
            with writing(folder), Spill(folder) as spill:
                spilled = (
                    _spill_lines(path, spill, bad.read(), limits, records, progress, chunk_lines)
                    if records
                    else 0
                )
                spill.close()
                report.stats.valid_records = spill.spilled
                return finish(
                    spill,
                    out_dir=folder,
                    name=stem,
                    limits=limits,
                    report=report,
                    sources=[source],
                    mapping=None,
                    rows=spilled,
                )
    except BaseException:
        report.discard()
        raise


def _check(path: Path, report: Report, bad: _FirstErrors, limits: Limits) -> int:
    """The first pass: every finding into ``report`` (the ones shard fixes as warnings), the first error of
    each line into ``bad``; the number of records."""

    def emit(finding: Finding) -> None:
        if finding.code in _FIXED_BY_SHARD:
            finding = finding.model_copy(
                update={
                    "severity": "warning",
                    "message": f"{finding.message} ({_FIXED_BY_SHARD[finding.code]})",
                }
            )
        elif finding.severity == "error" and finding.line is not None:
            bad.note(finding)
        report.add(finding)

    with open_input(path) as handle:
        try:
            stats = check_lines(handle, emit=emit, file=str(path), limits=limits)
        except OSError as exc:
            msg = f"cannot read {path}: {describe_oserror(exc)}"
            raise InputError(msg, path=path) from None
    report.stats.lines = stats.lines
    report.stats.records = stats.records
    return stats.records


def _fingerprint(path: Path) -> tuple[str, int, int]:
    try:
        return file_sha256(path)
    except OSError as exc:
        msg = f"cannot read {path}: {describe_oserror(exc)}"
        raise InputError(msg, path=path) from None


class _FirstErrors:
    """The first error finding of each bad line, in line order, kept in a temporary file (not in memory)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.codes: Counter[str] = Counter()
        self._last = 0
        self._handle: Any = None

    def __enter__(self) -> _FirstErrors:
        with writing(self.folder):
            self._handle = tempfile.TemporaryFile(dir=self.folder, prefix=".batchkit-errors-")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()

    def note(self, finding: Finding) -> None:
        if finding.line == self._last:
            return
        self._last = finding.line or 0
        self.count += 1
        self.codes[finding.code] += 1
        with writing(self.folder):
            self._handle.write(
                orjson.dumps([finding.line, finding.code, finding.request_id, finding.message]) + b"\n"
            )

    def by_code(self) -> dict[str, int]:
        """Bad lines by their first error code, most first."""
        return dict(sorted(self.codes.items(), key=lambda item: (-item[1], item[0])))

    def read(self) -> Iterator[tuple[int, str, str | None, str]]:
        """Every noted ``(line, code, request_id, message)``, in line order."""
        with writing(self.folder):
            self._handle.flush()
            self._handle.seek(0)
            for raw in self._handle:
                line, code, request_id, message = orjson.loads(raw)
                yield line, code, request_id, message
            self._handle.seek(0, os.SEEK_END)


def _spill_lines(
    path: Path,
    spill: Spill,
    errors: Iterator[tuple[int, str, str | None, str]],
    limits: Limits,
    total: int,
    progress: Progress | None,
    chunk_lines: int,
) -> int:
    """The second pass: every record of the file, with its first error if it has one, into the spill."""
    pending = next(errors, None)
    records = lineno = 0
    batch: list[tuple[Any, ...]] = []
    with open_input(path) as handle:
        for item in blocks(handle, limits.max_bytes + 2):
            lines: list[bytes | None] = [None] if isinstance(item, TooLong) else list(split_lines(item))
            for raw in lines:
                lineno += 1
                while pending is not None and pending[0] < lineno:
                    pending = next(errors, None)
                error = pending if pending is not None and pending[0] == lineno else None
                text = None if raw is None else raw.rstrip(b"\r\n")
                if text is not None and lineno == 1:
                    text = text.removeprefix(_BOM)
                if text is not None and not text.strip():
                    continue
                records += 1
                batch.append(_record(text, lineno, records, error))
                if len(batch) >= chunk_lines:
                    spill.add(_record_frame(batch))
                    batch = []
                    if progress is not None:
                        progress(records, total)
    if batch:
        spill.add(_record_frame(batch))
    if progress is not None:
        progress(records, total)
    return records


def _record(
    text: bytes | None, lineno: int, record: int, error: tuple[int, str, str | None, str] | None
) -> tuple[Any, ...]:
    if error is not None or text is None:
        _, code, request_id, message = error or (lineno, "line-too-large", None, "the line is too large")
        return (request_id, record, lineno, "invalid", code, message, None, False)
    obj = orjson.loads(text)
    return (obj["request_id"], record, lineno, "ok", None, None, orjson.dumps(obj).decode(), True)


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
