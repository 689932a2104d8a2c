"""Sources: every format read as strings, in chunks, with each row's position."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import xlsxwriter
from hypothesis import given, settings, strategies as st

from batchkit._errors import InputError
from batchkit._sources.csv import _record_blocks
from batchkit._sources.source import ISSUE, ROW, SOURCE_LINE, read_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def rows_of(frame: pl.DataFrame, *columns: str) -> list[tuple[object, ...]]:
    return frame.select(columns).rows()


# -- CSV ---------------------------------------------------------------------------------------------------------


def test_csv_values_stay_text_and_rows_keep_positions(tmp_path: Path) -> None:
    """Leading zeros survive, and row/line numbers count the header and multi-line cells."""
    path = write(
        tmp_path / "people.csv",
        b'id,name,note\n007,Ann,"two\nlines"\n010,Bo,plain\n',
    )
    source = read_source(path)
    assert source.format == "csv"
    assert source.columns == ["id", "name", "note"]
    frame = source.read_all()
    assert rows_of(frame, "id", "note", ROW, SOURCE_LINE) == [
        ("007", "two\nlines", 1, 2),
        ("010", "plain", 2, 4),
    ]
    assert frame.schema["id"] == pl.String


def test_csv_bom_crlf_and_semicolons_are_detected(tmp_path: Path) -> None:
    """A UTF-8 BOM is dropped, CRLF line ends are fine, the delimiter is sniffed."""
    path = write(tmp_path / "export.csv", "\ufeffid;city\r\n1;Zürich\r\n2;Köln\r\n".encode())
    source = read_source(path)
    assert source.delimiter == ";"
    assert source.columns == ["id", "city"]
    assert rows_of(source.read_all(), "city", SOURCE_LINE) == [("Zürich", 2), ("Köln", 3)]


def test_tsv_by_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "sheet.tsv", b"a\tb\n1\t2,3\n")
    source = read_source(path)
    assert (source.format, source.delimiter) == ("tsv", "\t")
    assert rows_of(source.read_all(), "a", "b") == [("1", "2,3")]


def test_explicit_delimiter_overrides_sniffing(tmp_path: Path) -> None:
    path = write(tmp_path / "pipes.csv", b"a|b\n1|2\n")
    assert rows_of(read_source(path, delimiter="|").read_all(), "a", "b") == [("1", "2")]


def test_latin1_csv_is_detected_with_a_warning(tmp_path: Path) -> None:
    """Non-UTF-8 text is decoded (cp1252 guess) and the guess is reported as a warning finding."""
    path = write(tmp_path / "legacy.csv", "id,name\n1,José\n".encode("cp1252"))
    source = read_source(path)
    assert source.encoding == "cp1252"
    assert [f.code for f in source.findings] == ["source-encoding"]
    assert source.findings[0].severity == "warning"
    assert "0xe9" in source.findings[0].message
    assert rows_of(source.read_all(), "name") == [("José",)]


def test_explicit_encoding_is_used_without_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "legacy.csv", "id,name\n1,Ærø\n".encode("latin-1"))
    source = read_source(path, encoding="latin-1")
    assert source.findings == []
    assert rows_of(source.read_all(), "name") == [("Ærø",)]


def test_utf16_excel_export_is_read(tmp_path: Path) -> None:
    """Excel's "Unicode text" export is UTF-16 with a BOM and tabs."""
    path = write(tmp_path / "unicode.tsv", "id\tname\n1\tŁukasz\n".encode("utf-16"))
    source = read_source(path)
    assert source.encoding == "utf-16"
    assert rows_of(source.read_all(), "id", "name") == [("1", "Łukasz")]


def test_unknown_encoding_name_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"a\n1\n")
    with pytest.raises(InputError, match="unknown encoding 'klingon'"):
        read_source(path, encoding="klingon")


def test_ragged_row_with_extra_fields_is_marked(tmp_path: Path) -> None:
    """A row with more fields than the header is kept, marked with a ragged-row issue."""
    path = write(tmp_path / "ragged.csv", b"a,b\n1,2\n3,4,5,6\n7,8\n")
    frame = read_source(path).read_all()
    assert rows_of(frame, "a", ISSUE) == [("1", None), ("3", "ragged-row"), ("7", None)]


def test_blank_rows_are_skipped_but_keep_their_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "gaps.csv", b"a,b\n1,2\n\n,\n3,4\n")
    frame = read_source(path).read_all()
    assert rows_of(frame, "a", ROW, SOURCE_LINE) == [("1", 1, 2), ("3", 4, 5)]


def test_duplicate_header_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", b"id,name,id\n1,a,2\n")
    with pytest.raises(InputError, match=r"column 'id' appears twice in the header \(columns 1 and 3\)"):
        read_source(path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        pytest.param("empty.csv", b"", "is empty", id="zero-bytes"),
        pytest.param("blank.csv", b"\n\n", "no header row", id="blank-header"),
        pytest.param("data.xyz", b"a\n1\n", "cannot tell the format", id="unknown-suffix"),
    ],
)
def test_unreadable_files_are_input_errors(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_source(write(tmp_path / name, data))


def test_missing_file_and_directory_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_source(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="is a directory"):
        read_source(tmp_path)


def test_unknown_format_option_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", b"a\n1\n")
    with pytest.raises(InputError, match="unknown format 'xml'"):
        read_source(path, format="xml")


def test_header_only_csv_yields_no_rows(tmp_path: Path) -> None:
    source = read_source(write(tmp_path / "h.csv", b"a,b\n"))
    assert source.columns == ["a", "b"]
    assert source.read_all().height == 0


def test_chunks_match_one_read(tmp_path: Path) -> None:
    """Chunking (also across blocks of records) never changes rows, values or positions."""
    lines = ["id,text"] + [f'{i},"v{i}\nsecond"' if i % 7 == 0 else f"{i},v{i}" for i in range(1, 301)]
    path = write(tmp_path / "many.csv", ("\n".join(lines) + "\n").encode())
    source = read_source(path)
    whole = source.read_all()
    parts = pl.concat(list(source.chunks(size=11)))
    assert parts.equals(whole)
    assert whole[SOURCE_LINE].to_list()[:8] == [2, 3, 4, 5, 6, 7, 8, 10]


def test_count_rows_estimates_csv_from_its_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", b"a\n1\n2\n3")
    assert read_source(path).count_rows() == 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet='ab,"\n\r ', max_size=6), min_size=2, max_size=2),
        min_size=1,
        max_size=30,
    ),
    st.integers(min_value=1, max_value=40),
)
def test_record_blocks_cut_only_between_records(records: list[list[str]], size: int) -> None:
    """Blocks join back to the file, and each one parses to whole records."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(records)
    data = out.getvalue().encode()
    blocks = list(_record_blocks(io.BytesIO(data), size))
    assert b"".join(blocks) == data
    parsed = [row for block in blocks for row in csv.reader(io.StringIO(block.decode(), newline=""))]
    assert parsed == records


# -- other formats -----------------------------------------------------------------------------------------------


def test_parquet_columns_become_text(tmp_path: Path) -> None:
    path = tmp_path / "crm.parquet"
    pl.DataFrame({"id": [1, 2], "score": [0.5, None], "ok": [True, False]}).write_parquet(path)
    source = read_source(path)
    assert (source.format, source.rows) == ("parquet", 2)
    assert rows_of(source.read_all(), "id", "score", "ok", ROW, SOURCE_LINE) == [
        ("1", "0.5", "true", 1, None),
        ("2", None, "false", 2, None),
    ]


def test_parquet_nested_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nested.parquet"
    pl.DataFrame({"id": [1], "tags": [["a", "b"]]}).write_parquet(path)
    with pytest.raises(InputError, match=r"column 'tags' of nested\.parquet holds"):
        read_source(path)


def test_corrupt_parquet_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read broken\.parquet as Parquet"):
        read_source(write(tmp_path / "broken.parquet", b"PAR1 not really"))


def make_workbook(path: Path) -> Path:
    book = xlsxwriter.Workbook(str(path))
    first = book.add_worksheet("Videos")
    first.write_row(0, 0, ["video_id", "count", "url"])
    first.write_row(1, 0, ["007", 3, "https://x/a.mp4"])
    first.write_row(3, 0, ["008", 4.5, "https://x/b.mp4"])
    second = book.add_worksheet("Other")
    second.write_row(0, 0, ["k"])
    second.write_row(1, 0, ["v"])
    book.close()
    return path


def test_excel_first_sheet_by_default_with_sheet_row_numbers(tmp_path: Path) -> None:
    source = read_source(make_workbook(tmp_path / "book.xlsx"))
    assert (source.format, source.sheet) == ("xlsx", "Videos")
    assert rows_of(source.read_all(), "video_id", "count", ROW) == [("007", "3", 1), ("008", "4.5", 3)]


def test_excel_named_sheet(tmp_path: Path) -> None:
    source = read_source(make_workbook(tmp_path / "book.xlsx"), sheet="Other")
    assert rows_of(source.read_all(), "k") == [("v",)]


def test_excel_missing_sheet_lists_the_sheets(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"has no sheet 'Nope'; its sheets are 'Videos', 'Other'"):
        read_source(make_workbook(tmp_path / "book.xlsx"), sheet="Nope")


def test_sheet_option_on_csv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--sheet applies to Excel files only"):
        read_source(write(tmp_path / "a.csv", b"a\n1\n"), sheet="x")


def test_not_a_workbook_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot open fake\.xlsx as a workbook"):
        read_source(write(tmp_path / "fake.xlsx", b"hello"))


def test_localization_fixture_reads() -> None:
    source = read_source(FIXTURES / "localization.xlsx")
    assert source.rows == 10
    assert {"video_id", "audio_de", "audio_fr", "audio_es", "voice_id", "script_de"} <= set(source.columns)


def test_ndjson_values_lines_and_bad_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "rows.jsonl",
        b'{"id": "a", "n": 1, "meta": {"x": true}}\n\n{"id": "b"\n[1, 2]\n{"id": "c", "extra": null}\n',
    )
    source = read_source(path)
    assert source.format == "ndjson"
    assert source.columns == ["id", "n", "meta", "extra"]
    frame = source.read_all()
    assert rows_of(frame, "id", "n", "meta", ROW, SOURCE_LINE, ISSUE) == [
        ("a", "1", '{"x":true}', 1, 1, None),
        (None, None, None, 3, 3, "invalid-json"),
        (None, None, None, 4, 4, "not-an-object"),
        ("c", None, None, 5, 5, None),
    ]


def test_polars_pandas_and_arrow_frames(tmp_path: Path) -> None:
    data = {"id": ["007", "008"], "n": [1, 2]}
    for obj, kind in [
        (pl.DataFrame(data), "polars.DataFrame"),
        (pl.DataFrame(data).lazy(), "polars.LazyFrame"),
        (pd.DataFrame(data), "pandas.DataFrame"),
        (pa.table(data), "pyarrow.Table"),
    ]:
        source = read_source(obj)
        assert (source.name, source.format, source.path) == (kind, "dataframe", None)
        assert rows_of(source.read_all(), "id", "n", ROW) == [("007", "1", 1), ("008", "2", 2)]
        snapshot = source.snapshot()
        assert snapshot is not None
        assert snapshot.schema["n"] == pl.Int64  # kept in its own type, for the results
        assert source.read_typed().schema["n"] == pl.Int64


def test_unsupported_object_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot read a list as a source"):
        read_source([{"a": 1}])


def test_reserved_column_name_is_refused() -> None:
    with pytest.raises(InputError, match="reserved"):
        read_source(pl.DataFrame({ROW: [1]}))


@pytest.mark.parametrize(
    ("body", "line", "detail"),
    [
        pytest.param(b'a,b\n1,x\n2,"open\n3,y\n', 3, "unexpected end of data", id="unclosed-quote"),
        pytest.param(
            b'a,b\n1,x\n2,ab"c\n3,y\n', 3, "a quote inside a value that is not quoted", id="stray-quote"
        ),
    ],
)
def test_malformed_csv_names_the_line(tmp_path: Path, body: bytes, line: int, detail: str) -> None:
    source = read_source(write(tmp_path / "bad.csv", body))
    with pytest.raises(InputError, match=rf"bad\.csv:{line}: malformed CSV \({detail}\)") as info:
        source.read_all()
    assert info.value.line == line


def test_the_header_decides_the_delimiter_over_quoted_cells(tmp_path: Path) -> None:
    """Cells quoted with semicolons inside ("a;;b") never make the sniffer take ';' for a comma file."""
    path = tmp_path / "quoted.csv"
    path.write_text('"id","note"\n"r1",";"\n"r2",";;"\n"r3",";;"\n"r4",";"\n', encoding="utf-8")
    source = read_source(path)
    assert source.delimiter == ","
    assert source.columns == ["id", "note"]
    assert source.read_all().get_column("note").to_list() == [";", ";;", ";;", ";"]
