"""Sample first (``run --sample N``): a stratified handful of a build's requests, as a directory of its own.

:func:`choose_sample` picks, in source order, units until every ``[each]`` value and every distinct video
(its URL, or asset id) is in the sample at least once (first units that bring both a new value and a new
video, then a new value, then a new video), then spreads the rest of the ``N`` evenly over the build. When
covering every value and video takes more than ``N`` units, the sample is that cover.

:func:`write_sample` writes them, byte for byte the lines of the build, with the same request_ids, sources,
mapping and limits, into ``OUT-sample/`` beside the build directory ``OUT`` (:func:`sample_directory`): as
shards when there are at least a batch's minimum, else as ``realtime.jsonl`` to send one by one (the path
``retry --realtime`` uses). Its ``media.parquet`` and ``lengths.parquet`` come from the build's, so it is
estimated (and budgeted) like any directory. A sample directory that was already submitted is resumed as it
is, never rewritten.

Afterwards the full run takes the sample's completed requests as reusable (:func:`sample_reuse`): they are not
sent, or paid, again. A sample with requests still pending stops the full run, which would otherwise pay for
them twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import orjson
import polars as pl

from .._build.held import take_sources
from .._build.probe import directory_lines
from .._build.reuse import Reusable
from .._errors import InputError, JournalError
from .._report import Report
from .._results.results import _collect
from .._results.reuse import find_reusable
from .._shard.builddir import JOURNAL, LENGTHS, MANIFEST, MEDIA, Manifest
from .._shard.plan import expected_layout
from .._shard.spill import Spill
from .._shard.write import finish, prepare_out_dir, safe_name

__all__ = ["SAMPLE_SUFFIX", "choose_sample", "sample_directory", "sample_reuse", "write_sample"]

log = logging.getLogger("batchkit")

#: ``OUT`` → ``OUT-sample``.
SAMPLE_SUFFIX: Final = "-sample"
Note = Callable[[str], None]


def sample_directory(folder: str | Path) -> Path:
    """Where the sample of the build directory ``folder`` lives: ``OUT-sample`` beside ``OUT``."""
    path = Path(folder)
    return path.with_name(path.name + SAMPLE_SUFFIX)


def choose_sample(videos: Sequence[str | None], labels: Sequence[str | None], n: int) -> list[int]:
    """Positions of a stratified sample of ``n`` units (see the module docstring), in order.

    ``videos[i]`` and ``labels[i]`` are unit ``i``'s video and ``[each]`` label (None: none).

    >>> choose_sample(["v1", "v1", "v2", "v2"], ["de", "fr", "de", "fr"], 2)
    [0, 3]
    """
    if n < 1:
        msg = f"a sample needs at least 1 request, not {n}"
        raise InputError(msg)
    values = {label for label in labels if label is not None}
    shown = {video for video in videos if video is not None}
    chosen: list[int] = []
    taken: set[int] = set()
    passes: list[Callable[[int], bool]] = [
        lambda i: labels[i] in values and videos[i] in shown,
        lambda i: labels[i] in values,
        lambda i: videos[i] in shown,
    ]
    for wanted in passes:
        for i in range(len(videos)):
            if i not in taken and wanted(i):
                chosen.append(i)
                taken.add(i)
                values.discard(labels[i])
                shown.discard(videos[i])
    rest = [i for i in range(len(videos)) if i not in taken]
    room = min(n - len(chosen), len(rest))
    if room > 0:
        chosen.extend(rest[(j * len(rest)) // room] for j in range(room))
    return sorted(chosen)


def _video(line: bytes) -> str | None:
    try:
        items = orjson.loads(line)["payload"]["input"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("type") == "video":
            found = item.get("url") or item.get("assetId")
            return str(found) if found is not None else None
    return None


def write_sample(folder: str | Path, manifest: Manifest, n: int, *, note: Note | None = None) -> Path:
    """Write (or resume) the sample of ``n`` requests of the build directory ``folder``; its directory."""
    source = Path(folder)
    out = sample_directory(source)
    say = note or (lambda _text: None)
    if (out / JOURNAL).exists() and (out / MANIFEST).exists():
        say(f"{out} was already sent; resuming it as it is")
        return out
    lines = directory_lines(source, manifest).filter(pl.col("status") == "ok")
    if lines.is_empty():
        msg = f"{source} has no valid request to sample; fix the rows its report lists first"
        raise InputError(msg, path=source)
    labels = _labels(lines, manifest.each)
    picks = choose_sample([_video(line) for line in lines.get_column("line").to_list()], labels, n)
    if len(picks) > n:
        say(f"{len(picks)} requests, to include every [each] value and every distinct video (more than {n})")
    picked = lines[picks]
    frame = picked.select(
        "request_id",
        "source",
        "row",
        "source_line",
        *manifest.each,
        pl.lit("ok").alias("status"),
        pl.lit(None, dtype=pl.String).alias("code"),
        pl.lit(None, dtype=pl.String).alias("message"),
        pl.col("line").cast(pl.String),
        pl.lit(True).alias("usable"),
    )
    prepare_out_dir(out, force=False)
    sources, copies = take_sources(manifest.sources, source, first_index=0)
    if (source / MEDIA).is_file():
        copies.append((source / MEDIA, MEDIA))
    limits = manifest.limits
    realtime = frame.height < limits.min_records
    stem = safe_name(manifest.name + SAMPLE_SUFFIX)
    layout = [] if realtime else expected_layout(frame.height, limits)
    with Spill(out, manifest.each, name=stem, layout=layout) as spill:
        spill.add(frame)
        spill.close()
        if (source / LENGTHS).is_file():
            lengths = pl.read_parquet(source / LENGTHS)[picked.get_column("unit").to_list()]
            lengths.write_parquet(spill.dir / LENGTHS)
            copies.append((spill.dir / LENGTHS, LENGTHS))
        finish(
            spill,
            out_dir=out,
            name=stem,
            limits=limits,
            report=Report(limits=limits),
            sources=sources,
            mapping=manifest.mapping,
            rows=frame.select("source", "row").n_unique(),
            unsharded="realtime" if realtime else None,
            copies=copies,
        )
    how = "one by one (fewer than a batch's minimum)" if realtime else "in batches"
    say(f"{frame.height} of {lines.height:,} request(s) into {out}, sent {how}")
    return out


def _labels(lines: pl.DataFrame, each: Sequence[str]) -> list[str | None]:
    from .._build.preflight import each_labels

    return each_labels(lines, each).to_list()


def sample_reuse(folder: str | Path, reuse: Reusable | None) -> Reusable | None:
    """``reuse`` with the completed requests of ``folder``'s sample added (unchanged when there is none).

    Raises :class:`JournalError` when some of the sample's requests are not finished (still running, or not
    sent yet): the full run would send them too.
    """
    out = sample_directory(folder)
    if not (out / MANIFEST).exists() or not (out / JOURNAL).exists():
        return reuse
    units = _collect(out, client=None, download=False, source=None, rows=False).frame
    open_ = units.filter((pl.col("status") == "ok") & pl.col("outcome").is_in(["pending", "unsubmitted"]))
    if open_.height:
        msg = (
            f"{open_.height:,} request(s) of the sample {out} are not finished yet, and the full run would send "
            f"them as well; finish the sample first (run the same `batchkit run --sample` again), or remove "
            f"{out} to send everything"
        )
        raise JournalError(msg)
    found = find_reusable([out])
    return found if reuse is None else reuse.merged(found)
