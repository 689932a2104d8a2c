"""What a build directory costs (``estimate_directory``), priced by a table or by the sandbox's estimate API, and
the budget that stops ``submit`` and ``run`` before their first create."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from batchkit import (
    Budget,
    BudgetError,
    BuildOptions,
    Client,
    RunOptions,
    TablePrices,
    build,
    check_budget,
    estimate_directory,
    run,
    submit,
    tts_seconds,
)
from batchkit._build.estimate import request_lengths
from batchkit.sandbox import Sandbox, serve
from batchkit.sandbox._config import SANDBOX_PRICES

from .sheets import FIXTURES, quick_probe, sheet

MAPPING = FIXTURES / "preflight.toml"
PRICES = TablePrices({"lipsync-2": 0.05})


@pytest.fixture(scope="module")
def probed(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's sheet built with --probe (25 valid rows; row 11's video cannot be timed)."""
    folder = tmp_path_factory.mktemp("probed")
    out = folder / "out"
    build(
        sheet(folder, sandbox.url), MAPPING, out, BuildOptions(skip_invalid=True, probe=quick_probe(folder))
    )
    return out


def test_the_estimate_is_seconds_times_price(probed: Path) -> None:
    """Every sent request lasts min(video, audio) (no sync_mode: cut_off); row 11's is unknown, never 0."""
    result = estimate_directory(probed, PRICES)
    # rows 1, 2, 12, 13-32: 12 s and 12 s; row 10: video 12 s, audio 20 s → 12 s; row 11: unknown
    assert (result.requests, result.priced, result.unknown_seconds, result.unknown_price) == (25, 24, 1, 0)
    assert result.seconds == pytest.approx(24 * 12)
    assert result.known_usd == pytest.approx(24 * 12 * 0.05)
    assert result.total_usd is None
    assert list(result.by_shard) == ["preflight-0001.jsonl"]
    assert result.by_model["lipsync-2"].known_usd == pytest.approx(result.known_usd)
    data = result.to_dict()
    assert data["total_usd"] is None
    assert data["known_usd"] == pytest.approx(14.4)


def test_the_api_is_asked_once_per_model_and_rounded_length(probed: Path, sandbox: Sandbox) -> None:
    """Sync's estimate endpoint (the sandbox's, at its documented prices) gives the same total as the table
    of the same prices, with one call for 24 requests of one model and one length."""
    with Client(api_key="k", base_url=sandbox.url) as client:
        before = sandbox.requests[("POST", "/v2/generations/estimate")]
        result = estimate_directory(probed, client=client)
        calls = sandbox.requests[("POST", "/v2/generations/estimate")] - before
    assert calls == 1
    assert result.known_usd == pytest.approx(24 * 12 * SANDBOX_PRICES["lipsync-2"])
    assert result.source == "Sync's estimate API"


def test_without_a_probe_media_lengths_are_unknown_and_tts_is_timed(sandbox: Sandbox, tmp_path: Path) -> None:
    """A directory built without --probe: URL inputs are unknown; a TTS script is timed from its text."""
    out = tmp_path / "plain"
    build(sheet(tmp_path, sandbox.url), MAPPING, out, BuildOptions())
    plain = estimate_directory(out, PRICES)
    assert (plain.requests, plain.unknown_seconds, plain.known_usd) == (32, 32, 0.0)
    tts = tmp_path / "tts.csv"
    script = "Hello there, thanks for joining us today!"  # 41 characters, no [each] language: 2.9 s
    tts.write_text("id,video\n" + "".join(f"t{i},https://cdn.example.com/v{i}.mp4\n" for i in range(20)))
    mapping = {
        "request_id": "{id}", "model": "lipsync-2", "video": "{video}",
        "tts": {"voice_id": "v1", "script": script}, "options": {"sync_mode": "loop"},
    }  # fmt: skip
    build(tts, mapping, tmp_path / "tts", BuildOptions())
    timed = estimate_directory(tmp_path / "tts", PRICES)
    assert timed.unknown == 0
    assert timed.seconds == pytest.approx(20 * tts_seconds(script))


def test_lengths_that_do_not_match_the_requests_are_measured_again(probed: Path, tmp_path: Path) -> None:
    """A lengths.parquet that does not line up with requests.parquet is not trusted (the lines are read)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(probed, copy)
    stored = request_lengths(copy)
    table = pl.read_parquet(copy / "lengths.parquet")
    table.reverse().write_parquet(copy / "lengths.parquet")
    measured = request_lengths(copy)
    assert measured.get_column("seconds").to_list() == stored.get_column("seconds").to_list()


def test_a_budget_refuses_over_unknown_and_declined(probed: Path) -> None:
    """Over the cap, partly unknown, or not confirmed: BudgetError says why; a fitting budget returns the
    estimate it judged."""
    with pytest.raises(BudgetError) as unknown:
        check_budget(probed, Budget(max_cost=100, prices=PRICES))
    assert unknown.value.reason == "unknown"
    assert "1 of 25 request(s) is unknown" in str(unknown.value)
    with pytest.raises(BudgetError) as over:
        check_budget(probed, Budget(max_cost=10, prices=PRICES, allow_unknown=True))
    assert over.value.reason == "over"
    assert "$14.40" in str(over.value)
    assert "--max-cost $10.00" in str(over.value)
    asked: list[float] = []

    def no(estimate: object) -> bool:
        asked.append(estimate.known_usd)  # type: ignore[attr-defined]
        return False

    with pytest.raises(BudgetError) as declined:
        check_budget(probed, Budget(prices=PRICES, confirm=no))
    assert declined.value.reason == "declined"
    assert asked == [pytest.approx(14.4)]
    fits = check_budget(probed, Budget(max_cost=15, prices=FIXTURES / "prices.toml", allow_unknown=True))
    assert math.isclose(fits.known_usd, 14.4)


def test_submit_over_budget_sends_and_journals_nothing(probed: Path, tmp_path: Path) -> None:
    """submit(budget=...) refuses before anything is written to a journal or sent."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(probed, copy)
    box = Sandbox(pending_seconds=0)
    with serve(box) as url, Client(api_key="k", base_url=url) as client:
        with pytest.raises(BudgetError):
            submit(copy, client=client, budget=Budget(max_cost=1, prices=PRICES, allow_unknown=True))
        assert box.batches == []
    assert not (copy / "journal.sqlite").exists()


def test_run_over_budget_stops_before_the_first_create(sandbox: Sandbox, tmp_path: Path) -> None:
    """run --max-cost: the build is made (and probed), then the estimate refuses; no batch, no journal."""
    source = sheet(tmp_path, sandbox.url)
    options = RunOptions(
        sandbox=True,
        skip_invalid=True,
        probe=quick_probe(tmp_path),
        budget=Budget(max_cost=5, allow_unknown=True),
    )
    with pytest.raises(BudgetError) as refused:
        run(source, MAPPING, tmp_path / "out", options)
    assert refused.value.reason == "over"
    assert refused.value.estimate.source == "Sync's estimate API"
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert not (tmp_path / "out" / "journal.sqlite").exists()


def test_totals_by_each_value_time_a_script_in_its_language(tmp_path: Path) -> None:
    """A TTS script per language ([each] lang): each request is timed at its language's pace, and the
    estimate has a total per value."""
    from batchkit._probe.checks import SPEECH_RATES

    script = "Bonjour et bienvenue, merci d'être avec nous cette année encore."
    rows = tmp_path / "loc.csv"
    rows.write_text("id,video\n" + "".join(f"v{i},https://cdn.example.com/v{i}.mp4\n" for i in range(10)))
    mapping = {
        "request_id": "{id}_{lang}", "model": "lipsync-2", "video": "{video}",
        "tts": {"voice_id": "v1", "script": script}, "options": {"sync_mode": "loop"},
        "each": {"lang": ["en", "ja"]},
    }  # fmt: skip
    build(rows, mapping, tmp_path / "out", BuildOptions())
    result = estimate_directory(tmp_path / "out", PRICES)
    assert list(result.by_each) == ["en", "ja"]
    for lang in ("en", "ja"):
        assert result.by_each[lang].seconds == pytest.approx(10 * len(script) / SPEECH_RATES[lang])
        assert result.by_each[lang].known_usd == pytest.approx(result.by_each[lang].seconds * 0.05)


def test_a_live_submission_on_a_terminal_asks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, a live submit/run asks (the budget carries the question); --yes, a dry run or no
    terminal do not ask; --allow-unknown-cost alone is a usage error."""
    import click

    from batchkit.cli import _render
    from batchkit.cli._options import BudgetAsk

    def ask(max_cost: float | None, allow_unknown: bool, yes: bool, *, live: bool) -> Any:
        return BudgetAsk(max_cost, None, allow_unknown, yes).budget(live=live, confirm=lambda _estimate: True)

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr(type(_render.err), "is_terminal", property(lambda self: True))
    asking = ask(None, False, False, live=True)
    assert asking is not None
    assert asking.confirm is not None
    assert ask(None, False, True, live=True) is None
    assert ask(None, False, False, live=False) is None
    capped = ask(5.0, True, True, live=True)
    assert capped is not None
    assert (capped.max_cost, capped.allow_unknown, capped.confirm) == (5.0, True, None)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert ask(None, False, False, live=True) is None
    with pytest.raises(click.UsageError):
        ask(None, True, False, live=True)
