"""A build directory handed back: its videos fetched, its wide results with files, its review page with
posters, and the cards a reviewer rejected sent again, against the sandbox over loopback."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import batchkit
from batchkit import InputError, RetryOptions, RunOptions
from batchkit._api.backoff import PollPolicy
from batchkit._handback.deliver import DeliverOptions, fetch_directory, fetched_files, with_files
from batchkit._handback.pages import ReviewOptions, review_directory
from batchkit._handback.review import build_id_of, read_page_data
from batchkit._handback.wide import wide_frame
from batchkit._shard.builddir import FETCHED, load_manifest
from batchkit.cli import main
from batchkit.sandbox import Sandbox, serve

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
FAST = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)


@pytest.fixture(scope="module")
def served() -> Iterator[batchkit.Client]:
    """One sandbox for the module: its output videos stay served while the tests fetch them."""
    sandbox = Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=11)
    with serve(sandbox) as url, batchkit.Client(api_key="k", base_url=url) as client:
        yield client


@pytest.fixture(scope="module")
def localization(tmp_path_factory: pytest.TempPathFactory, served: batchkit.Client) -> Path:
    """The localization fixture, submitted and finished: 10 videos × 3 languages, all completed."""
    folder = tmp_path_factory.mktemp("loc")
    shutil.copy(FIXTURES / "localization.xlsx", folder / "sheet.xlsx")
    out = folder / "out"
    batchkit.run(
        folder / "sheet.xlsx", FIXTURES / "localization.toml", out, RunOptions(poll=FAST), client=served
    )
    return out


def test_every_completed_video_lands_once_under_its_template_name(
    localization: Path, served: batchkit.Client, tmp_path: Path
) -> None:
    """30 real MP4s under lang/video_id.mp4; a second run fetches nothing and makes no media request."""
    dest = tmp_path / "videos"
    first = fetch_directory(localization, dest, DeliverOptions(name="{lang}/{video_id}"), client=served)
    assert first.ok
    assert len(first.fetched) == 30
    assert sorted(p.name for p in (dest / "de").iterdir()) == [f"v{i:02d}.mp4" for i in range(1, 11)]
    assert (dest / "fr" / "v03.mp4").read_bytes()[4:8] == b"ftyp"
    again = fetch_directory(localization, dest, DeliverOptions(name="{lang}/{video_id}"), client=served)
    assert (len(again.fetched), len(again.present), again.media_requests) == (0, 30, 0)
    assert set(fetched_files(localization)) == set(first.files)


def test_the_default_name_is_the_requests_output_file_name(
    localization: Path, served: batchkit.Client, tmp_path: Path
) -> None:
    """Without a template, each video is named after the outputFileName the build sent ({video_id}_{lang})."""
    result = fetch_directory(localization, tmp_path / "flat", client=served)
    assert result.ok
    names = sorted(p.name for p in (tmp_path / "flat").iterdir())
    assert names[:3] == ["v01_de.mp4", "v01_es.mp4", "v01_fr.mp4"]
    assert len(names) == 30


def test_a_template_that_gives_two_rows_one_name_is_refused_before_any_fetch(
    localization: Path, served: batchkit.Client, tmp_path: Path
) -> None:
    """Three languages named {video_id}: an error that says so, no file written, no ledger row."""
    before = len(fetched_files(localization))
    with pytest.raises(InputError, match="a name another request already has"):
        fetch_directory(localization, tmp_path / "clash", DeliverOptions(name="{video_id}"), client=served)
    assert not (tmp_path / "clash").exists() or not any((tmp_path / "clash").iterdir())
    assert len(fetched_files(localization)) == before


def test_wide_results_say_where_each_video_went(
    localization: Path, served: batchkit.Client, tmp_path: Path
) -> None:
    """Once fetched, the wide table has file_<lang> beside outcome_<lang>."""
    fetch_directory(localization, tmp_path / "v", DeliverOptions(name="{lang}/{video_id}"), client=served)
    frame = with_files(batchkit.collect_results(localization, download=False).frame, localization)
    wide = wide_frame(frame, load_manifest(localization))
    assert {"file_de", "file_fr", "file_es"} <= set(wide.columns)
    assert wide.filter(pl.col("video_id") == "v02")["file_es"][0].endswith("es/v02.mp4")
    assert (localization / FETCHED).is_file()


def test_the_review_page_has_a_poster_for_every_finished_video(localization: Path, tmp_path: Path) -> None:
    """Posters come from the fetched files, or through Range reads of the output URLs the sandbox serves."""
    page = review_directory(localization, tmp_path / "review.html", files={})  # only the URLs
    data = read_page_data(page.read_text())
    poster = data["columns"].index("poster")
    assert len(data["cards"]) == 30
    assert all(card[poster] for card in data["cards"])
    assert data["build"] == build_id_of(
        batchkit.collect_results(localization, download=False).frame["request_id"].to_list()
    )
    plain = review_directory(localization, tmp_path / "plain.html", ReviewOptions(posters=False))
    assert not any(card[poster] for card in read_page_data(plain.read_text())["cards"])


def _decisions(path: Path, build: str, rejected: list[str], approved: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request_id", "decision", "note", "build"])
        writer.writerows([rid, "rejected", "lips drift", build] for rid in rejected)
        writer.writerows([rid, "approved", "", build] for rid in approved)
    return path


def test_rejected_cards_are_sent_again_even_when_completed(
    localization: Path, served: batchkit.Client, tmp_path: Path
) -> None:
    """retry --from-review: the two rejected videos (completed) go again, one by one; the approved stay."""
    ids = batchkit.collect_results(localization, download=False, follow=False).frame["request_id"].to_list()
    decisions = _decisions(tmp_path / "decisions.csv", build_id_of(ids), ["v01_fr", "v04_de"], ["v01_de"])
    runner = CliRunner()
    base = ["--base-url", served.base_url, "--api-key", "k", "--poll-initial", "0.02", "--poll-max", "0.1"]
    result = runner.invoke(
        main,
        [
            "retry",
            str(localization),
            "--from-review",
            str(decisions),
            "--out",
            str(tmp_path / "redo"),
            "--realtime",
            *base,
        ],
    )
    assert result.exit_code == 0, result.output
    redo = batchkit.collect_results(tmp_path / "redo", download=False).frame
    assert sorted(redo["retry_of"].to_list()) == ["v01_fr", "v04_de"]
    followed = batchkit.collect_results(localization, download=False).frame
    attempts = dict(followed.select("request_id", "attempts").iter_rows())
    assert (attempts["v01_fr"], attempts["v04_de"], attempts["v01_de"]) == (2, 2, 1)


def test_decisions_of_another_build_are_refused(localization: Path, tmp_path: Path) -> None:
    """A decisions file whose build id is another page's: a one-line error, nothing retried."""
    decisions = _decisions(tmp_path / "other.csv", "0123456789abcdef", ["v01_fr"], [])
    result = CliRunner().invoke(
        main,
        [
            "retry",
            str(localization),
            "--from-review",
            str(decisions),
            "--out",
            str(tmp_path / "no"),
            "--offline",
        ],
    )
    assert result.exit_code == 2
    assert "build" in result.output
    assert not (tmp_path / "no").exists()


def test_retrying_by_request_id_refuses_units_that_cannot_go_again(
    localization: Path, tmp_path: Path
) -> None:
    """An id the directory lacks is a clear error naming it."""
    with pytest.raises(InputError, match="not in"):
        batchkit.retry_failed(
            localization, tmp_path / "x", RetryOptions(request_ids=["nope"], download=False)
        )


def test_the_fetch_command_reports_and_exits_by_what_landed(
    localization: Path, served: batchkit.Client, tmp_path: Path
) -> None:
    """batchkit fetch: a summary line, exit 0 when every video is there."""
    result = CliRunner().invoke(
        main,
        ["fetch", str(localization), "--to", str(tmp_path / "cli"), "--name", "{video_id}_{lang}",
         "--base-url", served.base_url, "--api-key", "k"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "30 fetched" in result.output
    assert len(list((tmp_path / "cli").iterdir())) == 30
