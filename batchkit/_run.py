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
from ._api.client import Client, given_or_default, require_api_key
from ._build.build import build
from ._build.options import BuildOptions
from ._errors import APIError, InputError, JournalError
from ._handback.wide import each_counts
from ._mapping.mapping import Mapping, load_mapping
from ._results.export import check_export_path
from ._results.results import Results, collect_results
from ._shard.builddir import (
    JOURNAL,
    LENGTHS,
    MANIFEST,
    MEDIA,
    RESULTS_DIR,
    RESULTS_TABLE,
    SANDBOX_STATE,
    SUBMISSION,
    Manifest,
    load_manifest,
)
from ._sources.source import read_source
from ._submit.lock import directory_lock
from ._submit.reconcile import ReconcilePolicy
from ._submit.rounds import Sending, submit_and_wait
from ._submit.submit import OnEvent, OnProgress, SubmitResult, submit
from .sandbox._kept import SANDBOX_POLL, in_process_policy, kept_sandbox, require_sandbox_extra

if TYPE_CHECKING:
    from ._probe.budget import Budget

__all__ = ["RunOptions", "RunResult", "Stage", "run"]

log = logging.getLogger("batchkit")

Stage = Literal["build", "reuse", "sample", "estimate", "submit", "dry-run", "wait", "results"]
OnStage = Callable[[Stage, str], None]

#: Rounds of submit + wait when a shard comes back to send (its adopted batch turned out to be another's).
_ROUNDS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions(BuildOptions):
    """Options of :func:`run`: those of the build (:class:`BuildOptions`), then of submitting and waiting.

    ``sandbox`` starts a local sandbox for the run (no API key needed). ``dry_run`` builds, then asks the
    server to validate every shard: nothing is created or billed. ``webhook_url`` is sent with every batch;
    ``poll`` and ``deadline`` (seconds) govern the wait; ``results_path`` is where the joined table goes
    (default ``DIR/results.csv``; ``.csv``, ``.parquet``, ``.xlsx`` or ``.jsonl``); ``policy`` is how a lost
    create is reconciled (:class:`batchkit.ReconcilePolicy`). ``budget``
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
    policy: ReconcilePolicy | None = None
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
        """The joined table: the source rows with an outcome on each (``results.frame``), as a polars
        DataFrame whatever the source was (a typed source's columns keep their types); for a pandas
        DataFrame, call :meth:`to_pandas`."""
        return self.results.frame

    def to_pandas(self) -> Any:
        """The joined table as a pandas DataFrame (needs pandas and pyarrow); see :meth:`Results.to_pandas`."""
        return self.results.to_pandas()

    @property
    def by_each(self) -> pl.DataFrame | None:
        """Rows per ``[each]`` value and outcome (None for a build without ``[each]``)."""
        return each_counts(self.results.frame, self.manifest) if self.manifest.each else None

    def to_dict(self) -> dict[str, Any]:
        """What the run did, as plain data: the build, every shard, the dry-run verdicts, the results' summary."""
        return {
            "directory": str(self.directory),
            "built": self.built,
            "results_path": str(self.results_path) if self.results_path is not None else None,
            "shards": [s.to_dict() for s in self.submission.shards],
            "dry_run": [
                {"file": v.file, "valid": v.valid, "message": v.message} for v in self.submission.dry_runs
            ],
            **self.results.summary(),
            "valid": self.results.report.valid,
        }


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
    target = Path(opts.results_path) if opts.results_path is not None else folder / RESULTS_TABLE
    _check_before_spending(client, opts.sandbox, target)
    if (
        opts.sample is None and not (folder / JOURNAL).exists()
    ):  # a full run: its sample's completed are not sent again
        from ._retry.sample import sample_reuse

        reuse = sample_reuse(folder, opts.reuse)
        if reuse is not opts.reuse and reuse is not None:
            stage("reuse", f"what the sample completed is not sent again ({reuse!r})")
        opts = dataclasses.replace(opts, reuse=reuse)
    folder.mkdir(parents=True, exist_ok=True)
    with directory_lock(folder, "batchkit run"):
        manifest, built = _build_or_reuse(source, plan, folder, opts, stage)
    if opts.sample is not None:
        from ._retry.sample import write_sample

        folder = write_sample(folder, manifest, opts.sample, note=lambda note: stage("sample", note))
        manifest = load_manifest(folder)
        if opts.results_path is None:
            target = folder / RESULTS_TABLE
    with directory_lock(folder, "batchkit run"):
        with _api(client, opts.sandbox, folder, stage) as (api, sandboxed):
            if opts.dry_run:
                stage("dry-run", f"asking the server to validate {len(manifest.shards)} shard(s)")
                submission = submit(
                    folder, client=api, dry_run=True, webhook_url=opts.webhook_url, on_event=on_event
                )
                results = collect_results(folder, download=False, source=_memory(source))
                return RunResult(folder, manifest, submission, results, None, built)
            _preflight_estimate(folder, opts, api, stage)  # before anything is journaled or sent
            submission = _submit_and_wait(folder, api, opts, sandboxed, stage, on_event, on_progress)
            stage("results", "downloading and joining results")
            results = collect_results(folder, client=api, source=_memory(source))
        written = results.write(target)
    return RunResult(folder, manifest, submission, results, written, built)


def _submit_and_wait(
    folder: Path,
    api: Client,
    opts: RunOptions,
    sandboxed: bool,
    stage: OnStage,
    on_event: OnEvent | None,
    on_progress: OnProgress | None,
) -> SubmitResult:
    """Submit, wait, and again while a shard comes back to send (its adopted batch was another's)."""
    # The sandbox lives in this process: a create sent to an earlier one cannot land any more.
    policy = in_process_policy(opts.policy) if sandboxed else opts.policy
    manifest = load_manifest(folder)
    counted = f"{len(manifest.shards)} shard(s), {manifest.counts.requests:,} request(s)"
    sending = Sending(
        webhook_url=opts.webhook_url, poll=opts.poll or (SANDBOX_POLL if sandboxed else None),
        deadline=opts.deadline, policy=policy, rounds=_ROUNDS,
    )  # fmt: skip

    def on_round(name: str, note: str) -> None:
        if name == "submit":
            stage("submit", counted)
        else:
            stage("wait", note)

    submission, _ = submit_and_wait(
        folder, sending, client=api, on_event=on_event, on_progress=on_progress, on_round=on_round
    )
    return submission


def _check_before_spending(client: Client | None, sandbox: bool, target: Path) -> None:
    """Everything that would fail after hours of work, checked before anything is written or sent."""
    check_export_path(target)
    if sandbox:
        require_sandbox_extra()
        return
    with given_or_default(client) as api:
        require_api_key(api)


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
    submitted = (folder / JOURNAL).exists() or (folder / SUBMISSION).exists()
    if (folder / MANIFEST).exists():
        manifest = load_manifest(folder)
        same = _same_input(manifest, source, plan, options)
        if (
            same
            and not submitted
            and (options.reuse is not None or (options.probe is not None and not (folder / MEDIA).exists()))
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
    if not (folder / SANDBOX_STATE).exists():
        _start_sandbox_over(folder, stage)
    with kept_sandbox(folder, create=True) as made:
        yield made, True


def _start_sandbox_over(folder: Path, stage: OnStage) -> None:
    """An earlier sandbox submission whose sandbox account is gone (no state file): its batches no longer exist
    anywhere, so its journal is void. Say so, and start over (only ever for a sandbox-bound directory)."""
    from ._submit.binding import read_binding

    binding = read_binding(folder)
    journal = folder / JOURNAL
    if binding is None and not journal.exists():
        return
    if binding is not None and binding.kind != "sandbox":
        return  # bound to the real API: submit refuses it, with the reason
    if binding is None:
        from ._submit.journal import Journal

        with Journal.open(folder) as opened:
            if opened.meta("server") != "sandbox":
                return
    stage(
        "submit",
        f"the sandbox of the earlier run of {folder} is gone ({SANDBOX_STATE} missing): starting over",
    )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    (folder / SUBMISSION).unlink(missing_ok=True)
    results = folder / RESULTS_DIR
    if results.is_dir():
        for file in results.glob("*.output.jsonl"):
            file.unlink()
