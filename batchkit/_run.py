"""``run``: the whole pipeline in one call, resumable by calling it again.

build → validate → shard → submit (journaled) → wait (with progress) → results → export. Every stage is
skipped when its work is already done: an unchanged build is reused, submitted shards are not sent again,
finished downloads are not fetched again. With ``sandbox=True`` it starts the local sandbox itself and needs
no API key.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from ._api.backoff import PollPolicy
from ._api.client import Client
from ._build.build import build
from ._build.options import BuildOptions
from ._errors import APIError, InputError, JournalError
from ._mapping.mapping import Mapping, load_mapping
from ._results.results import Results, collect_results
from ._shard.builddir import (
    JOURNAL,
    LENGTHS,
    MANIFEST,
    MEDIA,
    RESULTS_DIR,
    RESULTS_TABLE,
    Manifest,
    load_manifest,
)
from ._sources.source import read_source
from ._submit.journal import Journal
from ._submit.submit import OnEvent, OnProgress, SubmitResult, submit, wait

if TYPE_CHECKING:
    from ._probe.budget import Budget

__all__ = ["RunOptions", "RunResult", "Stage", "run"]

log = logging.getLogger("batchkit")

Stage = Literal["build", "reuse", "sample", "estimate", "submit", "dry-run", "wait", "results"]
OnStage = Callable[[Stage, str], None]

#: Poll fast against the sandbox: a demo of a few shards finishes in seconds.
SANDBOX_POLL = PollPolicy(initial=0.2, factor=1.5, maximum=1.0)
SANDBOX_KEY = "sandbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions(BuildOptions):
    """Options of :func:`run`: those of the build (:class:`BuildOptions`), then of submitting and waiting.

    ``sandbox`` starts a local sandbox for the run (no API key needed). ``dry_run`` builds, then asks the
    server to validate every shard: nothing is created or billed. ``webhook_url`` is sent with every batch;
    ``poll`` and ``deadline`` (seconds) govern the wait; ``results_path`` is where the joined table goes
    (default ``DIR/results.csv``; ``.csv``, ``.parquet``, ``.xlsx`` or ``.jsonl``). ``budget``
    (:class:`batchkit.Budget`) is checked before the first create; ``sample`` sends only a stratified sample
    of that many requests, from ``OUT-sample`` beside the build, whose completed requests a later full run
    (without ``sample``) then reuses instead of sending them again.
    """

    sandbox: bool = False
    dry_run: bool = False
    webhook_url: str | None = None
    poll: PollPolicy | None = None
    deadline: float | None = None
    results_path: str | Path | None = None
    budget: Budget | None = None
    sample: int | None = None


@dataclass(slots=True)
class RunResult:
    """What a run did: its build, its submission (or dry-run verdicts) and the joined results."""

    directory: Path
    manifest: Manifest
    submission: SubmitResult
    results: Results
    results_path: Path | None
    built: bool

    @property
    def frame(self) -> pl.DataFrame:
        """The joined table: the source rows with an outcome on each (``results.frame``)."""
        return self.results.frame


def run(
    source: Any,
    mapping: Mapping | dict[str, Any] | str | Path,
    out_dir: str | Path,
    options: RunOptions | None = None,
    *,
    client: Client | None = None,
    on_stage: OnStage | None = None,
    on_event: OnEvent | None = None,
    on_progress: OnProgress | None = None,
) -> RunResult:
    """Build, submit, wait for and join one source; calling it again resumes where it stopped.

    ``source`` is a file (CSV, Parquet, Excel, NDJSON) or a DataFrame; ``mapping`` a TOML path, dict or
    :class:`Mapping`; ``options`` a :class:`RunOptions`. Without ``sandbox`` the ``client`` (or one from
    ``SYNC_API_KEY`` / ``SYNC_BASE_URL``) is used. ``on_stage(stage, note)`` is told of each stage,
    ``on_event`` and ``on_progress`` are passed to :func:`batchkit.submit` and :func:`batchkit.wait`.

    >>> result = batchkit.run("fixtures/campaign.csv", "fixtures/campaign.toml", "out/campaign",
    ...                       batchkit.RunOptions(sandbox=True, skip_invalid=True))  # doctest: +SKIP
    >>> result.frame  # doctest: +SKIP
    """
    opts = options or RunOptions()
    folder = Path(out_dir)
    stage = on_stage or (lambda _stage, _note: None)
    plan = load_mapping(mapping)
    if opts.sample is None and not (folder / JOURNAL).exists():  # a full run: its sample's completed are not sent again
        from ._retry.sample import sample_reuse

        reuse = sample_reuse(folder, opts.reuse)
        if reuse is not opts.reuse and reuse is not None:
            stage("reuse", f"what the sample completed is not sent again ({reuse!r})")
        opts = dataclasses.replace(opts, reuse=reuse)
    manifest, built = _build_or_reuse(source, plan, folder, opts, stage)
    if opts.sample is not None:
        from ._retry.sample import write_sample

        folder = write_sample(folder, manifest, opts.sample, note=lambda note: stage("sample", note))
        manifest = load_manifest(folder)
    with _api(client, opts.sandbox, folder) as (api, sandboxed):
        if opts.dry_run:
            stage("dry-run", f"asking the server to validate {len(manifest.shards)} shard(s)")
            submission = submit(
                folder, client=api, dry_run=True, webhook_url=opts.webhook_url, on_event=on_event
            )
            results = collect_results(folder, download=False, source=_memory(source))
            return RunResult(folder, manifest, submission, results, None, built)
        _preflight_estimate(folder, opts, api, stage)  # before anything is journaled or sent
        _mark_sandbox(folder, sandboxed)
        stage("submit", f"{len(manifest.shards)} shard(s), {manifest.counts.requests:,} request(s)")
        submission = submit(
            folder,
            client=api,
            webhook_url=opts.webhook_url,
            on_event=on_event,
            settle=0 if sandboxed else 5,
            poll=opts.poll or (SANDBOX_POLL if sandboxed else None),
        )
        stage("wait", "polling until every batch is done")
        wait(
            folder,
            client=api,
            poll=opts.poll or (SANDBOX_POLL if sandboxed else None),
            deadline=opts.deadline,
            on_progress=on_progress,
        )
        stage("results", "downloading and joining results")
        results = collect_results(folder, client=api, source=_memory(source))
    target = Path(opts.results_path) if opts.results_path is not None else folder / RESULTS_TABLE
    written = results.write(target)
    return RunResult(folder, manifest, submission, results, written, built)


def _preflight_estimate(folder: Path, options: RunOptions, api: Client, stage: OnStage) -> None:
    """The estimate of what is about to be sent, when media was probed or a budget asks for it (which it
    then checks: :class:`batchkit.BudgetError` stops the run here)."""
    if options.budget is None and not (folder / LENGTHS).is_file():
        return
    from ._build.estimate import check_budget
    from ._probe.budget import Budget, describe_estimate

    try:
        found = check_budget(folder, options.budget or Budget(), client=api)
    except APIError as exc:
        if options.budget is not None:
            raise
        stage("estimate", f"unavailable ({exc})")
        return
    stage("estimate", describe_estimate(found))


def _memory(source: Any) -> Any:
    """An in-memory source goes back to the join (it has a snapshot too, but this is exact)."""
    return None if isinstance(source, str | Path) else source


def _build_or_reuse(
    source: Any, plan: Mapping, folder: Path, options: RunOptions, stage: OnStage
) -> tuple[Manifest, bool]:
    """Reuse the directory's build when it came from this very input; build otherwise (if still allowed)."""
    submitted = (folder / JOURNAL).exists()
    if (folder / MANIFEST).exists():
        manifest = load_manifest(folder)
        same = _same_input(manifest, source, plan, options)
        if same and not submitted and (
            options.reuse is not None or (options.probe is not None and not (folder / MEDIA).exists())
        ):
            same = False  # what is reused, or what the probe finds, may change the build: build it again
        if same or (submitted and same is None):
            stage("reuse", f"{folder} already holds this build ({len(manifest.shards)} shard(s))")
            return manifest, False
        if submitted:
            msg = (
                f"{folder} holds a submitted build of different input (source, mapping or limits changed); "
                f"give another --out (with --reuse {folder}, what completed here is not sent again), or "
                "`batchkit results` this one first"
            )
            raise JournalError(msg)
    stage("build", f"building {source if isinstance(source, str | Path) else 'the frame'} into {folder}")
    result = build(source, plan, folder, options)  # a RunOptions is the build's options too
    return result.manifest, True


def _same_input(manifest: Manifest, source: Any, plan: Mapping, options: RunOptions) -> bool | None:
    """Whether ``manifest`` was built from exactly this source file, mapping and limits (None: can't tell)."""
    if manifest.mapping != plan.to_dict() or manifest.limits != options.limits or len(manifest.sources) != 1:
        return False
    if not isinstance(source, str | Path):
        return None
    try:
        current = read_source(source, **options.read_options())
    except InputError:
        return False
    recorded = manifest.sources[0]
    return recorded.sha256 == current.sha256 and recorded.sheet == options.sheet


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
