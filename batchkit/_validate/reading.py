"""What the validator reads: the files a set of paths stands for, and each file as blocks of whole lines.

:func:`expand_paths` turns files and directories into the files to validate (a directory stands for its
``*.jsonl``). :func:`blocks` reads a file about a megabyte at a time and hands it over as blocks of whole
lines; a line longer than the caller can use is measured as a :class:`TooLong`, never held, so memory stays
within a block and a line however long (or endless) the input is.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from .._errors import InputError
from .._files import describe_oserror

__all__ = ["BLOCK", "TooLong", "blocks", "expand_paths", "split_lines"]

#: Bytes read from a file at a time.
BLOCK: Final = 1 << 20


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories as their ``*.jsonl`` in name order; a clear error for what does not exist.

    A file named twice (directly, or also through its directory) is validated once.
    """
    out: dict[str, Path] = {}
    for given in paths:
        path = Path(given)
        try:
            is_dir = os.stat(path).st_mode & 0o170000 == 0o040000
        except OSError as exc:
            what = "no such file or directory" if exc.errno == errno.ENOENT else describe_oserror(exc)
            msg = f"{what}: {path}"
            raise InputError(msg, path=path) from None
        if not is_dir:
            out.setdefault(os.path.realpath(path), path)
            continue
        for file in _jsonl_files(path):
            out.setdefault(os.path.realpath(file), file)
    return list(out.values())


def _jsonl_files(folder: Path) -> list[Path]:
    """A directory's ``*.jsonl`` entries that are not directories (a FIFO among them is refused later)."""
    try:
        with os.scandir(folder) as entries:
            found = sorted(
                Path(entry.path) for entry in entries if entry.name.endswith(".jsonl") and not entry.is_dir()
            )
    except OSError as exc:
        msg = f"cannot list {folder}: {describe_oserror(exc)}"
        raise InputError(msg, path=folder) from None
    if not found:
        msg = f"{folder} has no .jsonl files; give batch files or a directory that holds them"
        raise InputError(msg, path=folder)
    return found


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line longer than the validator holds: only its length (line ending included) is known."""

    length: int


def blocks(handle: BinaryIO, hold: int) -> Iterator[bytes | TooLong]:
    """A file as blocks of whole lines (about :data:`BLOCK` bytes each, the last perhaps without its newline),
    and each line longer than ``hold`` (and than a block) as a :class:`TooLong`, measured without being held."""
    pending: list[bytes] = []  # the start of an unfinished line
    held = 0
    skipping = -1  # the length so far of a line too long to hold, or -1
    while data := handle.read(BLOCK):
        start = 0
        if skipping >= 0:
            end = data.find(b"\n")
            if end < 0:
                skipping += len(data)
                continue
            yield TooLong(skipping + end + 1)
            skipping, start = -1, end + 1
        cut = data.rfind(b"\n", start)
        if cut >= 0 and pending:
            end = data.find(b"\n", start)
            if held + end + 1 - start > hold:
                yield TooLong(held + end + 1 - start)
                start = end + 1
            else:
                pending.append(data[start : end + 1])
                start = end + 1
                yield b"".join(pending)
            pending, held = [], 0
        if cut >= start:
            yield data[start : cut + 1]
            start = cut + 1
        if start < len(data):
            pending.append(data[start:])
            held += len(data) - start
            if held > hold:
                skipping, pending, held = held, [], 0
    if skipping >= 0:
        yield TooLong(skipping)
    elif pending:
        yield b"".join(pending)


def split_lines(block: bytes) -> list[bytes]:
    """A block's lines, each with its newline (split on LF only, like a file read line by line)."""
    return io.BytesIO(block).readlines()
