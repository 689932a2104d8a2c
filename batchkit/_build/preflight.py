"""The media pass of a build (``build --probe``): probe every distinct media URL, then judge every request.

:func:`check_requests` is the pass itself, over request units that have their canonical line: the lines are
read once to collect each distinct ``(url, kind)`` (a campaign's shared base video is probed once), the URLs
are probed (:func:`batchkit._probe.probe_urls`, with the probe cache), and the lines are read a second time
to judge each request's media (:func:`batchkit._probe.payload_media_problems`, with the unit's ``[each]``
value as the language of a TTS script). Every problem becomes a finding at the unit's **source row** (its
column is the one the mapping reads the URL from, so ``audio_{lang}`` points at ``audio_de``); a URL the
mapping sets for every row is reported once. A unit with an error is invalid, its first error code in
``requests.parquet``, exactly like the build's other findings. The pass also measures each unit's billable
seconds (:func:`batchkit._probe.lengths.billable_seconds`), which ``lengths.parquet`` keeps for the estimate.

:func:`probe_spill` runs it inside :func:`batchkit.build`, over the spilled lines, and hands back what the
build writes: lines to leave out of the shards, provenance updates, and ``media.parquet`` and
``lengths.parquet`` (in the spill's folder, for the build to move into place with its other files).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson
import polars as pl

from .._files import atomic_write
from .._mapping.templates import UnitPlan
from .._probe.cache import write_media_parquet
from .._probe.checks import payload_media_problems
from .._probe.lengths import billable_seconds, durations
from .._probe.media import MediaInfo
from .._probe.options import ProbeOptions
from .._probe.probe import probe_urls
from .._report import Report
from .._shard.builddir import LENGTHS, MEDIA
from .._shard.spill import Spill
from .._wire.limits import Limits

__all__ = [
    "LENGTHS_SCHEMA",
    "Checked",
    "MediaPass",
    "Unit",
    "check_requests",
    "each_label",
    "each_labels",
    "lengths_frame",
    "probe_spill",
    "spilled_units",
    "write_lengths",
]

log = logging.getLogger("batchkit")

#: Columns of ``lengths.parquet``, one row per request unit in ``requests.parquet``'s order.
LENGTHS_SCHEMA: Final[dict[str, Any]] = {
    "request_id": pl.String,
    "model": pl.Categorical,
    "seconds": pl.Float64,
    "each": pl.Categorical,
}
_KINDS: Final = ("video", "audio")


class Unit(NamedTuple):
    """One request unit with its canonical line, where it came from and where it is."""

    unit: int
    request_id: str
    source: int
    row: int | None
    source_line: int | None
    values: dict[str, str | None]
    line: bytes


@dataclass(slots=True)
class Checked:
    """What :func:`check_requests` learned: the probe results, the units to make invalid, the lengths."""

    infos: dict[str, MediaInfo] = field(default_factory=dict)
    #: ``(unit, code, message)`` of every unit with a media error (its first one).
    invalid: list[tuple[int, str, str]] = field(default_factory=list)
    #: ``(unit, model, seconds)`` of every unit judged.
    lengths: list[tuple[int, str | None, float | None]] = field(default_factory=list)


def each_label(values: Mapping[str, str | None]) -> str | None:
    """A unit's ``[each]`` values as one label (``de``; ``de/alice`` for two variables), None without any."""
    shown = [value for value in values.values() if value is not None]
    return "/".join(shown) if shown else None


def _urls(units: Iterable[Unit]) -> Iterator[tuple[str, str]]:
    for unit in units:
        try:
            items = orjson.loads(unit.line)["payload"]["input"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and item.get("type") in _KINDS and isinstance(item.get("url"), str):
                yield item["url"], item["type"]


def check_requests(
    units: Callable[[], Iterator[Unit]],
    report: Report,
    *,
    names: Sequence[str],
    plans: Sequence[UnitPlan],
    limits: Limits,
    options: ProbeOptions,
) -> Checked:
    """Probe the media of the units ``units()`` yields (called twice), and judge each unit (module docstring).

    ``names`` are the source names by index; ``plans`` the mapping's units, by which a problem's pointer
    finds its column (for units of the first source).
    """
    checked = Checked()
    with options.open_cache() as cache:
        checked.infos = probe_urls(
            _urls(units()),
            config=options.config,
            cache=cache,
            on_progress=options.on_progress,
            refresh=options.refresh,
        )
    lengths = durations(checked.infos)
    variables = list(plans[0].values) if plans else []
    by_values: dict[tuple[str | None, ...], UnitPlan] = {
        tuple(plan.values.get(v) for v in variables): plan for plan in plans
    }
    said: set[tuple[str, str, str]] = set()
    for unit in units():
        payload = orjson.loads(unit.line)["payload"]
        language = options.language_of(unit.values)
        problems = payload_media_problems(
            payload,
            checked.infos,
            limits,
            language=language,
            now=options.now,
            turnaround=options.turnaround,
            mismatch_tolerance=options.mismatch_tolerance,
        )
        model = payload.get("model")
        seconds = billable_seconds(payload, lengths, language)
        checked.lengths.append((unit.unit, model if isinstance(model, str) else None, seconds))
        plan = by_values.get(tuple(unit.values.get(v) for v in variables)) if unit.source == 0 else None
        first: tuple[str, str] | None = None
        for problem in problems:
            if problem.severity == "error" and first is None:
                first = (problem.code, problem.message)
            leaf = plan.leaf_for(problem.pointer) if plan is not None else None
            if plan is not None and leaf is None:  # the mapping sets this URL for every row: say it once
                key = (problem.code, problem.pointer, problem.message)
                if key not in said:
                    said.add(key)
                    finding = problem.to_finding(source=names[0])
                    message = f"{problem.message} (set in the mapping, so on every request)"
                    report.add(finding.model_copy(update={"message": message}))
                continue
            report.add(
                problem.to_finding(
                    source=names[unit.source] if 0 <= unit.source < len(names) else None,
                    row=unit.row,
                    source_line=unit.source_line,
                    column=", ".join(leaf.columns) if leaf is not None and leaf.columns else None,
                    request_id=unit.request_id,
                )
            )
        if first is not None:
            checked.invalid.append((unit.unit, *first))
    return checked


def each_labels(frame: pl.DataFrame, each: Sequence[str]) -> pl.Series:
    """:func:`each_label` of every row of ``frame`` (which has the ``each`` columns), columnar."""
    if not each:
        return pl.Series("each", [None] * frame.height, dtype=pl.String)
    label = pl.concat_str([pl.col(name) for name in each], separator="/", ignore_nulls=True)
    return frame.select(pl.when(label != "").then(label).alias("each")).to_series()


def lengths_frame(
    request_ids: pl.Series, labels: pl.Series, lengths: Iterable[tuple[int, str | None, float | None]]
) -> pl.DataFrame:
    """``lengths.parquet``'s table: one row per unit, ``request_ids`` and ``each`` labels by unit index."""
    rows = sorted(lengths, key=lambda r: r[0])
    measured = pl.DataFrame(
        {"unit": [r[0] for r in rows], "model": [r[1] for r in rows], "seconds": [r[2] for r in rows]},
        schema={"unit": pl.Int64, "model": pl.String, "seconds": pl.Float64},
    )
    frame = pl.DataFrame(
        [request_ids.cast(pl.String).alias("request_id"), labels.cast(pl.String).alias("each")]
    ).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("unit"))
    return frame.join(measured, on="unit", how="left", maintain_order="left").select(
        "request_id", pl.col("model").cast(pl.Categorical), "seconds", pl.col("each").cast(pl.Categorical)
    )


def write_lengths(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``lengths.parquet`` (see :data:`LENGTHS_SCHEMA`) to ``path``, atomically."""
    buffer = io.BytesIO()
    frame.select(list(LENGTHS_SCHEMA)).write_parquet(buffer)
    atomic_write(path, buffer.getvalue())
    return path


# -- inside a build ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class MediaPass:
    """What the media pass gives a build: lines to leave out, provenance updates, files to move into place."""

    infos: dict[str, MediaInfo]
    excluded: list[int]
    updates: pl.DataFrame
    copies: list[tuple[Path, str]]


def spilled_units(spill: Spill, frame: pl.DataFrame, each: Sequence[str]) -> Iterator[Unit]:
    """The units of ``frame`` (spilled ones, by ``spill`` index ascending) with their lines."""
    wanted = iter(frame.iter_rows(named=True))
    target = next(wanted, None)
    index = 0
    rest = b""
    total = int(spill.sizes().sum())
    for block in spill.read(0, total):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            while target is not None and target["spill"] == index:
                yield Unit(
                    target["unit"],
                    target["request_id"],
                    target["source"],
                    target["row"],
                    target["source_line"],
                    {name: target[name] for name in each},
                    line,
                )
                target = next(wanted, None)
            index += 1
            if target is None:
                return


def probe_spill(
    spill: Spill,
    report: Report,
    *,
    names: Sequence[str],
    plans: Sequence[UnitPlan],
    each: Sequence[str],
    limits: Limits,
    options: ProbeOptions,
    skip: Iterable[int] = (),
) -> MediaPass:
    """The media pass over a closed spill's valid lines, but for the spill indexes in ``skip``."""
    provenance = spill.scan().select(
        "unit", "request_id", "source", "row", "source_line", *each, "status", "spill"
    )
    every = provenance.collect()
    skipped = pl.Series("skip", sorted(set(skip)), dtype=pl.Int64)
    frame = every.filter((pl.col("status") == "ok") & ~pl.col("spill").is_in(skipped.implode())).sort("spill")
    log.info("probe: checking the media of %d request(s)", frame.height)
    checked = check_requests(
        lambda: spilled_units(spill, frame, each),
        report,
        names=names,
        plans=plans,
        limits=limits,
        options=options,
    )
    spill_of = dict(frame.select("unit", "spill").iter_rows())
    excluded = [spill_of[unit] for unit, _, _ in checked.invalid]
    updates = pl.DataFrame(
        [(unit, "invalid", code, message) for unit, code, message in checked.invalid],
        schema={"unit": pl.Int64, "status": pl.String, "code": pl.String, "message": pl.String},
        orient="row",
    )
    media = write_media_parquet(checked.infos.values(), spill.dir / MEDIA)
    table = lengths_frame(every.get_column("request_id"), each_labels(every, each), checked.lengths)
    lengths = write_lengths(table, spill.dir / LENGTHS)
    return MediaPass(checked.infos, excluded, updates, [(media, MEDIA), (lengths, LENGTHS)])
