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

__all__ = ["BLOCK", "encoding_note", "guess_encoding", "text_encoding", "utf8_copy"]

#: Bytes read at a time when a source file is streamed.
BLOCK: Final = 1 << 20


def text_encoding(name: str, path: Path | None = None) -> str:
    """The canonical name of a text encoding given by the user; :class:`InputError` for an unknown one, or one
    that does not decode bytes to text (``rot13``, ``base64``, ``zip``)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        kind = "unknown encoding" if info is None else "not a text encoding"
        msg = f"{kind} {name!r}; try utf-8, cp1252, latin-1 or utf-16"
        raise InputError(msg, path=path)
    return info.name


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
    """The path itself for UTF-8 files with LF (or CR LF) line endings; otherwise a temporary UTF-8 copy with
    LF line endings (``cr_lines``: the file ends its lines with CR alone), removed on exit."""

    def __init__(self, path: Path, encoding: str, *, cr_lines: bool = False) -> None:
        self.path = path
        self.encoding = encoding
        self.cr_lines = cr_lines
        self.temp: Path | None = None

    def __enter__(self) -> Path:
        if self.encoding in ("utf-8", "utf-8-sig") and not self.cr_lines:
            return self.path
        try:
            fd, name = tempfile.mkstemp(prefix="batchkit-", suffix=self.path.suffix)
        except OSError as exc:
            msg = f"cannot make a UTF-8 copy of {self.path.name} in the temporary directory: {exc.strerror or exc}"
            raise InputError(msg, path=self.path) from exc
        self.temp = Path(name)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                self.path.open("r", encoding=self.encoding, newline="") as handle,
            ):
                while text := handle.read(BLOCK):
                    out.write((text.replace("\r", "\n") if self.cr_lines else text).encode("utf-8"))
        except (UnicodeDecodeError, UnicodeError) as exc:
            self.temp.unlink(missing_ok=True)
            msg = f"cannot decode {self.path.name} as {self.encoding}: {exc}; pass another --encoding"
            raise InputError(msg, path=self.path) from exc
        except OSError as exc:
            self.temp.unlink(missing_ok=True)
            msg = f"cannot make a UTF-8 copy of {self.path.name} in the temporary directory: {exc.strerror or exc}"
            raise InputError(msg, path=self.path) from exc
        return self.temp

    def __exit__(self, *exc: object) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
