"""Where a build directory's submission stands, as one value: its shards, or that it was never submitted; and
how far its batches are (generations done of all, batches finished), for a progress bar and an ETA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._api.client import Client
from .._shard.builddir import JOURNAL, load_manifest
from .binding import read_binding
from .journal import ShardRecord
from .submit import status

__all__ = ["Overview", "WaitProgress", "overview", "wait_progress"]


@dataclass(frozen=True, slots=True)
class WaitProgress:
    """Generations finished (succeeded or failed) of all the submitted batches hold, and batches finished."""

    done: int
    total: int
    batches_done: int
    batches: int

    def to_dict(self) -> dict[str, int]:
        return {
            "done": self.done,
            "total": self.total,
            "batches_done": self.batches_done,
            "batches": self.batches,
        }


def wait_progress(shards: Sequence[ShardRecord]) -> WaitProgress:
    """How far the submitted shards' batches are (from the metrics the last refresh brought)."""
    sent = [s for s in shards if s.state == "submitted"]
    total = sum(s.metrics.get("total_generations") or s.records for s in sent)
    done = sum(s.metrics.get("success_count", 0) + s.metrics.get("failed_count", 0) for s in sent)
    return WaitProgress(done, total, sum(1 for s in sent if s.terminal), len(sent))


@dataclass(frozen=True, slots=True)
class Overview:
    """A build directory's submission: every shard as the journal knows it (none for a directory never
    submitted), with the number of shards and requests the manifest plans."""

    directory: Path
    shards: list[ShardRecord] = field(default_factory=list)
    planned_shards: int = 0
    planned_requests: int = 0

    @property
    def submitted(self) -> bool:
        """Whether any shard was sent (or may have been: a create whose answer was lost)."""
        return any(s.state in ("submitted", "intent") for s in self.shards)

    @property
    def unsent(self) -> list[str]:
        """Shards left to send (never sent, refused, or found not created)."""
        return [s.file for s in self.shards if s.state in ("pending", "refused")]

    @property
    def progress(self) -> WaitProgress:
        return wait_progress(self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "submitted": self.submitted,
            "planned_shards": self.planned_shards,
            "planned_requests": self.planned_requests,
            "progress": self.progress.to_dict(),
            "shards": [s.to_dict() for s in self.shards],
        }


def overview(directory: str | Path, *, client: Client | None = None, offline: bool = False) -> Overview:
    """The directory's submission, fresh from the API unless ``offline`` (see :func:`batchkit.status`).

    A directory never submitted (no journal, no ``submission.json``) is an :class:`Overview` without shards,
    not an error; one whose journal was lost after it was submitted is refused as :func:`status` refuses it.
    """
    folder = Path(directory)
    manifest = load_manifest(folder)
    planned = (len(manifest.shards), manifest.counts.requests)
    if not (folder / JOURNAL).exists() and read_binding(folder) is None:
        return Overview(folder, [], *planned)
    return Overview(folder, status(folder, client=client, offline=offline), *planned)
