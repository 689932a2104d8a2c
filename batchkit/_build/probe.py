"""Probe without building shards: a source through its mapping (:func:`probe_source`), or the requests of an
existing build directory (:func:`probe_directory`, which also writes its ``media.parquet`` and
``lengths.parquet``).

Both run the media pass of ``build --probe`` (:func:`batchkit._build.preflight.check_requests`), so the same
findings come out at the same source rows; neither changes which requests are sent. The lines of a build
directory are read back from its shards (checked against the manifest first) or from its ``realtime.jsonl`` /
``held.jsonl``, and each is joined to its source row through ``requests.parquet``.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from .._errors import InputError
from .._mapping.mapping import Mapping, load_mapping
from .._mapping.templates import UnitPlan
from .._probe.cache import write_media_parquet
from .._probe.media import MediaInfo
from .._probe.options import ProbeOptions
from .._report import Report, ValidationFailed
from .._shard.builddir import LENGTHS, MEDIA, Manifest, load_manifest, verify_shards
from .._shard.spill import Spill
from .._sources.source import ISSUE, read_source
from .options import BuildOptions
from .preflight import Unit, check_requests, each_labels, lengths_frame, spilled_units, write_lengths

__all__ = ["ProbeResult", "directory_lines", "probe_directory", "probe_source"]

#: Units whose line a build directory keeps: valid ones sent in shards or one by one, and held ones.
_KEPT = ("ok", "held")


@dataclass(slots=True)
class ProbeResult:
    """What a probe found: its findings (at source rows) and what it learned of every URL.

    ``directory`` is the build directory probed (None for a source), where ``media.parquet`` and
    ``lengths.parquet`` were written.
    """

    report: Report
    media: dict[str, MediaInfo] = field(default_factory=dict)
    directory: Path | None = None

    @property
    def cached(self) -> int:
        """URLs answered from the probe cache (their validators unchanged)."""
        return sum(info.from_cache for info in self.media.values())

    @property
    def statuses(self) -> dict[str, int]:
        """URLs per status (``ok`` or a problem code), most frequent first."""
        return dict(Counter(info.problem or "ok" for info in self.media.values()).most_common())

    @property
    def bytes_read(self) -> int:
        return sum(info.bytes_read for info in self.media.values())

    def to_dict(self) -> dict[str, Any]:
        """The verdict, the counts, URLs by status, the report and every URL's result, as plain data."""
        return {
            "valid": self.report.valid,
            "directory": str(self.directory) if self.directory is not None else None,
            "urls": len(self.media),
            "cached": self.cached,
            "bytes_read": self.bytes_read,
            "statuses": self.statuses,
            "report": orjson.loads(self.report.to_json(indent=False)),
            "media": [info.to_dict() for info in self.media.values()],
        }


def probe_source(
    source: Any, mapping: Mapping | dict[str, Any] | str | Path, options: BuildOptions | None = None
) -> ProbeResult:
    """Probe the media of every request ``source`` makes through ``mapping``, writing nothing.

    ``options`` read the source as :func:`batchkit.build` would (their ``probe`` field says how to probe,
    default :class:`batchkit.ProbeOptions`). The report holds every finding a build would make, media ones
    included; rows that cannot become a request are reported and not probed.
    """
    opts = options or BuildOptions()
    probe = opts.probe or ProbeOptions()
    plan = load_mapping(mapping)
    src = read_source(source, **opts.read_options())
    report = Report(limits=opts.limits)
    for finding in src.findings:
        report.add(finding)
    missing = [column for column in plan.columns_used() if column not in src.columns]
    if missing:
        from .build import missing_column

        for column in missing:
            report.add(missing_column(src, column))
        raise ValidationFailed(report)
    from .build import LineMaker

    plans = plan.compile(opts.limits)
    maker = LineMaker(src, plans, opts.limits, plan.each_names, plan.row_filter)
    with (
        tempfile.TemporaryDirectory(prefix="batchkit-probe-") as folder,
        Spill(Path(folder), plan.each_names) as spill,
    ):
        for chunk in src.chunks(opts.chunk_rows, blank=True):
            chunk = chunk.filter(~(chunk[ISSUE] == "blank-row").fill_null(False))
            if chunk.height:
                frame, findings = maker.process(chunk)
                spill.add(frame)
                for finding in findings:
                    report.add(finding)
        spill.close()
        units = spill.scan().filter(pl.col("status") == "ok").sort("spill").collect()
        checked = check_requests(
            lambda: spilled_units(spill, units, plan.each_names),
            report,
            names=[src.name],
            plans=plans,
            limits=opts.limits,
            options=probe,
        )
        report.stats.files = 1
        report.stats.records = spill.units
        report.stats.valid_records = spill.spilled - len(checked.invalid)
    report.findings.sort(key=lambda f: (f.row is not None, f.row or 0))
    return ProbeResult(report, checked.infos)


def directory_lines(folder: Path, manifest: Manifest) -> pl.DataFrame:
    """The units of a build directory that have a line (:data:`_KEPT`), with ``unit`` (their position in
    ``requests.parquet``) and ``line``, in that order. Changed shards are an :class:`InputError`."""
    changed = verify_shards(folder, manifest)
    if changed:
        details = "; ".join(f.message for f in changed)
        msg = f"{folder}: {details}"
        raise InputError(msg, path=folder)
    units = manifest.requests_frame().with_row_index("unit").with_columns(pl.col("unit").cast(pl.Int64))
    kept = units.filter(pl.col("status").is_in(_KEPT))
    files: list[tuple[int | None, Path]]
    if manifest.unsharded is not None:
        files = [(None, folder / manifest.unsharded.file)]
    else:
        files = [(n, folder / info.file) for n, info in enumerate(manifest.shards, 1)]
    parts: list[pl.DataFrame] = []
    for number, path in files:
        lines = path.read_bytes().splitlines()
        own = kept.filter(pl.col("shard").is_null() if number is None else pl.col("shard") == number)
        if number is not None:
            own = own.sort("shard_line")
        if own.height != len(lines):
            msg = f"{path} has {len(lines):,} lines, but requests.parquet lists {own.height:,} for it; rebuild {folder}"
            raise InputError(msg, path=path)
        parts.append(own.with_columns(pl.Series("line", lines, dtype=pl.Binary)))
    if not parts:
        return kept.with_columns(pl.lit(None, dtype=pl.Binary).alias("line"))
    return pl.concat(parts).sort("unit")


def _directory_units(frame: pl.DataFrame, each: list[str]) -> Iterator[Unit]:
    for record in frame.iter_rows(named=True):
        yield Unit(
            record["unit"],
            record["request_id"],
            record["source"] if record.get("source") is not None else 0,
            record["row"],
            record["source_line"],
            {name: record[name] for name in each},
            record["line"],
        )


def probe_directory(directory: str | Path, options: ProbeOptions | None = None) -> ProbeResult:
    """Probe the media of every request of a build directory, and write its ``media.parquet`` and
    ``lengths.parquet`` (which ``batchkit estimate`` reads). Findings are located at the source rows; the
    directory's shards and ``requests.parquet`` are left as they are (rebuild with ``--probe`` to leave out
    rows whose media fails)."""
    folder = Path(directory)
    manifest = load_manifest(folder)
    frame = directory_lines(folder, manifest)
    plans: list[UnitPlan] = []
    if manifest.mapping is not None:
        plans = load_mapping(manifest.mapping).compile(manifest.limits)
    report = Report(limits=manifest.limits)
    checked = check_requests(
        lambda: _directory_units(frame, list(manifest.each)),
        report,
        names=[source.name for source in manifest.sources],
        plans=plans,
        limits=manifest.limits,
        options=options or ProbeOptions(),
    )
    report.stats.files = max(len(manifest.shards), 1)
    report.stats.records = frame.height
    report.stats.valid_records = frame.height - len(checked.invalid)
    report.findings.sort(key=lambda f: (f.row is not None, f.row or 0))
    requests = manifest.requests_frame()
    write_media_parquet(checked.infos.values(), folder / MEDIA)
    table = lengths_frame(
        requests.get_column("request_id"), each_labels(requests, manifest.each), checked.lengths
    )
    write_lengths(table, folder / LENGTHS)
    return ProbeResult(report, checked.infos, folder)
