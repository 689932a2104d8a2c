"""``batchkit probe``, ``estimate``, ``build --probe --reuse``, ``submit/run --max-cost`` and ``run --sample`` as a
user types them (CliRunner, the sandbox and its media host over loopback)."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
from click.testing import CliRunner

from batchkit.cli import main
from batchkit.sandbox import Sandbox

from .sheets import FIXTURES, sheet

MAPPING = str(FIXTURES / "preflight.toml")
PRICES = str(FIXTURES / "prices.toml")


def _invoke(args: list[str | Path], sandbox: Sandbox, tmp_path: Path) -> tuple[int, str, str]:
    env = {
        "SYNC_API_KEY": "cli-key",
        "SYNC_BASE_URL": sandbox.url,
        "BATCHKIT_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_probe_a_source_and_a_directory(sandbox: Sandbox, tmp_path: Path) -> None:
    """probe SOURCE exits 1 with every problem at its row and a summary; probe DIR writes media.parquet."""
    source = sheet(tmp_path, sandbox.url)
    code, out, err = _invoke(["probe", source, "--mapping", MAPPING], sandbox, tmp_path)
    assert code == 1
    assert out == ""  # stdout carries documents only
    assert "preflight.csv row 3 (line 4), column audio_url: error media-too-long [p03]" in err
    assert "preflight.csv row 9 (line 10), column video_url: error media-no-video-track [p09]" in err
    assert "media probe" in err
    assert "distinct URLs" in err
    code, out, _ = _invoke(["probe", source, "--mapping", MAPPING, "--format", "json"], sandbox, tmp_path)
    data = orjson.loads(out)
    assert code == 1
    assert data["urls"] == 35
    assert data["cached"] == 34  # the first probe filled the cache; only the 404 is asked again
    assert data["report"]["counts"]["media-unreachable"] == 1
    code, _, err = _invoke(
        ["build", source, "--mapping", MAPPING, "--out", tmp_path / "out"], sandbox, tmp_path
    )
    assert code == 0, err
    code, out, err = _invoke(["probe", tmp_path / "out"], sandbox, tmp_path)
    assert code == 1
    assert "media.parquet" in err
    assert pl.read_parquet(tmp_path / "out" / "media.parquet").height == 35
    code, _, err = _invoke(["probe", source], sandbox, tmp_path)
    assert code == 2
    assert "--mapping" in err


def test_build_probe_then_estimate_then_a_budget(sandbox: Sandbox, tmp_path: Path) -> None:
    """build --probe --prices shows the estimate; estimate prints tables and JSON; submit --max-cost refuses
    (exit 2) before anything is sent, and --allow-unknown-cost with enough budget submits."""
    source = sheet(tmp_path, sandbox.url)
    out_dir = tmp_path / "out"
    args = [
        "build",
        source,
        "--mapping",
        MAPPING,
        "--out",
        out_dir,
        "--probe",
        "--skip-invalid",
        "--prices",
        PRICES,
    ]
    code, out, err = _invoke(args, sandbox, tmp_path)
    assert code == 0, err
    assert "32 request(s), 25 written, 7 invalid" in err
    assert "invalid media-too-long: 1" in err
    assert "estimate: unknown (known part $14.40) for 25 request(s)" in err
    code, _, err = _invoke(["estimate", out_dir, "--prices", PRICES], sandbox, tmp_path)
    assert code == 0
    assert "by shard" in err
    assert "≥ $14.40" in err
    code, out, _ = _invoke(["estimate", out_dir, "--format", "json"], sandbox, tmp_path)
    data = orjson.loads(out)
    assert (data["requests"], data["unknown"], data["total_usd"]) == (25, 1, None)
    assert data["source"] == "Sync's estimate API"
    before = sandbox.requests[("POST", "/v2/batch")]
    code, _, err = _invoke(["submit", out_dir, "--max-cost", "100", "--prices", PRICES], sandbox, tmp_path)
    assert code == 2
    assert "1 of 25 request(s) is unknown" in err
    assert not (out_dir / "journal.sqlite").exists()
    assert sandbox.requests[("POST", "/v2/batch")] == before
    args = ["submit", out_dir, "--max-cost", "15", "--allow-unknown-cost", "--prices", PRICES]
    code, _, err = _invoke(args, sandbox, tmp_path)
    assert code == 0, err
    assert sandbox.requests[("POST", "/v2/batch")] == before + 1


def test_run_sample_then_reuse(sandbox: Sandbox, tmp_path: Path) -> None:
    """run --sample 3, then the full run (the sample's completed rows not sent again), then day 2 with
    build --reuse: only what is new or changed is left to send."""
    source = sheet(tmp_path, sandbox.url)
    out_dir = tmp_path / "run"
    base = [
        "run",
        source,
        "--mapping",
        MAPPING,
        "--out",
        out_dir,
        "--probe",
        "--skip-invalid",
        "--poll-initial",
        "0.05",
    ]
    code, _, err = _invoke(
        [*base, "--sample", "3", "--max-cost", "5", "--allow-unknown-cost"], sandbox, tmp_path
    )
    assert code == 0, err
    assert "3 of 25 request(s) into" in err
    assert (tmp_path / "run-sample" / "results.csv").is_file()
    code, _, err = _invoke([*base, "--max-cost", "1"], sandbox, tmp_path)
    assert code == 2
    assert "over --max-cost $1.00" in err
    code, _, err = _invoke([*base, "--max-cost", "20", "--yes"], sandbox, tmp_path)
    assert code == 0, err
    assert "estimate $13.20 for 22 request(s)" in err
    results = pl.read_csv(out_dir / "results.csv")
    assert results.filter(pl.col("reused_from").is_not_null()).height == 3
    day2 = sheet(tmp_path, sandbox.url, "preflight-day2.csv")
    args = ["build", day2, "--mapping", MAPPING, "--out", tmp_path / "day2", "--probe", "--skip-invalid",
            "--reuse", out_dir]  # fmt: skip
    code, _, err = _invoke(args, sandbox, tmp_path)
    assert code == 0, err
    assert "34 request(s), 4 written, 7 invalid" in err
    assert "no shard: 4 request(s) in realtime.jsonl" in err
    assert "reused 23 request(s)" in err
