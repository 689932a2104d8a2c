"""NDJSON sources: one JSON object per line, every value kept as text.

:func:`ndjson_lines` reads the file a block at a time (a line longer than :data:`MAX_ROW_BYTES` is measured,
not held), :func:`ndjson_record` turns one line into its values as strings (or a row issue: ``invalid-json``,
``not-an-object``, ``line-too-large``), and :func:`ndjson_frame` a batch of them into a chunk. A value nested
deeper than orjson writes (it reads 1,024 levels, writes 254) is written back as text without recursion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, Final

import orjson
import polars as pl

from .._validate.reading import TooLong, blocks, split_lines

__all__ = ["MAX_ROW_BYTES", "Record", "ndjson_frame", "ndjson_lines", "ndjson_record"]

Record = tuple[int, dict[str, str | None] | None, str | None, str | None]

#: The longest NDJSON source line read; a longer one is an invalid row, measured without being held.
MAX_ROW_BYTES: Final = 64 << 20


def ndjson_lines(handle: BinaryIO) -> Iterator[bytes | TooLong]:
    """The lines of an NDJSON file, each longer than :data:`MAX_ROW_BYTES` as its length only."""
    for item in blocks(handle, MAX_ROW_BYTES):
        if isinstance(item, TooLong):
            yield item
        else:
            yield from split_lines(item)


def ndjson_record(raw: bytes | TooLong) -> tuple[dict[str, str | None] | None, str | None, str | None]:
    """One NDJSON line → (values as strings, issue code, issue message); (None, None, None) when blank."""
    if isinstance(raw, TooLong):
        return (
            None,
            "line-too-large",
            f"the line is {raw.length:,} bytes, more than the {MAX_ROW_BYTES:,} read",
        )
    if not raw.strip():
        return None, None, None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            return None, "invalid-json", "the line is nested more than 1,024 levels deep; flatten it"
        return None, "invalid-json", f"the line is not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return None, "not-an-object", "the line is JSON but not an object; each line must be one JSON object"
    return {str(k): _as_text(v) for k, v in obj.items()}, None, None


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper than it writes)
        return _deep_json(value)


def _deep_json(value: Any) -> str:
    """Compact JSON text of a value nested too deeply for orjson to write, without recursion."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, dict):
            parts: list[Any] = [_Raw("{")]
            for i, (key, inner) in enumerate(item.items()):
                parts += [_Raw(("," if i else "") + orjson.dumps(str(key)).decode() + ":"), inner]
            stack.extend(reversed([*parts, _Raw("}")]))
        elif isinstance(item, list):
            parts = [_Raw("[")]
            for i, inner in enumerate(item):
                parts += [_Raw(","), inner] if i else [inner]
            stack.extend(reversed([*parts, _Raw("]")]))
        else:
            out.append(orjson.dumps(item).decode())
    return "".join(out)


class _Raw:
    """JSON text already written (a bracket, a key), on the stack of :func:`_deep_json`."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def ndjson_frame(
    batch: list[Record], columns: list[str], positions: tuple[str, str, str, str]
) -> pl.DataFrame:
    """A chunk of NDJSON records with ``columns`` and the four position columns (named by ``positions``)."""
    row_name, line_name, issue_name, message_name = positions
    data: dict[str, list[Any]] = {c: [] for c in columns}
    rows: list[int] = []
    issues: list[str | None] = []
    messages: list[str | None] = []
    for row, record, issue, message in batch:
        values = record or {}
        if record is None and issue is None:
            continue  # a blank line
        for c in columns:
            data[c].append(values.get(c))
        rows.append(row)
        issues.append(issue)
        messages.append(message)
    schema: dict[str, Any] = dict.fromkeys(columns, pl.String)
    frame = pl.DataFrame(data, schema=schema)
    return frame.with_columns(
        pl.Series(row_name, rows, dtype=pl.Int64),
        pl.Series(line_name, rows, dtype=pl.Int64),
        pl.Series(issue_name, issues, dtype=pl.String),
        pl.Series(message_name, messages, dtype=pl.String),
    )
