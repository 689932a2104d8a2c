"""Exporting result tables: round trips in all four formats, formula-safe CSV/Excel, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from conftest import FIXTURES
from hypothesis import given, settings, strategies as st

from batchkit import InputError, Limits
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._results.export import EXCEL_MAX_ROWS, export_frame, neutralise_formulas
from batchkit._results.results import collect_results
from batchkit._shard.builddir import RESULTS_DIR, load_manifest
from batchkit._submit.journal import Journal

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": ["c001", "c002", "c003", "c004"],
            "first_name": ["Chloé", '=HYPERLINK("http://x","y")', "-5", None],
            "note": ["@SUM(A1)", "+1.5", "\tcmd", 'plain, with "quotes"\nand a newline'],
            "outcome": ["completed", "failed", "missing", "invalid"],
            "output_duration": [12.5, None, 3.25, None],
        }
    )


def _read(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    if path.suffix == ".xlsx":
        return pl.read_excel(path, infer_schema_length=0)
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_ndjson(path, schema=_frame().schema)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_data_formats_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    """Parquet and JSON Lines keep every value as it is, formula-looking text included."""
    frame = _frame()
    path = export_frame(frame, tmp_path / f"results{suffix}")
    assert _read(path).equals(frame)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_spreadsheet_formats_round_trip_with_formulas_neutralised(tmp_path: Path, suffix: str) -> None:
    """CSV and Excel give back every value, except that formula-looking text starts with an apostrophe."""
    frame = _frame()
    back = _read(export_frame(frame, tmp_path / f"results{suffix}"))
    assert back.columns == frame.columns
    assert back["customer_id"].to_list() == frame["customer_id"].to_list()
    assert back["first_name"].to_list()[:3] == ["Chloé", '\'=HYPERLINK("http://x","y")', "-5"]
    assert back["first_name"][3] in (None, "")
    assert back["note"].to_list() == ["'@SUM(A1)", "+1.5", "'\tcmd", 'plain, with "quotes"\nand a newline']
    durations = [float(v) if v not in (None, "") else None for v in back["output_duration"].to_list()]
    assert durations == [12.5, None, 3.25, None]


def test_xlsx_cells_are_text_never_formulas(tmp_path: Path) -> None:
    """Inside the workbook every text cell is a shared string: no cell holds a formula."""
    import zipfile

    path = export_frame(_frame(), tmp_path / "results.xlsx")
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet


def test_numbers_are_left_alone_and_headers_neutralised() -> None:
    frame = pl.DataFrame({"=evil": ["-5", "+1.5", "1e5", "-.5", "-", "=1+1", "- 5", "@"], "ok": ["a"] * 8})
    safe = neutralise_formulas(frame)
    assert safe.columns == ["'=evil", "ok"]
    assert safe["'=evil"].to_list() == ["-5", "+1.5", "1e5", "-.5", "'-", "'=1+1", "'- 5", "'@"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["=", "-1", "+x", "@a", "\t", "\r1"])))
)
def test_neutralised_cells_never_start_a_formula(values: list[str | None]) -> None:
    """Each cell is unchanged or gains exactly one leading apostrophe; none starts with a trigger unless it
    is a plain number."""
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    for before, after in zip(values, neutralise_formulas(frame)["v"].to_list(), strict=True):
        if before is None:
            assert after is None
            continue
        assert after in (before, "'" + before)
        if after.startswith(TRIGGERS):
            float(after)  # only numbers may keep their sign


def test_formulas_from_the_server_and_the_source_are_neutralised(tmp_path: Path) -> None:
    """A source cell and a server's output URL and error message that start like formulas come out of the
    CSV and Excel exports as text, and out of Parquet unchanged."""
    source = tmp_path / "campaign.csv"
    text = (FIXTURES / "campaign.csv").read_text(encoding="utf-8")
    source.write_text(text.replace("c002,Ben", "c002,=cmd|' /C calc'!A0"), encoding="utf-8")
    directory = tmp_path / "build"
    build(
        source,
        FIXTURES / "campaign.toml",
        directory,
        BuildOptions(skip_invalid=True, limits=Limits(max_records=30)),
    )
    manifest = load_manifest(directory)
    with Journal.open(directory) as journal:
        journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in manifest.shards])
        for number, shard in enumerate(manifest.shards):
            journal.record_intent(shard.file, webhook_url=None)
            journal.record_submitted(shard.file, f"batch_{number}", status="PENDING", metrics={})
            journal.record_status(
                shard.file, status="COMPLETED", metrics={}, output_url="https://api.example.com/r"
            )
    units = manifest.requests_frame().filter(pl.col("status") == "ok")
    (directory / RESULTS_DIR).mkdir()
    for number in range(len(manifest.shards)):
        lines: list[dict[str, Any]] = []
        for request_id in units.filter(pl.col("shard") == number + 1)["request_id"]:
            if request_id == "c001":
                lines.append(
                    {
                        "request_id": request_id,
                        "status": "COMPLETED",
                        "response": {"outputUrl": '=IMPORTXML("http://evil")'},
                    }
                )
            elif request_id == "c003":
                lines.append(
                    {
                        "request_id": request_id,
                        "status": "FAILED",
                        "error": {"code": "x", "message": "@SUM(1+1)"},
                    }
                )
            else:
                lines.append(
                    {
                        "request_id": request_id,
                        "status": "COMPLETED",
                        "response": {"outputUrl": f"https://o/{request_id}"},
                    }
                )
        data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        (directory / RESULTS_DIR / f"batch_{number}.output.jsonl").write_bytes(data)
    results = collect_results(directory, download=False)
    rows = {r["customer_id"]: r for r in results.frame.iter_rows(named=True)}
    assert rows["c002"]["first_name"] == "=cmd|' /C calc'!A0"
    assert rows["c001"]["output_url"] == '=IMPORTXML("http://evil")'
    for suffix in (".csv", ".xlsx"):
        back = {
            r["customer_id"]: r for r in _read(results.write(tmp_path / f"out{suffix}")).iter_rows(named=True)
        }
        assert back["c002"]["first_name"] == "'=cmd|' /C calc'!A0"
        assert back["c001"]["output_url"] == '\'=IMPORTXML("http://evil")'
        assert back["c003"]["error_message"] == "'@SUM(1+1)"
        assert back["c004"]["output_url"] == "https://o/c004"
    assert pl.read_parquet(results.write(tmp_path / "out.parquet")).equals(results.frame)


def test_a_failed_export_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """An export that fails halfway (here: a nested column CSV cannot hold) never replaces the old file."""
    target = tmp_path / "results.csv"
    target.write_text("the previous export\n")
    nested = pl.DataFrame({"a": [[1, 2], [3]]})
    with pytest.raises(pl.exceptions.ComputeError):
        export_frame(nested, target)
    assert target.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_an_export_gets_the_usual_file_permissions(tmp_path: Path) -> None:
    """The temporary file is renamed into place with the mode any new file gets (umask), not 0600."""
    umask = os.umask(0o022)
    os.umask(umask)
    path = export_frame(_frame(), tmp_path / "results.parquet")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_parent_folders_are_created(tmp_path: Path) -> None:
    path = export_frame(_frame(), tmp_path / "a" / "b" / "results.jsonl")
    assert path.is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("results.txt", "cannot tell the format", id="unknown-suffix"),
        pytest.param("results", "cannot tell the format", id="no-suffix"),
        pytest.param("folder.csv", "is a directory", id="directory"),
    ],
)
def test_unusable_targets_are_input_errors(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(InputError, match=message):
        export_frame(_frame(), tmp_path / name)


def test_too_many_rows_for_excel_is_an_input_error(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": pl.int_range(EXCEL_MAX_ROWS + 1, eager=True)})
    with pytest.raises(InputError, match=r"do not fit in an Excel sheet.*\.parquet"):
        export_frame(frame, tmp_path / "results.xlsx")
    assert not any(tmp_path.iterdir())


def test_a_target_under_a_file_is_an_input_error(tmp_path: Path) -> None:
    """A folder that cannot exist (its parent is a file) is a clear error, not a traceback."""
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        export_frame(_frame(), tmp_path / "notes.txt" / "results.csv")
