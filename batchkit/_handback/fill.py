"""``results DIR --into FILLED``: a copy of the build's own source file with the result columns added.

The user's file comes back as they sent it: for a workbook (``.xlsx``, ``.xlsm``, with openpyxl) every sheet,
every cell, style and formula the user wrote is kept, and the result columns are appended to the right of
the mapped sheet's header; for a CSV or TSV every record is copied as it was read (same delimiter, same line
endings) with the result cells appended. Row ``n`` of the results goes on data row ``n`` of the file; before
anything is written, each row's first mapped cell is compared with the value the build read from it, so a
file that no longer lines up with the build is refused instead of filled in the wrong places.

Values are formula-safe as in every export (a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR
gets a leading apostrophe). The copy is written to a temporary file beside ``FILLED`` and renamed into place;
the source file itself is never written.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import polars as pl

from .._errors import InputError, ResultsError, install_hint
from .._files import save
from .._mapping.mapping import load_mapping
from .._results.export import neutralise_formulas
from .._results.join import source_columns
from .._results.results import collect_results
from .._shard.builddir import Manifest, load_manifest
from .._sources.source import read_source
from .deliver import with_files
from .wide import WIDE_FIELDS, by_source_row

__all__ = ["FILL_FORMATS", "fill_into", "fill_results", "fill_source"]

#: Source formats that can be filled, and the suffixes their copy may have.
FILL_FORMATS: Final = {"csv": (".csv", ".txt"), "tsv": (".tsv", ".tab", ".txt"), "xlsx": (".xlsx", ".xlsm")}
_EXTRA_HINT: Final = install_hint("excel")


def fill_results(
    directory: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    follow: bool = True,
) -> Path:
    """What ``results DIR --into TARGET`` writes: a copy of the build's source with its results added, from
    what is already downloaded (``source``: where the source file is now, if it moved)."""
    folder = Path(directory)
    frame = with_files(collect_results(folder, download=False, follow=follow, source=source).frame, folder)
    return fill_into(frame, load_manifest(folder), target, source=source)


def fill_into(
    frame: pl.DataFrame,
    manifest: Manifest,
    target: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """``results --into``: the joined results ``frame`` written into a copy of the build's source at ``target``.

    A build with ``[each]`` gets the wide columns (``outcome_<v>`` ...); one without gets ``outcome``,
    ``output_url``, ``error_code`` and ``error_message`` (and ``file`` once fetched) on each row.
    """
    own = source_columns(frame, manifest)
    if manifest.each:
        rows = by_source_row(frame, manifest)
        added: list[str] = [c for c in rows.columns if c not in (*own, "source", "row")]
    else:
        fields: list[str] = [f for f in WIDE_FIELDS if f in frame.columns]
        units = manifest.scan_requests().select("request_id", "source", "row").collect()
        rows = frame.join(units, on="request_id", how="left", maintain_order="left").select(
            "source", "row", *own, *fields
        )
        added = fields
    rows = rows.filter(pl.col("source") == 0).rename({"row": "_row"}).drop("source")
    return fill_source(manifest, rows, target, added=added, source=source)


def fill_source(
    manifest: Manifest,
    rows: pl.DataFrame,
    target: str | os.PathLike[str],
    *,
    added: Sequence[str],
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Write to ``target`` a copy of the build's source with the ``added`` columns of ``rows`` appended.

    ``rows`` has one row per source row, in source order, with ``_row`` (the 1-based data row) and the
    source's own columns as the build read them (text), plus the ``added`` columns. ``source`` is where the
    source file is now, when it moved.
    """
    if len(manifest.sources) != 1:
        msg = (
            "--into fills one source file, and this build has several (it includes held requests); use --out"
        )
        raise InputError(msg)
    info = manifest.sources[0]
    path = Path(source) if source is not None else Path(info.path) if info.path else None
    if path is None or info.format not in FILL_FORMATS:
        kind = "was built from memory" if path is None else f"is {info.format}"
        msg = f"the build's source {info.name} {kind}; --into fills CSV, TSV and .xlsx sources: use --out instead"
        raise InputError(msg)
    out = Path(target)
    if out.suffix.lower() not in FILL_FORMATS[info.format]:
        allowed = " or ".join(FILL_FORMATS[info.format])
        msg = (
            f"--into {out.name}: the source is {info.format}, so its filled copy is {allowed} (or use --out)"
        )
        raise InputError(msg, path=out)
    if not path.is_file():
        msg = f"the build's source {path} is gone; pass --source with where it is now"
        raise ResultsError(msg)
    if out.exists() and out.resolve() == path.resolve():
        msg = f"--into {out} is the source file itself; give another path, the source is never overwritten"
        raise InputError(msg, path=out)
    safe = neutralise_formulas(rows.select(pl.col(c).cast(pl.String) for c in added))
    cells = safe.rows()
    check = _first_mapped(manifest, rows.drop(added))
    if info.format == "xlsx":
        data = _fill_workbook(path, info.sheet, rows, added, cells, check)
    else:
        data = _fill_csv(path, rows, added, cells, check)
    save(out, data)
    return out


def _first_mapped(manifest: Manifest, rows: pl.DataFrame) -> str:
    """The column that lines the file up with the build: the first source column the mapping reads."""
    used = set(load_mapping(manifest.mapping).columns_used()) if manifest.mapping is not None else set()
    present = [c for c in rows.columns if c != "_row"]
    return next((c for c in present if c in used), present[0])


def _expected(rows: pl.DataFrame, column: str) -> dict[int, str | None]:
    return dict(rows.select(pl.col("_row"), pl.col(column).cast(pl.String)).iter_rows())


def _misaligned(path: Path, row: int, column: str, found: Any, wanted: Any) -> ResultsError:
    msg = (
        f"{path.name} data row {row}, column {column}: the file holds {found!r} where the build read "
        f"{wanted!r}; it is not the file the build read (or it changed), so nothing was written. "
        "Point --source at the file the build was made from"
    )
    return ResultsError(msg)


def _fill_csv(
    path: Path, rows: pl.DataFrame, added: Sequence[str], cells: list[tuple[Any, ...]], check: str
) -> bytes:
    """Every record's own text, unchanged, with the result cells appended before its line ending."""
    source = read_source(path)
    delimiter = source.delimiter or ","
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        text = raw.decode(source.encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        msg = f"{path.name} is not {source.encoding} any more ({exc.reason} at byte {exc.start}); use --out"
        raise ResultsError(msg) from None
    by_row = dict(zip(rows.get_column("_row").to_list(), cells, strict=True))
    wanted = _expected(rows, check)
    blank: tuple[Any, ...] = ("",) * len(added)
    parts: list[str] = []
    position = 0
    number = -1  # the header is record 0, the first data row 1
    for record, original in _records(text, delimiter):
        if not record:  # an empty line is no row, for the build either: copied as it is
            parts.append(original)
            continue
        number += 1
        body, ending = _split_ending(original)
        if number == 0:
            position = record.index(check) if check in record else 0
            parts.append(body + delimiter + _cells(added, delimiter) + ending)
            continue
        if number in wanted and position < len(record) and (wanted[number] or "") != record[position]:
            raise _misaligned(path, number, check, record[position], wanted[number])
        parts.append(body + delimiter + _cells(by_row.get(number, blank), delimiter) + ending)
    return (b"\xef\xbb\xbf" if bom else b"") + "".join(parts).encode(source.encoding)


def _records(text: str, delimiter: str) -> Iterator[tuple[list[str], str]]:
    """Each record with its own text as it stands in the file (the lines it spans, line ending included);
    an empty line comes as an empty record."""
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    for record in csv.reader(lines(), delimiter=delimiter):
        original = "".join(consumed)
        consumed.clear()
        yield record, original


def _split_ending(text: str) -> tuple[str, str]:
    for ending in ("\r\n", "\n", "\r"):
        if text.endswith(ending):
            return text[: -len(ending)], ending
    return text, ""


def _cells(values: Sequence[Any], delimiter: str) -> str:
    """Cells as CSV text; a cell holding a line break is quoted whatever the file's line endings are."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(
        ["" if v is None else v for v in values]
    )
    return buffer.getvalue()[:-2]


def _fill_workbook(
    path: Path,
    sheet: str | None,
    rows: pl.DataFrame,
    added: Sequence[str],
    cells: list[tuple[Any, ...]],
    check: str,
) -> bytes:
    try:
        import openpyxl
    except ImportError as exc:
        msg = f"filling an Excel source needs openpyxl: {_EXTRA_HINT}"
        raise InputError(msg) from exc
    keep_vba = path.suffix.lower() == ".xlsm"
    try:
        book = openpyxl.load_workbook(path, keep_vba=keep_vba)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        msg = f"cannot open {path.name} as a workbook: {exc}"
        raise ResultsError(msg) from exc
    if sheet is not None and sheet not in book.sheetnames:
        msg = f"{path.name} has no sheet {sheet!r} any more (it has {', '.join(book.sheetnames)}); use --out"
        raise ResultsError(msg)
    ws = book[sheet] if sheet is not None else book.worksheets[0]
    header_row, columns = _find_header(ws, [c for c in rows.columns if c != "_row" and c not in added], path)
    first_free = max(columns.values()) + 1
    for offset, name in enumerate(added):
        ws.cell(row=header_row, column=first_free + offset, value=name)
    wanted = _expected(rows, check)
    position = columns.get(check)
    for number, values in zip(rows.get_column("_row").to_list(), cells, strict=True):
        target_row = header_row + number
        if position is not None:
            found = ws.cell(row=target_row, column=position).value
            expected = wanted.get(number)
            if isinstance(found, str) and expected is not None and found != expected:
                raise _misaligned(path, number, check, found, expected)
        for offset, value in enumerate(values):
            ws.cell(row=target_row, column=first_free + offset, value=value)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _find_header(ws: Any, names: Sequence[str], path: Path) -> tuple[int, dict[str, int]]:
    """The row holding the source's column names, and the column number of each name found there."""
    wanted = set(names)
    for row in ws.iter_rows(min_row=1, max_row=min(ws.max_row, 50)):
        found = {str(cell.value).strip(): cell.column for cell in row if cell.value is not None}
        if wanted and wanted <= set(found):
            return row[0].row, found
    msg = f"{path.name}: no header row with the build's column names ({', '.join(list(names)[:4])} ...)"
    raise ResultsError(msg)
