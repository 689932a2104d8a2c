"""The spill: a build's lines and their provenance on disk, while the build reads its source.

Memory does not grow with the source: every chunk's valid lines are appended to segment files (written by a
background thread), and every chunk's provenance (one row per request unit) to its own Arrow file. When the
expected shard layout is known, the segments are the provisional shard files themselves, so a build whose
plan turns out as expected adopts them without copying. :func:`batchkit._shard.write.finish` plans and writes the
shards from a spill; :func:`batchkit._shard.builddir.write_requests` turns its provenance into ``requests.parquet``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

import polars as pl

from .._errors import InputError
from .._files import writing

__all__ = ["Spill"]

_BLOCK: Final = 4 << 20  # bytes read back at a time
_SEED: Final = 0x5EED  # request_id hashes (duplicate search) are only compared within one build


class _Segment:
    """One file of spilled lines: a provisional shard (``capacity`` lines) or open-ended.

    ``records`` and ``bytes`` are counted when lines are assigned; the file is opened, written and hashed
    by the spill's writer thread.
    """

    def __init__(self, path: Path, capacity: int | None) -> None:
        self.path = path
        self.capacity = capacity
        self.records = 0
        self.bytes = 0
        self.digest = hashlib.sha256()
        self.handle: BinaryIO | None = None
        self.written = 0  # lines written so far (writer thread)

    @property
    def room(self) -> int | None:
        return None if self.capacity is None else self.capacity - self.records

    def write(self, data: memoryview, records: int) -> None:
        if self.handle is None:
            self.handle = self.path.open("wb")
        self.handle.write(data)
        self.digest.update(data)
        self.written += records
        if self.written == self.capacity:
            self.handle.close()

    def close(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.close()


class Spill:
    """A build's lines and provenance on disk, while the build reads its source.

    :meth:`add` takes one frame per chunk with columns ``request_id, row, source_line, <each...>, status,
    code, message, line, usable`` (``line`` is only read where ``status == "ok"``), and optionally ``source``
    (the index of the unit's source in the manifest, 0 when absent) and the ``extra`` columns, which are
    kept in the provenance and written to ``requests.parquet`` after the standard columns. An ``each`` or
    ``extra`` column a frame does not have is null for its units. Files are written by a background thread
    (at most two chunks behind), so disk writes overlap with reading the next chunk.

    ``layout`` is the shard plan expected when every unit turns out valid (record counts): lines are then
    written straight into provisional shard files in the output directory, and when the final plan is the
    same, those files become the shards without being copied. Otherwise they are read back as one stream.
    """

    def __init__(
        self,
        out_dir: Path,
        each: Sequence[str] = (),
        *,
        name: str = "batch",
        layout: Sequence[int] = (),
        extra: Sequence[str] = (),
    ) -> None:
        with writing(out_dir):
            self.dir = Path(tempfile.mkdtemp(prefix=".batchkit-build-", dir=out_dir))
        self.out_dir = out_dir
        self.name = name
        self.layout = list(layout)
        self._starts = pl.Series(
            "starts", [0, *itertools.accumulate(self.layout)][:-1] or [0], dtype=pl.Int64
        )
        self.segments: list[_Segment] = []
        self._sizes: list[pl.Series] = []
        self.prov_files: list[Path] = []
        self.each = list(each)
        self.extra = list(extra)
        self.units = 0
        self.spilled = 0
        self.skipped = 0  # units no request is made for by design: an optional [each] value is empty
        self.filtered = 0  # ... or [where] left their row out
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=2)
        self._failure: BaseException | None = None
        self._writer = threading.Thread(target=self._work, name="batchkit-spill", daemon=True)
        self._writer.start()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._failure is None:
                try:
                    job()
                except BaseException as exc:  # handed to the reading thread by _check
                    self._failure = exc

    def _submit(self, job: Callable[[], None]) -> None:
        self._check()
        self._jobs.put(job)

    def _check(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            with writing(self.out_dir):
                raise failure

    def close(self) -> None:
        """Wait for every write, then close the files."""
        if self._writer.is_alive():
            self._jobs.put(None)
            self._writer.join()
        for segment in self.segments:
            segment.close()
        self._check()

    def discard(self) -> None:
        """Remove the spill files (before a sync, so their bytes never need to reach the disk)."""
        try:
            self.close()
        finally:
            for segment in self.segments:
                segment.path.unlink(missing_ok=True)
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def provisional(self) -> list[str]:
        """Names of the provisional shard files this spill keeps in the output directory."""
        return [s.path.name for s in self.segments if s.path.parent == self.out_dir]

    def add(self, frame: pl.DataFrame) -> None:
        ok = pl.col("status") == "ok"
        good = frame.filter(ok).select("line")
        sizes = good["line"].str.len_bytes().cast(pl.Int64) + 1
        self._sizes.append(sizes)
        if good.height:
            self._write(good, sizes)
        height = frame.height
        columns = frame.columns

        def text(name: str) -> pl.Expr:
            return pl.col(name) if name in columns else pl.lit(None, dtype=pl.String).alias(name)

        prov = frame.select(
            pl.int_range(self.units, self.units + height, dtype=pl.Int64).alias("unit"),
            "request_id",
            pl.col("source").cast(pl.Int32)
            if "source" in columns
            else pl.lit(0, dtype=pl.Int32).alias("source"),
            "row",
            "source_line",
            *[text(name) for name in self.each],
            *[text(name) for name in self.extra],
            "status",
            "code",
            "message",
            pl.when(ok).then(ok.cast(pl.Int64).cum_sum() - 1 + self.spilled).alias("spill"),
            pl.when(pl.col("usable")).then(pl.col("request_id").hash(_SEED)).alias("rid_hash"),
        )
        # the shard and line each unit gets if the provisional layout holds
        spilled = prov["spill"].fill_null(0)
        shard = self._starts.search_sorted(spilled, side="right").cast(pl.Int64)
        line = spilled - self._starts.gather((shard - 1).clip(0)) + 1
        valid = prov["status"] == "ok"
        prov = prov.with_columns(
            pl.when(valid).then(shard).alias("shard"), pl.when(valid).then(line).alias("shard_line")
        )
        path = self.dir / f"prov-{len(self.prov_files):06d}.arrow"
        self.prov_files.append(path)
        with writing(self.out_dir):
            prov.write_ipc(path, compression="lz4")  # compressed: read back in batches, never mapped
        self.units += height
        self.spilled += good.height
        statuses = frame.get_column("status")
        self.skipped += int((statuses == "skipped").sum())
        self.filtered += int((statuses == "filtered").sum())

    def _write(self, good: pl.DataFrame, sizes: pl.Series) -> None:
        """Assign the chunk's lines to segments now; write them in the background."""
        ends = sizes.cum_sum()
        pieces: list[tuple[_Segment, int, int, int]] = []
        done = 0
        while done < good.height:
            segment = self._segment()
            room = segment.room
            take = good.height - done if room is None else min(room, good.height - done)
            begin = int(ends[done - 1]) if done else 0
            end = int(ends[done + take - 1])
            segment.records += take
            segment.bytes += end - begin
            pieces.append((segment, begin, end, take))
            done += take

        buffer = io.BytesIO()
        good.write_csv(buffer, include_header=False, quote_style="never")

        def write() -> None:
            data = buffer.getbuffer()
            try:
                for segment, begin, end, take in pieces:
                    segment.write(data[begin:end], take)
            finally:
                data.release()

        self._submit(write)

    def _segment(self) -> _Segment:
        if self.segments and self.segments[-1].room != 0:
            return self.segments[-1]
        number = len(self.segments)
        if number < len(self.layout):
            path = self.out_dir / f".{self.name}-{number + 1:04d}.jsonl.spill"
            segment = _Segment(path, self.layout[number])
        else:
            segment = _Segment(self.dir / f"lines-{number:04d}.jsonl", None)
        self.segments.append(segment)
        return segment

    def sizes(self) -> pl.Series:
        """The byte size (newline included) of every spilled line, in order."""
        if not self._sizes:
            return pl.Series("size", [], dtype=pl.Int64)
        return pl.concat(self._sizes).rename("size")

    def scan(self) -> pl.LazyFrame:
        """The provenance of every unit, in order (after :meth:`close`)."""
        return pl.scan_ipc(self.prov_files)

    def read(self, begin: int, end: int) -> Iterator[bytes]:
        """Bytes ``begin..end`` of all spilled lines, as if they were one file."""
        offset = 0
        for segment in self.segments:
            low, high = max(begin, offset), min(end, offset + segment.bytes)
            if low < high:
                with segment.path.open("rb") as handle:
                    handle.seek(low - offset)
                    remaining = high - low
                    while remaining:
                        block = handle.read(min(_BLOCK, remaining))
                        if not block:
                            msg = f"the spill file {segment.path} ended early; rerun the build"
                            raise InputError(msg, path=segment.path)
                        remaining -= len(block)
                        yield block
            offset += segment.bytes
            if offset >= end:
                return
