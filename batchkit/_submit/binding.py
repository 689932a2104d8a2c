"""A submitted directory's identity: which API it was submitted to, and which journal is its own.

``DIR/submission.json`` is written (atomically) before the first create is recorded, and never again except
by ``--rebind`` and ``recover``::

    {"format": "batchkit-submission/1", "journal_id": "5f3a9c21d0e4b7a1", "server": "https://api.sync.so",
     "kind": "api", "since": "2026-11-26T10:00:00.000Z", "rebinds": []}

From then on, :func:`open_journal` refuses, with the way out (``batchkit recover DIR``): a missing journal, an
emptied one, and one whose id is not the marker's (copied from elsewhere). It also refuses to talk to another
server than the one recorded: the sandbox and the real API never mix, and a move between real hosts needs
``rebind=True`` (``--rebind``). A sandbox is known by the account id it announces (``x-batchkit-sandbox``),
so a sandbox restarted from its state file on another port is the same server; any other loopback URL is
known by its address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from .._api.client import Client
from .._errors import JournalError
from .._files import atomic_write
from .._shard.builddir import JOURNAL, SUBMISSION
from .journal import Journal
from .registry import Registry

__all__ = [
    "Binding",
    "bind",
    "check_server",
    "open_journal",
    "read_binding",
    "server_identity",
]

log = logging.getLogger("batchkit")

_FORMAT: Final = "batchkit-submission/1"
Kind = Literal["api", "sandbox"]


@dataclass(frozen=True, slots=True)
class Binding:
    """What ``submission.json`` says."""

    journal_id: str
    server: str
    kind: Kind
    since: str
    rebinds: list[dict[str, str]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        data = {
            "format": _FORMAT,
            "journal_id": self.journal_id,
            "server": self.server,
            "kind": self.kind,
            "since": self.since,
            "rebinds": self.rebinds,
        }
        return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"

    @property
    def since_at(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.since.replace("Z", "+00:00"))
        except ValueError:
            return None


def _describe(kind: str, server: str) -> str:
    return f"the sandbox ({server.removeprefix('sandbox:')})" if kind == "sandbox" else server


def read_binding(directory: str | Path) -> Binding | None:
    """``DIR/submission.json``, or None for a directory never submitted (a damaged file is an error)."""
    path = Path(directory) / SUBMISSION
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise JournalError(msg) from exc
    try:
        data: Any = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            msg = f"not {_FORMAT}"
            raise ValueError(msg)
        kind = data["kind"]
        if kind not in ("api", "sandbox"):
            msg = f"kind {kind!r}"
            raise ValueError(msg)
        rebinds = data.get("rebinds") or []
        return Binding(str(data["journal_id"]), str(data["server"]), kind, str(data["since"]), list(rebinds))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        msg = (
            f"{path} is damaged ({exc}): it records which API and journal this directory belongs to. "
            "Restore it, or run `batchkit recover DIR` to rebuild the journal and the record from the server"
        )
        raise JournalError(msg) from None


def write_binding(directory: str | Path, binding: Binding) -> None:
    atomic_write(Path(directory) / SUBMISSION, binding.to_bytes())


def server_identity(client: Client, *, probe: bool = False) -> tuple[Kind, str]:
    """Which server ``client`` talks to: a sandbox by the account it announced (or its loopback address),
    the real API by its base URL. ``probe`` asks a loopback server once (a batch list) if it has not said yet."""
    if probe and client.is_loopback and client.sandbox_id is None:
        client.batches.list(created_after=datetime.now(UTC))  # a sandbox says who it is in every answer
    announced = client.sandbox_id
    if announced:
        return "sandbox", f"sandbox:{announced}"
    if client.is_loopback:
        return "sandbox", f"sandbox:{client.base_url}"
    return "api", client.base_url


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_server(directory: Path, binding: Binding, client: Client, *, rebind: bool = False) -> Binding:
    """Refuse a server other than the bound one (``rebind`` allows a move between real hosts)."""
    kind, server = server_identity(client, probe=binding.kind == "sandbox")
    if server == binding.server:
        return binding
    if kind != binding.kind:
        msg = (
            f"{directory} was submitted to {_describe(binding.kind, binding.server)}; it cannot go on against "
            f"{_describe(kind, server)}: the sandbox and the real API never mix. Build into another directory"
        )
        raise JournalError(msg)
    if not rebind:
        msg = (
            f"{directory} was submitted to {_describe(binding.kind, binding.server)}, not "
            f"{_describe(kind, server)}. If the same account is now reached there, run "
            f"`batchkit submit {directory} --rebind` once; otherwise use the base URL it was submitted to"
        )
        raise JournalError(msg)
    log.warning("rebinding %s from %s to %s", directory, binding.server, server)
    moved = Binding(
        binding.journal_id,
        server,
        kind,
        binding.since,
        [*binding.rebinds, {"from": binding.server, "to": server, "at": _iso_now()}],
    )
    write_binding(directory, moved)
    return moved


def bind(directory: Path, journal: Journal, client: Client) -> Binding:
    """Record (before the first create is recorded) that ``directory`` is submitted to ``client``'s server."""
    found = read_binding(directory)
    if found is not None:
        return check_server(directory, found, client)
    kind, server = server_identity(client, probe=True)
    earlier = journal.meta("server")
    if earlier in ("api", "sandbox") and earlier != kind:
        msg = (
            f"{directory} was submitted to the {'sandbox' if earlier == 'sandbox' else 'real API'}; it cannot go on "
            f"against {_describe(kind, server)}: the sandbox and the real API never mix. Build into another directory"
        )
        raise JournalError(msg)
    binding = Binding(journal.journal_id, server, kind, _iso_now())
    write_binding(directory, binding)
    journal.set_meta("server", kind)
    journal.set_meta("base_url", server)
    log.info("%s is now bound to %s (journal %s)", directory, server, binding.journal_id)
    return binding


def _recover_hint(directory: Path) -> str:
    return (
        f"run `batchkit recover {directory}` to rebuild it from the server (batches are matched by content)"
    )


def open_journal(
    directory: str | Path, *, client: Client | None = None, create: bool = False, rebind: bool = False
) -> Journal:
    """The directory's own journal, checked against ``submission.json`` (and ``client``'s server, if given).

    ``create`` allows making a journal for a directory never submitted. A submitted directory whose journal is
    missing, empty or another's is refused with the way out (``batchkit recover DIR``).
    """
    folder = Path(directory)
    binding = read_binding(folder)
    path = folder / JOURNAL
    if binding is not None and not path.exists():
        msg = (
            f"{folder} was submitted to {_describe(binding.kind, binding.server)}, but its journal "
            f"({JOURNAL}) is missing, so nothing tells which batches are its own; {_recover_hint(folder)}"
        )
        raise JournalError(msg)
    journal = Journal.open(folder, create=create or binding is not None)
    try:
        if binding is not None:
            if journal.is_empty():
                msg = (
                    f"{folder} was submitted to {_describe(binding.kind, binding.server)}, but its journal "
                    f"({JOURNAL}) is empty; {_recover_hint(folder)}"
                )
                raise JournalError(msg)
            if journal.journal_id != binding.journal_id:
                msg = (
                    f"{path} is not this directory's journal (journal {journal.journal_id}, the directory's is "
                    f"{binding.journal_id}): was it copied from elsewhere? Put the right one back, or "
                    f"{_recover_hint(folder)}"
                )
                raise JournalError(msg)
        else:
            binding = _legacy_binding(folder, journal)
            if binding is None and create and journal.is_empty() and Registry().recorded_for(folder):
                msg = (
                    f"{folder} has no journal and no {SUBMISSION}, but this machine recorded batches "
                    f"submitted from it: they were deleted. Nothing was sent; {_recover_hint(folder)}"
                )
                raise JournalError(msg)
        if client is not None and binding is not None:
            check_server(folder, binding, client, rebind=rebind)
    except BaseException:
        journal.close()
        raise
    return journal


def _legacy_binding(folder: Path, journal: Journal) -> Binding | None:
    """A journal submitted before ``submission.json`` existed (or whose marker was lost): write the marker."""
    server = journal.meta("base_url")
    kind = journal.meta("server")
    sent = any(s.state in ("intent", "submitted") for s in journal.shards())
    if not sent or kind not in ("api", "sandbox"):
        return None
    binding = Binding(
        journal.journal_id, server or f"{kind}:unknown", "sandbox" if kind == "sandbox" else "api", _iso_now()
    )
    if server is None:
        return None  # only the kind is known: checked by kind when the next create is bound
    write_binding(folder, binding)
    return binding
