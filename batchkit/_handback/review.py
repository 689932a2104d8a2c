"""The review page: one self-contained HTML file to look at every request of a build, and decide on each.

:func:`write_review` turns a results table (one row per request unit: the source's columns, the ``[each]``
variables, then ``request_id ... outcome, error_code, error_message, output_url, output_duration,
generation_id``) into a static page that opens from disk in any browser. No server, and nothing from the
internet: the CSS and JavaScript are inline (kept beside this module as ``review.css`` and ``review.js``, and
the markup as ``review.html``), and a Content-Security-Policy lets the page run only its own script and style
(by hash) and load images only from ``data:`` URIs. Videos are the one exception, on purpose: a card plays the
local file when it was fetched (a path relative to the page, so the folder can move as a whole), else the
output URL, and only when the reviewer presses Play.

The page shows one card per request, grouped by source row (a localization sheet's video, with one card per
``[each]`` value: language...), with the outcome, error code and message, the source fields, a poster (a JPEG
from :func:`batchkit._handback.poster.poster_jpeg`, or a placeholder) and the video. Filters by outcome, by each
``[each]`` variable, by decision and by text narrow what is shown; cards are approved or rejected one by one or
all those shown at once, with a note. Decisions are kept in the browser (``localStorage``, keyed by the build
id, so two builds' pages never mix) and download as ``decisions.csv``
(:mod:`batchkit._handback.decisions` documents it and reads it back).

Everything that comes from the table is data, never markup: the table goes into the page as JSON inside
``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as ``\\u003c``, ``\\u003e`` and
``\\u0026`` (so no ``</script>`` or ``<!--`` can end it early), and the script builds every element with
``textContent`` and attributes, never with HTML strings. Links and sources are only ``http(s)`` URLs or the
computed relative paths. Cards are rendered a page at a time as the reviewer scrolls (60 in the document at
first), so a page of 10,000 requests stays quick to open and to filter. The file grows linearly: 34 KB of page,
0.1-0.3 KB a card, and each poster in base64 (about 8 KB for a 320 px JPEG).

The page is written to a temporary file beside the target and renamed into place.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import orjson
import polars as pl

from .._build.held import RETRY_OF
from .._errors import InputError
from .._files import save
from .._results.join import CHAIN_COLUMNS, RESULT_COLUMNS

__all__ = [
    "CARD_COLUMNS",
    "PAGE_FORMAT",
    "build_id_of",
    "page_data",
    "read_page_data",
    "render_page",
    "write_review",
]

log = logging.getLogger("batchkit")

#: The version of the data the page embeds; the script refuses data of another version.
PAGE_FORMAT: Final = "batchkit-review/1"

#: The columns the results table adds after the source's own (and the ``[each]`` variables). Cards read them;
#: everything else is a source column. (``retry_of`` is in the table of a retry directory.)
_RESULT_COLUMNS: Final = (*RESULT_COLUMNS, RETRY_OF, *CHAIN_COLUMNS)
#: Outcomes in the order the filters list them (any other value the table holds comes after, sorted).
_OUTCOME_ORDER: Final = ("completed", "failed", "rejected", "missing", "invalid", "pending", "unsubmitted")

#: What each card of the embedded JSON holds, in order (cards are arrays, to keep 10,000 of them small).
CARD_COLUMNS: Final = (
    "request_id",
    "outcome",
    "error_code",
    "error_message",
    "output_url",
    "output_duration",
    "generation_id",
    "file",  # the fetched video, relative to the page (URL-encoded), or null
    "poster",  # a data: URI of the poster JPEG, or null
    "group",  # index into "groups": the source row this card belongs to
    "each",  # the [each] values, in the order of "each"
)

_DATA_ID: Final = "review-data"
_PLACEHOLDER: Final = re.compile(r"\{\{(\w+)\}\}")
_IMAGE_TYPES: Final = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def write_review(
    frame: pl.DataFrame,
    out: str | os.PathLike[str],
    *,
    title: str,
    each: Sequence[str] = (),
    source_columns: Sequence[str] | None = None,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    posters: Mapping[str, bytes | None] | None = None,
    build_id: str | None = None,
) -> Path:
    """Write the review page of ``frame`` (a results table) to ``out``; return its path.

    ``each`` names the ``[each]`` variables (the manifest's), which split a source row into cards and get a
    filter each. ``source_columns`` are the fields shown for a source row (default: every column that is
    neither a result column nor an ``[each]`` variable); rows are grouped by all of those columns.
    ``files`` maps a request_id to its fetched video (a local path; missing files are skipped with a
    warning) and ``posters`` to its poster image (JPEG or PNG bytes; None for none). ``build_id`` keys the
    decisions kept in the browser and is written into ``decisions.csv``; by default it is derived from the
    request_ids, so a page written again for the same build keeps the reviewer's decisions.
    """
    target = Path(out)
    if target.is_dir():
        msg = f"{target} is a directory; give a file name such as {target / 'review.html'}"
        raise InputError(msg, path=target)
    data = page_data(
        frame,
        title=title,
        each=each,
        source_columns=source_columns,
        files=files,
        posters=posters,
        build_id=build_id,
        base=target.absolute().parent,
    )
    page = render_page(data)
    save(target, page.encode())
    log.info("review page %s: %d card(s), %s bytes", target, len(data["cards"]), f"{len(page):,}")
    return target


def page_data(
    frame: pl.DataFrame,
    *,
    title: str,
    each: Sequence[str] = (),
    source_columns: Sequence[str] | None = None,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    posters: Mapping[str, bytes | None] | None = None,
    build_id: str | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """The JSON the page embeds (see :func:`write_review`; ``base`` is the folder file paths are relative to)."""
    _check_columns(frame, each, source_columns)
    each = list(each)
    own = [c for c in frame.columns if c not in _RESULT_COLUMNS and c not in each]
    shown = own if source_columns is None else list(source_columns)
    ids = _strings(frame, "request_id")
    groups, group_of = _groups(frame, own, shown, by_row=not each)
    relative = _relative_files(files or {}, base or Path.cwd())
    images = _poster_uris(posters or {})
    outcomes = _strings(frame, "outcome")
    duration = frame.get_column("output_duration").to_list() if "output_duration" in frame.columns else None
    each_values = [_strings(frame, name) for name in each]
    optional = {
        name: _strings(frame, name) for name in ("error_code", "error_message", "output_url", "generation_id")
    }
    cards: list[list[Any]] = []
    for index, request_id in enumerate(ids):
        seconds = duration[index] if duration is not None else None
        cards.append(
            [
                request_id,
                outcomes[index],
                optional["error_code"][index],
                optional["error_message"][index],
                optional["output_url"][index],
                seconds if isinstance(seconds, int | float) and seconds == seconds else None,  # NaN → null
                optional["generation_id"][index],
                relative.get(request_id) if request_id is not None else None,
                images.get(request_id) if request_id is not None else None,
                group_of[index],
                [values[index] for values in each_values],
            ]
        )
    # A stable sort: a group's cards stay in table order, whatever order the table lists the groups in.
    order = sorted(range(len(cards)), key=lambda i: group_of[i])
    present = set(outcomes)
    listed: list[str] = [o for o in _OUTCOME_ORDER if o in present]
    listed += sorted(o for o in present if o is not None and o not in _OUTCOME_ORDER)
    return {
        "format": PAGE_FORMAT,
        "title": title,
        "build": build_id if build_id is not None else build_id_of(ids),
        "each": each,
        "fields": shown,
        "outcomes": listed,
        "columns": list(CARD_COLUMNS),
        "groups": groups,
        "cards": [cards[i] for i in order],
    }


def render_page(data: Mapping[str, Any]) -> str:
    """The HTML page for ``data`` (from :func:`page_data`): the template with its style, script and data."""
    style = _asset("review.css")
    script = _asset("review.js")
    values = {
        "title": html.escape(str(data["title"])),
        "csp": _content_security_policy(style, script),
        "style": style,
        "script": script,
        "data": _json_for_script(data),
        "data_id": _DATA_ID,
    }
    # One pass: a value that happens to contain "{{...}}" is never expanded again.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset("review.html"))


def read_page_data(page: str) -> dict[str, Any]:
    """The data embedded in a review page's HTML (what the page's script reads), for tests and tools."""
    match = re.search(
        rf'<script type="application/json" id="{_DATA_ID}">(.*?)</script>', page, flags=re.DOTALL
    )
    if match is None:
        msg = "this is not a batchkit review page: it has no embedded review data"
        raise InputError(msg)
    data: dict[str, Any] = orjson.loads(match.group(1))
    return data


# -- building the data ----------------------------------------------------------------------------------------


def _check_columns(frame: pl.DataFrame, each: Sequence[str], source_columns: Sequence[str] | None) -> None:
    lacking = [c for c in ("request_id", "outcome") if c not in frame.columns]
    lacking += [c for c in each if c not in frame.columns]
    lacking += [c for c in source_columns or () if c not in frame.columns]
    if lacking:
        msg = (
            f"the results table has no column {lacking[0]!r} (it has {', '.join(frame.columns[:12]) or 'none'}); "
            "pass the table of batchkit results, with each= naming its [each] variables"
        )
        raise InputError(msg, column=lacking[0])
    clash = [c for c in each if c in _RESULT_COLUMNS]
    if clash:
        msg = f"{clash[0]!r} is a results column, not an [each] variable"
        raise InputError(msg, column=clash[0])


def _strings(frame: pl.DataFrame, name: str) -> list[str | None]:
    """A column as text (None where null): strings as they are, anything else in its usual spelling."""
    if name not in frame.columns:
        return [None] * frame.height
    column = frame.get_column(name)
    if column.dtype == pl.String:
        return column.to_list()
    if column.dtype.is_nested() or column.dtype == pl.Object:
        return [None if v is None else orjson.dumps(v, default=str).decode() for v in column.to_list()]
    return column.cast(pl.String).to_list()


def _groups(
    frame: pl.DataFrame, own: list[str], shown: list[str], *, by_row: bool
) -> tuple[list[list[str | None]], list[int]]:
    """The groups (their shown fields) and every table row's group. With ``[each]``, a group is a distinct
    source row (all its own columns), in first-seen order; without, every table row is its own group."""
    keyed = own and not by_row
    keys = (
        list(zip(*(_strings(frame, c) for c in own), strict=True))
        if keyed
        else [(i,) for i in range(frame.height)]
    )
    fields = list(zip(*(_strings(frame, c) for c in shown), strict=True)) if shown else [() for _ in keys]
    index: dict[tuple[Any, ...], int] = {}
    groups: list[list[str | None]] = []
    group_of: list[int] = []
    for key, values in zip(keys, fields, strict=True):
        number = index.get(key)
        if number is None:
            number = index[key] = len(groups)
            groups.append(list(values))
        group_of.append(number)
    return groups, group_of


def _relative_files(files: Mapping[str, str | os.PathLike[str]], base: Path) -> dict[str, str]:
    """request_id → the fetched file as a URL relative to the page (or a file: URI on another drive)."""
    out: dict[str, str] = {}
    for request_id, value in files.items():
        text = os.fspath(value)
        path = Path(text.removeprefix("file://")) if text.startswith("file://") else Path(text)
        if not path.is_file():
            log.warning(
                "review: no video file %s for %s; the card plays its output URL instead", path, request_id
            )
            continue
        try:
            relative = Path(os.path.relpath(path.absolute(), base)).as_posix()
        except ValueError:  # another drive (Windows): only an absolute URI reaches it
            out[request_id] = path.absolute().as_uri()
            continue
        out[request_id] = quote(relative, safe="/")  # "a b#1.mp4" → "a%20b%231.mp4"; ":" can start no scheme
    return out


def _poster_uris(posters: Mapping[str, bytes | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for request_id, image in posters.items():
        if not image:
            continue
        kind = next((mime for magic, mime in _IMAGE_TYPES if image.startswith(magic)), None)
        if kind is None:
            log.warning(
                "review: the poster of %s is neither JPEG nor PNG; a placeholder is shown", request_id
            )
            continue
        out[request_id] = f"data:{kind};base64,{base64.b64encode(image).decode()}"
    return out


def build_id_of(ids: Sequence[str | None]) -> str:
    """The id of a build's page: a digest of its set of request_ids (the same build in any order is the same)."""
    digest = hashlib.sha256()  # of the set of request_ids: the same build in another order is the same build
    for request_id in sorted(ids, key=lambda i: (i is None, i or "")):
        digest.update(b"\x00" if request_id is None else request_id.encode() + b"\x1f")
    return digest.hexdigest()[:16]


# -- rendering ------------------------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files(__package__ or "batchkit._handback").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(data: Mapping[str, Any]) -> str:
    """Compact JSON that cannot end its ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes.

    Outside strings JSON has none of those characters, so the escapes only ever land inside strings, where
    ``JSON.parse`` turns them back into the same characters.
    """
    text = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _content_security_policy(style: str, script: str) -> str:
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {digest(script)}",
            f"style-src {digest(style)}",
            "img-src data:",
            "media-src 'self' file: https: http:",  # the fetched file, else the output URL, on Play only
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
