"""The text encoding of a source file that is not UTF-8: a guess, the warning that says so, a UTF-8 copy.

:func:`batchkit._sources.source.read_source` finds the first byte of a CSV, TSV or NDJSON file that is not UTF-8
while it fingerprints the file. :func:`guess_encoding` then names the encoding to read it with (UTF-16 from
its byte-order mark, else cp1252, or latin-1 when the file holds a byte cp1252 leaves unassigned),
:func:`encoding_note` is the ``source-encoding`` warning for the report, and :class:`utf8_copy` gives the
readers (polars reads UTF-8 only) the file itself when it is UTF-8, else a temporary UTF-8 copy.
"""

from __future__ import annotations

import codecs
import os
import tempfile
from pathlib import Path
from typing import Final

from .._errors import InputError
from .._report import Finding

__all__ = ["BLOCK", "encoding_note", "guess_encoding", "utf8_copy"]

#: Bytes read at a time when a source file is streamed.
BLOCK: Final = 1 << 20


def guess_encoding(path: Path, bad: tuple[int, int]) -> str:
    """The encoding to read a file with when it is not UTF-8 (``bad``: its first byte that is not)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    undefined = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")  # bytes cp1252 leaves unassigned
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            if any(b in block for b in undefined):
                return "latin-1"
    return "cp1252"


def encoding_note(name: str, bad: tuple[int, int], encoding: str) -> Finding:
    """The ``source-encoding`` warning: the file is not UTF-8, so it was read as ``encoding``."""
    offset, value = bad
    return Finding(
        code="source-encoding",
        severity="warning",
        source=name,
        message=(
            f"{name} is not UTF-8 (byte 0x{value:02x} at offset {offset}); it was read as {encoding}. "
            "Check accented text in the output, save the file as UTF-8, or pass --encoding"
        ),
    )


class utf8_copy:
    """The path itself for UTF-8 files; otherwise a temporary UTF-8 copy, removed on exit."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path = path
        self.encoding = encoding
        self.temp: Path | None = None

    def __enter__(self) -> Path:
        if self.encoding in ("utf-8", "utf-8-sig"):
            return self.path
        fd, name = tempfile.mkstemp(prefix="batchkit-", suffix=self.path.suffix)
        self.temp = Path(name)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                self.path.open("r", encoding=self.encoding, newline="") as handle,
            ):
                while text := handle.read(BLOCK):
                    out.write(text.encode("utf-8"))
        except (UnicodeDecodeError, UnicodeError) as exc:
            self.temp.unlink(missing_ok=True)
            msg = f"cannot decode {self.path.name} as {self.encoding}: {exc}; pass another --encoding"
            raise InputError(msg, path=self.path) from exc
        return self.temp

    def __exit__(self, *exc: object) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
