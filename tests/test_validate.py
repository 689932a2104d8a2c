"""The validator: files, directories and in-memory lines in, a complete Report out."""

from __future__ import annotations

import io
import json
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FIXTURES, json_values, mutated_lines, valid_lines
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import (
    CODES,
    BatchLine,
    InputError,
    Limits,
    Report,
    ValidationFailed,
    validate_file,
    validate_files,
    validate_lines,
)
from batchkit._validate.validate import expand_paths

SAMPLE = FIXTURES / "sample-batch.jsonl"


def make_line(i: int, **payload: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "https://cdn.example.com/v.mp4"},
            {"type": "audio", "url": f"https://cdn.example.com/a/{i}.wav"},
        ],
    }
    body.update(payload)
    return {"request_id": f"row-{i}", "endpoint": "/v2/generate", "payload": body}


def write_lines(path: Path, lines: list[Any], ending: bytes = b"\n") -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + ending for x in lines))
    return path


def located(report: Report) -> list[tuple[str, int | None]]:
    return [(f.code, f.line) for f in report.findings]


def test_sample_batch_is_valid() -> None:
    """The README's first command validates this file: 25 clean records, no finding."""
    report = validate_file(SAMPLE)
    assert report.valid
    assert report.findings == []
    stats = report.stats
    assert (stats.files, stats.lines, stats.records, stats.valid_records) == (1, 25, 25, 25)
    assert stats.bytes == SAMPLE.stat().st_size


def test_validate_lines_takes_bytes_str_dicts_and_models() -> None:
    """In-memory lines may be bytes, str, dicts, any Mapping, or models; all are judged the same."""
    lines: list[Any] = [
        orjson.dumps(make_line(1)),
        orjson.dumps(make_line(2)).decode() + "\n",
        make_line(3),
        types.MappingProxyType(make_line(4)),
        BatchLine.model_validate(make_line(5)),
    ]
    report = validate_lines(lines, file_checks=False)
    assert report.findings == []
    assert report.stats.records == report.stats.valid_records == 5


def test_validate_lines_reports_what_is_not_a_line() -> None:
    """Values that are not objects, or cannot be written as JSON, are findings, not exceptions."""
    odd: list[Any] = [[1, 2], None, {"request_id": {1, 2}}, {1: "a"}, "not json"]
    report = validate_lines(odd, file_checks=False)
    assert located(report) == [
        ("not-an-object", 1),
        ("not-an-object", 2),
        ("invalid-json", 3),
        ("invalid-json", 4),
        ("invalid-json", 5),
    ]
    assert "cannot be written as JSON" in report.findings[2].message


def test_file_checks() -> None:
    """file_checks=False skips record counts and bytes; with them a short list is too-few-records."""
    lines = [make_line(i) for i in range(3)]
    assert validate_lines(lines, file_checks=False).valid
    report = validate_lines(lines, file="mem.jsonl")
    assert located(report) == [("too-few-records", None)]
    assert report.findings[0].file == "mem.jsonl"
    assert "3 record(s); a batch needs at least 20 (17 more)" in report.findings[0].message


def test_limits_override_accepts_more_records(tmp_path: Path) -> None:
    """max_records=1000 (the old documented limit) accepts 700 lines that the default refuses."""
    path = write_lines(tmp_path / "big.jsonl", [make_line(i) for i in range(700)])
    assert located(validate_file(path)) == [("too-many-records", None)]
    report = validate_file(path, limits=Limits(max_records=1000))
    assert report.valid
    assert report.stats.valid_records == 700


def test_limits_override_bytes(tmp_path: Path) -> None:
    """A small byte limit makes long lines too large on their own, and the file too large."""
    path = write_lines(tmp_path / "b.jsonl", [make_line(i) for i in range(20)])
    report = validate_file(path, limits=Limits(max_bytes=100))
    assert located(report) == [*(("line-too-large", i) for i in range(1, 21)), ("file-too-large", None)]
    assert report.stats.valid_records == 0


def test_cross_file_duplicates(tmp_path: Path) -> None:
    """A request_id reused in another file of the same set is reported with that file and line."""
    a = write_lines(tmp_path / "a.jsonl", [make_line(i) for i in range(20)])
    b = write_lines(tmp_path / "b.jsonl", [make_line(i) for i in range(100, 119)] + [make_line(7)])
    report = validate_files([a, b])
    assert located(report) == [("duplicate-request-id", 20)]
    (finding,) = report.findings
    assert finding.file == str(b)
    assert f"already used at {a} line 8" in finding.message
    assert finding.request_id == "row-7"
    assert validate_file(a).valid
    assert validate_file(b).valid


def test_directories_expand_to_their_jsonl_files(tmp_path: Path) -> None:
    """A directory stands for its *.jsonl files in name order; other files and subfolders are ignored;
    a file named twice is validated once."""
    for name in ("b.jsonl", "a.jsonl"):
        write_lines(
            tmp_path / name,
            [make_line(i) for i in range(20 * (name == "a.jsonl"), 20 + 20 * (name == "a.jsonl"))],
        )
    (tmp_path / "notes.txt").write_text("not a batch")
    (tmp_path / "sub.jsonl").mkdir()
    assert expand_paths([tmp_path]) == [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    assert expand_paths([tmp_path, tmp_path / "a.jsonl", str(tmp_path / "b.jsonl")]) == [
        tmp_path / "a.jsonl",
        tmp_path / "b.jsonl",
    ]
    report = validate_files([tmp_path, tmp_path / "a.jsonl"])
    assert report.valid
    assert report.stats.files == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "missing.jsonl", "no such file or directory", id="missing"),
        pytest.param(lambda p: p, "has no .jsonl files", id="empty-directory"),
    ],
)
def test_unusable_paths_raise_input_error(tmp_path: Path, make: Any, message: str) -> None:
    """A missing path or a directory without batch files is an InputError naming the path."""
    path = make(tmp_path)
    with pytest.raises(InputError, match=message) as info:
        validate_files([path])
    assert info.value.path == str(path)


@pytest.mark.parametrize("chunk_bytes", [1 << 19, 4096, 1])
def test_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int) -> None:
    """Findings keep exact line numbers across the validator's internal chunks (whatever their size), and
    duplicates are caught across them in either direction."""
    monkeypatch.setattr("batchkit._validate.reading.BLOCK", chunk_bytes)
    lines: list[Any] = [make_line(i) for i in range(2500)]
    lines[1499] = b'{"request_id": "oops"'  # line 1500
    lines[2048] = make_line(9)  # line 2049 repeats line 10
    lines[2199] = make_line(2199, outputFileName="bad name")  # line 2200
    lines[3] = make_line(2400)  # line 4 is first, line 2401 repeats it
    path = write_lines(tmp_path / "long.jsonl", lines)
    report = validate_file(path, limits=Limits(max_records=3000, max_bytes=10_000_000))
    assert located(report) == [
        ("invalid-json", 1500),
        ("duplicate-request-id", 2049),
        ("invalid-output-file-name", 2200),
        ("duplicate-request-id", 2401),
    ]
    assert "already used at line 10" in report.findings[1].message
    assert "already used at line 4" in report.findings[3].message
    assert report.stats.records == 2500
    assert report.stats.valid_records == 2496
    in_memory = validate_lines(
        path.read_bytes().splitlines(), limits=Limits(max_records=3000, max_bytes=10_000_000)
    )
    assert located(in_memory) == located(report)


def test_crlf_lines_are_counted_wherever_they_are(tmp_path: Path) -> None:
    """CR LF endings are one warning per file, with the count and the first such line."""
    path = tmp_path / "mixed.jsonl"
    lines = [orjson.dumps(make_line(i)) for i in range(30)]
    path.write_bytes(b"".join(x + (b"\r\n" if i in (6, 7, 25) else b"\n") for i, x in enumerate(lines)))
    report = validate_file(path)
    assert located(report) == [("crlf-line-endings", 7)]
    assert report.findings[0].message.startswith("3 line(s) end with CR LF (first: line 7)")
    assert report.valid


def test_bom_then_valid_lines(tmp_path: Path) -> None:
    """A BOM is reported once on line 1; the line behind it is still checked."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps({"request_id": 1}) + b"\n")
    assert located(validate_file(path, limits=Limits(min_records=1))) == [
        ("utf8-bom", 1),
        ("invalid-request-id", 1),
        ("missing-field", 1),
        ("missing-field", 1),
    ]


def test_report_json_shape() -> None:
    """The JSON report has valid, stats, counts, limits and findings (then how many findings were not kept,
    and the file that holds them all), and unset locations are left out."""
    report = validate_lines([make_line(1), make_line(1), b"[]"], file="x.jsonl")
    data = json.loads(report.to_json())
    assert list(data) == ["valid", "stats", "counts", "limits", "findings", "elided", "findings_file"]
    assert (data["elided"], data["findings_file"]) == (0, None)
    assert data["valid"] is False
    assert data["stats"] == {
        "files": 1,
        "lines": 3,
        "records": 3,
        "valid_records": 1,
        "bytes": report.stats.bytes,
        "errors": 3,
        "warnings": 0,
    }
    assert data["counts"] == {"duplicate-request-id": 1, "not-an-object": 1, "too-few-records": 1}
    assert data["limits"]["max_records"] == 500
    assert data["findings"][0] == {
        "code": "duplicate-request-id",
        "severity": "error",
        "message": "request_id 'row-1' is already used at line 1; request_ids must be unique",
        "file": "x.jsonl",
        "line": 2,
        "request_id": "row-1",
        "pointer": "/request_id",
    }
    assert Report.model_validate_json(report.to_json(indent=False)).findings == report.findings


def test_render_text_ends_with_counts() -> None:
    """Text form: one line per finding, a verdict, then the counts table."""
    report = validate_lines(
        [make_line(1), make_line(1, model="lipsync-9")], file="x.jsonl", file_checks=False
    )
    lines = report.render_text().splitlines()
    assert lines[0].startswith("x.jsonl:2: warning unknown-model [row-1] at /payload/model: ")
    assert lines[1].startswith("x.jsonl:2: error duplicate-request-id [row-1] at /request_id: ")
    assert lines[2] == "INVALID: 1 file(s), 2 record(s), 1 valid, 1 error(s), 1 warning(s)"
    assert lines[3].split() == ["code", "severity", "count"]
    assert [line.split() for line in lines[4:]] == [
        ["unknown-model", "warning", "1"],
        ["duplicate-request-id", "error", "1"],
    ]
    assert report.render_text(max_findings=1).splitlines()[1] == "… and 1 more (--format json lists all)"


def test_raise_for_errors() -> None:
    """Only errors raise; the exception carries the report; a valid report is returned."""
    good = validate_lines([make_line(1, model="lipsync-9")], file_checks=False)
    assert good.raise_for_errors() is good
    bad = validate_lines([make_line(1), b"{"], file_checks=False)
    with pytest.raises(ValidationFailed, match=r"1 error finding\(s\): invalid-json × 1") as info:
        bad.raise_for_errors()
    assert info.value.report is bad


def test_library_never_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """Validation of the whole bad corpus writes nothing to stdout or stderr."""
    validate_files([FIXTURES / "bad"])
    assert capsys.readouterr() == ("", "")


def test_every_emitted_code_is_documented() -> None:
    """Every code the validator emits over the fixtures is listed in CODES."""
    report = validate_files([FIXTURES / "bad", SAMPLE])
    assert set(report.counts) <= set(CODES)


def expected_records(data: bytes) -> tuple[int, int]:
    """(lines, records) the validator must count for a file's bytes: its oracle, written out plainly."""
    lines = io.BytesIO(data).readlines()
    records = 0
    for n, raw in enumerate(lines, 1):
        body = raw.removesuffix(b"\n").removesuffix(b"\r")
        if n == 1 and body.startswith((b"\xff\xfe", b"\xfe\xff", b"\x1f\x8b", b"PK\x03\x04")):
            return len(lines), 0  # UTF-16, gzip or ZIP: not one line can be read
        if n == 1:
            body = body.removeprefix(b"\xef\xbb\xbf")
        records += bool(body.strip())
    return len(lines), records


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data: bytes) -> None:
    """Arbitrary bytes: no exception, every line and every non-blank line counted, every byte counted."""
    report = validate_lines(io.BytesIO(data))
    assert (report.stats.lines, report.stats.records) == expected_records(data)
    assert report.stats.bytes == len(data)
    assert all(f.code in CODES for f in report.findings)
    assert all(f.line is None or 1 <= f.line <= report.stats.lines for f in report.findings)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(json_values(), mutated_lines(), valid_lines()), max_size=6))
def test_random_values_never_crash(values: list[Any]) -> None:
    """JSON values, mutated and valid lines: no exception; valid exactly when no finding is an error.
    (A str is a line of JSON text, so a blank one is a blank line, not a record.)"""
    report = validate_lines(values)
    blank = 0
    for n, value in enumerate(values, 1):
        if isinstance(value, str):
            body = value.encode().removesuffix(b"\n").removesuffix(b"\r")
            blank += not (body.removeprefix(b"\xef\xbb\xbf") if n == 1 else body).strip()
    assert report.stats.records == len(values) - blank
    assert report.valid == (not any(f.severity == "error" for f in report.findings))
    assert report.stats.valid_records <= report.stats.records


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_lines(), min_size=1, max_size=8))
def test_generated_valid_lines_have_no_errors(lines: list[dict[str, Any]]) -> None:
    """Valid lines with distinct ids are all valid records."""
    for i, line in enumerate(lines):
        line["request_id"] = f"{i}-{line['request_id']}"
    report = validate_lines(lines, file_checks=False)
    assert report.findings == []
    assert report.stats.valid_records == len(lines)


def test_utf16_file_is_one_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A UTF-16 file (PowerShell's default) is reported once, however long, with every byte counted."""
    monkeypatch.setattr("batchkit._validate.reading.BLOCK", 4096)
    path = tmp_path / "utf16.jsonl"
    path.write_bytes("".join(orjson.dumps(make_line(i)).decode() + "\n" for i in range(300)).encode("utf-16"))
    report = validate_file(path)
    assert located(report) == [("not-utf8", 1)]
    assert report.stats.bytes == path.stat().st_size
    assert report.stats.records == 0
