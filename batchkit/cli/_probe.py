"""``batchkit probe SOURCE --mapping M`` and ``batchkit probe DIR``, and the progress of a probe that ``build``
and ``run`` share: one bar (URLs done, from the cache, bytes read, ETA) and a summary table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._build.probe import ProbeResult, probe_directory, probe_source
from .._report import ValidationFailed
from . import _render as render
from ._common import EXIT_FAILED, command
from ._options import Output, ProbeJob, output_options, probe_options

if TYPE_CHECKING:
    from .._probe.options import ProbeOptions

__all__ = ["ProbeStats", "probe_command", "probing"]


@dataclass(slots=True)
class ProbeStats:
    """The last progress a probe reported: URLs done and total, answered from the cache, bytes read."""

    done: int = 0
    total: int = 0
    cached: int = 0
    bytes_read: int = 0

    def summary(self) -> None:
        """The probe's numbers on stderr, when it probed anything."""
        if self.total:
            render.probe_summary(self.total, self.cached, self.bytes_read)


def probing(probe: ProbeOptions | None, bar: render.Bar) -> tuple[ProbeOptions | None, ProbeStats]:
    """``probe`` (None: no probe) with its progress on ``bar`` (counting media), and the counts it reports."""
    stats = ProbeStats()
    if probe is None:
        return None, stats
    feed = bar.feed("media")

    def update(done: int, total: int, cached: int, read: int) -> None:
        stats.done, stats.total, stats.cached, stats.bytes_read = done, total, cached, read
        feed(done, total)
        bar.update(done, total, note=f"{cached:,} cached, {read / 1e6:,.1f} MB read")

    return dataclasses.replace(probe, on_progress=update), stats


_JSON = "the report, the counts and every URL's result"


@command("probe", failed="error findings (media that cannot be sent as it is)")
@probe_options()
@output_options(_JSON, max_findings=50)
def probe_command(job: ProbeJob, output: Output) -> None:
    """Probe every media URL of SOURCE (with --mapping) or of a build DIRECTORY, without sending anything.

    Each URL is read with a few small Range requests (never the whole file; the API key is never sent),
    its duration, tracks and codecs checked against what Sync accepts, and each problem reported at its
    source row. For a build directory, DIR/media.parquet and DIR/lengths.parquet are written (what
    `batchkit estimate DIR` reads).
    """
    with render.progress("media") as bar:
        probe, _ = probing(job.options.probe, bar)
        if job.target.is_dir():
            result = probe_directory(job.target, probe)
        else:
            assert job.mapping is not None  # probe_options asks for it with a source
            try:
                result = probe_source(job.target, job.mapping, dataclasses.replace(job.options, probe=probe))
            except ValidationFailed as exc:
                result = ProbeResult(exc.report)
    if output.json:
        report = result.report
        render.document({
            "valid": report.valid, "directory": result.directory, "urls": len(result.media), "cached": result.cached,
            "bytes_read": result.bytes_read, "statuses": result.statuses, "report": report,
            "media": [info.to_dict() for info in result.media.values()],
        })  # fmt: skip
    else:
        render.probed(result, max_findings=output.max_findings)
    if not result.report.valid:
        raise SystemExit(EXIT_FAILED)
