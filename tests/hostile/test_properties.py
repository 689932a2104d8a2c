"""Properties over generated input: every source row lands in exactly one place, and no input at all gives a
traceback (or an exit status other than 0, 1, 2)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings, strategies as st

from batchkit import BuildOptions, InputError, ValidationFailed, build
from batchkit.cli import main

from . import corpus
from .harness import check_directory, check_rows

_cells = st.one_of(
    st.just(""),
    st.just(" "),
    st.sampled_from(
        ["{id}", "{{", "}}", "=1+1", "../../x", '"', "a,b", "line\nbreak", "\r", "é", "🎉", "\t"]
    ),
    st.text(max_size=12),
    st.from_regex(r"https://cdn\.example\.com/[a-z0-9]{1,8}\.(mp4|wav)", fullmatch=True),
)
_ids = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), _cells)
_urls = st.one_of(
    st.from_regex(r"https://cdn\.example\.com/[a-z0-9]{1,8}\.(mp4|wav)", fullmatch=True), _cells
)
# Mostly usable rows (so that most builds finish and are checked), with every kind of trouble among them.
_rows = st.lists(st.tuples(_ids, _urls, _urls), min_size=1, max_size=30)
_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _csv(rows: list[tuple[str, str, str]], ending: str) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=ending)
    writer.writerow(["id", "video", "audio"])
    writer.writerows(rows)
    return buffer.getvalue()


def _blank(row: tuple[str, str, str]) -> bool:
    return all(not cell.strip() for cell in row)


_URL = "https://cdn.example.com/{}.mp4"


@_SETTINGS
@given(rows=_rows, ending=st.sampled_from(["\n", "\r\n", "\r"]))
@example(
    rows=[
        ("a", _URL.format(1), _URL.format(2)),
        ("", " ", ""),
        ("a", _URL.format(3), "x"),
        ("{id}", _URL.format(4), _URL.format(5)),
    ],
    ending="\r",
)
def test_every_source_row_lands_in_exactly_one_place(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, str]], ending: str
) -> None:
    """A generated sheet (braces, quotes, newlines in cells, blank rows, formulas, any line ending): a build
    either refuses the whole source with a clear error, or puts each row in one shard line, or in the
    report as invalid, or (a blank row) in a blank-row warning, never two of these and never none."""
    if ending == "\r" and any("\n" in c or "\r" in c for row in rows for c in row):
        ending = "\n"  # a CR-only file cannot also hold line breaks inside cells
    folder = tmp_path_factory.mktemp("rows")
    source = folder / "sheet.csv"
    source.write_text(_csv(rows, ending), newline="")
    rules = folder / "m.toml"
    rules.write_text(corpus.MAPPING)
    out = folder / "out"
    try:
        build(source, rules, out, BuildOptions(skip_invalid=True, limits=_limits()))
    except (InputError, ValidationFailed):
        check_directory(out, "refused build") if out.is_dir() else None
        return
    check_directory(out, "build")
    blank = sum(map(_blank, rows))
    check_rows(out, len(rows) - blank, blank, "build")


def _limits():  # type: ignore[no-untyped-def]
    from batchkit import Limits

    return Limits(min_records=1)


@_SETTINGS
@given(data=st.binary(max_size=2000))
def test_no_input_gives_a_traceback(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    """Any bytes at all, as a batch file, as a source and as a mapping: exit 0, 1 or 2, no exception."""
    folder = tmp_path_factory.mktemp("bytes")
    path = folder / "x.jsonl"
    path.write_bytes(data)
    source = folder / "x.csv"
    source.write_bytes(data)
    rules = folder / "m.toml"
    rules.write_text(corpus.MAPPING)
    runs = [
        ["validate", str(path)],
        ["validate", str(path), "--format", "json", "--max-bytes", "64"],
        ["shard", str(path), "--out", str(folder / "s"), "--skip-invalid"],
        ["build", str(source), "--mapping", str(rules), "--out", str(folder / "b"), "--skip-invalid"],
        ["build", str(corpus_source(folder)), "--mapping", str(path), "--out", str(folder / "m")],
    ]
    for argv in runs:
        result = CliRunner().invoke(main, argv)
        assert result.exception is None or isinstance(result.exception, SystemExit), (argv, result.exception)
        assert result.exit_code in (0, 1, 2), (argv, result.output)
        assert "Traceback" not in result.output


def corpus_source(folder: Path) -> Path:
    path = folder / "good.csv"
    if not path.exists():
        path.write_text(corpus.csv_rows(3))
    return path
