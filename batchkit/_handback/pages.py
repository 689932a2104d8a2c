"""``batchkit review DIR``: the review page of a build directory, with a poster for every finished video.

The cards are the directory's own results (not followed into retries: a card is decided where its video
was made, and ``retry DIR --from-review`` retries from that same directory). A poster is taken from the
fetched file when ``batchkit fetch`` brought it (``fetched.parquet``), else through HTTP Range reads of the
output URL (a few hundred KB per video, never the whole file, never with the API key); one that cannot be had
is a placeholder on the page. Posters are made a few at a time, and each within its own time and byte budget.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import polars as pl

from .._probe.config import Deadline, ProbeConfig
from .._probe.rangefile import RangeFile
from .._results.results import collect_results
from .._shard.builddir import REVIEW, load_manifest
from .deliver import fetched_files
from .poster import poster_jpeg
from .review import build_id_of, write_review

__all__ = ["ReviewOptions", "review_directory"]

log = logging.getLogger("batchkit")

_POSTER_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewOptions:
    """``posters``: make a poster per finished video (PyAV, the ``media`` extra); ``workers`` at a time,
    each within ``timeout`` seconds; ``title`` of the page (default: the build's name)."""

    posters: bool = True
    workers: int = 4
    timeout: float = 20.0
    title: str | None = None


def review_directory(
    directory: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    options: ReviewOptions | None = None,
    *,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    on_poster: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the review page of ``directory`` to ``out`` (default ``DIR/review.html``); return its path.

    ``files`` maps request_ids to fetched videos (default: what ``batchkit fetch`` recorded, if anything);
    ``on_poster(done, total)`` follows the posters.
    """
    opts = options or ReviewOptions()
    folder = Path(directory)
    manifest = load_manifest(folder)
    frame = collect_results(folder, download=False, follow=False).frame
    local: dict[str, str | os.PathLike[str]] = (
        dict(files) if files is not None else dict(fetched_files(folder))
    )
    posters = _posters(frame, local, opts, on_poster) if opts.posters else {}
    target = Path(out) if out is not None else folder / REVIEW
    return write_review(
        frame,
        target,
        title=opts.title or f"{manifest.name}: review",
        each=manifest.each,
        files=local,
        posters=posters,
        build_id=build_id_of(frame.get_column("request_id").to_list()),
    )


def _posters(
    frame: pl.DataFrame,
    files: Mapping[str, str | os.PathLike[str]],
    opts: ReviewOptions,
    on_poster: Callable[[int, int], None] | None,
) -> dict[str, bytes | None]:
    done = frame.filter(pl.col("outcome") == "completed").select("request_id", "output_url")
    jobs = [(rid, url) for rid, url in done.iter_rows() if rid is not None and (rid in files or url)]
    if not jobs:
        return {}
    config = ProbeConfig(time_budget=opts.timeout, byte_budget=_POSTER_BYTES)
    out: dict[str, bytes | None] = {}
    with httpx.Client(follow_redirects=False, timeout=opts.timeout) as http:  # never the API's client

        def one(job: tuple[str, str | None]) -> tuple[str, bytes | None]:
            request_id, url = job
            if request_id in files:
                return request_id, poster_jpeg(files[request_id], timeout=opts.timeout)
            assert url is not None
            try:
                media = RangeFile(
                    url, http, config=config, deadline=Deadline(opts.timeout), eof_on_failure=True
                )
            except ValueError as exc:
                log.warning("no poster for %s: %s", request_id, exc)
                return request_id, None
            with io.BufferedReader(media, buffer_size=config.block_size) as buffered:
                return request_id, poster_jpeg(buffered, timeout=opts.timeout, max_bytes=_POSTER_BYTES)

        with ThreadPoolExecutor(max_workers=max(1, opts.workers)) as pool:
            for number, (request_id, image) in enumerate(pool.map(one, jobs), 1):
                out[request_id] = image
                if on_poster is not None:
                    on_poster(number, len(jobs))
    return out
