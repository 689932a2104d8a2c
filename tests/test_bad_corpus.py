"""Every malformed input in ``fixtures/bad/`` gets exactly the coded findings listed here, and no traceback.

The table is the contract: a file added to ``fixtures/bad/`` without a row here fails the suite.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from conftest import FIXTURES

from batchkit import Finding, Limits, validate_file

BAD = FIXTURES / "bad"

#: file → the findings it must produce, in report order: (code, line), line None for whole-file findings.
EXPECTED: dict[str, list[tuple[str, int | None]]] = {
    # syntax and encoding
    "truncated-json.jsonl": [("invalid-json", 5)],
    "array-line.jsonl": [("not-an-object", 3)],
    "string-line.jsonl": [("not-an-object", 7)],
    "number-line.jsonl": [("not-an-object", 2)],
    "nul-byte.jsonl": [("invalid-json", 4)],
    "invalid-utf8.jsonl": [("not-utf8", 6)],
    "utf16.jsonl": [("not-utf8", 1)],
    "bom.jsonl": [("utf8-bom", 1)],
    "crlf.jsonl": [("crlf-line-endings", 1)],
    "blank-lines.jsonl": [("blank-line", 10), ("blank-line", 16), ("blank-line", 23)],
    "concatenated-objects.jsonl": [("invalid-json", 8)],
    "empty.jsonl": [("empty-file", None)],
    # records
    "duplicate-ids.jsonl": [("duplicate-request-id", 12), ("duplicate-request-id", 17)],
    "missing-request-id.jsonl": [("missing-field", 4)],
    "invalid-request-id.jsonl": [
        ("invalid-request-id", 2),
        ("invalid-request-id", 5),
        ("invalid-request-id", 9),
    ],
    "wrong-endpoint.jsonl": [("wrong-endpoint", 2)],
    "missing-endpoint.jsonl": [("missing-field", 6)],
    "unknown-field.jsonl": [
        ("unknown-field", 8),
        ("unknown-field", 13),
        ("missing-field", 13),
        ("unknown-field", 15),
    ],
    "missing-video.jsonl": [("missing-video", 9)],
    "missing-audio.jsonl": [("missing-audio", 11)],
    "two-videos.jsonl": [("multiple-videos", 4)],
    "missing-source.jsonl": [("missing-field", 3)],
    "unknown-input-type.jsonl": [("invalid-value", 5), ("missing-video", 5)],
    "bad-urls.jsonl": [
        ("invalid-url", 2),
        ("invalid-url", 4),
        ("invalid-url", 6),
        ("invalid-url", 8),
        ("invalid-url", 10),
    ],
    "bad-output-file-name.jsonl": [
        ("invalid-output-file-name", 3),
        ("invalid-output-file-name", 5),
        ("invalid-output-file-name", 7),
        ("invalid-output-file-name", 9),
    ],
    "invalid-values.jsonl": [("invalid-value", 7), ("invalid-value", 7), ("invalid-value", 7)],
    "segment-ref-missing.jsonl": [("segment-ref-missing", 6)],
    "unknown-model.jsonl": [("unknown-model", 3)],
    # whole files
    "too-few-records.jsonl": [("too-few-records", None)],
    "too-many-records.jsonl": [("too-many-records", None)],
}

#: Files whose only findings are warnings: valid, so ``batchkit validate`` exits 0.
VALID_WITH_WARNINGS = {"crlf.jsonl", "unknown-model.jsonl"}


def test_every_bad_file_has_expectations() -> None:
    """Adding a file to fixtures/bad without a row in EXPECTED (or the reverse) fails."""
    assert sorted(p.name for p in BAD.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_findings(name: str) -> None:
    """Each malformed file yields exactly its coded, located findings; warnings alone leave it valid."""
    report = validate_file(BAD / name)
    assert [(f.code, f.line) for f in report.findings] == EXPECTED[name]
    assert all(f.file == str(BAD / name) for f in report.findings)
    assert report.valid is (name in VALID_WITH_WARNINGS)
    assert report.stats.files == 1


def _only(name: str, code: str) -> list[Finding]:
    return [f for f in validate_file(BAD / name).findings if f.code == code]


def test_duplicate_names_the_first_line() -> None:
    """A repeated request_id says where it was first used, with its id and pointer."""
    first, second = _only("duplicate-ids.jsonl", "duplicate-request-id")
    assert "already used at line 3" in first.message
    assert "already used at line 3" in second.message
    assert first.request_id == "spring26-0003"
    assert first.pointer == "/request_id"


def test_unknown_fields_suggest_the_wire_name() -> None:
    """Misspelt and snake_case keys get a "did you mean" with the exact wire name."""
    by_line = {f.line: f for f in _only("unknown-field.jsonl", "unknown-field")}
    assert by_line[8].pointer == "/payload/outputFilename"
    assert "did you mean 'outputFileName'?" in by_line[8].message
    assert by_line[13].pointer == "/payload/input/0/asset_id"
    assert "did you mean 'assetId'?" in by_line[13].message
    assert by_line[15].pointer == "/priority"
    assert "did you mean" not in by_line[15].message


def test_bad_urls_point_at_the_field() -> None:
    """ftp, spaces, relative, no host and no scheme are each an invalid-url at the exact pointer."""
    findings = _only("bad-urls.jsonl", "invalid-url")
    assert [f.pointer for f in findings] == ["/payload/input/1/url"] * 4 + ["/payload/webhookUrl"]
    assert "'ftp://cdn.example.com/audio/customer-0002.wav'" in findings[0].message


def test_bad_output_file_names() -> None:
    """Path traversal, emoji, 300 characters and empty names are refused with the allowed alphabet."""
    findings = _only("bad-output-file-name.jsonl", "invalid-output-file-name")
    assert {f.pointer for f in findings} == {"/payload/outputFileName"}
    assert "'../../etc/passwd'" in findings[0].message
    assert "A-Z a-z 0-9 _ -" in findings[0].message


def test_severities_of_warnings() -> None:
    """CRLF and unknown models are warnings (exit 0); the CRLF warning counts the lines."""
    (crlf,) = validate_file(BAD / "crlf.jsonl").findings
    assert crlf.severity == "warning"
    assert crlf.message.startswith("20 line(s) end with CR LF")
    (model,) = validate_file(BAD / "unknown-model.jsonl").findings
    assert model.severity == "warning"
    assert "did you mean 'lipsync-2'?" in model.message


def test_encoding_messages_say_how_to_fix() -> None:
    """Encoding findings name the byte, the BOM or UTF-16, and say to save as UTF-8."""
    (bad_byte,) = validate_file(BAD / "invalid-utf8.jsonl").findings
    assert "(0xff) is not UTF-8" in bad_byte.message
    (utf16,) = validate_file(BAD / "utf16.jsonl").findings
    assert "UTF-16" in utf16.message
    (nul,) = validate_file(BAD / "nul-byte.jsonl").findings
    assert "NUL byte at column" in nul.message


def _line(i: int) -> bytes:
    payload = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "https://cdn.example.com/v.mp4"},
            {"type": "audio", "url": f"https://cdn.example.com/a/{i}.wav"},
        ],
    }
    return orjson.dumps({"request_id": f"r{i}", "endpoint": "/v2/generate", "payload": payload})


def test_fifty_megabyte_line(tmp_path: Path) -> None:
    """One 50 MB line is line-too-large on its own (and makes the file too large); the rest still counts."""
    path = tmp_path / "huge.jsonl"
    big = _line(0).replace(b'"model"', b'"x":"' + b"a" * 50_000_000 + b'","model"')
    path.write_bytes(big + b"\n" + b"".join(_line(i) + b"\n" for i in range(1, 20)))
    report = validate_file(path)
    assert [(f.code, f.line) for f in report.findings] == [
        ("line-too-large", 1),
        ("file-too-large", None),
    ]
    assert report.stats.records == 20
    assert report.stats.valid_records == 19


def test_hundred_thousand_lines(tmp_path: Path) -> None:
    """100k clean lines: one too-many-records and one file-too-large finding, every line counted."""
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"".join(_line(i) + b"\n" for i in range(100_000)))
    report = validate_file(path)
    assert [(f.code, f.line) for f in report.findings] == [
        ("too-many-records", None),
        ("file-too-large", None),
    ]
    assert report.stats.records == report.stats.valid_records == report.stats.lines == 100_000


def test_file_too_large_by_bytes_alone(tmp_path: Path) -> None:
    """A file within the record limits but over the byte limit is file-too-large only."""
    path = tmp_path / "heavy.jsonl"
    path.write_bytes(b"".join(_line(i) + b"\n" for i in range(30)))
    size = path.stat().st_size
    report = validate_file(path, limits=Limits(max_bytes=size - 1))
    assert [(f.code, f.line) for f in report.findings] == [("file-too-large", None)]
    assert f"{size:,} bytes" in report.findings[0].message
