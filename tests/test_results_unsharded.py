"""Results of directories without shards: `retry --realtime` (sent one by one) and `retry --hold` (kept)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from test_retry import LIMITS, MAPPING, write_source

from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._errors import InputError
from batchkit._results.realtime import realtime_outcomes
from batchkit._results.results import collect_results
from batchkit._retry.retry import RetryOptions, retry_failed
from batchkit._submit.submit import submit, wait
from batchkit.sandbox import Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)


@pytest.fixture
def client() -> Iterator[Client]:
    sandbox = Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=5)
    with serve(sandbox) as url, Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.01)) as c:
        yield c


@pytest.fixture
def finished(tmp_path: Path, client: Client) -> Path:
    """A submitted, finished build of 24 rows: rows 2 and 5 fail, row 9 is rejected, row 12 goes missing."""
    source = write_source(tmp_path / "rows.csv", 24, {2: "fail", 5: "fail", 9: "reject", 12: "missing"})
    out = tmp_path / "first"
    build(source, MAPPING, out, BuildOptions(limits=LIMITS))
    submit(out, client=client, poll=FAST_POLL)
    wait(out, client=client, poll=FAST_POLL)
    return out


def test_realtime_directory_results_come_from_its_generations(
    tmp_path: Path, finished: Path, client: Client
) -> None:
    """Every retried unit gets the outcome of its generation, joined back to its own source row."""
    out = tmp_path / "rt"
    retry_failed(finished, out, RetryOptions(mode="realtime", poll=FAST_POLL), client=client)
    results = collect_results(out, download=False)
    frame = results.frame
    assert frame.height == 4
    expected = realtime_outcomes(out)
    assert dict(frame.select("request_id", "outcome").iter_rows()) == expected
    assert set(expected.values()) <= {"completed", "failed", "rejected"}
    assert dict(frame.select("request_id", "id").iter_rows()) == {
        "u002.r1": "u002", "u005.r1": "u005", "u009.r1": "u009", "u012.r1": "u012",
    }  # fmt: skip
    assert set(frame["shard"]) == {"realtime.jsonl"}
    failed = frame.filter(pl.col("outcome") == "failed")
    assert failed["error_code"].to_list() == ["generation_pipeline_failed"] * failed.height
    completed = frame.filter(pl.col("outcome") == "completed")
    assert completed["output_url"].null_count() == 0
    assert not [f for f in results.report.findings if f.code == "manifest-changed"]


def test_held_directory_results_say_where_the_units_are(
    tmp_path: Path, finished: Path, client: Client
) -> None:
    """Held units are unsubmitted from here, pointing at --include-held, then at the build that took them."""
    held = tmp_path / "held"
    retry_failed(finished, held, RetryOptions(mode="held"), client=client)
    frame = collect_results(held, download=False).frame
    assert frame["outcome"].to_list() == ["unsubmitted"] * 4
    assert set(frame["error_code"]) == {"held"}
    assert all("--include-held" in m for m in frame["error_message"])
    source = write_source(tmp_path / "next.csv", 20)
    nxt = tmp_path / "next"
    build(source, {**MAPPING, "request_id": "n{id}"}, nxt, BuildOptions(limits=LIMITS, include_held=[held]))
    after = collect_results(held, download=False).frame
    assert all(m.startswith("included in") and str(nxt.resolve()) in m for m in after["error_message"])


def test_submit_sends_a_realtime_directory_and_refuses_a_held_one(
    tmp_path: Path, finished: Path, client: Client
) -> None:
    """`submit` on a realtime directory resumes sending it (nothing left here); on a held one it says what to do."""
    out = tmp_path / "rt"
    retry_failed(finished, out, RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL), client=client)
    again = submit(out, client=client, poll=FAST_POLL)
    assert again.realtime is not None
    assert again.realtime.done
    assert len(again.realtime.generations) == 2
    held = tmp_path / "held"
    retry_failed(finished, held, RetryOptions(only=["missing", "rejected"], mode="held"), client=client)
    with pytest.raises(InputError, match="--include-held"):
        submit(held, client=client)


def test_a_retry_directory_links_each_row_to_the_request_it_retries(
    tmp_path: Path, finished: Path, client: Client
) -> None:
    """The results of a retry carry retry_of right after request_id."""
    out = tmp_path / "rt"
    retry_failed(finished, out, RetryOptions(only=["failed"], mode="realtime", poll=FAST_POLL), client=client)
    frame = collect_results(out, download=False).frame
    assert frame.columns[frame.columns.index("request_id") + 1] == "retry_of"
    assert dict(frame.select("request_id", "retry_of").iter_rows()) == {"u002.r1": "u002", "u005.r1": "u005"}
