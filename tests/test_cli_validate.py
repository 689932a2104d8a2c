"""`batchkit validate` and `batchkit schema`: exit codes, text and JSON output, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from conftest import FIXTURES

from batchkit import Limits, validate_files
from batchkit.cli import main

SAMPLE = FIXTURES / "sample-batch.jsonl"
BAD = FIXTURES / "bad"
PRO_ONLY = FIXTURES / "policy-pro-only.json"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["validate", *map(str, args)])


def make_line(i: int, **payload: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "https://cdn.example.com/v.mp4"},
            {"type": "audio", "url": f"https://cdn.example.com/{i}.wav"},
        ],
        **payload,
    }
    return {"request_id": f"row-{i}", "endpoint": "/v2/generate", "payload": body}


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def test_valid_file_exits_zero() -> None:
    result = run(SAMPLE)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "valid: 1 file(s), 25 record(s), 25 valid, 0 error(s), 0 warning(s)"
    assert result.stdout == ""  # stdout is for documents (--format json and the CI formats)


def test_findings_exit_one_and_text_ends_with_counts_table() -> None:
    """Errors: exit 1; one line per finding, the verdict, then a table of counts by code."""
    result = run(BAD / "unknown-field.jsonl")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(f"{BAD / 'unknown-field.jsonl'}:8: error unknown-field [spring26-0008]")
    assert lines[4] == "invalid: 1 file(s), 20 record(s), 17 valid, 4 error(s), 0 warning(s)"
    assert lines[5] == "findings by code"
    table = "\n".join(lines[6:])
    assert lines[7].replace("┃", " ").split() == ["code", "severity", "count"]
    rows = [line.replace("│", " ").split() for line in lines[8:] if "│" in line]
    assert rows == [["unknown-field", "error", "3"], ["missing-field", "error", "1"]]
    assert table.rstrip().endswith("┘")


def test_warnings_only_exit_zero_with_table() -> None:
    result = run(BAD / "unknown-model.jsonl")
    assert result.exit_code == 0
    assert "warning unknown-model" in result.stderr
    assert "unknown-model │ warning  │     1" in result.stderr


def test_json_output_is_the_library_report() -> None:
    """--format json prints the Report exactly as the library builds it."""
    paths = [BAD / "duplicate-ids.jsonl", BAD / "crlf.jsonl"]
    result = run(*paths, "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == json.loads(validate_files(paths).to_json())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["missing.jsonl"], "error: no such file or directory: missing.jsonl", id="missing-path"),
        pytest.param(["{empty}"], "has no .jsonl files", id="directory-without-jsonl"),
        pytest.param(
            [str(SAMPLE), "--schema", "nope.json"], "error: cannot read schema nope.json", id="no-policy"
        ),
        pytest.param(
            [str(SAMPLE), "--min-records", "30", "--max-records", "20"],
            "error: --min-records (30) is larger than --max-records (20)",
            id="limits",
        ),
    ],
)
def test_usage_and_io_errors_exit_two(tmp_path: Path, args: list[str], message: str) -> None:
    """Unusable input: exit 2 and one error line on stderr (a usage error adds a one-line hint), no traceback."""
    (tmp_path / "notes.txt").write_text("no batch here")
    result = CliRunner().invoke(main, ["validate", *(a.replace("{empty}", str(tmp_path)) for a in args)])
    assert result.exit_code == 2
    assert message in result.stderr
    error, *hint = result.stderr.strip().splitlines()
    assert error.startswith("error: ")
    assert [h for h in hint if not h.startswith("hint: ")] == []
    assert len(hint) <= 1
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_no_path_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: missing argument 'PATH...'",
        "hint: `batchkit validate --help` lists its options",
    ]


def test_policy_findings() -> None:
    """--schema applies the user's JSON Schema; its findings are coded policy."""
    result = run(SAMPLE, "--schema", PRO_ONLY, "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert set(report["counts"]) == {"policy"}
    assert report["findings"][0]["pointer"] == "/payload/model"


def test_limits_options(tmp_path: Path) -> None:
    """--max-records raises the limit (700 lines pass with 1000); the JSON report shows the profile used."""
    path = write(tmp_path / "b.jsonl", [make_line(i) for i in range(700)])
    assert run(path).exit_code == 1
    result = run(path, "--max-records", "1000", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["limits"] == Limits(max_records=1000).as_dict()
    small = run(path, "--max-records", "1000", "--max-bytes", "1000", "--format", "json")
    assert json.loads(small.stdout)["counts"] == {"file-too-large": 1}
    few = run(SAMPLE, "--min-records", "26")
    assert few.exit_code == 1
    assert "too-few-records" in few.stderr


def test_max_findings(tmp_path: Path) -> None:
    """--max-findings limits the listed findings; all are still counted."""
    path = write(tmp_path / "b.jsonl", [make_line(1)] * 25)
    result = run(path, "--max-findings", "2")
    assert result.exit_code == 1
    listed = [line for line in result.stderr.splitlines() if "duplicate-request-id [row-1]" in line]
    assert len(listed) == 2
    assert "… and 22 more (--format json lists all)" in result.stderr
    assert "duplicate-request-id │ error    │    24" in result.stderr


def test_output_is_verbatim(tmp_path: Path) -> None:
    """Values that look like rich markup or emoji codes are printed as they are, in both formats."""
    lines = [make_line(i) for i in range(20)]
    lines[3]["payload"]["outputFileName"] = ":smile:[bold]x[/bold]"
    path = write(tmp_path / "b.jsonl", lines)
    text = run(path)
    assert "':smile:[bold]x[/bold]'" in text.stderr
    data = json.loads(run(path, "--format", "json").stdout)
    assert "':smile:[bold]x[/bold]'" in data["findings"][0]["message"]


def test_directory_and_files_together(tmp_path: Path) -> None:
    """A directory and a file of it: each file once, duplicates across files reported."""
    write(tmp_path / "a.jsonl", [make_line(i) for i in range(20)])
    write(tmp_path / "b.jsonl", [make_line(i) for i in range(19, 39)])
    result = run(tmp_path, tmp_path / "a.jsonl", "--format", "json")
    report = json.loads(result.stdout)
    assert report["stats"]["files"] == 2
    assert [(f["code"], f["line"]) for f in report["findings"]] == [("duplicate-request-id", 1)]


def test_schema_command_reports_what_it_wrote(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batch-line.schema.json",
        "batch.schema.json",
        "generate-payload.schema.json",
        "output-line.schema.json",
    ]
    assert result.stderr.count("wrote ") == 4
