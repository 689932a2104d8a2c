"""CSV and TSV files: the header and its delimiter, and the records read block by block.

:func:`read_header` sniffs the delimiter (``, ; tab |``) when none is given and reads the header, which may
span several lines. :func:`csv_parts` reads the records in blocks that end between records (a newline
outside quotes, found by counting quotes), each parsed by polars on its own, so memory stays flat however
large the file is; with every part it gives the physical line each record starts on. A record polars
cannot parse is an :class:`InputError` naming the line, found again with the ``csv`` module.

Every value is read as a string. Fields beyond the header's width land in the :data:`EXTRA` column, so the
caller can report the row as ragged; a row with fewer fields gets nulls.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

import polars as pl

from .._errors import InputError
from .._files import open_input
from .encoding import BLOCK, utf8_copy

__all__ = ["EXTRA", "csv_parts", "first_line", "read_header", "show_delimiter"]

EXTRA: Final = "\x00extra"  # catches fields beyond the header's width
_SNIFF_BYTES: Final = 64 * 1024
#: The longest header read (a 10,000-column export is a few hundred KB).
MAX_HEADER_BYTES: Final = 16 << 20
#: The longest record read: longer means an unclosed quote, or not a CSV file at all.
MAX_RECORD_BYTES: Final = 256 << 20
_DELIMITERS: Final = ",;\t|"


def read_header(path: Path, fmt: str, delimiter: str | None, encoding: str) -> tuple[str, list[str], int]:
    """The delimiter (``delimiter``, or tab for TSV, or sniffed), the header's cells, and how many lines the
    header spans. The header is read to its end, however long (up to :data:`MAX_HEADER_BYTES`). Raises
    :class:`InputError` when the header is unreadable, blank or longer than that."""
    head, whole = _head(path)
    text = head.decode(encoding, errors="replace")
    if not whole:
        text = text[:-4]  # a character may be cut at the end of the sample
    text = text.removeprefix("\ufeff")
    if delimiter is None:
        delimiter = "\t" if fmt == "tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        msg = f"cannot read the header of {path.name}: {exc}"
        raise InputError(msg, path=path, line=1) from exc
    if not any(cell.strip() for cell in header):
        msg = f"{path.name} has no header row: its first line is blank; the first line must name the columns"
        raise InputError(msg, path=path, line=1)
    return delimiter, header, reader.line_num


def _head(path: Path) -> tuple[bytes, bool]:
    """The start of the file up to the end of its first record (a newline outside quotes), at least
    :data:`_SNIFF_BYTES` of it; and whether that is the whole file."""
    with open_input(path, what="source") as handle:
        head = handle.read(_SNIFF_BYTES)
        while not _first_record_ends(head):
            more = handle.read(_SNIFF_BYTES)
            if not more:
                return head, True
            head += more
            if len(head) > MAX_HEADER_BYTES:
                msg = (
                    f"the header of {path.name} is longer than {MAX_HEADER_BYTES:,} bytes (no end of line found); "
                    "is it a CSV file?"
                )
                raise InputError(msg, path=path, line=1)
        return head, len(head) < _SNIFF_BYTES


def _first_record_ends(data: bytes) -> bool:
    """Whether ``data`` holds a line ending outside quotes (``"`` counted from the start)."""
    quotes = 0
    start = 0
    while True:
        end = min((i for i in (data.find(b"\n", start), data.find(b"\r", start)) if i >= 0), default=-1)
        if end < 0:
            return False
        quotes += data.count(b'"', start, end)
        if quotes % 2 == 0:
            return True
        start = end + 1


def _sniff_delimiter(text: str) -> str:
    """The delimiter the header line uses (counted outside quotes), else what ``csv.Sniffer`` makes of the
    sample, else a comma. The header decides first: column names rarely hold a delimiter, while quoted cells
    below it may hold many (``"a;b"``), which can fool the sniffer."""
    header = _outside_quotes(text.split("\n", 1)[0])
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if counts[best]:
        return best
    try:
        return csv.Sniffer().sniff(text[:16_384], delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _outside_quotes(line: str) -> str:
    """``line`` without its double-quoted parts (``"a;b";c`` → ``;c``)."""
    out: list[str] = []
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            out.append(char)
    return "".join(out)


def csv_parts(
    path: Path,
    *,
    name: str,
    columns: list[str],
    delimiter: str,
    encoding: str,
    header_lines: int,
    size: int,
    cr_lines: bool = False,
) -> Iterator[tuple[pl.DataFrame, pl.Series]]:
    """The records in order, at most ``size`` at a time: each part holds ``columns`` plus :data:`EXTRA`,
    with the (1-based, physical) line each of its records starts on.

    Blocks of whole records (cut where the quote count is even), each parsed by polars on its own.
    Reading block by block keeps memory flat however large the file is; polars' own streaming
    reader holds on to the whole file.
    """
    schema: dict[str, Any] = dict.fromkeys(columns, pl.String)
    schema[EXTRA] = pl.String
    line = header_lines + 1
    with utf8_copy(path, encoding, cr_lines=cr_lines) as utf8, utf8.open("rb") as handle:
        for number, block in enumerate(_record_blocks(handle, max(BLOCK, size * 256), name, line)):
            try:
                frame = pl.scan_csv(
                    block,
                    has_header=False,
                    skip_rows=1 if number == 0 else 0,
                    separator=delimiter,
                    schema=schema,
                    missing_columns="insert",
                    truncate_ragged_lines=True,
                    encoding="utf8",
                    raise_if_empty=False,
                ).collect()
            except pl.exceptions.PolarsError as exc:
                first = 1 if number == 0 else line
                where, detail = _malformed(block, first, delimiter, exc)
                msg = (
                    f"{name}:{where}: malformed CSV ({detail}); quote values that hold "
                    f'{show_delimiter(delimiter)}, quotes or newlines, and double quotes inside them ("")'
                )
                raise InputError(msg, path=path, line=where) from exc
            if frame.width != len(schema):  # an empty block
                continue
            # values hold newlines only if the block has more newlines than records
            newlines = block.count(b"\n") - (header_lines if number == 0 else 0)
            simple = newlines <= frame.height
            for start in range(0, frame.height, size):
                part = frame.slice(start, size)
                if simple:
                    starts = pl.int_range(line, line + part.height, dtype=pl.Int64, eager=True)
                    line += part.height
                    yield part, starts
                    continue
                spans = part.select(
                    (
                        1
                        + pl.sum_horizontal(
                            pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in schema
                        )
                    ).alias("span")
                )["span"]
                starts = spans.cum_sum() - spans + line
                line += int(spans.sum())
                yield part, starts


def _malformed(block: bytes, first: int, delimiter: str, exc: Exception) -> tuple[int, str]:
    """The line (counted from ``first``) and nature of a CSV error polars found somewhere in ``block``."""
    text = block.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as error:
        return first + start - 1, str(error)
    stray = re.search(rf'[^\n\r{re.escape(delimiter)}"]"[^\n\r{re.escape(delimiter)}"]', text)
    if stray is not None:
        return first + text.count("\n", 0, stray.start()), "a quote inside a value that is not quoted"
    return first, first_line(exc)


def _record_blocks(
    handle: BinaryIO, size: int, name: str = "the file", first_line: int = 1
) -> Iterator[bytes]:
    """The file in blocks of about ``size`` bytes, each ending after a record (a newline outside quotes).

    A newline ends a record when the number of ``"`` before it is even (quoted quotes come in pairs). A record
    longer than :data:`MAX_RECORD_BYTES` is an :class:`InputError` (it is never held whole).
    """
    pending = b""
    lines = first_line
    while True:
        data = handle.read(size)
        buffer = pending + data if pending else data
        if not data:
            if buffer:
                yield buffer
            return
        cut = buffer.rfind(b"\n")
        quotes = buffer.count(b'"', 0, cut) if cut >= 0 else 0
        while cut >= 0 and quotes % 2:
            previous = buffer.rfind(b"\n", 0, cut)
            quotes -= buffer.count(b'"', max(previous, 0), cut)
            cut = previous
        if cut < 0:
            pending = buffer  # one record longer than the block: read on
            if len(pending) > MAX_RECORD_BYTES:
                msg = (
                    f"{name}:{lines}: a record longer than {MAX_RECORD_BYTES:,} bytes; a quote that is never "
                    'closed? Quote values that hold quotes or newlines, and double quotes inside them ("")'
                )
                raise InputError(msg, line=lines)
            continue
        lines += buffer.count(b"\n", 0, cut + 1)
        yield buffer[: cut + 1]
        pending = buffer[cut + 1 :]


def show_delimiter(delimiter: str) -> str:
    """The delimiter as a message names it: ``tabs``, ``commas``, ... or its repr."""
    return {"\t": "tabs", ",": "commas", ";": "semicolons", "|": "pipes"}.get(delimiter, repr(delimiter))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a reader's errors can run to many), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
