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
from ._api.client import Client, require_api_key
from ._build.build import build
from ._errors import ConfigurationError, InputError, JournalError
from ._mapping.mapping import Mapping, load_mapping
from ._results.export import check_export_path
from ._results.results import RESULTS_DIR, Results, collect_results
from ._shard.builddir import MANIFEST, Manifest, load_manifest
from ._sources.source import read_source
from ._submit.binding import SUBMISSION_FILE
from ._submit.journal import JOURNAL_FILE
from ._submit.lock import directory_lock
from ._submit.reconcile import ReconcilePolicy
from ._submit.submit import OnEvent, OnProgress, SubmitResult, submit, wait
from ._wire.limits import DEFAULT_LIMITS, Limits

__all__ = ["RunResult", "Stage", "run", "run_pipeline"]

log = logging.getLogger("batchkit")

Stage = Literal["build", "reuse", "submit", "dry-run", "wait", "results"]
OnStage = Callable[[Stage, str], None]

#: Poll fast against the sandbox: a demo of a few shards finishes in seconds.
SANDBOX_POLL = PollPolicy(initial=0.2, factor=1.5, maximum=1.0)
SANDBOX_KEY = "sandbox"
#: ``run --sandbox`` keeps its sandbox's account here, so an interrupted run resumes against the same batches.
SANDBOX_STATE = "sandbox-state.jsonl"
#: Rounds of submit + wait when a shard comes back to send (its adopted batch turned out to be another's).
_ROUNDS = 3


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
    target = Path(results_path) if results_path is not None else folder / "results.csv"
    _check_before_spending(client, sandbox, target)
    folder.mkdir(parents=True, exist_ok=True)
    with directory_lock(folder, "batchkit run"):
        manifest, built = _build_or_reuse(source, plan, folder, limits, skip_invalid, sheet, stage)
        with _api(client, sandbox, folder, stage) as (api, sandboxed):
            if dry_run:
                stage("dry-run", f"asking the server to validate {len(manifest.shards)} shard(s)")
                submission = submit(folder, client=api, dry_run=True, webhook_url=webhook_url, on_event=on_event)
                results = collect_results(folder, download=False, source=_memory(source))
                return RunResult(folder, manifest, submission, results, None, built)
            # The sandbox lives in this process: a create sent to an earlier one cannot land any more.
            policy = ReconcilePolicy(in_flight=0.0, second_look=0.0, at_least_twice_the_timeout=False) if sandboxed else None
            for _ in range(_ROUNDS):
                stage("submit", f"{len(manifest.shards)} shard(s), {manifest.counts.requests:,} request(s)")
                submission = submit(folder, client=api, webhook_url=webhook_url, on_event=on_event, policy=policy)
                if not submission.submitted:
                    break
                stage("wait", "polling until every batch is done")
                shards = wait(
                    folder,
                    client=api,
                    poll=poll or (SANDBOX_POLL if sandboxed else None),
                    deadline=deadline,
                    on_progress=on_progress,
                    on_event=on_event,
                    policy=policy,
                )
                if not any(s.state == "pending" for s in shards):
                    break
            stage("results", "downloading and joining results")
            results = collect_results(folder, client=api, source=_memory(source))
        written = results.write(target)
    return RunResult(folder, manifest, submission, results, written, built)


def _check_before_spending(client: Client | None, sandbox: bool, target: Path) -> None:
    """Everything that would fail after hours of work, checked before anything is written or sent."""
    check_export_path(target)
    if sandbox:
        import importlib.util

        missing = [name for name in ("starlette", "uvicorn", "multipart") if importlib.util.find_spec(name) is None]
        if missing:
            msg = f"--sandbox needs the optional 'sandbox' extra (missing: {', '.join(missing)}): pip install 'batchkit[sandbox]'"
            raise ConfigurationError(msg)
        return
    require_api_key(client if client is not None else Client())


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
    submitted = (folder / JOURNAL_FILE).exists() or (folder / SUBMISSION_FILE).exists()
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
def _api(client: Client | None, sandbox: bool, folder: Path, stage: OnStage) -> Iterator[tuple[Client, bool]]:
    """The client to use: the caller's, a sandbox's (started here, its account kept in the directory), or one
    from the environment."""
    if not sandbox:
        if client is not None:
            yield client, False
            return
        with Client() as made:
            yield made, False
        return
    from .sandbox import Sandbox, serve

    state = folder / SANDBOX_STATE
    if not state.exists():
        _start_sandbox_over(folder, stage)
    with serve(Sandbox(state_path=state)) as url, Client(api_key=SANDBOX_KEY, base_url=url) as made:
        log.info("sandbox: serving on %s for this run (account kept in %s)", url, state)
        yield made, True


def _start_sandbox_over(folder: Path, stage: OnStage) -> None:
    """An earlier sandbox submission whose sandbox account is gone (no state file): its batches no longer exist
    anywhere, so its journal is void. Say so, and start over (only ever for a sandbox-bound directory)."""
    from ._submit.binding import read_binding

    binding = read_binding(folder)
    journal = folder / JOURNAL_FILE
    if binding is None and not journal.exists():
        return
    if binding is not None and binding.kind != "sandbox":
        return  # bound to the real API: submit refuses it, with the reason
    if binding is None:
        from ._submit.journal import Journal

        with Journal.open(folder) as opened:
            if opened.meta("server") != "sandbox":
                return
    stage("submit", f"the sandbox of the earlier run of {folder} is gone ({SANDBOX_STATE} missing): starting over")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    (folder / SUBMISSION_FILE).unlink(missing_ok=True)
    results = folder / RESULTS_DIR
    if results.is_dir():
        for file in results.glob("*.output.jsonl"):
            file.unlink()
