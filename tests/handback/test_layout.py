"""Results in the sheet's own layout: the wide table, the [each] grid, and a filled-in copy of the source."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import batchkit
from batchkit import BuildOptions, InputError, Limits, ResultsError, RunOptions
from batchkit._handback.fill import fill_into
from batchkit._handback.wide import each_counts, wide_frame
from batchkit._shard.builddir import load_manifest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
SMALL = Limits(min_records=1)
MAPPING = {"request_id": "{id}", "model": "lipsync-2", "video": "{video}", "audio": "{audio}"}


@pytest.fixture(scope="module")
def localization(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The localization fixture run against the sandbox: 10 videos × 3 languages, all completed."""
    folder = tmp_path_factory.mktemp("loc")
    shutil.copy(FIXTURES / "localization.xlsx", folder / "sheet.xlsx")
    out = folder / "out"
    batchkit.run(folder / "sheet.xlsx", FIXTURES / "localization.toml", out, RunOptions(sandbox=True))
    return out


def test_the_wide_table_has_one_row_per_source_row(localization: Path) -> None:
    """Source columns in order, then per language outcome, URL, code and message, each value's own."""
    results = batchkit.collect_results(localization, download=False)
    manifest = load_manifest(localization)
    wide = wide_frame(results.frame, manifest)
    assert wide.height == 10
    source = pl.read_excel(localization.parent / "sheet.xlsx", sheet_name="Videos", infer_schema_length=0)
    assert wide.columns[: len(source.columns)] == source.columns
    per_value = [
        f"{field}_{lang}"
        for lang in ("de", "fr", "es")
        for field in ("outcome", "output_url", "error_code", "error_message")
    ]
    assert wide.columns[len(source.columns) :] == per_value
    long = results.frame.select("video_id", "lang", "output_url")
    for video_id, lang, url in long.iter_rows():
        assert wide.filter(pl.col("video_id") == video_id)[f"output_url_{lang}"][0] == url


def test_the_grid_counts_every_unit_once_per_value(localization: Path) -> None:
    """Per language: outcomes as columns, totals that add up to the build's units."""
    results = batchkit.collect_results(localization, download=False)
    grid = each_counts(results.frame, load_manifest(localization))
    assert grid["lang"].to_list() == ["de", "fr", "es"]
    assert grid["completed"].to_list() == [10, 10, 10]
    assert grid["total"].sum() == results.frame.height


def test_wide_needs_an_each_build(tmp_path: Path) -> None:
    """A build without [each] is one row per source row already: a clear error, not a copy."""
    frame = _rows(20)
    batchkit.build(frame, MAPPING, tmp_path / "b", BuildOptions(limits=SMALL))
    results = batchkit.collect_results(tmp_path / "b", download=False, source=frame)
    with pytest.raises(InputError, match="no \\[each\\]"):
        wide_frame(results.frame, load_manifest(tmp_path / "b"))


def test_two_each_variables_and_a_clashing_column(tmp_path: Path) -> None:
    """Values of several (parallel) [each] variables join with _; a source column named like a wide one is renamed."""
    frame = pl.DataFrame({"id": ["a", "b"], "v": ["https://h/v.mp4"] * 2, "outcome_de_f": ["mine", "mine"]})
    mapping = {
        "request_id": "{id}_{lang}_{voice}",
        "model": "lipsync-2",
        "video": "{v}",
        "tts": {"voice_id": "{voice}", "script": "hello {lang}"},
        "each": {"lang": ["de", "fr"], "voice": ["f", "m"]},
    }
    batchkit.build(frame, mapping, tmp_path / "b", BuildOptions(limits=SMALL))
    results = batchkit.collect_results(tmp_path / "b", download=False, source=frame)
    wide = wide_frame(results.frame, load_manifest(tmp_path / "b"))
    assert wide.columns[:3] == ["id", "v", "source_outcome_de_f"]
    assert [c for c in wide.columns if c.startswith("outcome_")] == ["outcome_de_f", "outcome_fr_m"]
    assert set(wide["outcome_fr_m"]) == {"unsubmitted"}


# -- --into: the user's own file, filled in ----------------------------------------------------------------


def _rows(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"r{i:02d}" for i in range(n)],
            "video": [f"https://cdn.example.com/v/{i}.mp4" for i in range(n)],
            "audio": [f"https://cdn.example.com/a/{i}.wav" for i in range(n)],
        }
    )


def _csv_build(tmp_path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    source = tmp_path / "sheet.csv"
    source.write_bytes(text.encode(encoding))
    out = tmp_path / "b"
    batchkit.build(source, MAPPING, out, BuildOptions(limits=SMALL, skip_invalid=True))
    return out


def _records(data: bytes, delimiter: str = ",") -> list[list[str]]:
    text = data.decode("utf-8").removeprefix("\ufeff")
    return [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]


def test_a_filled_csv_keeps_every_record_and_adds_the_results(tmp_path: Path) -> None:
    """Original cells byte for byte (quotes, newlines in cells, CRLF), result cells appended per row."""
    lines = ["id;video;audio;note"] + [
        f'r{i:02d};https://cdn.example.com/v/{i}.mp4;https://cdn.example.com/a/{i}.wav;"says ""hi""\nand bye"'
        for i in range(3)
    ]
    out = _csv_build(tmp_path, "\r\n".join(lines) + "\r\n")
    results = batchkit.collect_results(out, download=False)
    filled = fill_into(results.frame, load_manifest(out), tmp_path / "filled.csv")
    data = filled.read_bytes()
    assert data.count(b"\r\n") >= 4  # the record ends stay CRLF; the newline inside a quoted cell stays LF
    assert data.replace(b"\r\n", b"").count(b"\n") == 3
    got = _records(data, ";")
    original = _records((tmp_path / "sheet.csv").read_bytes(), ";")
    assert got[0] == [*original[0], "outcome", "output_url", "error_code", "error_message"]
    for before, after in zip(original[1:], got[1:], strict=True):
        assert after[: len(before)] == before
        assert after[len(before)] == "unsubmitted"
    assert (tmp_path / "sheet.csv").read_bytes().count(b"outcome") == 0  # the source is never written


def test_a_filled_workbook_keeps_other_sheets_and_cells(localization: Path, tmp_path: Path) -> None:
    """Every sheet stays, the mapped one gets the wide columns to the right of its header."""
    results = batchkit.collect_results(localization, download=False)
    filled = fill_into(results.frame, load_manifest(localization), tmp_path / "filled.xlsx")
    original = openpyxl.load_workbook(localization.parent / "sheet.xlsx")
    book = openpyxl.load_workbook(filled)
    assert book.sheetnames == original.sheetnames
    for name in original.sheetnames:
        if name == "Videos":
            continue
        assert [[c.value for c in r] for r in book[name].iter_rows()] == [
            [c.value for c in r] for r in original[name].iter_rows()
        ]
    sheet, before = book["Videos"], original["Videos"]
    width = before.max_column
    assert [c.value for c in sheet[1]][:width] == [c.value for c in before[1]]
    assert [c.value for c in sheet[1]][width : width + 2] == ["outcome_de", "output_url_de"]
    for row in range(2, before.max_row + 1):
        assert [c.value for c in sheet[row]][:width] == [c.value for c in before[row]]
        assert sheet.cell(row=row, column=width + 1).value == "completed"


def test_result_text_that_looks_like_a_formula_is_written_as_text(tmp_path: Path) -> None:
    """An error message starting with '=' from the server never becomes a formula in the user's file."""
    out = _csv_build(tmp_path, "id,video,audio\nr00,https://h/v.mp4,https://h/a.wav\n")
    results = batchkit.collect_results(out, download=False)
    frame = results.frame.with_columns(pl.lit('=HYPERLINK("http://evil")').alias("error_message"))
    filled = fill_into(frame, load_manifest(out), tmp_path / "filled.csv")
    assert _records(filled.read_bytes())[1][-1] == '\'=HYPERLINK("http://evil")'


def test_fill_refuses_what_it_must_not_write(tmp_path: Path) -> None:
    """The source itself, a suffix of another format, an edited source, a source that is gone: errors, nothing written."""
    out = _csv_build(
        tmp_path, "id,video,audio\nr00,https://h/v.mp4,https://h/a.wav\nr01,https://h/v.mp4,https://h/a.wav\n"
    )
    manifest = load_manifest(out)
    frame = batchkit.collect_results(out, download=False).frame
    with pytest.raises(InputError, match="is the source file itself"):
        fill_into(frame, manifest, tmp_path / "sheet.csv")
    with pytest.raises(InputError, match=r"its filled copy is \.csv"):
        fill_into(frame, manifest, tmp_path / "filled.xlsx")
    (tmp_path / "sheet.csv").write_text(
        "id,video,audio\nr01,https://h/v.mp4,https://h/a.wav\nr00,https://h/v.mp4,https://h/a.wav\n"
    )
    with pytest.raises(ResultsError, match="data row 1, column id"):
        fill_into(frame, manifest, tmp_path / "filled.csv")
    assert not (tmp_path / "filled.csv").exists()
    (tmp_path / "sheet.csv").unlink()
    with pytest.raises(ResultsError, match="is gone"):
        fill_into(frame, manifest, tmp_path / "filled.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_an_in_memory_build_has_no_file_to_fill(tmp_path: Path) -> None:
    frame = _rows(2)
    batchkit.build(frame, MAPPING, tmp_path / "b", BuildOptions(limits=SMALL))
    results = batchkit.collect_results(tmp_path / "b", download=False, source=frame)
    with pytest.raises(InputError, match="built from memory"):
        fill_into(results.frame, load_manifest(tmp_path / "b"), tmp_path / "f.csv")


_CELL = st.text(alphabet=st.sampled_from('ab ,;"\n\r\t=é'), max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notes=st.lists(_CELL, min_size=1, max_size=6), crlf=st.booleans())
def test_any_cells_survive_the_copy(
    tmp_path_factory: pytest.TempPathFactory, notes: list[str], crlf: bool
) -> None:
    """Whatever a user's cells hold, the filled copy keeps them exactly and gives row n the result of row n."""
    tmp = tmp_path_factory.mktemp("fill")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["id", "video", "audio", "note"])
    for i, note in enumerate(notes):
        writer.writerow([f"r{i:02d}", f"https://h/v{i}.mp4", f"https://h/a{i}.wav", note])
    out = _csv_build(tmp, buffer.getvalue())
    results = batchkit.collect_results(out, download=False)
    filled = fill_into(results.frame, load_manifest(out), tmp / "filled.csv")
    original = _records((tmp / "sheet.csv").read_bytes())
    got = _records(filled.read_bytes())
    assert len(got) == len(original)
    for before, after in zip(original, got, strict=True):
        assert after[: len(before)] == before
    ids = dict(results.frame.select("id", "outcome").iter_rows())
    assert all(row[-4] == ids[row[0]] for row in got[1:])
