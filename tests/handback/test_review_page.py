"""The review page as a file: its embedded data, escaping, grouping, media references and atomic writing.

What the page does in a browser is in ``test_review_browser.py``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from review_samples import localization_frame, results_row

from batchkit import InputError
from batchkit._handback.review import CARD_COLUMNS, page_data, read_page_data, render_page, write_review

HOSTILE = [
    "<script>alert(1)</script>",
    "</script><script>alert(2)</script>",
    '"><img src=x onerror=alert(3)>',
    "<!-- a comment -->",
    "&amp; &lt; {{data}} \u2028 \\u003c",
]
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20 + b"\xff\xd9"


class _Scripts(HTMLParser):
    """What an HTML parser sees: each <script> element's attributes and text, and the <title> text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in == "title":
            self.title += data


def _parse(page: str) -> _Scripts:
    parser = _Scripts()
    parser.feed(page)
    parser.close()
    return parser


def _cards(data: dict[str, object]) -> list[dict[str, object]]:
    columns = data["columns"]
    assert isinstance(columns, list)
    return [dict(zip(columns, row, strict=True)) for row in data["cards"]]  # type: ignore[attr-defined]


def test_the_page_is_one_file_with_inline_style_script_and_data(tmp_path: Path) -> None:
    """One <style>, one data block and one script, nothing referenced by URL, and the CSP hashes match."""
    page = write_review(
        localization_frame(), tmp_path / "review.html", title="Spring", each=["lang"]
    ).read_text()
    parsed = _parse(page)
    assert [attrs.get("type") for attrs, _ in parsed.scripts] == ["application/json", None]
    assert all("src" not in attrs for attrs, _ in parsed.scripts)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing loaded from elsewhere
    assert "@import" not in page
    assert "url(" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = csp.group(1)
    assert "default-src 'none'" in policy
    assert "img-src data:" in policy
    assert "unsafe-inline" not in policy
    style = re.search(r"<style>(.*?)</style>", page, flags=re.S)
    assert style is not None
    for text in (parsed.scripts[1][1], style.group(1)):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


def test_user_text_cannot_leave_the_data_block(tmp_path: Path) -> None:
    """Hostile text anywhere (title, ids, fields, messages, [each] values) stays inside the JSON, escaped."""
    rows = [
        {**results_row(1, "de"), "title": HOSTILE[0], "error_message": HOSTILE[1], "request_id": HOSTILE[2]},
        {**results_row(1, "fr"), "title": HOSTILE[0], "lang": HOSTILE[3], "error_code": HOSTILE[4]},
    ]
    out = write_review(pl.DataFrame(rows), tmp_path / "review.html", title=HOSTILE[1], each=["lang"])
    page = out.read_text()
    parsed = _parse(page)
    assert len(parsed.scripts) == 2  # no </script> in the data ended the block and began another
    raw = parsed.scripts[0][1]
    assert not set("<>&") & set(raw)
    assert parsed.title == HOSTILE[1]
    assert "<title>&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;</title>" in page
    data = read_page_data(page)
    assert data["title"] == HOSTILE[1]
    cards = _cards(data)
    assert [c["request_id"] for c in cards] == [HOSTILE[2], "v001_fr"]
    assert cards[0]["error_message"] == HOSTILE[1]
    assert cards[1]["each"] == [HOSTILE[3]]
    assert cards[1]["error_code"] == HOSTILE[4]
    assert data["groups"][0][data["fields"].index("title")] == HOSTILE[0]


def test_cards_are_grouped_by_source_row_whatever_the_table_order() -> None:
    """Language-major rows (all de, then all fr) still give one group per video, each with its languages."""
    frame = localization_frame(videos=3, langs=("de", "fr")).sort("lang", "video_id")
    data = page_data(frame, title="t", each=["lang"])
    assert [g[0] for g in data["groups"]] == ["v001", "v002", "v003"]
    cards = _cards(data)
    assert [(c["group"], c["request_id"]) for c in cards] == [
        (0, "v001_de"), (0, "v001_fr"), (1, "v002_de"), (1, "v002_fr"), (2, "v003_de"), (2, "v003_fr"),
    ]  # fmt: skip
    assert data["each"] == ["lang"]
    assert data["fields"] == ["video_id", "title", "video_url"]  # results and [each] columns are not fields
    assert data["outcomes"] == ["completed", "failed"]


def test_a_build_without_each_has_a_group_per_row() -> None:
    """Without [each] every row is its own group, even two rows with identical source values."""
    frame = pl.DataFrame([results_row(1, "de"), {**results_row(1, "de"), "request_id": "again"}]).drop("lang")
    data = page_data(frame, title="t")
    assert data["groups"] == [["v001", "Product tour 1", "https://cdn.example.com/in/v001.mp4"]] * 2
    assert [c["group"] for c in _cards(data)] == [0, 1]


def test_shown_fields_can_be_chosen_and_grouping_still_uses_every_source_column() -> None:
    """source_columns picks what a group shows; rows differing only in a hidden column stay apart."""
    frame = pl.DataFrame(
        [results_row(1, "de"), {**results_row(1, "fr"), "video_url": "https://elsewhere/v.mp4"}]
    )
    data = page_data(frame, title="t", each=["lang"], source_columns=["video_id"])
    assert data["fields"] == ["video_id"]
    assert data["groups"] == [["v001"], ["v001"]]


def test_other_outcomes_and_non_string_columns() -> None:
    """Unknown outcomes come after the known ones; numbers and dates are shown in their usual spelling."""
    frame = pl.DataFrame(
        [
            {**results_row(1, "de"), "outcome": "zeta", "customer": 7},
            {**results_row(2, "de"), "outcome": "failed", "customer": None},
        ]
    )
    data = page_data(frame, title="t", each=["lang"])
    assert data["outcomes"] == ["failed", "zeta"]
    assert [g[data["fields"].index("customer")] for g in data["groups"]] == ["7", None]
    assert _cards(data)[0]["output_duration"] == 3.2
    assert _cards(data)[1]["output_duration"] == 3.2


def test_fetched_files_are_relative_to_the_page_and_url_encoded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fetched file becomes a path from the page's folder (spaces, # and % encoded); a missing one is skipped."""
    videos = tmp_path / "videos" / "de 100%"
    videos.mkdir(parents=True)
    (videos / "v001#1.mp4").write_bytes(b"x")
    (tmp_path / "elsewhere.mp4").write_bytes(b"x")
    files = {
        "v001_de": videos / "v001#1.mp4",
        "v001_fr": (tmp_path / "elsewhere.mp4").as_uri(),
        "v001_es": tmp_path / "gone.mp4",
    }
    frame = localization_frame(videos=1)
    with caplog.at_level(logging.WARNING, logger="batchkit"):
        out = write_review(frame, tmp_path / "pages" / "review.html", title="t", each=["lang"], files=files)
    by_id = {c["request_id"]: c for c in _cards(read_page_data(out.read_text()))}
    assert by_id["v001_de"]["file"] == "../videos/de%20100%25/v001%231.mp4"
    assert by_id["v001_fr"]["file"] == "../elsewhere.mp4"
    assert by_id["v001_es"]["file"] is None
    assert any("gone.mp4" in r.message for r in caplog.records)


def test_posters_become_data_uris_and_anything_else_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """JPEG bytes become a data: URI; None is no poster; bytes that are no image are refused with a warning."""
    posters: dict[str, bytes | None] = {"v001_de": JPEG, "v001_fr": None, "v001_es": b"<svg onload=alert(1)>"}
    with caplog.at_level(logging.WARNING, logger="batchkit"):
        data = page_data(localization_frame(videos=1), title="t", each=["lang"], posters=posters)
    by_id = {c["request_id"]: c for c in _cards(data)}
    assert by_id["v001_de"]["poster"] == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert by_id["v001_fr"]["poster"] is None
    assert by_id["v001_es"]["poster"] is None
    assert any("v001_es" in r.message for r in caplog.records)


def test_the_build_id_is_given_or_derived_from_the_set_of_request_ids() -> None:
    """The same requests in another order are the same build (decisions survive a rewrite); others are not."""
    frame = localization_frame()
    first = page_data(frame, title="a", each=["lang"])["build"]
    assert page_data(frame.reverse(), title="b", each=["lang"])["build"] == first
    assert page_data(frame.head(3), title="a", each=["lang"])["build"] != first
    assert page_data(frame, title="a", each=["lang"], build_id="mine")["build"] == "mine"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"each": ["language"]}, "no column 'language'", id="unknown-each"),
        pytest.param({"source_columns": ["nope"]}, "no column 'nope'", id="unknown-field"),
        pytest.param({"each": ["outcome"]}, "'outcome' is a results column", id="each-is-a-result-column"),
    ],
)
def test_tables_that_do_not_fit_are_input_errors(kwargs: dict[str, list[str]], match: str) -> None:
    """Naming columns the table lacks (or a result column as [each]) says which and what to pass."""
    with pytest.raises(InputError, match=match):
        page_data(localization_frame(), title="t", **kwargs)  # type: ignore[arg-type]


def test_a_table_without_outcome_is_refused() -> None:
    """The table must be batchkit results': request_id and outcome at least."""
    with pytest.raises(InputError, match=r"no column 'outcome'.*batchkit results"):
        page_data(pl.DataFrame({"request_id": ["a"]}), title="t")


def test_writing_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write leaves the previous page untouched and no temporary file behind."""
    target = tmp_path / "review.html"
    write_review(localization_frame(), target, title="first", each=["lang"])
    before = target.read_bytes()

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InputError, match=r"cannot write .*review\.html: No space left on device"):
        write_review(localization_frame(), target, title="second", each=["lang"])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["review.html"]


def test_a_folder_is_not_a_page(tmp_path: Path) -> None:
    """Writing to a folder's name says to give a file name."""
    with pytest.raises(InputError, match="is a directory; give a file name such as"):
        write_review(localization_frame(), tmp_path, title="t", each=["lang"])


def test_the_page_grows_linearly_and_modestly() -> None:
    """Each card costs the same few hundred bytes (no posters): 2,000 cards minus 1,000 ≈ 1,000 cards."""

    def size(videos: int) -> int:
        return len(
            render_page(
                page_data(localization_frame(videos=videos, langs=("de", "fr")), title="t", each=["lang"])
            )
        )

    small, large = size(500), size(1000)  # 1,000 and 2,000 cards
    per_card = (large - small) / 1000
    assert 100 < per_card < 400
    assert abs((small - size(250)) / 500 - per_card) < 5  # the same slope further down


def test_card_columns_are_what_the_data_holds() -> None:
    """Every card is an array in CARD_COLUMNS order (the script maps it back to named fields)."""
    data = page_data(localization_frame(videos=1), title="t", each=["lang"])
    assert data["columns"] == list(CARD_COLUMNS)
    assert all(len(row) == len(CARD_COLUMNS) for row in data["cards"])


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
#: The result columns a table of batchkit results has (a source column named so would be taken for one).
_RESULTS = {
    "request_id",
    "retry_of",
    "shard",
    "batch_id",
    "outcome",
    "error_code",
    "error_message",
    "output_url",
}
_RESULTS |= {"output_duration", "generation_id"}


@st.composite
def _frames(draw: st.DrawFn) -> tuple[pl.DataFrame, list[str]]:
    """A results-shaped table of arbitrary strings (and nulls), with zero to two [each] variables."""
    names = draw(
        st.lists(
            _text.filter(lambda s: s not in _RESULTS),
            min_size=0,
            max_size=3,
            unique=True,
        )
    )
    each = names[: draw(st.integers(0, min(2, len(names))))]
    height = draw(st.integers(1, 6))
    column = st.lists(st.one_of(st.none(), _text), min_size=height, max_size=height)
    values = {name: draw(column) for name in names}
    values["request_id"] = draw(column)
    values["outcome"] = draw(column)
    values["error_message"] = draw(column)
    return pl.DataFrame(values, schema=dict.fromkeys(values, pl.String)), each


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames(), _text)
def test_any_table_of_strings_round_trips_exactly_through_the_page(
    sample: tuple[pl.DataFrame, list[str]], title: str
) -> None:
    """Whatever the strings, an HTML parser finds the data block intact and its JSON gives them back exactly."""
    frame, each = sample
    data = page_data(frame, title=title, each=each)
    page = render_page(data)
    parsed = _parse(page)
    assert len(parsed.scripts) == 2
    assert read_page_data(page) == data
    assert parsed.title == title
    cards = _cards(data)
    rows = frame.rows(named=True)
    fields = data["fields"]
    seen = sorted(
        (
            str(card["request_id"]),
            str(card["outcome"]),
            str(card["error_message"]),
            str(card["each"]),
            str(data["groups"][card["group"]]),  # type: ignore[index]
        )
        for card in cards
    )
    expected = sorted(
        (
            str(row["request_id"]),
            str(row["outcome"]),
            str(row["error_message"]),
            str([row[name] for name in each]),
            str([row[name] for name in fields]),
        )
        for row in rows
    )
    assert seen == expected
