"""``batchkit build`` and ``batchkit shard``: sources or JSONL into a build directory of balanced shards."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .._build.build import build as build_source
from .._build.summary import invalid_rows_by_code, summarize
from .._report import ValidationFailed
from .._shard.builddir import FINDINGS, REPORT
from .._shard.reshard import shard_file
from .._shard.write import BuildResult
from . import _render as render
from ._common import EXIT_FAILED, command
from ._options import (
    BuildJob,
    Output,
    ShardJob,
    build_options,
    build_prices_options,
    output_options,
    shard_options,
)
from ._probe import probing

__all__ = ["build", "built_or_failed", "shard"]

_JSON = "counts, invalid units by code, shards and the whole report"
_FAILED = "invalid rows (nothing written but report.json; pass --skip-invalid) or too few records"


@command("build", failed=_FAILED)
@build_options()
@build_prices_options
@output_options(_JSON, max_findings=50)
def build(job: BuildJob, prices: Path | None, output: Output) -> None:
    """Build SOURCE (CSV, TSV, Parquet, Excel, NDJSON) into balanced batch shards in --out.

    Every row becomes one request (or one per [each] value), is checked like `batchkit validate`
    checks a line, and lands in exactly one shard or in report.json. --include-held adds the
    requests a `batchkit retry --hold` kept (checked the same way, joined to their own rows).
    --probe first probes every media URL (a row whose media fails is invalid, DIR/media.parquet keeps
    what was learned, and the estimate is shown); --reuse DIR leaves out the requests that already
    completed there (their outcome is carried into the results).
    """
    with render.progress("rows") as bar:
        probe, stats = probing(job.options.probe, bar)
        options = dataclasses.replace(job.options, probe=probe)
        make = lambda: build_source(job.source, job.mapping, job.out_dir, options, progress=bar.feed("rows"))  # noqa: E731
        try:
            built_or_failed(make, job.out_dir, output, unit="rows", skip_invalid=options.skip_invalid,
                            prices=prices, before=stats.summary)  # fmt: skip
        except SystemExit:
            if output.text:
                stats.summary()
            raise


@command("shard", failed=_FAILED.replace("rows", "lines"))
@shard_options()
@output_options(_JSON, max_findings=50)
def shard(job: ShardJob, output: Output) -> None:
    """Re-shard an existing batch JSONL (of any length) into balanced shards in --out.

    The input is validated first; invalid lines are reported by line number.
    """
    with render.progress("lines") as bar:
        make = lambda: shard_file(  # noqa: E731
            job.jsonl, job.out_dir, name=job.name, limits=job.limits, skip_invalid=job.skip_invalid,
            force=job.force, progress=bar.update,
        )  # fmt: skip
        built_or_failed(make, job.out_dir, output, unit="lines", skip_invalid=job.skip_invalid)


def built_or_failed(
    make: Callable[[], BuildResult],
    out_dir: Path,
    output: Output,
    *,
    unit: str,
    skip_invalid: bool,
    prices: Path | None = None,
    before: Callable[[], None] | None = None,
) -> BuildResult:
    """Run a build and show it (``before``: what to show first, in text); on invalid input show its findings
    and exit 1. With ``prices``, a probed build's estimate is priced with them."""
    try:
        result = make()
    except ValidationFailed as exc:
        failed(exc, out_dir, output, hint="fix them or pass --skip-invalid", rows=not skip_invalid)
    summary = summarize(result, prices=prices)
    if output.json:
        render.document(
            {"ok": True, **summary.to_dict(), "shards": result.manifest.shards, "report": result.report}
        )
    else:
        if result.report.counts:
            render.report(result.report, max_findings=output.max_findings)
        if before is not None:
            before()
        render.built(summary, unit=unit)
    return result


def failed(exc: ValidationFailed, out_dir: Path, output: Output, *, hint: str, rows: bool = True) -> NoReturn:
    """A build stopped by its findings: shown, exit 1 (``rows``: invalid rows stopped it, as they do
    without --skip-invalid)."""
    if output.json:
        render.document({"ok": False, "out_dir": str(out_dir), "report": exc.report})
    else:
        invalid = (
            (exc.invalid_units if exc.invalid_units is not None else invalid_rows_by_code(exc.report))
            if rows
            else {}
        )
        render.not_built(
            exc.report,
            invalid,
            [out_dir / REPORT, out_dir / FINDINGS],
            max_findings=output.max_findings,
            hint=hint,
        )
    raise SystemExit(EXIT_FAILED)
