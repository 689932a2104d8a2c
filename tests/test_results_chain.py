"""One answer across retries: results follow a directory's units into the directories they were retried into."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest
from test_retry import LIMITS, MAPPING, write_source

from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._results.join import CHAIN_COLUMNS
from batchkit._results.results import collect_results
from batchkit._retry.retry import RetryOptions, retry_failed
from batchkit._shard.builddir import RETRIES
from batchkit._submit.submit import submit, wait
from batchkit.sandbox import Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)
MARKS = {2: "fail", 5: "fail", 9: "reject", 12: "missing"}


def _client(sandbox: Sandbox) -> Iterator[Client]:
    with serve(sandbox) as url, Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.01)) as c:
        yield c


@pytest.fixture
def client() -> Iterator[Client]:
    """The first try: the sandbox's demo rules fail, reject or drop the marked rows."""
    yield from _client(Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=5))


@pytest.fixture
def kind() -> Iterator[Client]:
    """A later try: a sandbox without rules, where everything completes."""
    yield from _client(Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=6, rules=()))


@pytest.fixture
def finished(tmp_path: Path, client: Client) -> Path:
    """24 rows: u002 and u005 fail, u009 is rejected, u012 goes missing."""
    source = write_source(tmp_path / "rows.csv", 24, MARKS)
    out = tmp_path / "first"
    build(source, MAPPING, out, BuildOptions(limits=LIMITS))
    submit(out, client=client, poll=FAST_POLL)
    wait(out, client=client, poll=FAST_POLL)
    collect_results(out, client=client)  # downloads the results: later steps read them offline
    return out


def _by_id(frame: pl.DataFrame) -> dict[str, tuple[str, int, str]]:
    return {
        rid: (outcome, attempts, Path(where).name)
        for rid, outcome, attempts, where in frame.select("request_id", "outcome", *CHAIN_COLUMNS).iter_rows()
    }


def test_a_completed_realtime_retry_settles_the_rows_it_retried(
    tmp_path: Path, finished: Path, kind: Client
) -> None:
    """The failed rows show their retry's outcome (attempts 2, settled in the retry); the rest stay as they were."""
    retry_failed(
        finished,
        tmp_path / "rt",
        RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL, download=False),
        client=kind,
    )
    followed = _by_id(collect_results(finished, download=False).frame)
    assert followed["u002"] == followed["u005"] == ("completed", 2, "rt")
    assert followed["u009"] == ("rejected", 1, "first")
    assert followed["u012"] == ("missing", 1, "first")
    assert followed["u001"] == ("completed", 1, "first")
    assert len(followed) == 24
    own = collect_results(finished, download=False, follow=False).frame
    assert dict(own.select("request_id", "outcome").iter_rows())["u002"] == "failed"
    assert not set(CHAIN_COLUMNS) & set(own.columns)


def test_the_latest_try_wins_and_the_output_is_the_retrys(
    tmp_path: Path, finished: Path, kind: Client
) -> None:
    """A row's output URL, generation and error after following are those of the attempt that settled it."""
    retry_failed(
        finished,
        tmp_path / "rt",
        RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL, download=False),
        client=kind,
    )
    frame = collect_results(finished, download=False).frame.filter(pl.col("request_id") == "u002")
    retried = collect_results(tmp_path / "rt", download=False).frame.filter(pl.col("retry_of") == "u002")
    for column in ("output_url", "generation_id", "error_code"):
        assert frame[column][0] == retried[column][0]
    assert frame["output_url"][0] is not None
    assert frame["error_code"][0] is None


def test_held_rows_count_only_once_a_later_build_sent_them(
    tmp_path: Path, finished: Path, kind: Client
) -> None:
    """Held and not yet included: the first outcome stands. Included and sent: the later build settles them."""
    held = tmp_path / "held"
    retry_failed(finished, held, RetryOptions(only=["missing", "rejected"], mode="held", download=False))
    assert _by_id(collect_results(finished, download=False).frame)["u009"] == ("rejected", 1, "first")
    nxt = tmp_path / "next"
    build(
        write_source(tmp_path / "more.csv", 20),
        MAPPING,
        nxt,
        BuildOptions(limits=LIMITS, include_held=[held], name="next"),
    )
    assert _by_id(collect_results(finished, download=False).frame)["u012"] == ("missing", 1, "first")
    submit(nxt, client=kind, poll=FAST_POLL)
    wait(nxt, client=kind, poll=FAST_POLL)
    collect_results(nxt, client=kind)  # downloads next's results
    followed = _by_id(collect_results(finished, download=False).frame)
    assert followed["u009"] == followed["u012"] == ("completed", 2, "next")
    assert followed["u002"] == ("failed", 1, "first")


def test_a_retry_of_a_retry_is_followed_to_its_end(
    tmp_path: Path, finished: Path, client: Client, kind: Client
) -> None:
    """first → rt1 (fails again) → rt2 (completes): three attempts, settled in rt2."""
    rt1, rt2 = tmp_path / "rt1", tmp_path / "rt2"
    retry_failed(
        finished,
        rt1,
        RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL, download=False),
        client=client,
    )
    assert _by_id(collect_results(finished, download=False).frame)["u002"] == ("failed", 2, "rt1")
    retry_failed(
        rt1, rt2, RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL, download=False), client=kind
    )
    assert _by_id(collect_results(finished, download=False).frame)["u002"] == ("completed", 3, "rt2")
    assert _by_id(collect_results(rt1, download=False).frame)["u002.r1"] == ("completed", 2, "rt2")


def test_a_retry_directory_that_is_gone_or_foreign_is_not_followed(tmp_path: Path, finished: Path) -> None:
    """retries.json naming a deleted directory, or one that is not a retry of this one: the own outcome stays."""
    (finished / RETRIES).write_bytes(orjson.dumps({"retried_into": [str(tmp_path / "gone"), str(finished)]}))
    results = collect_results(finished, download=False)
    followed = _by_id(results.frame)
    assert followed["u002"] == ("failed", 1, "first")
    assert followed["u019"] == ("completed", 1, "first")
    [finding] = [f for f in results.report.findings if f.code == "retry-not-followed"]
    assert "is not a retry of" in finding.message


def test_a_hand_edited_chain_that_loops_is_an_error(tmp_path: Path, finished: Path, client: Client) -> None:
    """rt1 → rt2, then hand edits that make rt2 lead back to rt1: a warning, not endless recursion."""
    rt1, rt2 = tmp_path / "rt1", tmp_path / "rt2"
    retry_failed(
        finished,
        rt1,
        RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL, download=False),
        client=client,
    )
    retry_failed(
        rt1,
        rt2,
        RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL, download=False),
        client=client,
    )
    manifest = orjson.loads((rt1 / "manifest.json").read_bytes())
    manifest["retry"]["of"] = str(rt2.resolve())
    (rt1 / "manifest.json").write_bytes(orjson.dumps(manifest))
    (rt2 / RETRIES).write_bytes(orjson.dumps({"retried_into": [str(rt1.resolve())]}))
    results = collect_results(rt1, download=False)
    [finding] = [f for f in results.report.findings if f.code == "retry-not-followed"]
    assert "already on this retry chain" in finding.message
    assert _by_id(results.frame)["u002.r1"] == ("failed", 2, "rt2")
