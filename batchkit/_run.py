"""``run``: the whole pipeline in one call, resumable by calling it again.

build → validate → shard → submit (journaled) → wait (with progress) → results → export. Every stage is
skipped when its work is already done: an unchanged build is reused, submitted shards are not sent again,
finished downloads are not fetched again. With ``sandbox=True`` it starts the local sandbox itself and needs
no API key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from ._api.backoff import PollPolicy
from ._api.client import Client
from ._build.build import build
from ._errors import InputError, JournalError
from ._mapping.mapping import Mapping, load_mapping
from ._results.results import Results, collect_results
from ._shard.builddir import JOURNAL, MANIFEST, RESULTS_DIR, RESULTS_TABLE, Manifest, load_manifest
from ._sources.source import read_source
from ._submit.journal import Journal
from ._submit.submit import OnEvent, OnProgress, SubmitResult, submit, wait
from ._wire.limits import DEFAULT_LIMITS, Limits

__all__ = ["RunResult", "Stage", "run", "run_pipeline"]

log = logging.getLogger("batchkit")

Stage = Literal["build", "reuse", "submit", "dry-run", "wait", "results"]
OnStage = Callable[[Stage, str], None]

#: Poll fast against the sandbox: a demo of a few shards finishes in seconds.
SANDBOX_POLL = PollPolicy(initial=0.2, factor=1.5, maximum=1.0)
SANDBOX_KEY = "sandbox"


@dataclass(slots=True)
class RunResult:
    """What a run did: its build, its submission (or dry-run verdicts) and the joined results."""

    directory: Path
    manifest: Manifest
    submission: SubmitResult
    results: Results
    results_path: Path | None
    built: bool


def run_pipeline(
    source: Any,
    mapping: Mapping | dict[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    sandbox: bool = False,
    dry_run: bool = False,
    client: Client | None = None,
    limits: Limits = DEFAULT_LIMITS,
    skip_invalid: bool = True,
    sheet: str | None = None,
    webhook_url: str | None = None,
    poll: PollPolicy | None = None,
    deadline: float | None = None,
    results_path: str | Path | None = None,
    on_stage: OnStage | None = None,
    on_event: OnEvent | None = None,
    on_progress: OnProgress | None = None,
) -> RunResult:
    """Run (or resume) the pipeline for one source; see :func:`batchkit.run` for the short form."""
    folder = Path(out_dir)
    stage = on_stage or (lambda _stage, _note: None)
    plan = load_mapping(mapping)
    manifest, built = _build_or_reuse(source, plan, folder, limits, skip_invalid, sheet, stage)
    with _api(client, sandbox, folder) as (api, sandboxed):
        if dry_run:
            stage("dry-run", f"asking the server to validate {len(manifest.shards)} shard(s)")
            submission = submit(folder, client=api, dry_run=True, webhook_url=webhook_url, on_event=on_event)
            results = collect_results(folder, download=False, source=_memory(source))
            return RunResult(folder, manifest, submission, results, None, built)
        _mark_sandbox(folder, sandboxed)
        stage("submit", f"{len(manifest.shards)} shard(s), {manifest.counts.requests:,} request(s)")
        submission = submit(
            folder, client=api, webhook_url=webhook_url, on_event=on_event, settle=0 if sandboxed else 5
        )
        stage("wait", "polling until every batch is done")
        wait(
            folder,
            client=api,
            poll=poll or (SANDBOX_POLL if sandboxed else None),
            deadline=deadline,
            on_progress=on_progress,
        )
        stage("results", "downloading and joining results")
        results = collect_results(folder, client=api, source=_memory(source))
    target = Path(results_path) if results_path is not None else folder / RESULTS_TABLE
    written = results.write(target)
    return RunResult(folder, manifest, submission, results, written, built)


def run(
    source: Any,
    mapping: Mapping | dict[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    sandbox: bool = False,
    dry_run: bool = False,
    client: Client | None = None,
    limits: Limits = DEFAULT_LIMITS,
    **options: Any,
) -> pl.DataFrame:
    """Build, submit, wait for and join one source; return the source rows with an outcome on each.

    ``source`` is a file (CSV, Parquet, Excel, NDJSON) or a DataFrame; ``mapping`` a TOML path, dict or
    :class:`Mapping`. Calling it again resumes where it stopped. ``sandbox=True`` runs against a local
    sandbox (no API key needed); otherwise ``client`` (or ``SYNC_API_KEY`` / ``SYNC_BASE_URL``) is used.
    Other keywords are those of :func:`run_pipeline` (``skip_invalid``, ``sheet``, ``webhook_url``, ``poll``,
    ``deadline``, ``results_path``, callbacks).

    >>> frame = batchkit.run("fixtures/campaign.csv", "fixtures/campaign.toml", "out/campaign", sandbox=True)
    ... # doctest: +SKIP
    """
    result = run_pipeline(
        source, mapping, out_dir, sandbox=sandbox, dry_run=dry_run, client=client, limits=limits, **options
    )
    return result.results.frame


def _memory(source: Any) -> Any:
    """An in-memory source goes back to the join (it has a snapshot too, but this is exact)."""
    return None if isinstance(source, str | Path) else source


def _build_or_reuse(
    source: Any,
    plan: Mapping,
    folder: Path,
    limits: Limits,
    skip_invalid: bool,
    sheet: str | None,
    stage: OnStage,
) -> tuple[Manifest, bool]:
    """Reuse the directory's build when it came from this very input; build otherwise (if still allowed)."""
    submitted = (folder / JOURNAL).exists()
    if (folder / MANIFEST).exists():
        manifest = load_manifest(folder)
        same = _same_input(manifest, source, plan, limits, sheet)
        if same or (submitted and same is None):
            stage("reuse", f"{folder} already holds this build ({len(manifest.shards)} shard(s))")
            return manifest, False
        if submitted:
            msg = (
                f"{folder} holds a submitted build of different input (source, mapping or limits changed); "
                "give another --out, or `batchkit results` this one first"
            )
            raise JournalError(msg)
    stage("build", f"building {source if isinstance(source, str | Path) else 'the frame'} into {folder}")
    result = build(source, plan, folder, limits=limits, skip_invalid=skip_invalid, sheet=sheet)
    return result.manifest, True


def _same_input(
    manifest: Manifest, source: Any, plan: Mapping, limits: Limits, sheet: str | None
) -> bool | None:
    """Whether ``manifest`` was built from exactly this source file, mapping and limits (None: can't tell)."""
    if manifest.mapping != plan.to_dict() or manifest.limits != limits or len(manifest.sources) != 1:
        return False
    if not isinstance(source, str | Path):
        return None
    try:
        current = read_source(source, sheet=sheet)
    except InputError:
        return False
    recorded = manifest.sources[0]
    return recorded.sha256 == current.sha256 and recorded.sheet == sheet


@contextmanager
def _api(client: Client | None, sandbox: bool, folder: Path) -> Iterator[tuple[Client, bool]]:
    """The client to use: the caller's, a sandbox's (started here), or one from the environment."""
    if not sandbox:
        if client is not None:
            yield client, False
            return
        with Client() as made:
            yield made, False
        return
    from .sandbox import serve

    _forget_old_sandbox(folder)
    with serve() as url, Client(api_key=SANDBOX_KEY, base_url=url) as made:
        log.info("sandbox: serving on %s for this run", url)
        yield made, True


def _mark_sandbox(folder: Path, sandboxed: bool) -> None:
    """Record which kind of server the journal talks to; refuse to mix the sandbox with the real API."""
    with Journal.open(folder) as journal:
        kind = journal.meta("server")
        wanted = "sandbox" if sandboxed else "api"
        if kind is None:
            journal.set_meta("server", wanted)
        elif kind != wanted:
            msg = (
                f"{folder} was submitted to the {'sandbox' if kind == 'sandbox' else 'real API'}; "
                f"it cannot be resumed against the {'sandbox' if sandboxed else 'real API'}: give another --out"
            )
            raise JournalError(msg)


def _forget_old_sandbox(folder: Path) -> None:
    """A sandbox lives only as long as its run, so a journal of an earlier sandbox run is void: start over."""
    path = folder / JOURNAL
    if not path.exists():
        return
    with Journal.open(folder) as journal:
        if journal.meta("server") != "sandbox":
            return
    log.info("starting the sandbox submission of %s over: the earlier sandbox is gone", folder)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    results = folder / RESULTS_DIR
    if results.is_dir():
        for file in results.glob("*.output.jsonl"):
            file.unlink()
