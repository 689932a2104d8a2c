"""Durable file system steps shared by every writer (shards, manifests, downloads)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["sync_dir"]


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
