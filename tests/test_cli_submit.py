"""`batchkit submit`, `status`, `wait` and `run` as a user types them (CliRunner, sandbox over loopback)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from batchkit import Limits
from batchkit._shard.builddir import SANDBOX_STATE, load_manifest
from batchkit._shard.reshard import shard_file
from batchkit._submit.journal import Journal
from batchkit.cli import main
from batchkit.sandbox import Sandbox, serve

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--poll-initial", "0.05", "--poll-max", "0.2"]


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    with serve(Sandbox(pending_seconds=0.05, seconds_per_generation=0.001)) as url:
        yield url


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    out = tmp_path / "build"
    shard_file(ROOT / "fixtures" / "sample-batch.jsonl", out, limits=Limits(min_records=20))
    return out


def _invoke(args: list[str], url: str | None = None, key: str | None = "cli-key") -> tuple[int, str, str]:
    env = {"SYNC_API_KEY": key} if key else {}
    if url:
        env["SYNC_BASE_URL"] = url
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_submit_wait_status(build_dir: Path, sandbox_url: str) -> None:
    """submit --wait shows every shard done; status shows the same from the API; exit 0."""
    code, out, err = _invoke(["submit", str(build_dir), "--wait", *FAST], sandbox_url)
    assert code == 0, err
    assert "submitted" in err
    assert "COMPLETED" in err
    assert out == ""  # human text goes to stderr
    code, out, _ = _invoke(["status", str(build_dir), "--format", "json"], sandbox_url)
    assert code == 0
    shards = orjson.loads(out)["shards"]
    assert [(s["file"], s["state"], s["status"]) for s in shards] == [
        ("sample-batch-0001.jsonl", "submitted", "COMPLETED")
    ]
    assert shards[0]["metrics"]["success_count"] == 25
    code, _, err = _invoke(["status", str(build_dir), "--offline"], None, key=None)
    assert code == 0
    assert "COMPLETED" in err
    code, _, err = _invoke(["submit", str(build_dir)], sandbox_url)
    assert code == 0
    assert "skipped" in err


def test_submit_dry_run_shows_the_verdicts(build_dir: Path, sandbox_url: str) -> None:
    code, _, err = _invoke(["submit", str(build_dir), "--dry-run"], sandbox_url)
    assert code == 0
    assert "VALIDATED" in err


def test_no_api_key_is_a_one_line_error(build_dir: Path, sandbox_url: str) -> None:
    """No key: exit 2, one line that says how to fix it, no traceback."""
    code, out, err = _invoke(["submit", str(build_dir)], sandbox_url, key=None)
    assert code == 2
    assert "SYNC_API_KEY" in err
    assert "Traceback" not in err + out


def test_plain_http_base_url_is_refused_unless_loopback(build_dir: Path) -> None:
    code, _, err = _invoke(["submit", str(build_dir), "--base-url", "http://api.example.com"])
    assert code == 2
    assert "http://" in err


def test_status_of_a_directory_never_submitted(build_dir: Path) -> None:
    """Not an empty table, not an error: it says the build is not submitted yet and what submit sends."""
    for args in (["--offline"], ["--base-url", "http://127.0.0.1:9"]):  # no API call is needed either way
        code, out, err = _invoke(["status", str(build_dir), *args])
        assert code == 0, err
        assert "not submitted yet" in err
        assert "1 shard(s) of 25 request(s)" in err
        assert f"batchkit submit {build_dir}" in err
    code, out, _ = _invoke(["status", str(build_dir), "--offline", "--format", "json"])
    view = orjson.loads(out)
    assert (view["submitted"], view["planned_shards"], view["shards"]) == (False, 1, [])


def test_wait_deadline_is_exit_3_with_what_is_still_running(build_dir: Path) -> None:
    """Not finished yet is its own exit status (3), not a usage error's (2): waiting again later is safe."""
    with serve(Sandbox(pending_seconds=30)) as url:
        assert _invoke(["submit", str(build_dir)], url)[0] == 0
        code, _, err = _invoke(["wait", str(build_dir), "--deadline", "0.2", *FAST], url)
    assert code == 3
    assert "still running" in err


def test_submit_with_an_uncertain_shard_is_exit_3_naming_wait(build_dir: Path) -> None:
    """A create whose answer was lost, with several running batches of the same size on the account: the shard
    stays uncertain, so submit is not finished (3, not 0) and says that `batchkit wait DIR` settles it."""
    sandbox = Sandbox(pending_seconds=60)
    with serve(sandbox) as url:
        with Journal.open(build_dir) as journal:  # as a crash leaves it between the intent and the answer
            journal.sync_shards(
                [(s.file, s.sha256, s.records, s.bytes) for s in load_manifest(build_dir).shards]
            )
            journal.record_intent(journal.shards()[0].file, webhook_url=None)
        for _ in range(3):
            sandbox.add_foreign_batch(25)
        code, out, err = _invoke(["submit", str(build_dir)], url)
        assert code == 3, err
        assert "uncertain" in err
        assert f"batchkit wait {build_dir}" in err
        assert out == ""
        code, out, err = _invoke(["submit", str(build_dir), "--format", "json"], url)
    assert code == 3, err
    assert [s["state"] for s in orjson.loads(out)["shards"]] == ["intent"]


def test_run_with_the_sandbox_end_to_end(tmp_path: Path) -> None:
    """The README's first command: every row gets an outcome, results.csv holds them all."""
    shutil.copytree(ROOT / "fixtures", tmp_path / "fixtures")
    out = tmp_path / "out" / "campaign"
    args = ["run", str(tmp_path / "fixtures/campaign.csv"), "-m", str(tmp_path / "fixtures/campaign.toml"),
            "-o", str(out), "--skip-invalid", "--sandbox"]  # fmt: skip
    code, _, err = _invoke(args, key=None)
    assert code == 0, err
    for outcome in ("completed", "failed", "rejected", "missing", "invalid"):
        assert outcome in err
    frame = pl.read_csv(out / "results.csv", infer_schema=False)
    assert frame.height == 60
    assert dict(frame.group_by("outcome").len().iter_rows()) == {
        "completed": 52, "failed": 3, "rejected": 2, "missing": 1, "invalid": 2,
    }  # fmt: skip
    state = out / SANDBOX_STATE
    made = state.read_bytes().count(b'"kind":"batch"')
    assert made == 1  # 58 valid rows: one shard
    for file in (out / "results").iterdir():  # as an interrupted run leaves it: nothing downloaded yet
        file.unlink()
    code, _, err = _invoke(args, key=None)  # again: the build is reused, the same sandbox account resumed
    assert code == 0
    assert "reuse" in err
    assert state.read_bytes().count(b'"kind":"batch"') == made  # nothing was sent again
    assert (
        pl.read_csv(out / "results.csv", infer_schema=False).filter(pl.col("outcome") == "completed").height
        == 52
    )
    code, _, err = _invoke(args[:-1], key="real-key")  # the same directory against the real API: refused
    assert code == 2
    assert "sandbox" in err


def test_run_dry_run_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "dry"
    args = ["run", str(ROOT / "fixtures/campaign.csv"), "--mapping", str(ROOT / "fixtures/campaign.toml"),
            "--out", str(out), "--sandbox", "--dry-run", "--skip-invalid"]  # fmt: skip
    code, _, err = _invoke(args, key=None)
    assert code == 0, err
    assert "VALIDATED" in err
    assert not (out / "results.csv").exists()
