"""``batchkit inspect BATCH_ID``: what a batch on the server holds, and whose it is.

Shows the batch's ``created_at``, status and counts, the first request_ids of its output (read into a
temporary file, never into a build directory), which journals on this machine recorded it (the registry),
and, given a build directory, which of its shards the output's request_ids belong to. Nothing is written.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._api.client import Client, require_api_key
from .._errors import APIError, ResultsError
from .._shard.builddir import load_manifest
from .._wire.responses import Batch
from .binding import server_identity
from .reconcile import judge, output_request_ids, shard_request_ids
from .registry import Registry

__all__ = ["BatchInspection", "inspect_batch"]

SHOWN = 10


@dataclass(slots=True)
class BatchInspection:
    """A batch, what its output names, and whose it is."""

    batch: Batch
    #: Request ids its output names, in file order (the first ``SHOWN``), and how many it names in all.
    first_request_ids: list[str] = field(default_factory=list)
    output_lines: int | None = None
    #: Why the output could not be read (not finished, no outputUrl, a failed download), else None.
    output_note: str | None = None
    #: ``(directory, shard, certainty)`` of every journal on this machine that recorded the batch.
    known_to: list[tuple[str, str, str]] = field(default_factory=list)
    #: The shard of the given directory whose request_ids the output carries (None: none of them).
    matches: str | None = None
    #: Per shard of the given directory: the verdict and why.
    verdicts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        b = self.batch
        return {
            "id": b.id,
            "created_at": b.created_at.isoformat() if b.created_at else None,
            "status": b.status,
            "metrics": b.metrics.model_dump(),
            "output_url_set": bool(b.output_url),
            "output_lines": self.output_lines,
            "first_request_ids": self.first_request_ids,
            "output_note": self.output_note,
            "known_to": [{"directory": d, "shard": s, "certainty": c} for d, s, c in self.known_to],
            "matches": self.matches,
            "verdicts": self.verdicts,
        }


def _first_ids(path: Path) -> tuple[list[str], int]:
    import orjson

    ids: list[str] = []
    lines = 0
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        lines += 1
        try:
            value = orjson.loads(raw).get("request_id")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, str) and len(ids) < SHOWN:
            ids.append(value)
    return ids, lines


def inspect_batch(
    batch_id: str, *, client: Client | None = None, directory: str | Path | None = None
) -> BatchInspection:
    """Look at one batch (see the module docstring); ``directory`` says which of its shards it matches."""
    api = client if client is not None else Client()
    require_api_key(api)
    batch = api.batches.get(batch_id)
    found = BatchInspection(batch)
    server = server_identity(api, probe=True)[1]
    for _, _, where, file, certainty in Registry().entries([batch.id], base_url=server).get(batch.id, []):
        found.known_to.append((where, file, certainty))
    if not batch.is_terminal or not batch.output_url:
        found.output_note = (
            f"no output yet (status {batch.status})" if not batch.is_terminal else "no outputUrl yet"
        )
        return found
    with tempfile.TemporaryDirectory(prefix="batchkit-inspect-") as scratch:
        path = Path(scratch) / "output.jsonl"
        try:
            api.batches.download(batch.output_url, path)
        except (APIError, ResultsError) as exc:
            found.output_note = f"cannot download its output: {exc}"
            return found
        found.first_request_ids, found.output_lines = _first_ids(path)
        named = output_request_ids(path)
    if directory is not None:
        folder = Path(directory)
        for shard in load_manifest(folder).shards:
            verdict, why = judge(named, shard_request_ids(folder / shard.file))
            found.verdicts[shard.file] = f"{verdict}: {why}"
            if verdict == "ours":
                found.matches = shard.file
    return found
