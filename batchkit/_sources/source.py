"""Tabular sources read as strings, in chunks, with every row keeping its position.

A :class:`Source` wraps a CSV/TSV, Parquet, Excel or NDJSON file, or an in-memory frame (polars, pandas,
pyarrow). It knows its name, format, path, fingerprint (sha256 and size of the file) and columns, and yields
its rows as polars DataFrames in chunks, so memory does not grow with the source. Every value is read as a
string (``Utf8``) for building, so nothing is coerced: ``007`` stays ``007``; a typed source (Parquet, a
frame) keeps its own types for the results too (:meth:`Source.read_typed`, and :mod:`batchkit._sources.frames`).

Each chunk holds the source's columns plus four position columns (named by the constants below):

* :data:`ROW`: the 1-based data row (the header excluded; blank rows are skipped but keep their numbers),
* :data:`SOURCE_LINE`: the physical line where the row starts (CSV/TSV and NDJSON), null elsewhere,
* :data:`ISSUE` and :data:`ISSUE_MESSAGE`: a finding code and message when the row itself could not be read
  as the header says (``ragged-row``: more fields than the header; ``invalid-json``, ``not-an-object``).

CSV/TSV parsing (header, delimiter, record-aligned blocks) is in :mod:`batchkit._sources.csv`; reading a text file
that is not UTF-8 is in :mod:`batchkit._sources.encoding`.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import polars as pl

from .._errors import InputError
from .._files import describe_oserror, open_input
from .._report import Finding
from .csv import EXTRA, csv_parts, first_line, read_header, show_delimiter
from .encoding import BLOCK, encoding_note, guess_encoding, text_encoding, utf8_copy
from .excel import choose_sheet, formula_cells
from .frames import index_as_columns, parquet_ready
from .ndjson import Record, ndjson_frame, ndjson_lines, ndjson_record

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "FORMATS",
    "FORMAT_NAMES",
    "ISSUE",
    "ISSUE_MESSAGE",
    "POSITION_COLUMNS",
    "ROW",
    "SOURCE_LINE",
    "Source",
    "read_source",
]

log = logging.getLogger("batchkit")

ROW: Final = "__row"
SOURCE_LINE: Final = "__source_line"
ISSUE: Final = "__issue"
ISSUE_MESSAGE: Final = "__issue_message"
POSITION_COLUMNS: Final = (ROW, SOURCE_LINE, ISSUE, ISSUE_MESSAGE)
DEFAULT_CHUNK_ROWS: Final = 100_000

#: File suffix → format name. Excel-like formats are all read by calamine (fastexcel).
FORMATS: Final[dict[str, str]] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".xls": "xls",
    ".xlsb": "xlsb",
    ".ods": "ods",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
#: Every name a format may be given by (``format=``, ``--source-format``): its own name, or any suffix that
#: detection reads as it (``xlsm``, ``tab``, ``jsonl``, ``pq``), or ``excel``.
FORMAT_NAMES: Final[dict[str, str]] = {
    **{suffix.removeprefix("."): fmt for suffix, fmt in FORMATS.items()},
    **{fmt: fmt for fmt in FORMATS.values()},
    "excel": "xlsx",
}
_EXCEL: Final = frozenset({"xlsx", "xls", "xlsb", "ods"})
_TEXT: Final = frozenset({"csv", "tsv", "ndjson"})


class Source:
    """A readable table: name, format, fingerprint, columns, and its rows in chunks (see the module doc)."""

    def __init__(
        self,
        *,
        name: str,
        format: str,
        columns: list[str],
        path: Path | None = None,
        sheet: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        rows: int | None = None,
        frame: pl.DataFrame | None = None,
        typed: pl.DataFrame | None = None,
        delimiter: str | None = None,
        encoding: str = "utf-8",
        header_lines: int = 1,
        lines: int | None = None,
        findings: list[Finding] | None = None,
        formulas: dict[str, dict[int, str]] | None = None,
        cr_lines: bool = False,
    ) -> None:
        self.name = name
        self.format = format
        self.columns = columns
        self.path = path
        self.sheet = sheet
        self.sha256 = sha256
        self.bytes = size
        self.rows = rows
        self.delimiter = delimiter
        self.encoding = encoding
        self.findings: list[Finding] = findings or []
        #: Cells holding a spreadsheet formula (``.xlsx``): column → data row → the formula.
        self.formulas: dict[str, dict[int, str]] = formulas or {}
        #: The file ends its lines with CR alone (classic Mac): it is read as if they were LF.
        self.cr_lines = cr_lines
        self._frame = frame
        self._typed = typed
        self._header_lines = header_lines
        self._lines = lines

    def __repr__(self) -> str:
        return f"Source(name={self.name!r}, format={self.format!r}, columns={len(self.columns)}, rows={self.rows})"

    @property
    def in_memory(self) -> bool:
        """True for a DataFrame or Table given in memory (no file to point back to)."""
        return self.path is None

    def chunks(self, size: int = DEFAULT_CHUNK_ROWS, *, blank: bool = False) -> Iterator[pl.DataFrame]:
        """The rows in order, ``size`` rows at a time (fewer once blank rows are dropped).

        Blank rows (every value empty) are dropped, or with ``blank=True`` kept and marked with the issue
        ``blank-row``, so a caller can account for every row.
        """
        if size < 1:
            msg = f"chunk size must be at least 1, not {size}"
            raise ValueError(msg)
        if self.format in ("csv", "tsv"):
            parts = self._csv_chunks(size)
        elif self.format == "ndjson":
            parts = self._ndjson_chunks(size)
        elif self.format == "parquet":
            parts = self._parquet_chunks(size)
        else:
            parts = self._frame_chunks(size)
        try:
            for part in parts:
                chunk = _blank_rows(part, self.columns, keep=blank)
                if chunk.height:
                    yield chunk
        except pl.exceptions.PolarsError as exc:
            msg = f"cannot read {self.name}: {first_line(exc)}"
            raise InputError(msg, path=self.path) from exc

    def count_rows(self) -> int | None:
        """How many data rows the source has: exact when known (Parquet, Excel, NDJSON, frames); for CSV an
        estimate from its line count (exact unless values hold newlines). None when unknown."""
        if self.rows is not None:
            return self.rows
        if self.format in ("csv", "tsv") and self._lines is not None:
            return max(self._lines - self._header_lines, 0)
        return None

    def read_all(self) -> pl.DataFrame:
        """Every non-blank row at once, with the position columns. For small sources and joins."""
        parts = list(self.chunks())
        if not parts:
            return _empty_frame(self.columns)
        return pl.concat(parts, how="vertical")

    def read_typed(self) -> pl.DataFrame:
        """Every row with :data:`ROW` in the source's own types (Parquet, frames; text elsewhere, as
        :meth:`read_all` reads it), blank rows kept. For joins: the whole source at once."""
        if self._typed is not None:
            frame = self._typed
        elif self.format == "parquet" and self.path is not None:
            try:
                frame = pl.read_parquet(self.path)
            except (OSError, pl.exceptions.PolarsError) as exc:
                msg = f"cannot read {self.name}: {first_line(exc)}"
                raise InputError(msg, path=self.path) from exc
        else:
            return self.read_all()
        frame = frame.rename(dict(zip(frame.columns, self.columns, strict=True)))
        return frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(ROW))

    def snapshot(self) -> pl.DataFrame | None:
        """The rows of an in-memory source in their own column types, in order; None for files. (A build
        keeps it as ``source.parquet``, read back as any Parquet file: as text to build, typed to join.)"""
        if not self.in_memory:
            return None
        typed = self._typed if self._typed is not None else self._frame
        assert typed is not None
        return parquet_ready(typed)

    # -- readers ---------------------------------------------------------------------------------------------

    def _frame_chunks(self, size: int) -> Iterator[pl.DataFrame]:
        assert self._frame is not None
        frame = self._frame
        for start in range(0, frame.height, size):
            part = frame.slice(start, size)
            yield part.with_columns(
                pl.int_range(start + 1, start + 1 + part.height, dtype=pl.Int64).alias(ROW),
                pl.lit(None, dtype=pl.Int64).alias(SOURCE_LINE),
                pl.lit(None, dtype=pl.String).alias(ISSUE),
                pl.lit(None, dtype=pl.String).alias(ISSUE_MESSAGE),
            )

    def _parquet_chunks(self, size: int) -> Iterator[pl.DataFrame]:
        """One slice at a time: polars reads only the pages a slice needs, so memory stays flat (its
        batch iterator runs ahead of a slow consumer and holds on to what it read)."""
        assert self.path is not None
        assert self.rows is not None
        lf = pl.scan_parquet(self.path)
        lf = lf.select(_as_strings(lf.collect_schema(), self.name))
        for start in range(0, self.rows, size):
            part = lf.slice(start, size).collect()
            yield part.select(
                *self.columns,
                pl.int_range(start + 1, start + 1 + part.height, dtype=pl.Int64).alias(ROW),
                pl.lit(None, dtype=pl.Int64).alias(SOURCE_LINE),
                pl.lit(None, dtype=pl.String).alias(ISSUE),
                pl.lit(None, dtype=pl.String).alias(ISSUE_MESSAGE),
            )

    def _csv_chunks(self, size: int) -> Iterator[pl.DataFrame]:
        """The records of a CSV/TSV file (see :func:`batchkit._sources.csv.csv_parts`) with their positions."""
        assert self.path is not None
        assert self.delimiter is not None
        width = len(self.columns)
        ragged = (
            f"the row has more fields than the header's {width}; quote values that contain "
            f"{show_delimiter(self.delimiter)} or remove the extra fields"
        )
        row = 0
        for part, starts in csv_parts(
            self.path,
            name=self.name,
            columns=self.columns,
            delimiter=self.delimiter,
            encoding=self.encoding,
            header_lines=self._header_lines,
            size=size,
            cr_lines=self.cr_lines,
        ):
            yield self._csv_part(part, row, starts, ragged)
            row += part.height

    def _csv_part(self, part: pl.DataFrame, row: int, starts: pl.Series, ragged: str) -> pl.DataFrame:
        extra = pl.col(EXTRA).is_not_null()
        return part.select(
            *self.columns,
            pl.int_range(row + 1, row + 1 + part.height, dtype=pl.Int64).alias(ROW),
            starts.cast(pl.Int64).alias(SOURCE_LINE),
            pl.when(extra).then(pl.lit("ragged-row")).alias(ISSUE),
            pl.when(extra).then(pl.lit(ragged)).alias(ISSUE_MESSAGE),
        )

    def _ndjson_chunks(self, size: int) -> Iterator[pl.DataFrame]:
        assert self.path is not None
        columns = self.columns
        with utf8_copy(self.path, self.encoding, cr_lines=self.cr_lines) as path, path.open("rb") as handle:
            batch: list[Record] = []
            row = 0
            for row, raw in enumerate(ndjson_lines(handle), 1):
                batch.append((row, *ndjson_record(raw)))
                if len(batch) >= size:
                    yield ndjson_frame(batch, columns, POSITION_COLUMNS)
                    batch = []
            if batch:
                yield ndjson_frame(batch, columns, POSITION_COLUMNS)


def read_source(
    source: Any,
    *,
    sheet: str | None = None,
    format: str | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> Source:
    """Open a source: a path (csv, tsv, parquet, xlsx/xls/ods, ndjson/jsonl) or a polars/pandas DataFrame,
    polars LazyFrame or pyarrow Table.

    ``format`` overrides the suffix; ``sheet`` names an Excel sheet (default: the first);
    ``delimiter`` and ``encoding`` override CSV detection. Raises :class:`InputError` for anything unreadable.
    """
    if isinstance(source, Source):
        return source
    if not isinstance(source, str | os.PathLike):
        if sheet is not None:
            msg = "sheet applies to Excel files only, not to an in-memory table"
            raise InputError(msg)
        return _from_memory(source)
    path = Path(source)
    fmt = _format_of(path, format)
    if sheet is not None and fmt not in _EXCEL:
        msg = f"--sheet applies to Excel files only; {path.name} is read as {fmt}"
        raise InputError(msg, path=path)
    if delimiter is not None and fmt not in ("csv", "tsv"):
        msg = f"--delimiter applies to CSV files only; {path.name} is read as {fmt}"
        raise InputError(msg, path=path)
    if delimiter is not None and len(delimiter) != 1:
        msg = f"the delimiter must be one character, not {delimiter!r}"
        raise InputError(msg, path=path)
    if encoding is not None:
        encoding = text_encoding(encoding, path)
    digest, size, bad, lines, head = _fingerprint(path, check_utf8=fmt in _TEXT)
    if encoding is not None:
        bad = None
    if size == 0:
        msg = f"{path.name} is empty (0 bytes): it has no header and no rows"
        raise InputError(msg, path=path)
    if fmt in _TEXT:
        _refuse_archives(path, head)
    common: dict[str, Any] = {"name": path.name, "format": fmt, "path": path.resolve(), "sha256": digest}
    common["size"] = size
    common["lines"] = lines[0]
    common["cr_lines"] = fmt in _TEXT and lines[1]
    if fmt in _EXCEL:
        return _open_excel(path, sheet, common)
    if fmt == "parquet":
        return _open_parquet(path, common)
    findings: list[Finding] = []
    if encoding is None:
        encoding = "utf-8"
        if bad is not None:
            encoding = guess_encoding(path, bad)
            findings.append(encoding_note(path.name, bad, encoding))
    if fmt == "ndjson":
        return _open_ndjson(path, encoding, findings, common)
    return _open_csv(path, fmt, delimiter, encoding, findings, common)


# -- opening -------------------------------------------------------------------------------------------------


def _format_of(path: Path, given: str | None) -> str:
    if path.is_dir():
        msg = f"{path} is a directory; give a CSV, Parquet, Excel or NDJSON file"
        raise InputError(msg, path=path)
    if not path.exists():
        msg = f"no such file: {path}"
        raise InputError(msg, path=path)
    if given is not None:
        fmt = FORMAT_NAMES.get(given.lower().removeprefix("."))
        if fmt is None:
            msg = f"unknown format {given!r}; use one of {', '.join(sorted(FORMAT_NAMES))}"
            raise InputError(msg, path=path)
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(FORMATS))
        msg = (
            f"cannot tell the format of {path.name} from its suffix; rename it to one of {known}, or name its "
            "format (--source-format csv, or format='csv' from Python)"
        )
        raise InputError(msg, path=path)
    return found


def _fingerprint(
    path: Path, *, check_utf8: bool
) -> tuple[str, int, tuple[int, int] | None, tuple[int, bool], bytes]:
    """sha256, size, the offset and value of the first byte that is not UTF-8 (when asked), the number of
    lines (newlines, plus one for a last line without one) and whether lines end with CR alone (a file without
    LF but with CR), and the file's first bytes. Refuses anything but a regular file."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")() if check_utf8 else None
    size = lines = returns = 0
    last = b"\n"
    head = b""
    bad: tuple[int, int] | None = None
    with open_input(path, what="source") as handle:
        try:
            while block := handle.read(BLOCK):
                head = head or block[:8]
                digest.update(block)
                if check_utf8:
                    lines += block.count(b"\n")
                    returns += block.count(b"\r")
                    last = block[-1:]
                if decoder is not None:
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError as exc:
                        bad = (size + exc.start, block[exc.start])
                        decoder = None
                size += len(block)
        except OSError as exc:
            msg = f"cannot read {path}: {describe_oserror(exc)}"
            raise InputError(msg, path=path) from None
    if decoder is not None and size:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            bad = (size - 1, 0)
    cr_lines = lines == 0 and returns > 0
    if cr_lines:
        lines, last = returns, (b"\n" if last == b"\r" else last)
    return digest.hexdigest(), size, bad, (lines + (last != b"\n"), cr_lines), head


#: Archives named like text sources: (magic bytes, what the file is, what to do).
_ARCHIVES: Final = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip)"),
    (
        b"PK\x03\x04",
        "a ZIP archive (a workbook?)",
        "give it its own suffix (.xlsx) or pass --source-format xlsx",
    ),
)


def _refuse_archives(path: Path, head: bytes) -> None:
    for magic, what, fix in _ARCHIVES:
        if head.startswith(magic):
            msg = f"{path.name} is {what}, not text; {fix}"
            raise InputError(msg, path=path)


def _open_csv(
    path: Path,
    fmt: str,
    delimiter: str | None,
    encoding: str,
    findings: list[Finding],
    common: dict[str, Any],
) -> Source:
    delimiter, header, header_lines = read_header(path, fmt, delimiter, encoding)
    columns = _column_names(header, path)
    return Source(
        columns=columns,
        delimiter=delimiter,
        encoding=encoding,
        header_lines=header_lines,
        findings=findings,
        **common,
    )


def _column_names(header: list[str], path: Path | None) -> list[str]:
    columns: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(header, 1):
        name = raw if raw.strip() else f"column_{i}"
        if name in seen:
            msg = (
                f"column {name!r} appears twice in the header (columns {seen[name]} and {i}); "
                "rename one so every column has its own name"
            )
            raise InputError(msg, path=path, line=1, column=name)
        if name in POSITION_COLUMNS:
            msg = f"column name {name!r} is reserved by batchkit; rename the column"
            raise InputError(msg, path=path, column=name)
        seen[name] = i
        columns.append(name)
    return columns


def _open_ndjson(path: Path, encoding: str, findings: list[Finding], common: dict[str, Any]) -> Source:
    columns: dict[str, None] = {}
    rows = 0
    with utf8_copy(path, encoding, cr_lines=common["cr_lines"]) as utf8, utf8.open("rb") as handle:
        for raw in ndjson_lines(handle):
            rows += 1
            record, _, _ = ndjson_record(raw)
            if record:
                columns.update(dict.fromkeys(record))
    names = _column_names(list(columns), path)
    return Source(columns=names, encoding=encoding, rows=rows, findings=findings, **common)


def _open_excel(path: Path, sheet: str | None, common: dict[str, Any]) -> Source:
    import fastexcel

    try:
        reader = fastexcel.read_excel(path)
    except Exception as exc:  # fastexcel raises its own hierarchy; any failure means "not a workbook"
        msg = f"cannot open {path.name} as a workbook: {first_line(exc)}"
        raise InputError(msg, path=path) from exc
    names: list[str] = list(reader.sheet_names)
    if not names:
        msg = f"{path.name} has no sheets"
        raise InputError(msg, path=path)
    if sheet is None:
        sheet = choose_sheet(path, names, _visibility(reader, names))
    elif sheet not in names:
        listed = ", ".join(repr(n) for n in names)
        msg = f"{path.name} has no sheet {sheet!r}; its sheets are {listed}"
        raise InputError(msg, path=path)
    try:
        frame = reader.load_sheet(sheet, dtypes="string").to_polars()
    except Exception as exc:
        msg = f"cannot read sheet {sheet!r} of {path.name}: {first_line(exc)}"
        raise InputError(msg, path=path) from exc
    columns = _column_names([str(c) for c in frame.columns], path)
    frame = frame.rename(dict(zip(frame.columns, columns, strict=True))).select(
        pl.col(c).cast(pl.String) for c in columns
    )
    formulas: dict[str, dict[int, str]] = {}
    for (row, index), formula in (formula_cells(path, sheet) or {}).items():
        if index < len(columns):
            formulas.setdefault(columns[index], {})[row] = formula
    return Source(columns=columns, sheet=sheet, rows=frame.height, frame=frame, formulas=formulas, **common)


def _visibility(reader: Any, names: list[str]) -> dict[str, bool]:
    """Which sheets are visible, for workbooks whose XML batchkit does not read itself (``.xls``, ``.ods``)."""
    if len(names) == 1:
        return {}
    shown: dict[str, bool] = {}
    for name in names:
        try:
            shown[name] = reader.load_sheet(name, n_rows=1).visible == "visible"
        except Exception:  # a sheet calamine cannot open is not the one to choose
            shown[name] = False
    return shown


def _open_parquet(path: Path, common: dict[str, Any]) -> Source:
    try:
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
        rows = lf.select(pl.len()).collect().item()
    except pl.exceptions.PolarsError as exc:
        msg = f"cannot read {path.name} as Parquet: {first_line(exc)}"
        raise InputError(msg, path=path) from exc
    _as_strings(schema, path.name)  # refuse nested columns up front
    columns = _column_names(list(schema), path)
    return Source(columns=columns, rows=int(rows), **common)


def _from_memory(obj: Any) -> Source:
    kind = f"{type(obj).__module__.split('.')[0]}.{type(obj).__name__}"
    if isinstance(obj, pl.LazyFrame):
        obj = obj.collect()
    if isinstance(obj, pl.DataFrame):
        frame = obj
    elif kind.startswith("pandas."):
        obj = index_as_columns(obj)
        try:
            frame = pl.from_pandas(obj.rename(columns=str))
        except Exception as exc:
            msg = f"cannot convert the pandas DataFrame: {first_line(exc)}"
            raise InputError(msg) from exc
    elif kind.startswith("pyarrow."):
        converted = pl.from_arrow(obj)
        if not isinstance(converted, pl.DataFrame):
            msg = "a pyarrow array is not a table; give a pyarrow.Table or RecordBatch"
            raise InputError(msg)
        frame = converted
    else:
        msg = (
            f"cannot read a {type(obj).__name__} as a source; give a file path, a polars or pandas "
            "DataFrame, a polars LazyFrame or a pyarrow Table"
        )
        raise InputError(msg)
    frame = frame.rename({c: str(c) for c in frame.columns})
    columns = _column_names(frame.columns, None)
    text = frame.select(_as_strings(frame.schema, kind))
    return Source(name=kind, format="dataframe", columns=columns, rows=frame.height, frame=text, typed=frame)


# -- helpers -------------------------------------------------------------------------------------------------


def _as_strings(schema: pl.Schema, name: str) -> list[pl.Expr]:
    exprs: list[pl.Expr] = []
    for column, dtype in schema.items():
        if dtype.is_nested():
            msg = (
                f"column {column!r} of {name} holds {dtype} values; batchkit reads flat columns "
                "(text, numbers, dates): flatten or drop it"
            )
            raise InputError(msg, column=column)
        exprs.append(pl.col(column) if dtype == pl.String else pl.col(column).cast(pl.String))
    return exprs


def _blank_rows(part: pl.DataFrame, columns: list[str], *, keep: bool) -> pl.DataFrame:
    """Drop the rows whose every value is empty or whitespace, or mark them (issue ``blank-row``)."""
    if not columns:
        return part.clear()
    first = pl.col(columns[0])
    if not part.select((first.is_null() | ~first.str.contains(r"\S")).any()).item():
        return part  # a blank row has a blank first column; none has
    blank = (
        pl.all_horizontal(pl.col(c).is_null() | ~pl.col(c).str.contains(r"\S") for c in columns)
        & pl.col(ISSUE).is_null()
    )
    if not keep:
        return part.filter(~blank)
    return part.with_columns(
        pl.when(blank).then(pl.lit("blank-row")).otherwise(pl.col(ISSUE)).alias(ISSUE),
        pl.when(blank)
        .then(pl.lit("the row is blank (every value empty); it was skipped"))
        .otherwise(pl.col(ISSUE_MESSAGE))
        .alias(ISSUE_MESSAGE),
    )


def _empty_frame(columns: list[str]) -> pl.DataFrame:
    schema: dict[str, Any] = dict.fromkeys(columns, pl.String)
    schema.update({ROW: pl.Int64, SOURCE_LINE: pl.Int64, ISSUE: pl.String, ISSUE_MESSAGE: pl.String})
    return pl.DataFrame(schema=schema)
