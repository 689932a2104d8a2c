"""``batchkit retry`` (and ``build --include-held``) through click's CliRunner: output, files, exit codes."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._build.build import build
from batchkit._results.realtime import realtime_outcomes
from batchkit._shard.builddir import load_manifest
from batchkit._submit.submit import submit, wait
from batchkit._wire.limits import Limits
from batchkit.cli._build import build as build_command
from batchkit.cli._retry import retry_command
from batchkit.sandbox import Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)
MARKS = {2: "fail", 6: "reject", 13: "missing", 19: "fail"}


def write_source(path: Path, n: int = 22, marks: dict[int, str] | None = None, prefix: str = "u") -> Path:
    marks = MARKS if marks is None else marks
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "video", "audio"])
        for i in range(1, n + 1):
            mark = f"?sandbox={marks[i]}" if i in marks else ""
            writer.writerow(
                [
                    f"{prefix}{i:03d}",
                    f"https://cdn.example.com/v/{i}.mp4",
                    f"https://cdn.example.com/a/{i}.wav{mark}",
                ]
            )
    return path


def write_mapping(path: Path) -> Path:
    path.write_text('request_id = "{id}"\nmodel = "lipsync-2"\nvideo = "{video}"\naudio = "{audio}"\n')
    return path


def run(command: object, *args: str | Path) -> Result:
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)  # type: ignore[arg-type]


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=11)


@pytest.fixture
def url(sandbox: Sandbox) -> Iterator[str]:
    with serve(sandbox) as address:
        yield address


@pytest.fixture
def finished(tmp_path: Path, url: str) -> Path:
    """22 rows in one batch, finished: 2 failed, 1 rejected, 1 missing."""
    directory = tmp_path / "build"
    build(write_source(tmp_path / "people.csv"), write_mapping(tmp_path / "m.toml"), directory)
    with Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.01)) as client:
        submit(directory, client=client, poll=FAST_POLL)
        wait(directory, client=client, poll=FAST_POLL)
    return directory


def retry(url: str, *args: str | Path) -> Result:
    api = ("--base-url", url, "--api-key", "k", "--poll-initial", "0.02", "--poll-max", "0.1")
    return run(retry_command, *args, *api)


def test_too_few_exits_1_and_names_both_ways_out(finished: Path, url: str, tmp_path: Path) -> None:
    result = retry(url, finished, "--out", tmp_path / "r")
    assert result.exit_code == 1
    text = result.stdout + result.stderr
    assert "not retried: 4 units to retry" in result.stderr
    assert "4 units to retry (2 failed, 1 missing, 1 rejected)" in text
    assert "--realtime" in text
    assert "--hold" in text
    assert not (tmp_path / "r").exists()


def test_hold_prints_the_next_build_command_which_then_includes_them(
    finished: Path, url: str, tmp_path: Path
) -> None:
    held = tmp_path / "held"
    result = retry(url, finished, "--out", held, "--hold")
    assert result.exit_code == 0, result.output
    assert "selected 4 unit(s)" in result.stderr
    assert "2 failed" in result.stderr
    assert "4 request(s) held" in result.stderr
    assert f"--include-held {held}" in result.stderr
    assert len((held / "held.jsonl").read_bytes().splitlines()) == 4

    new = write_source(tmp_path / "next.csv", n=18, marks={}, prefix="n")
    mapping = write_mapping(tmp_path / "m2.toml")
    built = run(build_command, new, "--mapping", mapping, "--out", tmp_path / "next", "--include-held", held)
    assert built.exit_code == 0, built.output
    assert "included 4 held request(s)" in built.stderr
    assert "18 rows read → 22 request(s), 22 written" in built.stderr
    again = run(build_command, new, "--mapping", mapping, "--out", tmp_path / "other", "--include-held", held)
    assert again.exit_code == 2
    assert "already included in" in again.stderr


def test_realtime_sends_them_and_says_what_is_next(finished: Path, url: str, tmp_path: Path) -> None:
    out = tmp_path / "rt"
    result = retry(url, finished, "--out", out, "--realtime", "--concurrency", "2")
    assert result.exit_code == 0, result.output
    assert "sent one by one: 4 of 4 request(s) finished" in result.stderr
    assert "FAILED" in result.stderr
    assert f"next: batchkit results {out}" in result.stderr
    assert len(realtime_outcomes(out)) == 4


def test_realtime_past_the_deadline_exits_3_and_resumes(
    finished: Path, url: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "rt"
    stopped = retry(url, finished, "--out", out, "--realtime", "--deadline", "0")
    assert stopped.exit_code == 3  # not finished yet: running it again resumes
    assert "4 not finished" in stopped.stderr
    assert "run the same command again" in stopped.stderr
    assert sandbox.generations == []
    resumed = retry(url, finished, "--out", out, "--realtime")
    assert resumed.exit_code == 0, resumed.output
    assert "already holds" in resumed.stderr
    assert len(sandbox.generations) == 4


def test_lower_min_records_makes_a_shard(finished: Path, url: str, tmp_path: Path) -> None:
    out = tmp_path / "r"
    result = retry(url, finished, "--out", out, "--min-records", "1", "--only", "failed,missing")
    assert result.exit_code == 0, result.output
    assert "selected 3 unit(s)" in result.stderr
    assert "1 shard(s) of 3 records" in result.stderr
    assert f"next: batchkit submit {out} --wait" in result.stderr
    assert load_manifest(out).limits == Limits(min_records=1)
    ids = [
        orjson.loads(line)["request_id"]
        for line in (out / "people-retry1-0001.jsonl").read_bytes().splitlines()
    ]
    assert ids == ["u002.r1", "u013.r1", "u019.r1"]
    again = retry(url, finished, "--out", out, "--min-records", "1", "--only", "failed,missing")
    assert again.exit_code == 0
    assert "already holds" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--only", "invalid"), "cannot retry 'invalid' units", id="invalid"),
        pytest.param(("--only", "completed"), "cannot retry 'completed' units", id="completed"),
        pytest.param(("--realtime", "--hold"), "choose one of --realtime", id="both"),
        pytest.param(("--min-records", "30", "--max-records", "25"), "is larger than", id="limits"),
    ],
)
def test_usage_errors_exit_2(
    finished: Path, url: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = retry(url, finished, "--out", tmp_path / "r", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "r").exists()


def test_nothing_to_retry_exits_0(tmp_path: Path, url: str) -> None:
    directory = tmp_path / "ok"
    build(write_source(tmp_path / "ok.csv", marks={}), write_mapping(tmp_path / "m.toml"), directory)
    with Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.01)) as client:
        submit(directory, client=client, poll=FAST_POLL)
        wait(directory, client=client, poll=FAST_POLL)
    result = retry(url, directory, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "nothing to retry" in result.stderr
    assert "completed" in result.stderr
    assert not (tmp_path / "r").exists()
