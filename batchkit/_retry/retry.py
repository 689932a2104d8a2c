"""Retry: the units of a build directory that failed, went missing or were rejected, as a new build directory.

:func:`retry_failed` takes every unit's outcome from :func:`batchkit._results.results.collect_results` (from the
journal for a directory sent one by one), keeps the units whose outcome was asked for, reads their lines back
from the shards they were sent in, gives each a new ``request_id`` linked to the original (``c020`` →
``c020.r1``, ``c020.r1`` → ``c020.r2``; everything else byte-identical), and writes a new build directory
(format v1, same sources, mapping and ``each``, so its results join back to the same source rows; its
``requests.parquet`` adds the column ``retry_of``). Three ways to write it:

- balanced shards, like ``build`` (the default), ready for ``batchkit submit``; fewer units than a batch's
  minimum is refused with a ``too-few-records`` finding that names the two ways out:
- ``realtime``: ``realtime.jsonl``, then every request is sent one by one (:mod:`batchkit._submit.realtime`);
- ``hold``: ``held.jsonl``, for the next ``build(..., include_held=[DIR])`` (``build --include-held DIR``),
  which validates the held lines with the new ones, keeps their provenance, and marks the directory consumed.

Running the same retry again is idempotent: when the output directory already holds exactly this selection
(same units, lines, mode and limits), nothing is rewritten (a realtime one resumes sending). A directory that
holds anything else is replaced only with ``force``, and never when it was already submitted or consumed.
Units already retried into another directory that still exists are refused too (``force`` overrides), so a
unit is never paid for twice by mistake.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import polars as pl

from .._api.backoff import PollPolicy, RetryPolicy
from .._api.client import Client, given_or_default, require_api_key
from .._build.held import RETRY_OF, checked_line, take_sources
from .._errors import InputError, ResultsError
from .._files import file_sha256
from .._handback.decisions import decisions_of
from .._report import Finding, Report, ValidationFailed
from .._results.realtime import realtime_outcomes
from .._results.results import OUTCOMES, collect_results
from .._shard.builddir import (
    JOURNAL,
    MANIFEST,
    Manifest,
    RetryInfo,
    load_manifest,
    note_retry,
    retried_into,
    verify_shards,
)
from .._shard.plan import expected_layout
from .._shard.spill import Spill
from .._shard.write import BuildResult, finish, prepare_out_dir, safe_name
from .._submit.realtime import (
    OnEvent,
    OnProgress,
    RealtimeResult,
    read_realtime_lines,
    send_realtime,
)
from .._validate.validate import check_lines
from .._wire.checks import request_id_problem
from .._wire.limits import Limits

__all__ = [
    "DEFAULT_ONLY",
    "RETRYABLE",
    "RETRY_OF",
    "RetryOptions",
    "RetryResult",
    "next_request_id",
    "retry_failed",
    "retry_name",
]

log = logging.getLogger("batchkit")

#: Outcomes a retry may select; ``DEFAULT_ONLY`` is what it selects unless told otherwise.
RETRYABLE: Final = ("failed", "missing", "rejected", "unsubmitted")
DEFAULT_ONLY: Final = ("failed", "missing", "rejected")
Mode = Literal["shards", "realtime", "held"]

#: Build statuses of units that never became requests; each is the unit's outcome as well.
_NEVER_SENT: Final = ("invalid", "skipped", "filtered")
_ID_ROUND: Final = re.compile(r"^(.+)\.r([1-9][0-9]*)$")
_NAME_ROUND: Final = re.compile(r"^(.+)-retry([1-9][0-9]*)$")
_NOT_RETRYABLE: Final = {
    "invalid": "invalid units never became requests: fix them in the source and build again",
    "skipped": "skipped units are no request by design ([each] optional): fill in the value and build again",
    "filtered": "filtered units are no request by design ([where]): change the filter and build again",
    "completed": "completed units already have their video",
    "pending": "pending units are still running: wait for them (`batchkit wait DIR`), then retry what fails",
}


def next_request_id(request_id: str) -> str:
    """The request_id of the next try: ``c020`` → ``c020.r1``, ``c020.r1`` → ``c020.r2``.

    A suffix ``.r<N>`` (N ≥ 1, no leading zero) counts the tries, so no two request_ids get the same next one.

    >>> next_request_id("c020"), next_request_id("c020.r1"), next_request_id("v.r0")
    ('c020.r1', 'c020.r2', 'v.r0.r1')
    """
    found = _ID_ROUND.match(request_id)
    if found is None:
        return f"{request_id}.r1"
    return f"{found.group(1)}.r{int(found.group(2)) + 1}"


def retry_name(name: str) -> str:
    """The shard-name stem of a retry: ``campaign`` → ``campaign-retry1``, ``campaign-retry1`` → ``…-retry2``."""
    found = _NAME_ROUND.match(name)
    if found is None:
        return f"{name}-retry1"
    return f"{found.group(1)}-retry{int(found.group(2)) + 1}"


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What :func:`retry_failed` selected and wrote."""

    directory: Path
    out_dir: Path
    mode: Mode
    #: The outcomes asked for.
    only: tuple[str, ...]
    #: Units of the retried directory per outcome (every outcome listed).
    outcomes: dict[str, int]
    #: Units selected per outcome (only the selected outcomes listed).
    selected: dict[str, int]
    #: What was written (None when nothing was selected).
    build: BuildResult | None = None
    #: The requests sent one by one (``realtime`` only).
    realtime: RealtimeResult | None = None
    #: The output directory already held exactly this retry: nothing was rewritten.
    reused: bool = False
    findings: list[Finding] = field(default_factory=list)
    #: With ``review``: how many decisions the file held (it may reject none, and then nothing is retried).
    reviewed: int | None = None

    @property
    def units(self) -> int:
        return sum(self.selected.values())

    def to_dict(self) -> dict[str, Any]:
        """What was selected and written, as plain data."""
        build = self.build
        return {
            "directory": str(self.directory), "out_dir": str(self.out_dir), "mode": self.mode, "only": list(self.only),
            "outcomes": self.outcomes, "selected": self.selected, "units": self.units, "reused": self.reused,
            "reviewed": self.reviewed, "counts": build.counts.model_dump() if build is not None else None,
            "shards": [s.file for s in build.manifest.shards] if build is not None else [],
            "realtime": self.realtime.to_dict() if self.realtime is not None else None,
            "findings": [f.model_dump(mode="json", exclude_none=True) for f in self.findings],
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOptions:
    """What :func:`retry_failed` selects, where the units go, and how realtime requests are sent.

    ``only`` names the outcomes to retry (default failed, missing, rejected). ``mode`` is ``shards`` (a new
    build directory of balanced shards), ``realtime`` (sent one by one through ``POST /v2/generate`` now) or
    ``held`` (kept for the next ``build --include-held``). ``request_ids`` selects exactly those units
    instead (e.g. the cards a reviewer rejected, ``retry --from-review``), whatever their outcome, but never an
    invalid unit (it never became a request) or a pending one (still running); ``review`` (a decisions CSV of
    the directory's review page, ``retry --from-review``) selects the cards it rejects. ``limits`` default to
    the retried directory's, with ``limit_changes`` (``{"max_records": 100}``) applied;
    ``name`` is the shard stem (default ``<name>-retry1``); ``force`` replaces another build in the output
    directory or retries units retried before. ``download`` and ``source`` are those of
    :func:`batchkit.collect_results`; ``concurrency``, ``poll``, ``deadline`` and ``backoff`` those of
    :func:`batchkit.send_realtime`.
    """

    only: Sequence[str] = DEFAULT_ONLY
    request_ids: Collection[str] | None = None
    review: str | Path | None = None
    mode: Mode = "shards"
    limits: Limits | None = None
    limit_changes: Mapping[str, int] | None = None
    name: str | None = None
    force: bool = False
    download: bool = True
    source: Any = None
    concurrency: int = 3
    poll: PollPolicy | None = None
    deadline: float | None = None
    backoff: RetryPolicy | None = None


def retry_failed(
    directory: str | Path,
    out_dir: str | Path,
    options: RetryOptions | None = None,
    *,
    client: Client | None = None,
    on_event: OnEvent | None = None,
    on_progress: OnProgress | None = None,
) -> RetryResult:
    """Build a new directory ``out_dir`` from the units of ``directory`` whose outcome is in ``options.only``.

    ``client`` is used to refresh and download results (unless ``download`` is off) and to send realtime
    requests, with ``on_event`` and ``on_progress`` as in :func:`batchkit.send_realtime`. Raises
    :class:`ValidationFailed` (``too-few-records``) when fewer units than a batch's minimum are left in
    ``shards`` mode.
    """
    opts = options or RetryOptions()
    mode, force = opts.mode, opts.force
    folder, out = Path(directory), Path(out_dir)
    chosen = _check_only(opts.only)
    manifest = _checked(folder, out, mode, client)
    limits = opts.limits or _changed(manifest.limits, opts.limit_changes)
    request_ids, reviewed, read = opts.request_ids, None, []
    if opts.review is not None:
        decisions = decisions_of(folder, opts.review)
        request_ids, reviewed, read = decisions.rejected, len(decisions), list(decisions.findings)
        if not request_ids:
            log.info("%s rejects no card (%d decision(s)): nothing to retry", opts.review, reviewed)
            return RetryResult(folder, out, mode, chosen, {}, {}, findings=read, reviewed=reviewed)
    units, outcomes = _outcomes(folder, manifest, client=client, download=opts.download, source=opts.source)
    if request_ids is not None:
        picked, chosen = _by_ids(units, request_ids, folder)
    else:
        picked = units.filter(pl.col("outcome").is_in(list(chosen)))
    selected = {o: int((picked["outcome"] == o).sum()) for o in chosen}
    selected = {o: n for o, n in selected.items() if n}
    if picked.is_empty():
        log.info("nothing to retry in %s: no unit is %s", folder, " or ".join(chosen))
        return RetryResult(folder, out, mode, chosen, outcomes, selected, findings=read, reviewed=reviewed)
    frame, report = _retry_frame(folder, manifest, picked, limits)
    n = frame.height
    if mode == "shards" and n < limits.min_records:
        report.add(_too_few(n, selected, limits, out))
        raise ValidationFailed(report)
    fingerprint = _fingerprint(frame, mode, limits)
    send = functools.partial(
        send_realtime,
        client=client,
        concurrency=opts.concurrency,
        poll=opts.poll,
        deadline=opts.deadline,
        backoff=opts.backoff,
        on_event=on_event,
        on_progress=on_progress,
    )
    if _reusable(out, folder, fingerprint, mode, force=force):
        log.info("%s already holds this retry of %s; nothing rewritten", out, folder)
        manifest = load_manifest(out)
        built = BuildResult(
            Report(limits=manifest.limits), manifest, out, manifest.shard_paths(), manifest.counts
        )
        sent = send(out) if mode == "realtime" else None
        return RetryResult(
            folder,
            out,
            mode,
            chosen,
            outcomes,
            selected,
            built,
            sent,
            True,
            [*read, *report.findings],
            reviewed,
        )
    _check_earlier_retries(folder, out, frame, force=force)
    info = RetryInfo(
        of=str(folder.resolve()), name=manifest.name, only=list(chosen), mode=mode, fingerprint=fingerprint
    )
    built = _write(out, folder, manifest, frame, report, limits, info, opts.name)
    sent = send(out) if mode == "realtime" else None
    return RetryResult(
        folder, out, mode, chosen, outcomes, selected, built, sent, False, [*read, *report.findings], reviewed
    )


def _checked(folder: Path, out: Path, mode: str, client: Client | None) -> Manifest:
    """The retried directory's manifest, once the request makes sense (before anything is read or written)."""
    if mode not in ("shards", "realtime", "held"):
        msg = f"mode {mode!r} is not one of shards, realtime, held"
        raise InputError(msg)
    if mode == "realtime":  # checked before anything is written: no intent for a create that cannot leave
        with given_or_default(client) as api:
            require_api_key(api)
    if out.resolve() == folder.resolve():
        msg = f"--out {out} is the directory being retried; choose a new directory for the retry"
        raise InputError(msg, path=out)
    manifest = load_manifest(folder)
    if manifest.unsharded is not None and manifest.unsharded.mode == "held":
        msg = (
            f"{folder} holds requests kept for a later build, not results; include it with "
            f"`batchkit build SOURCE --mapping M --out DIR --include-held {folder}`"
        )
        raise InputError(msg, path=folder)
    return manifest


def _write(
    out: Path, folder: Path, manifest: Manifest, frame: pl.DataFrame, report: Report, limits: Limits,
    info: RetryInfo, name: str | None,
) -> BuildResult:  # fmt: skip
    """The new build directory: ``frame``'s lines as shards (or as one realtime or held file)."""
    mode = info.mode
    prepare_out_dir(out, force=False)
    sources, copies = take_sources(manifest.sources, folder, first_index=0)
    stem = safe_name(name or retry_name(manifest.name))
    layout = expected_layout(frame.height, limits) if mode == "shards" else []
    with Spill(out, manifest.each, name=stem, layout=layout, extra=[RETRY_OF]) as spill:
        spill.add(frame)
        spill.close()
        built = finish(
            spill, out_dir=out, name=stem, limits=limits, report=report, sources=sources, mapping=manifest.mapping,
            rows=frame.select("source", "row").n_unique(), unsharded=None if mode == "shards" else mode,
            retry=info, copies=copies,
        )  # fmt: skip
    note_retry(folder, out)
    return built


def _changed(limits: Limits, changes: Mapping[str, int] | None) -> Limits:
    """``limits`` with ``changes`` applied (``--min-records`` and the others given to ``retry``)."""
    if not changes:
        return limits
    merged = {**limits.as_dict(), **changes}
    if merged["min_records"] > merged["max_records"]:
        msg = (
            f"--min-records ({merged['min_records']}) is larger than --max-records ({merged['max_records']})"
        )
        raise InputError(msg)
    return Limits.model_validate(merged)


def _check_only(only: Sequence[str]) -> tuple[str, ...]:
    names = [o.strip().lower() for o in ([only] if isinstance(only, str) else only) if o.strip()]
    if not names:
        msg = f"choose at least one outcome to retry: {', '.join(RETRYABLE)}"
        raise InputError(msg)
    for outcome in names:
        if outcome in _NOT_RETRYABLE:
            msg = f"cannot retry {outcome!r} units: {_NOT_RETRYABLE[outcome]}"
            raise InputError(msg)
        if outcome not in RETRYABLE:
            msg = f"unknown outcome {outcome!r}; choose from {', '.join(RETRYABLE)}"
            raise InputError(msg)
    return tuple(dict.fromkeys(names))


def _by_ids(units: pl.DataFrame, ids: Collection[str], folder: Path) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """The units named in ``ids``, refusing ids the directory lacks and units that cannot be sent again."""
    wanted = set(ids)
    picked = units.filter(pl.col("request_id").is_in(list(wanted)))
    unknown = sorted(wanted - set(picked.get_column("request_id").to_list()))
    if unknown:
        msg = f"{len(unknown):,} request_id(s) to retry are not in {folder} (such as {unknown[0]!r})"
        raise InputError(msg, path=folder)
    for outcome in (*_NEVER_SENT, "pending"):
        stuck = picked.filter(pl.col("outcome") == outcome).get_column("request_id").to_list()
        if stuck:
            msg = f"cannot retry {len(stuck):,} {outcome} unit(s) such as {stuck[0]!r}: {_NOT_RETRYABLE[outcome]}"
            raise InputError(msg, path=folder)
    present = set(picked.get_column("outcome").to_list())
    return picked, tuple(o for o in OUTCOMES if o in present)


def _outcomes(
    folder: Path, manifest: Manifest, *, client: Client | None, download: bool, source: Any
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``requests.parquet`` in order, with every unit's ``outcome``, and the units per outcome."""
    units = manifest.requests_frame().with_row_index("_unit")
    ok = ~pl.col("status").is_in(_NEVER_SENT)
    if manifest.unsharded is not None:  # sent one by one: the journal knows every outcome
        known = realtime_outcomes(folder)
        outcome = pl.col("request_id").replace_strict(known, default="unsubmitted", return_dtype=pl.String)
        units = units.with_columns(pl.when(ok).then(outcome).otherwise(pl.col("status")).alias("outcome"))
    else:
        results = collect_results(folder, client=client, download=download, source=source, follow=False)
        found = results.frame.filter(~pl.col("outcome").is_in(_NEVER_SENT)).select("request_id", "outcome")
        if found.get_column("request_id").is_duplicated().any():
            msg = (
                f"{folder}/requests.parquet lists a request_id twice among its valid units (edited by hand?); "
                "rebuild the directory before retrying"
            )
            raise ResultsError(msg)
        units = units.join(found, on="request_id", how="left").sort("_unit")
        units = units.with_columns(
            pl.when(ok)
            .then(pl.col("outcome").fill_null("pending"))
            .otherwise(pl.col("status"))
            .alias("outcome")
        )
    counts = dict(units.group_by("outcome").len().iter_rows())
    return units, {o: int(counts.get(o, 0)) for o in OUTCOMES}


def _retry_frame(
    folder: Path, manifest: Manifest, picked: pl.DataFrame, limits: Limits
) -> tuple[pl.DataFrame, Report]:
    """The Spill frame of the retried units (new ids, original lines), and a report of their checks."""
    originals = picked.get_column("request_id").to_list()
    lines = _original_lines(folder, manifest, picked)
    new_ids: list[str] = []
    new_lines: list[str] = []
    report = Report(limits=limits)
    names = [s.name for s in manifest.sources]

    def where(index: int) -> dict[str, Any]:
        unit = picked.row(index, named=True)
        name = names[unit["source"]] if 0 <= unit["source"] < len(names) else None
        return {"source": name, "row": unit["row"], "source_line": unit["source_line"]}

    bad: set[int] = set()
    for index, (original, line) in enumerate(zip(originals, lines, strict=True)):
        new = next_request_id(original)
        problem = request_id_problem(new)
        if problem is not None:
            bad.add(index)
            message = (
                f"the retry's request_id {new!r} {problem}; shorten {original!r} in the source and rebuild"
            )
            report.add(
                Finding(
                    code="invalid-request-id",
                    severity="error",
                    message=message,
                    request_id=original,
                    pointer="/request_id",
                    **where(index),
                )
            )
        obj = orjson.loads(line)
        obj["request_id"] = new
        new_ids.append(new)
        new_lines.append(orjson.dumps(obj).decode())

    def emit(finding: Finding) -> None:
        index = (finding.line or 1) - 1
        if finding.code == "invalid-request-id" and index in bad:
            return  # already said, with the original request_id
        if finding.severity == "error":
            bad.add(index)
        report.add(finding.model_copy(update={"line": None, **where(index)}))

    check_lines((text.encode() for text in new_lines), emit=emit, limits=limits)
    report.stats.lines = report.stats.records = len(new_lines)
    report.stats.valid_records = len(new_lines) - len(bad)
    if bad:
        raise ValidationFailed(report)
    frame = picked.select(
        pl.Series("request_id", new_ids, dtype=pl.String),
        "source",
        "row",
        "source_line",
        *manifest.each,
        pl.lit("ok").alias("status"),
        pl.lit(None, dtype=pl.String).alias("code"),
        pl.lit(None, dtype=pl.String).alias("message"),
        pl.Series("line", new_lines, dtype=pl.String),
        pl.lit(True).alias("usable"),
        pl.col("request_id").alias(RETRY_OF),
    )
    return frame, report


def _original_lines(folder: Path, manifest: Manifest, picked: pl.DataFrame) -> list[bytes]:
    """The line each picked unit was sent as, read from its shard (or from ``realtime.jsonl``)."""
    found: dict[int, bytes] = {}
    rows = picked.select(pl.int_range(pl.len()).alias("i"), "request_id", "shard", "shard_line")
    for (number,), group in rows.filter(pl.col("shard").is_not_null()).group_by("shard"):
        if not 1 <= int(number) <= len(manifest.shards):
            msg = (
                f"requests.parquet names shard {number}, which manifest.json does not list; rebuild {folder}"
            )
            raise ResultsError(msg)
        info = manifest.shards[int(number) - 1]
        path = folder / info.file
        digest, _, _ = file_sha256(path) if path.is_file() else ("", 0, 0)
        if digest != info.sha256:
            msg = (
                f"{path} is missing or changed since the build (sha256 differs), so the lines it sent cannot "
                "be read back; restore it (`batchkit results` lists what changed)"
            )
            raise ResultsError(msg)
        lines = path.read_bytes().split(b"\n")
        for i, request_id, _, shard_line in group.iter_rows():
            line = lines[shard_line - 1] if shard_line is not None and 1 <= shard_line < len(lines) else b""
            found[i] = checked_line(line, request_id, path, shard_line or 0, ResultsError)
    loose = rows.filter(pl.col("shard").is_null())
    if not loose.is_empty():
        by_id = dict(read_realtime_lines(folder, manifest)) if manifest.unsharded is not None else {}
        for i, request_id, _, _ in loose.iter_rows():
            line = by_id.get(request_id)
            if line is None:
                msg = f"{folder} has no line for request_id {request_id!r} (no shard, no realtime.jsonl line)"
                raise ResultsError(msg)
            found[i] = line
    return [found[i] for i in range(picked.height)]


def _too_few(n: int, selected: dict[str, int], limits: Limits, out: Path) -> Finding:
    what = ", ".join(f"{count} {outcome}" for outcome, count in selected.items())
    noun = "unit" if n == 1 else "units"
    return Finding(
        code="too-few-records",
        severity="error",
        message=(
            f"{n} {noun} to retry ({what}); a batch needs at least {limits.min_records} "
            f"({limits.min_records - n} more). Send them one by one now with --realtime (POST /v2/generate, "
            f"journaled), or keep them with --hold and add them to your next build with "
            f"`batchkit build SOURCE --mapping M --out DIR --include-held {out}`"
        ),
    )


def _fingerprint(frame: pl.DataFrame, mode: Mode, limits: Limits) -> str:
    digest = hashlib.sha256(orjson.dumps([mode, limits.as_dict()]))
    for record in frame.drop("status", "code", "message", "usable").iter_rows():
        digest.update(orjson.dumps(record) + b"\n")
    return digest.hexdigest()


def _reusable(out: Path, folder: Path, fingerprint: str, mode: Mode, *, force: bool) -> bool:
    """True when ``out`` already holds exactly this retry; raises when it holds something not to replace."""
    submitted = (out / JOURNAL).exists()
    try:
        existing = load_manifest(out) if (out / MANIFEST).exists() else None
    except InputError:
        existing = None
    if existing is not None and existing.retry is not None:
        retry = existing.retry
        same = retry.fingerprint == fingerprint and retry.mode == mode and Path(retry.of) == folder.resolve()
        if same and (submitted or not verify_shards(out, existing)):
            return True  # (damaged shards of an unsubmitted copy are simply written again)
        if same:
            return False
    if submitted:
        msg = (
            f"{out} was already submitted (it has {JOURNAL}) and holds another selection than this retry; "
            "retry into a new directory"
        )
        raise InputError(msg, path=out)
    held = existing.unsharded if existing is not None else None
    if held is not None and held.consumed_by:
        msg = f"{out}'s held requests were already included in {held.consumed_by}; retry into a new directory"
        raise InputError(msg, path=out)
    if existing is not None and not force:
        msg = (
            f"{out} already holds a build ({existing.name}, {existing.counts.units:,} units) that is not this "
            "retry; pass --force to replace it, or choose another --out"
        )
        raise InputError(msg, path=out)
    return False


def _check_earlier_retries(folder: Path, out: Path, frame: pl.DataFrame, *, force: bool) -> None:
    """Refuse units already retried into another directory that still exists (unless ``force``)."""
    if force:
        return
    wanted = set(frame.get_column(RETRY_OF).to_list())
    for other in retried_into(folder):
        if other.resolve() == out.resolve():
            continue
        try:
            manifest = load_manifest(other)
            earlier = set(manifest.scan_requests().select(RETRY_OF).collect().get_column(RETRY_OF).to_list())
        except (InputError, pl.exceptions.PolarsError, OSError):
            continue  # gone or unreadable: nothing there can be sent
        both = wanted & earlier
        if both:
            example = sorted(both)[0]
            msg = (
                f"{len(both):,} of these units (such as {example!r}) were already retried into {other}; "
                f"retrying them again would send them twice. Retry what still fails there "
                f"(`batchkit retry {other} --out NEW`), or pass --force to retry them from {folder} anyway"
            )
            raise InputError(msg, path=other)
