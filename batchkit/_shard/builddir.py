"""The build directory, format ``batchkit-build/1``: what ``build`` and ``shard`` write and ``submit`` reads.

::

    DIR/
      manifest.json          written last, atomically: limits, sources, mapping, counts, shards, requests
      report.json            the build Report (its first findings of each code, and every count)
      findings.ndjson        every finding of the build, one JSON object per line
      requests.parquet       one row per request unit, valid or not: where it came from and where it went
      source.parquet         the rows of an in-memory source, as read (only for DataFrame sources)
      <name>-0001.jsonl ...  the shards, canonical bytes
      held.jsonl             instead of shards: requests kept for a later build (``retry --hold``)
      realtime.jsonl         instead of shards: requests sent one by one (``retry --realtime``)

A directory made by ``batchkit retry`` says so in the manifest's ``retry`` entry, and its
``requests.parquet`` has one more column, ``retry_of`` (the request_id each unit retries). A directory
without shards names its lines file in the manifest's ``unsharded`` entry.

The manifest has no timestamps, so the same input gives byte-identical files. Every file is written to a
temporary name, synced, and renamed into place, so a crash never leaves a half-written one behind.

While a build reads its source, :class:`batchkit._shard.spill.Spill` keeps its lines and their provenance on disk
(so memory does not grow with the source); ``write_requests`` turns the provenance into ``requests.parquet``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, PrivateAttr

from .._errors import InputError
from .._files import sync_dir
from .._report import Finding
from .._wire.limits import Limits
from .spill import Spill

__all__ = [
    "FINDINGS",
    "FORMAT",
    "HELD",
    "MANIFEST",
    "REALTIME",
    "REPORT",
    "REQUESTS",
    "SNAPSHOT",
    "BuildCounts",
    "Manifest",
    "RequestsInfo",
    "RetryInfo",
    "ShardInfo",
    "SourceInfo",
    "UnshardedInfo",
    "atomic_write",
    "file_sha256",
    "load_manifest",
    "verify_shards",
    "write_manifest",
]

FORMAT: Final = "batchkit-build/1"
MANIFEST: Final = "manifest.json"
REPORT: Final = "report.json"
#: Every finding of a build, as JSON Lines. Not ``.jsonl``: ``batchkit validate DIR`` reads those as batches.
FINDINGS: Final = "findings.ndjson"
REQUESTS: Final = "requests.parquet"
SNAPSHOT: Final = "source.parquet"
HELD: Final = "held.jsonl"
REALTIME: Final = "realtime.jsonl"
_BLOCK: Final = 4 << 20


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class SourceInfo(_Record):
    """Where the rows came from: enough to find the file again and to tell whether it changed."""

    name: str
    path: str | None
    format: str
    sheet: str | None = None
    sha256: str | None
    bytes: int | None
    rows: int
    snapshot: str | None = None


class BuildCounts(_Record):
    """Rows read, request units (rows × ``[each]`` values), requests written, invalid units, shards, bytes."""

    rows: int
    units: int
    requests: int
    invalid: int
    shards: int
    bytes: int


class ShardInfo(_Record):
    """One shard file as written."""

    file: str
    records: int
    bytes: int
    sha256: str
    first_request_id: str
    last_request_id: str


class RequestsInfo(_Record):
    file: str
    sha256: str
    rows: int


class UnshardedInfo(_Record):
    """The lines of a directory without shards: ``held`` for a later build, or sent one by one (``realtime``).

    ``consumed_by`` is set on a held directory once a build included it (``build --include-held``).
    """

    mode: Literal["held", "realtime"]
    file: str
    records: int
    bytes: int
    sha256: str
    consumed_by: str | None = None


class RetryInfo(_Record):
    """Where a ``batchkit retry`` directory came from: the directory retried and what was selected."""

    of: str
    name: str
    only: list[str]
    mode: Literal["shards", "realtime", "held"]
    fingerprint: str


class Manifest(_Record):
    """``manifest.json`` of a build directory. :func:`load_manifest` reads one."""

    format: str = FORMAT
    batchkit_version: str
    name: str
    limits: Limits
    sources: list[SourceInfo]
    mapping: dict[str, Any] | None
    each: list[str]
    counts: BuildCounts
    shards: list[ShardInfo]
    requests: RequestsInfo
    unsharded: UnshardedInfo | None = None
    retry: RetryInfo | None = None
    _directory: Path | None = PrivateAttr(default=None)

    @property
    def directory(self) -> Path | None:
        """The build directory this manifest was loaded from (None for one built in memory)."""
        return self._directory

    def shard_paths(self) -> list[Path]:
        folder = self._folder()
        return [folder / shard.file for shard in self.shards]

    def scan_requests(self) -> pl.LazyFrame:
        """``requests.parquet`` lazily, for queries that should not load every row (large builds)."""
        return pl.scan_parquet(self._folder() / self.requests.file)

    def requests_frame(self) -> pl.DataFrame:
        """``requests.parquet``: one row per request unit with its source position, shard and status."""
        path = self._folder() / self.requests.file
        try:
            return pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            msg = f"cannot read {path}: {exc}"
            raise InputError(msg, path=path) from exc

    def to_bytes(self) -> bytes:
        """The exact bytes of ``manifest.json``: keys in format order, two-space indent, trailing newline."""
        data = self.model_dump(mode="json")
        data["limits"] = self.limits.as_dict()
        for source in data["sources"]:
            if source.get("snapshot") is None:
                source.pop("snapshot", None)
        for optional in ("unsharded", "retry"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"

    def _folder(self) -> Path:
        if self._directory is None:
            msg = "this manifest was not loaded from a directory; use load_manifest(DIR)"
            raise InputError(msg)
        return self._directory

    def _bind(self, directory: Path) -> Manifest:
        self._directory = directory
        return self


def load_manifest(out_dir: str | Path) -> Manifest:
    """Read ``DIR/manifest.json``. Raises :class:`InputError` when it is missing, unreadable or not v1."""
    folder = Path(out_dir)
    path = folder / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        msg = f"{folder} has no {MANIFEST}: it is not a finished build; run `batchkit build` into it first"
        raise InputError(msg, path=path) from exc
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise InputError(msg, path=path) from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = f"{path} is not valid JSON ({exc}); rebuild the directory"
        raise InputError(msg, path=path) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        msg = f"{path} has format {found!r}; this batchkit reads {FORMAT!r}: rebuild the directory"
        raise InputError(msg, path=path)
    try:
        return Manifest.model_validate(data)._bind(folder)
    except ValueError as exc:
        msg = f"{path} does not match {FORMAT}: {exc}"
        raise InputError(msg, path=path) from exc


def verify_shards(out_dir: str | Path, manifest: Manifest | None = None) -> list[Finding]:
    """Compare every shard file with the manifest: ``shard-missing`` or ``shard-changed`` findings, or []."""
    folder = Path(out_dir)
    manifest = manifest or load_manifest(folder)
    findings: list[Finding] = []
    for shard in manifest.shards:
        path = folder / shard.file
        if not path.is_file():
            findings.append(
                Finding(
                    code="shard-missing",
                    severity="error",
                    file=shard.file,
                    message=f"{shard.file} is listed in the manifest but missing; rebuild the directory",
                )
            )
            continue
        digest, size, lines = file_sha256(path, count_lines=True)
        changes = []
        if size != shard.bytes:
            changes.append(f"{size:,} bytes instead of {shard.bytes:,}")
        if lines != shard.records:
            changes.append(f"{lines:,} records instead of {shard.records:,}")
        if digest != shard.sha256:
            changes.append("its sha256 differs")
        if changes:
            findings.append(
                Finding(
                    code="shard-changed",
                    severity="error",
                    file=shard.file,
                    message=f"{shard.file} changed since the build ({'; '.join(changes)}); rebuild the directory",
                )
            )
    return findings


def write_manifest(out_dir: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (the last file of a build)."""
    path = out_dir / MANIFEST
    atomic_write(path, manifest.to_bytes())
    manifest._bind(out_dir)
    sync_dir(out_dir)
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, sync it, then rename it over ``path``."""
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def file_sha256(path: Path, *, count_lines: bool = False) -> tuple[str, int, int]:
    """sha256 hex digest, size in bytes, and (when asked) the number of ``\\n`` in the file."""
    digest = hashlib.sha256()
    size = lines = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            size += len(block)
            if count_lines:
                lines += block.count(b"\n")
    return digest.hexdigest(), size, lines


# -- writing a build ----------------------------------------------------------------------------------------


def make_durable(paths: list[Path]) -> None:
    """Flush written files to disk: one ``sync`` for all of them where the platform has it."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for path in paths:  # pragma: no cover (platforms without os.sync)
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())


def write_snapshot(snapshot: pl.DataFrame, out_dir: Path, info: SourceInfo) -> tuple[SourceInfo, Path]:
    temp = out_dir / f".{SNAPSHOT}.tmp"
    try:
        snapshot.write_parquet(temp)
        digest, size, _ = file_sha256(temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return info.model_copy(update={"sha256": digest, "bytes": size, "snapshot": SNAPSHOT}), temp


def write_requests(
    spill: Spill,
    plan: list[tuple[int, int]],
    excluded: list[int],
    updates: pl.DataFrame | None,
    path: Path,
    *,
    as_planned: bool,
    unsharded_status: str | None = None,
) -> tuple[RequestsInfo, Path]:
    """``requests.parquet`` from the provenance files, streamed (memory does not grow with the source).

    When the shards are the provisional ones, the provenance already holds each unit's shard and line;
    otherwise every provenance file is re-labelled on its own (eagerly, one chunk at a time) first.
    ``unsharded_status`` (a directory without shards) leaves every shard null and gives the written units
    that status (``ok``: sent one by one; ``held``: kept for a later build).
    """
    files = spill.prov_files
    if unsharded_status is not None:
        files = []
        for number, source in enumerate(spill.prov_files):
            frame = pl.read_ipc(source)
            if updates is not None and updates.height:
                frame = frame.update(updates, on="unit", how="left")
            frame = frame.with_columns(
                pl.when(pl.col("status") == "ok")
                .then(pl.lit(unsharded_status))
                .otherwise(pl.col("status"))
                .alias("status"),
                pl.lit(None, dtype=pl.Int64).alias("shard"),
                pl.lit(None, dtype=pl.Int64).alias("shard_line"),
            )
            target = spill.dir / f"requests-{number:06d}.arrow"
            frame.write_ipc(target, compression="lz4")
            files.append(target)
    elif not as_planned or (updates is not None and updates.height):
        starts = pl.Series("starts", [start for start, _ in plan], dtype=pl.Int64)
        skipped = pl.Series("excluded", excluded, dtype=pl.Int64)
        files = []
        for number, source in enumerate(spill.prov_files):
            frame = pl.read_ipc(source)
            if updates is not None and updates.height:
                frame = frame.update(updates, on="unit", how="left")
            final = frame["spill"]
            if excluded:
                final = final - skipped.search_sorted(final.fill_null(0)).cast(pl.Int64)
            shard = starts.search_sorted(final.fill_null(0), side="right").cast(pl.Int64)
            line = final - starts.gather((shard - 1).clip(0)) + 1
            ok = frame["status"] == "ok"
            frame = frame.with_columns(
                pl.when(ok).then(shard).alias("shard"), pl.when(ok).then(line).alias("shard_line")
            )
            target = spill.dir / f"requests-{number:06d}.arrow"
            frame.write_ipc(target, compression="lz4")
            files.append(target)
    lf = pl.scan_ipc(files).select(
        pl.col("request_id").cast(pl.String),
        pl.col("source").cast(pl.Int32),
        pl.col("row").cast(pl.Int64),
        pl.col("source_line").cast(pl.Int64),
        *[pl.col(name).cast(pl.String) for name in spill.each],
        pl.col("shard").cast(pl.Int32),
        pl.col("shard_line").cast(pl.Int32),
        pl.col("status").cast(pl.String),
        pl.col("code").cast(pl.String),
        pl.col("message").cast(pl.String),
        *[pl.col(name).cast(pl.String) for name in spill.extra],
    )
    temp = path.with_name(f".{path.name}.tmp")
    try:
        lf.sink_parquet(temp, row_group_size=100_000, maintain_order=True)
        digest, _, _ = file_sha256(temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return RequestsInfo(file=path.name, sha256=digest, rows=spill.units), temp
