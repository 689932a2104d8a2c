"""``batchkit build`` and ``batchkit shard`` through click's CliRunner: output, files and exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from batchkit.cli._build import build, shard

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CAMPAIGN = [str(FIXTURES / "campaign.csv"), "--mapping", str(FIXTURES / "campaign.toml")]
LINE = (
    '{{"request_id":"r{i}","endpoint":"/v2/generate","payload":{{"model":"lipsync-2","input":['
    '{{"type":"video","url":"https://cdn.example.com/{i}.mp4"}},{{"type":"audio","url":"https://cdn.example.com/{i}.wav"}}]}}}}\n'
)


def run(command: object, *args: str | Path) -> Result:
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)  # type: ignore[arg-type]


def test_build_fails_on_invalid_rows_with_exit_1(tmp_path: Path) -> None:
    result = run(build, *CAMPAIGN, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "campaign.csv row 7 (line 8), column audio_url: error invalid-url [c007]" in result.stderr
    assert "campaign.csv row 13 (line 14), column audio_url: error empty-value [c013]" in result.stderr
    assert "not built: 2 invalid row(s) (empty-value × 1, invalid-url × 1)" in result.stderr
    assert "--skip-invalid" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["findings.ndjson", "report.json"]


def test_build_skip_invalid_prints_a_summary(tmp_path: Path) -> None:
    result = run(build, *CAMPAIGN, "--out", tmp_path / "out", "--skip-invalid", "--max-records", "40")
    assert result.exit_code == 0, result.output
    assert "60 rows read → 60 request(s), 58 written, 2 invalid" in result.stderr
    assert "invalid invalid-url: 1" in result.stderr
    assert "invalid empty-value: 1" in result.stderr
    assert "2 shard(s) of 29, 29 records" in result.stderr
    assert (tmp_path / "out" / "campaign-0002.jsonl").is_file()
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_build_json_format(tmp_path: Path) -> None:
    result = run(build, *CAMPAIGN, "--out", tmp_path / "out", "--skip-invalid", "--format", "json")
    assert result.exit_code == 0
    data = orjson.loads(result.stdout)
    assert data["ok"] is True
    assert data["counts"]["requests"] == 58
    assert data["counts"]["shards"] == 1
    assert data["invalid_by_code"] == {"empty-value": 1, "invalid-url": 1}
    assert [f["code"] for f in data["report"]["findings"]] == ["invalid-url", "empty-value"]


def test_build_json_format_on_failure(tmp_path: Path) -> None:
    result = run(build, *CAMPAIGN, "--out", tmp_path / "out", "--format", "json")
    assert result.exit_code == 1
    data = orjson.loads(result.stdout)
    assert data["ok"] is False
    assert data["report"]["stats"]["errors"] == 2


def test_build_localization_sheet(tmp_path: Path) -> None:
    args: list[str | Path] = [
        FIXTURES / "localization.xlsx",
        "--mapping",
        FIXTURES / "localization.toml",
        "--out",
        tmp_path / "o",
    ]
    result = run(build, *args, "--sheet", "Videos")
    assert result.exit_code == 0, result.output
    assert "10 rows read → 30 request(s), 30 written, 0 invalid" in result.stderr
    missing = run(build, *args, "--sheet", "Dubs")
    assert missing.exit_code == 2
    assert "has no sheet 'Dubs'; its sheets are 'Videos', 'Notes'" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["missing.csv", "--mapping", FIXTURES / "campaign.toml"], "no such file", id="no-source"
        ),
        pytest.param(
            [FIXTURES / "campaign.csv", "--mapping", "missing.toml"], "no such mapping file", id="no-mapping"
        ),
        pytest.param(
            [FIXTURES / "campaign.toml", "--mapping", FIXTURES / "campaign.toml"],
            "cannot tell the format of campaign.toml",
            id="unknown-format",
        ),
        pytest.param(
            [*CAMPAIGN, "--min-records", "600"],
            "--min-records (600) is larger than --max-records (500)",
            id="limits",
        ),
    ],
)
def test_build_usage_errors_exit_2(tmp_path: Path, args: list[str | Path], message: str) -> None:
    result = run(build, *args, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_build_too_few_records_exit_1(tmp_path: Path) -> None:
    result = run(
        build,
        *CAMPAIGN,
        "--out",
        tmp_path / "o",
        "--skip-invalid",
        "--min-records",
        "100",
        "--max-records",
        "500",
    )
    assert result.exit_code == 1
    assert "too-few-records" in result.stderr
    assert "58 valid requests; a batch needs at least 100 (42 more)" in result.stderr


def test_build_refuses_a_submitted_directory_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert run(build, *CAMPAIGN, "--out", out, "--skip-invalid").exit_code == 0
    (out / "journal.sqlite").touch()
    refused = run(build, *CAMPAIGN, "--out", out, "--skip-invalid")
    assert refused.exit_code == 2
    assert "already submitted" in refused.stderr
    assert run(build, *CAMPAIGN, "--out", out, "--skip-invalid", "--force").exit_code == 0


def test_build_bad_mapping_line_number(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        'request_id = "{customer_id}"\nmodel = "lipsync-2"\nvideo = "{video_url}"\naudio = "{audio_url}"\nwebhook = "x"\n'
    )
    result = run(build, FIXTURES / "campaign.csv", "--mapping", mapping, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "m.toml:5: unknown key 'webhook'" in result.stderr


def test_shard_command(tmp_path: Path) -> None:
    source = tmp_path / "all.jsonl"
    source.write_text("".join(LINE.format(i=i) for i in range(3000)))
    result = run(shard, source, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "3,000 lines read → 3,000 request(s), 3,000 written, 0 invalid" in result.stderr
    assert "6 shard(s) of 500, 500, 500, 500, 500, 500 records" in result.stderr
    assert len(list((tmp_path / "o").glob("all-*.jsonl"))) == 6


def test_shard_command_invalid_line_exit_1(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text("".join(LINE.format(i=i) for i in range(30)) + "{broken\n")
    result = run(shard, source, "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "bad.jsonl:31: error invalid-json" in result.stderr
    assert run(shard, source, "--out", tmp_path / "o", "--skip-invalid").exit_code == 0
