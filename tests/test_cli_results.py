"""``batchkit results`` through click's CliRunner, against the sandbox on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner, Result
from conftest import FIXTURES

from batchkit import Limits
from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._results.chain import CHAIN_COLUMNS
from batchkit._results.results import RESULT_COLUMNS
from batchkit._submit.submit import submit, wait
from batchkit.cli import main
from batchkit.sandbox import Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["results", *map(str, args)], catch_exceptions=False)


@pytest.fixture
def api() -> Iterator[tuple[str, Client]]:
    sandbox = Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=7)
    with serve(sandbox) as url, Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.01)) as client:
        yield url, client


def _build(tmp_path: Path, *, localization: bool = False) -> Path:
    out = tmp_path / "build"
    if localization:
        build(FIXTURES / "localization.xlsx", FIXTURES / "localization.toml", out)
    else:
        source = tmp_path / "campaign.csv"
        shutil.copy(FIXTURES / "campaign.csv", source)
        build(
            source,
            FIXTURES / "campaign.toml",
            out,
            BuildOptions(skip_invalid=True, limits=Limits(max_records=30)),
        )
    return out


def _finished(tmp_path: Path, client: Client, *, localization: bool = False) -> Path:
    directory = _build(tmp_path, localization=localization)
    submit(directory, client=client, poll=FAST_POLL)
    wait(directory, client=client, poll=FAST_POLL)
    return directory


def test_results_downloads_joins_and_writes_csv(tmp_path: Path, api: tuple[str, Client]) -> None:
    """The README's command: the table on disk, the summary tables on stderr, nothing on stdout."""
    url, client = api
    directory = _finished(tmp_path, client)
    target = tmp_path / "results.csv"
    result = run(directory, "--out", target, "--base-url", url, "--api-key", "k")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    for text in ("outcomes", "completed", "52", "failed", "missing", "invalid", "total", "60", "why"):
        assert text in result.stderr
    assert "generation_pipeline_failed" in result.stderr
    assert "missing-result" in result.stderr
    assert f"wrote {target} (60 rows)" in result.stderr.replace("\n", "")
    table = pl.read_csv(target, infer_schema=False)
    assert table.height == 60
    assert table.columns[-len(RESULT_COLUMNS) - len(CHAIN_COLUMNS) :] == [*RESULT_COLUMNS, *CHAIN_COLUMNS]
    assert table["outcome"].value_counts().sort("outcome").rows() == [
        ("completed", 52),
        ("failed", 3),
        ("invalid", 2),
        ("missing", 1),
        ("rejected", 2),
    ]


def test_offline_uses_the_downloaded_files_without_a_key(tmp_path: Path, api: tuple[str, Client]) -> None:
    url, client = api
    directory = _finished(tmp_path, client)
    assert run(directory, "--base-url", url, "--api-key", "k").exit_code == 0
    result = run(directory, "--offline", "--out", tmp_path / "r.parquet")
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "r.parquet").height == 60


def test_offline_before_any_download_says_pending(tmp_path: Path, api: tuple[str, Client]) -> None:
    """--offline never calls the API: finished batches without a downloaded file stay pending."""
    _, client = api
    directory = _finished(tmp_path, client)
    result = run(directory, "--offline", "--format", "json")
    assert result.exit_code == 0
    summary = orjson.loads(result.stdout)
    assert summary["outcomes"]["pending"] == 58
    assert summary["outcomes"]["invalid"] == 2


@pytest.mark.parametrize(
    ("localization", "code"),
    [pytest.param(False, 1, id="some-failed"), pytest.param(True, 0, id="all-completed")],
)
def test_strict_exits_1_unless_every_row_completed(
    tmp_path: Path, api: tuple[str, Client], localization: bool, code: int
) -> None:
    url, client = api
    directory = _finished(tmp_path, client, localization=localization)
    assert run(directory, "--base-url", url, "--api-key", "k").exit_code == 0
    assert run(directory, "--offline", "--strict").exit_code == code


def test_json_format_has_the_summary_and_every_finding(tmp_path: Path, api: tuple[str, Client]) -> None:
    url, client = api
    directory = _finished(tmp_path, client)
    target = tmp_path / "r.xlsx"
    result = run(directory, "--format", "json", "--out", target, "--base-url", url, "--api-key", "k")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["units"] == 60
    assert data["outcomes"]["completed"] == 52
    assert data["error_codes"]["generation_pipeline_failed"] == 3
    assert data["findings"] == {"missing-result": 1}
    assert data["written"] == str(target)
    assert [f["code"] for f in data["report"]["findings"]] == ["missing-result"]
    assert pl.read_excel(target).height == 60


def test_a_moved_source_exits_2_until_given_with_source(tmp_path: Path, api: tuple[str, Client]) -> None:
    _, client = api
    directory = _finished(tmp_path, client)
    moved = tmp_path / "moved.csv"
    (tmp_path / "campaign.csv").rename(moved)
    result = run(directory, "--offline")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the source")
    assert "--source" in result.stderr
    assert "Traceback" not in result.output
    result = run(directory, "--offline", "--source", moved)
    assert result.exit_code == 0, result.output


def test_bad_output_findings_are_listed(tmp_path: Path, api: tuple[str, Client]) -> None:
    """A truncated results file: the finding, with its file and line, is listed on stderr."""
    url, client = api
    directory = _finished(tmp_path, client)
    assert run(directory, "--base-url", url, "--api-key", "k").exit_code == 0
    output = sorted((directory / "results").iterdir())[0]
    output.write_bytes(output.read_bytes()[:-30])
    result = run(directory, "--offline")
    assert result.exit_code == 0
    assert "truncated-output" in result.stderr
    assert f"{output.name}:" in result.stderr.replace("\n", "")


def test_a_directory_without_a_build_is_exit_2(tmp_path: Path) -> None:
    result = run(tmp_path, "--offline")
    assert result.exit_code == 2
    assert "has no manifest.json" in result.stderr


def test_an_unsubmitted_build_needs_no_key(tmp_path: Path) -> None:
    """Before submit there is nothing to ask the API: no key needed, every request unsubmitted."""
    directory = _build(tmp_path)
    result = run(directory, "--format", "json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["outcomes"]["unsubmitted"] == 58


def test_an_unknown_export_suffix_is_exit_2(tmp_path: Path) -> None:
    directory = _build(tmp_path)
    result = run(directory, "--out", tmp_path / "results.txt")
    assert result.exit_code == 2
    assert "cannot tell the format" in result.stderr


def test_help_lists_the_options() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for option in ("--out", "--offline", "--source", "--strict", "--format", "--api-key", "--base-url"):
        assert option in result.output
