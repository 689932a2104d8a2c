"""Durable file system steps shared by every writer (shards, manifests, downloads): atomic writes, fsync,
sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

__all__ = ["atomic_write", "file_sha256", "make_durable", "sync_dir"]

_BLOCK: Final = 4 << 20


def sync_dir(folder: Path) -> None:
    """fsync a directory, so the renames into it survive a crash (a no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


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


def make_durable(paths: list[Path]) -> None:
    """Flush written files to disk: one ``sync`` for all of them where the platform has it."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for path in paths:  # pragma: no cover (platforms without os.sync)
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())
