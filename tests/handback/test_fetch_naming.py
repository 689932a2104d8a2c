"""File names for fetched videos: templates, safety for every file system, collisions, and a property test
that any row values give safe, relative, collision-free paths inside the destination."""

from __future__ import annotations

import doctest
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import InputError
from batchkit._handback import naming
from batchkit._handback.fetch import FETCH_CODES
from batchkit._handback.naming import (
    MAX_NAME_BYTES,
    NameRequest,
    NameTemplate,
    assign_names,
    check_name,
    name_key,
    safe_part,
)


def test_doctests() -> None:
    """The examples in naming's docstrings hold."""
    assert doctest.testmod(naming).failed == 0


def test_default_names_are_output_file_name_else_request_id() -> None:
    """No template: outputFileName, else the request_id (made safe), with .mp4 once."""
    got = assign_names(
        [
            NameRequest("r-1", "promo_anna"),
            NameRequest("r/2", None),
            NameRequest("r-3", "  "),
            NameRequest("x", "a.MP4"),
        ]
    )
    assert got.names == ("promo_anna.mp4", "r_2.mp4", "r-3.mp4", "a.mp4")
    assert got.findings == ()


def test_a_template_reads_columns_and_each_variables_with_folders() -> None:
    """{column} and [each] values fill the template; a / in the template makes folders; {{ }} are literal braces."""
    requests = [
        NameRequest("v1-de", values={"video_id": "intro", "lang": "de", "n": 3, "ok": True, "none": None}),
        NameRequest("v1-fr", values={"video_id": "intro", "lang": "fr", "n": 3.5, "ok": False, "none": None}),
    ]
    got = assign_names(requests, "{lang}/{video_id}_{{v{n}}}_{ok}{none}")
    assert got.names == ("de/intro_{v3}_true.mp4", "fr/intro_{v3.5}_false.mp4")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("../../etc/passwd", "___.._etc_passwd.mp4", id="traversal"),
        pytest.param("/abs", "_abs.mp4", id="absolute"),
        pytest.param("a\\b", "a_b.mp4", id="backslash"),
        pytest.param("nul\0byte", "nul_byte.mp4", id="nul"),
        pytest.param('what?<>:"|*', "what_______.mp4", id="windows-refused"),
        pytest.param("line\nbreak\ttab", "line_break_tab.mp4", id="control"),
        pytest.param("zero\u200bwidth\u202eflip", "zero_width_flip.mp4", id="format-chars"),
        pytest.param("  padded. . ", "padded.mp4", id="trailing-dots-and-spaces"),
        pytest.param("...hidden", "___hidden.mp4", id="leading-dots"),
        pytest.param("CON", "CON_.mp4", id="device"),
        pytest.param("lpt1.backup", "lpt1_.backup.mp4", id="device-with-extension"),
        pytest.param("Cafe\u0301", "Café.mp4", id="nfc"),
        pytest.param("no\u00a0break", "no break.mp4", id="other-spaces"),
        pytest.param("", "r1.mp4", id="empty-falls-back"),
        pytest.param("...", "r1.mp4", id="only-dots"),
    ],
)
def test_values_are_made_safe(value: str, expected: str) -> None:
    """Values can never escape the folder or use what a file system refuses; empty ones fall back to the id."""
    assert assign_names([NameRequest("r1", values={"t": value})], "{t}").names == (expected,)


def test_values_never_make_folders_but_templates_do() -> None:
    """A / inside a value is replaced; a / in the template is a folder; an empty folder value becomes _."""
    got = assign_names([NameRequest("r1", values={"a": "x/y", "b": ""})], "{a}/{b}/clip")
    assert got.names == ("x_y/_/clip.mp4",)


def test_a_folder_never_looks_like_a_video_file() -> None:
    """A folder value ending in .mp4 gets a _, so a file and a folder can never take the same path."""
    got = assign_names(
        [NameRequest("r1", values={"a": "x.mp4", "b": "c"}), NameRequest("r2", values={"a": "x", "b": "y"})],
        "{a}/{b}",
    )
    assert got.names == ("x.mp4_/c.mp4", "x/y.mp4")


def test_long_names_are_cut_by_bytes_keeping_the_extension_and_distinct() -> None:
    """300 × 'é' (600 bytes) becomes ≤ 200 bytes of whole characters + ~hash + .mp4; two long names stay apart."""
    a, b = "é" * 300, "é" * 299 + "x"
    got = assign_names([NameRequest("r1", values={"t": a}), NameRequest("r2", values={"t": b})], "{t}")
    for name in got.names:
        assert len(name.encode()) <= MAX_NAME_BYTES
        assert name.endswith(".mp4")
        assert "~" in name
        assert check_name(name) is None
    assert got.names[0] != got.names[1]


@pytest.mark.parametrize(
    ("template", "words"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("{a", "expected '}'", id="unbalanced"),
        pytest.param("a}", "Single '}'", id="stray-close"),
        pytest.param("{}", "empty {}", id="empty-field"),
        pytest.param("{title_{lang}}", "cannot hold another field", id="nested"),
        pytest.param("/{a}", "root", id="absolute"),
        pytest.param("{a}//{b}", "empty folder", id="double-slash"),
        pytest.param("{a}/", "empty folder", id="trailing-slash"),
        pytest.param("../{a}", "leave the destination", id="dotdot"),
        pytest.param("{a}\\{b}", "backslash", id="backslash"),
    ],
)
def test_bad_templates_say_what_and_how(template: str, words: str) -> None:
    """Each malformed template is one InputError naming the problem."""
    with pytest.raises(InputError, match="empty" if not template else None) as caught:
        NameTemplate.parse(template)
    assert words in str(caught.value)


def test_field_text_is_a_column_name_as_in_the_mapping() -> None:
    """Between braces is a column name, taken whole: dots, brackets, colons and spaces are not formatting."""
    template = NameTemplate.parse("{a.b}_{c[0]}_{time:start}_{first name}")
    assert template.fields == ("a.b", "c[0]", "time:start", "first name")
    values = {"a.b": "1", "c[0]": "2", "time:start": "3", "first name": "Ann"}
    assert assign_names([NameRequest("r", values=values)], template).names == ("1_2_3_Ann.mp4",)


def test_a_template_reading_an_unknown_column_is_refused_up_front() -> None:
    """With the known columns given, a typo is an InputError listing what exists; without, a missing value is."""
    with pytest.raises(InputError, match=r"'lnag'.*known: lang, video_id"):
        assign_names([NameRequest("r", values={"lang": "de"})], "{lnag}", columns=["lang", "video_id"])
    with pytest.raises(InputError, match="has no value for"):
        assign_names([NameRequest("r", values={})], "{lang}")


def test_collisions_are_refused_by_default_with_the_fix() -> None:
    """Two requests, one name (also when they differ only in case): an InputError that shows them and the fix."""
    requests = [
        NameRequest(f"intro-{lang}", values={"video_id": "Intro" if lang == "de" else "intro"})
        for lang in ("de", "fr")
    ]
    with pytest.raises(InputError, match=r"'intro.mp4' for 'intro-de' and 'intro-fr'.*\{video_id\}_\{lang\}"):
        assign_names(requests, "{video_id}")


def test_numbered_collisions_are_deterministic_and_warned() -> None:
    """on_collision='number': the later ones become name~2, ~3 … in request order, each with a warning finding."""
    requests = [NameRequest(f"r{i}", values={"t": t}) for i, t in enumerate(["a", "A", "a", "a~2", "b"])]
    got = assign_names(requests, "{t}", on_collision="number")
    assert got.names == ("a.mp4", "A~2.mp4", "a~3.mp4", "a~2~2.mp4", "b.mp4")
    assert [(f.code, f.severity, f.request_id) for f in got.findings] == [
        ("fetch-name-collision", "warning", "r1"),
        ("fetch-name-collision", "warning", "r2"),
        ("fetch-name-collision", "warning", "r3"),
    ]
    assert all(f.code in FETCH_CODES for f in got.findings)
    assert assign_names(requests, "{t}", on_collision="number").names == got.names


def test_check_name_accepts_only_safe_relative_paths() -> None:
    """check_name: what fetch_outputs accepts as a destination name."""
    assert check_name("de/intro_de.mp4") is None
    for bad in [
        "",
        "/a.mp4",
        "../a.mp4",
        "a/../b.mp4",
        "a\\b.mp4",
        "a//b.mp4",
        ".a.mp4",
        "a.mp4.",
        "aux.mp4",
        "a:b.mp4",
    ]:
        assert check_name(bad) is not None, bad
    assert check_name("é" * 150 + ".mp4") is not None  # 304 bytes


# -- property tests ----------------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.text(max_size=120),
    st.text(alphabet='./\\:*?"<>| \t\0.~', max_size=12),
    st.sampled_from(["CON", "nul", "COM1", "..", ".", "", " ", "x.mp4", "X.MP4", "~2", "é" * 150]),
    st.integers(),
    st.none(),
)
_TEMPLATES = st.sampled_from(["{a}", "{a}_{b}", "{a}/{b}", "{b}/{a}/{a}", "take {a}", "{a}.mp4", "{a}/x"])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    template=_TEMPLATES,
    rows=st.lists(st.fixed_dictionaries({"a": _VALUES, "b": _VALUES}), min_size=1, max_size=12),
    ids=st.lists(st.text(min_size=1, max_size=30), min_size=12, max_size=12, unique=True),
)
def test_any_row_values_give_safe_unique_paths_inside_the_folder(
    template: str, rows: list[dict[str, object]], ids: list[str], tmp_path: Path
) -> None:
    """Whatever the values: every name is relative, passes check_name, stays inside the folder when resolved,
    fits the byte limit per part, ends in .mp4, and no two collide on a case-insensitive file system."""
    requests = [NameRequest(ids[i], values=row) for i, row in enumerate(rows)]
    got = assign_names(requests, template, on_collision="number")
    root = tmp_path.resolve()
    keys = set()
    for name in got.names:
        assert check_name(name) is None, name
        assert not os.path.isabs(name)
        assert (root / name).resolve().is_relative_to(root)
        assert name.endswith(".mp4")
        assert all(len(part.encode()) <= MAX_NAME_BYTES for part in name.split("/"))
        assert unicodedata.normalize("NFC", name) == name
        keys.add(name_key(name))
    assert len(keys) == len(got.names)
    folders = {name_key(name.rsplit("/", 1)[0]) for name in got.names if "/" in name}
    assert not keys & folders


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_safe_parts_are_fixed_points(text: str) -> None:
    """Making a safe part safe again changes nothing, and a non-empty result always passes check_name."""
    part = safe_part(text, extension=".mp4")
    if part:
        assert safe_part(part, extension=".mp4") == part
        assert check_name(part) is None


def test_names_can_really_be_created(tmp_path: Path) -> None:
    """A batch of hostile values, made safe, are files this file system accepts, all distinct."""
    values = ["a/b", "CON", "..", "x" * 400, "é" * 150, "tab\there", "Intro", "intro", "", "😀" * 60]
    got = assign_names(
        [NameRequest(f"r{i}", values={"t": v}) for i, v in enumerate(values)], "{t}", on_collision="number"
    )
    for name in got.names:
        path = tmp_path / name
        path.write_bytes(b"x")
    assert len(list(tmp_path.iterdir())) == len(values)
