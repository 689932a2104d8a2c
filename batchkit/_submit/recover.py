"""``batchkit recover DIR``: rebuild a submitted directory's lost, emptied or foreign journal from the server.

Nothing is sent. The broken journal (if any) is moved aside as ``journal.sqlite.broken-<time>``; a new one,
with the directory's own journal id, lists every shard of the manifest as *uncertain*: a create may have been
sent for it any time since the directory was first submitted (``submission.json``; else since the build).
Then each shard is settled as :mod:`batchkit._submit.reconcile` settles a lost create, by content:

* a batch this machine's registry recorded for this very journal and shard is its own again;
* otherwise the batches created since then, with the shard's record count and no other journal's, are its
  candidates; finished ones are judged by their outputs (a file already in ``results/`` is read, not fetched),
  one running candidate is adopted provisionally, several keep the shard uncertain;
* a shard with no candidate stays uncertain until a create can no longer be in flight, so the next
  ``batchkit submit`` sends only what certainly never made a batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .._api.client import Client, given_or_default, require_api_key
from .._errors import APIError, JournalError, NotFoundError
from .._shard.builddir import JOURNAL, MANIFEST, load_manifest
from .binding import Binding, check_server, open_journal, read_binding, server_identity, write_binding
from .journal import Journal, ShardRecord
from .lock import directory_lock
from .reconcile import ReconcilePolicy, Reconciler, Settled
from .registry import CERTAIN, Registry

__all__ = ["RecoverResult", "recover"]

log = logging.getLogger("batchkit")


@dataclass(slots=True)
class RecoverResult:
    """What ``recover`` found for every shard."""

    directory: Path
    #: Where the broken journal was moved (None when it was missing).
    moved_aside: Path | None
    #: Per shard file: ``registry``, ``verified``, ``adopted``, ``candidates`` or ``in-flight``.
    outcomes: dict[str, str] = field(default_factory=dict)
    shards: list[ShardRecord] = field(default_factory=list)


def _healthy(folder: Path) -> bool:
    """The directory's own journal opens and holds something."""
    try:
        with open_journal(folder) as journal:
            return not journal.is_empty()
    except JournalError:
        return False


def _move_aside(folder: Path) -> Path | None:
    path = folder / JOURNAL
    if not path.exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{JOURNAL}.broken-{stamp}")
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        extra = Path(f"{path}{suffix}")
        if extra.exists():
            extra.replace(Path(f"{target}{suffix}"))
    log.warning("moved the broken journal of %s aside to %s", folder, target)
    return target


def recover(
    directory: str | Path, *, client: Client | None = None, policy: ReconcilePolicy | None = None
) -> RecoverResult:
    """Rebuild ``DIR/journal.sqlite`` from the server by content (see the module docstring); nothing is sent.

    Refuses a directory whose journal is intact (nothing to recover).
    """
    folder = Path(directory)
    manifest = load_manifest(folder)
    rules = policy or ReconcilePolicy()
    with given_or_default(client) as api, directory_lock(folder, "batchkit recover"):
        require_api_key(api)
        binding = read_binding(folder)
        if binding is not None:
            binding = check_server(folder, binding, api)
        if _healthy(folder):
            msg = f"{folder}'s journal is intact and its own; there is nothing to recover (`batchkit status {folder}`)"
            raise JournalError(msg)
        moved = _move_aside(folder)
        with Journal.open(folder, create=True) as journal:
            if (
                binding is None
            ):  # the record is gone too: this machine's registry may still know the journal's id
                kind, server = server_identity(api, probe=True)
                since_text = datetime.fromtimestamp((folder / MANIFEST).stat().st_mtime, UTC).isoformat()
                journal_id = Registry().journal_of(folder) or journal.journal_id
                binding = Binding(journal_id, server, kind, since_text.replace("+00:00", "Z"))
            journal.set_meta("journal_id", binding.journal_id)
            journal.set_meta("server", binding.kind)
            journal.set_meta("base_url", binding.server)
            write_binding(folder, binding)
            journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in manifest.shards])
            since = binding.since_at or datetime.now(UTC)
            now = rules.now()
            for shard in journal.shards():
                journal.record_recovered_intent(
                    shard.file, since=since, until=now, reason="journal rebuilt by `batchkit recover`"
                )
            ctx = Reconciler(folder, journal, api, binding.server, rules)
            own = _own_entries(ctx)
            result = RecoverResult(folder, moved)
            for shard in journal.shards():
                result.outcomes[shard.file] = _recover_one(
                    ctx, journal.shard(shard.file), own.get(shard.file, {})
                )
            result.shards = journal.shards()
            return result


def _recover_one(ctx: Reconciler, shard: ShardRecord, own: dict[str, list[str]]) -> str:
    """The shard's own batch from the registry, else settled by content like any lost create."""
    journal = ctx.journal
    if shard.state != "intent":
        return shard.state
    for batch_id, entries in own.items():
        try:
            batch = ctx.api.batches.get(batch_id)
        except NotFoundError:
            continue
        journal.record_submitted(
            shard.file,
            batch.id,
            status=batch.status,
            metrics=batch.metrics.model_dump(),
            how="recovered",
            output_url=batch.output_url,
            created_at=batch.created_at,
            verified=any(e in CERTAIN for e in entries),
        )
        return "registry"
    try:
        settled: Settled = ctx.settle(shard, confirm=False)
    except APIError as exc:
        msg = f"{shard.file}: cannot ask the server while recovering ({exc}); run `batchkit recover` again"
        raise JournalError(msg, shard=shard.file) from exc
    return settled


def _own_entries(ctx: Reconciler) -> dict[str, dict[str, list[str]]]:
    """Per shard file: the batch ids the registry recorded for this journal (with their certainty)."""
    listed = ctx.api.batches.list()
    found = Registry().entries((b.id for b in listed), base_url=ctx.server)
    mine: dict[str, dict[str, list[str]]] = {}
    for batch_id, entries in found.items():
        for _, journal_id, _, file, certainty in entries:
            if journal_id == ctx.journal.journal_id:
                mine.setdefault(file, {}).setdefault(batch_id, []).append(certainty)
    return mine
