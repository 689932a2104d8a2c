"""The build directory, format ``batchkit-build/1``: the name of every file in it, and its manifest.

This module is the one place that names a build directory's files; every stage asks it for them.

::

    DIR/
      manifest.json          written last, atomically: limits, sources, mapping, counts, shards, requests
      report.json            the build Report (its first findings of each code, and every count)
      findings.ndjson        every finding of the build, one JSON object per line
      requests.parquet       one row per request unit, valid or not: where it came from and where it went
                             (status ok, invalid, skipped or filtered; held in a retry --hold directory)
      media.parquet          written by a probe (build --probe, batchkit probe DIR): one row per media URL
      lengths.parquet        written with media.parquet: each request unit's model and billable seconds
      reused.parquet         written by build --reuse: the units not sent again, with the outcome they carry
      source.parquet         the rows of an in-memory source, as read (only for DataFrame sources)
      <name>-0001.jsonl ...  the shards, canonical bytes
      held.jsonl             instead of shards: requests kept for a later build (``retry --hold``)
      realtime.jsonl         instead of shards: requests sent one by one (``retry --realtime``)
      journal.sqlite         written by submit: every create's intent, batch id and status
      journal.lock           held by the one process that writes the journal (submit, wait, retry, recover)
      submission.json        which API the directory was submitted to, and its journal's id
      sandbox-state.ndjson   written by ``run --sandbox``: the sandbox account, so a resumed run finds its batches
      results/               written by results: <batch_id>.output.jsonl of each finished batch
      retries.json           written by retry: which units went to which retry directory
      results.csv            written by run: the joined results
      review.html            written by review: a card per request, to approve or reject
      fetched.parquet        written by fetch: every video fetched, where to, its size and sha256 (with
                             .fetched.parquet.journal and .lock beside it while a fetch runs)

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
import re
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from .._errors import InputError
from .._files import atomic_write, file_sha256, sync_dir
from .._report import Finding
from .._wire.limits import Limits
from .spill import Spill

__all__ = [
    "FETCHED",
    "FINDINGS",
    "FORMAT",
    "HELD",
    "JOURNAL",
    "LENGTHS",
    "LOCK",
    "MANIFEST",
    "MEDIA",
    "REALTIME",
    "REPORT",
    "REQUESTS",
    "RESULTS_DIR",
    "RESULTS_TABLE",
    "RETRIES",
    "REUSED",
    "REVIEW",
    "SANDBOX_STATE",
    "SNAPSHOT",
    "SUBMISSION",
    "BuildCounts",
    "Manifest",
    "RequestsInfo",
    "RetryInfo",
    "ShardInfo",
    "SourceInfo",
    "UnshardedInfo",
    "load_manifest",
    "note_retry",
    "output_file",
    "retried_into",
    "verify_shards",
    "write_manifest",
]

FORMAT: Final = "batchkit-build/1"
MANIFEST: Final = "manifest.json"
REPORT: Final = "report.json"
#: Every finding of a build, as JSON Lines. Not ``.jsonl``: ``batchkit validate DIR`` reads those as batches.
FINDINGS: Final = "findings.ndjson"
REQUESTS: Final = "requests.parquet"
MEDIA: Final = "media.parquet"
LENGTHS: Final = "lengths.parquet"
REUSED: Final = "reused.parquet"
SNAPSHOT: Final = "source.parquet"
HELD: Final = "held.jsonl"
REALTIME: Final = "realtime.jsonl"
JOURNAL: Final = "journal.sqlite"
LOCK: Final = "journal.lock"
SUBMISSION: Final = "submission.json"
SANDBOX_STATE: Final = "sandbox-state.ndjson"  # not .jsonl: `validate DIR` takes those for batch files
RESULTS_DIR: Final = "results"
RETRIES: Final = "retries.json"
RESULTS_TABLE: Final = "results.csv"
REVIEW: Final = "review.html"
FETCHED: Final = "fetched.parquet"
_SAFE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


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
    """Rows read, request units (rows × ``[each]`` values), requests written, invalid units, shards, bytes,
    and the units that were no request by design: ``skipped`` (an optional ``[each]`` value was empty) and
    ``filtered`` (``[where]`` left their row out). ``units = requests + invalid + skipped + filtered``
    (+ ``reused``).

    ``reused`` counts the units not sent because an identical request already completed (``build --reuse``);
    it is None (and left out of the manifest) for a build that reused nothing.
    """

    rows: int
    units: int
    requests: int
    invalid: int
    shards: int
    bytes: int
    skipped: int = 0
    filtered: int = 0
    reused: int | None = Field(default=None, exclude_if=lambda value: value is None)

    def __repr_args__(self) -> Any:
        return [(k, v) for k, v in super().__repr_args__() if not (k == "reused" and v is None)]


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

    def requests_frame(self, columns: list[str] | None = None) -> pl.DataFrame:
        """``requests.parquet`` (or some of its ``columns``): one row per request unit with its source
        position, shard and status. Raises :class:`InputError` when it cannot be read."""
        path = self._folder() / self.requests.file
        try:
            return pl.read_parquet(path, columns=columns)
        except (OSError, pl.exceptions.PolarsError) as exc:
            reason = " ".join(str(exc).split())[:200]
            msg = f"cannot read {path} ({reason}); it was changed after the build: build the directory again"
            raise InputError(msg, path=path) from None

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
        for count in ("skipped", "filtered"):  # counts of mapping comforts, left out when unused
            if not data["counts"].get(count):
                data["counts"].pop(count, None)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"

    def _folder(self) -> Path:
        if self._directory is None:
            msg = "this manifest was not loaded from a directory; use load_manifest(DIR)"
            raise InputError(msg)
        return self._directory

    def _bind(self, directory: Path) -> Manifest:
        self._directory = directory
        return self


def output_file(batch_id: str) -> str:
    """Where a batch's downloaded output.jsonl lives, relative to the build directory.

    A batch id that is not a plain file name (it comes from the server) is replaced by a digest of itself.
    """
    name = (
        batch_id
        if _SAFE_ID.fullmatch(batch_id)
        else "batch-" + hashlib.sha256(batch_id.encode()).hexdigest()[:32]
    )
    return f"{RESULTS_DIR}/{name}.output.jsonl"


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


# -- writing a build ----------------------------------------------------------------------------------------


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


# -- the retry ledger -------------------------------------------------------------------------------------


def retried_into(folder: Path) -> list[Path]:
    """The directories ``folder`` was retried into, as ``DIR/retries.json`` remembers them (oldest first)."""
    try:
        data = orjson.loads((folder / RETRIES).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    entries = data.get("retried_into") if isinstance(data, dict) else None
    return [Path(e) for e in entries if isinstance(e, str) and e] if isinstance(entries, list) else []


def note_retry(folder: Path, out: Path) -> None:
    """Remember in ``DIR/retries.json`` that ``DIR`` was retried into ``out``."""
    known = [str(p) for p in retried_into(folder)]
    target = str(out.resolve())
    if target not in known:
        known.append(target)
        atomic_write(
            folder / RETRIES, orjson.dumps({"retried_into": known}, option=orjson.OPT_INDENT_2) + b"\n"
        )
