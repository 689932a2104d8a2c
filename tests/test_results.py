"""Results: download, join and reconcile, over the sandbox on loopback and over hand-made states.

Every test ends with the same invariant: each request unit of the build is in the frame exactly once, and
the outcome counts add up to the number of units.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import InputError, Limits, ResultsError
from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._report import CODES
from batchkit._results.chain import CHAIN_COLUMNS
from batchkit._results.results import OUTCOMES, RESULT_COLUMNS, Results, collect_results
from batchkit._shard.builddir import RESULTS_DIR, load_manifest
from batchkit._submit.journal import Journal
from batchkit._submit.submit import submit, wait
from batchkit.sandbox import Fault, Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)
LIMITS = Limits(min_records=20, max_records=30)
CAMPAIGN_COLUMNS = ["customer_id", "first_name", "lang", "video_url", "audio_url", "script"]
RESULT_ROUTE = ("GET", "/v2/batches/{id}/result")
SIGNED_ROUTE = ("GET", "/_signed/results/{name}")


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=7)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[Client]:
    with (
        serve(sandbox) as url,
        Client(api_key="test-key", base_url=url, retry=RetryPolicy(initial=0.01)) as c,
    ):
        yield c


def _campaign(tmp_path: Path) -> Path:
    """The shipped campaign (60 rows: 58 requests in 2 shards of 29, 2 invalid rows), from a copy of the CSV."""
    source = tmp_path / "campaign.csv"
    shutil.copy(FIXTURES / "campaign.csv", source)
    out = tmp_path / "build"
    build(source, FIXTURES / "campaign.toml", out, BuildOptions(skip_invalid=True, limits=LIMITS))
    return out


def _finish(directory: Path, client: Client) -> None:
    submit(directory, client=client, poll=FAST_POLL)
    wait(directory, client=client, poll=FAST_POLL)


@pytest.fixture
def done(tmp_path: Path, client: Client) -> Path:
    """The campaign, submitted to the sandbox, finished, and its results downloaded once."""
    directory = _campaign(tmp_path)
    _finish(directory, client)
    collect_results(directory, client=client)
    return directory


def _check_units(results: Results, directory: Path) -> None:
    """Each unit of the build exactly once, in build order, and the outcome counts add up."""
    units = load_manifest(directory).requests_frame()
    assert results.frame.height == units.height
    assert results.frame["request_id"].to_list() == units["request_id"].to_list()
    assert sum(results.outcomes.values()) == units.height
    assert set(results.frame["outcome"].unique()) <= set(OUTCOMES)
    assert all(f.code in CODES for f in results.report.findings)


def _outputs(directory: Path) -> list[Path]:
    return sorted((directory / RESULTS_DIR).glob("*.output.jsonl"))


def _by_id(results: Results) -> dict[str, dict[str, Any]]:
    return {row["request_id"]: row for row in results.frame.iter_rows(named=True)}


def _codes(results: Results) -> list[str]:
    return [f.code for f in results.report.findings]


# -- the happy path and the download -------------------------------------------------------------------------


def test_the_campaign_gets_one_outcome_per_row(tmp_path: Path, client: Client, sandbox: Sandbox) -> None:
    """52 completed, 3 failed, 2 rejected, 1 missing, 2 invalid: every row once, source columns first."""
    directory = _campaign(tmp_path)
    _finish(directory, client)
    results = collect_results(directory, client=client)
    _check_units(results, directory)
    assert results.outcomes == {
        "completed": 52,
        "failed": 3,
        "rejected": 2,
        "missing": 1,
        "invalid": 2,
        "pending": 0,
        "unsubmitted": 0,
        "skipped": 0,
        "filtered": 0,
    }
    assert results.frame.columns == [*CAMPAIGN_COLUMNS, *RESULT_COLUMNS, *CHAIN_COLUMNS]
    source = pl.read_csv(tmp_path / "campaign.csv", infer_schema=False)
    assert results.frame.select(CAMPAIGN_COLUMNS).equals(source)
    rows = _by_id(results)
    assert {k: rows[k]["error_code"] for k in ("c007", "c013")} == {
        "c007": "invalid-url",
        "c013": "empty-value",
    }
    assert (rows["c007"]["shard"], rows["c007"]["batch_id"]) == (None, None)
    assert {k: rows[k]["error_code"] for k in ("c020", "c033", "c047")} == dict.fromkeys(
        ("c020", "c033", "c047"), "generation_pipeline_failed"
    )
    assert {rows[k]["outcome"] for k in ("c025", "c052")} == {"rejected"}
    assert (rows["c040"]["outcome"], rows["c040"]["error_code"]) == ("missing", "missing-result")
    assert _codes(results) == ["missing-result"]
    assert "'c040'" in results.report.findings[0].message
    assert results.error_codes == {
        "generation_pipeline_failed": 3,
        "generation_media_metadata_missing": 2,
        "invalid-url": 1,
        "empty-value": 1,
        "missing-result": 1,
    }
    # matched by request_id, not by position: every completed row carries its own generation's output
    for batch in sandbox.batches:
        output = sandbox.output(batch.id)
        assert output is not None
        for raw in output.splitlines():
            line = orjson.loads(raw)
            row = rows[line["request_id"]]
            assert row["batch_id"] == batch.id
            if line["status"] == "COMPLETED":
                generation = line["response"]
                assert (row["output_url"], row["generation_id"], row["output_duration"]) == (
                    generation["outputUrl"],
                    generation["id"],
                    generation["outputDuration"],
                )
    completed = results.frame.filter(pl.col("outcome") == "completed")
    assert completed["shard"].null_count() == 0
    assert completed["output_url"].null_count() == 0
    not_completed = results.frame.filter(pl.col("outcome") != "completed")
    assert not_completed["output_url"].null_count() == not_completed.height
    assert results.summary()["units"] == 60


def test_results_are_downloaded_once_never_again(done: Path, client: Client, sandbox: Sandbox) -> None:
    """Two batches, two downloads; later runs read the files on disk and never send the key elsewhere."""
    assert sandbox.requests[SIGNED_ROUTE] == 2
    asked = sandbox.requests[RESULT_ROUTE]
    assert len(_outputs(done)) == 2
    again = collect_results(done, client=client)
    assert (sandbox.requests[SIGNED_ROUTE], sandbox.requests[RESULT_ROUTE]) == (2, asked)
    assert again.outcomes["completed"] == 52
    assert sandbox.key_leaks == []


def test_offline_needs_no_api_once_downloaded(done: Path) -> None:
    """With download=False (and no key anywhere), the files on disk are enough."""
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert results.outcomes["completed"] == 52


def test_nothing_left_to_fetch_needs_no_key(done: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every batch finished and downloaded, download=True makes no API call, so no key is needed."""
    monkeypatch.delenv("SYNC_API_KEY", raising=False)
    results = collect_results(done)
    assert results.outcomes["completed"] == 52


def test_a_failed_download_leaves_rows_pending_until_the_next_run(
    tmp_path: Path, client: Client, sandbox: Sandbox
) -> None:
    """A results link that keeps failing is a download-failed finding per batch; its rows stay pending
    (never missing), and the next run fetches them."""
    directory = _campaign(tmp_path)
    _finish(directory, client)
    sandbox.inject(Fault(route="GET /v2/batches/{id}/result", kind="status", status=503, times=None))
    assert sandbox.url is not None
    with Client(api_key="test-key", base_url=sandbox.url, retry=RetryPolicy(max_attempts=1)) as impatient:
        first = collect_results(directory, client=impatient)
    _check_units(first, directory)
    assert _codes(first) == ["download-failed", "download-failed"]
    assert first.outcomes["pending"] == 58
    pending = first.frame.filter(pl.col("outcome") == "pending")
    assert pending["error_message"].str.starts_with("its results could not be downloaded").all()
    assert _outputs(directory) == []
    sandbox.clear_faults()
    second = collect_results(directory, client=client)
    assert second.outcomes["completed"] == 52
    assert _codes(second) == ["missing-result"]


def test_a_vanished_link_is_asked_for_again(tmp_path: Path, client: Client, sandbox: Sandbox) -> None:
    """A results link answering 404 (expired) is asked for afresh from the batch, once, without a finding."""
    directory = _campaign(tmp_path)
    _finish(directory, client)
    sandbox.inject(Fault(route="GET /v2/batches/{id}/result", kind="status", status=404, times=1))
    gets = sandbox.requests[("GET", "/v2/batch/{id}")]
    results = collect_results(directory, client=client)
    assert results.outcomes["completed"] == 52
    assert sandbox.requests[("GET", "/v2/batch/{id}")] == gets + 1
    assert sandbox.requests[SIGNED_ROUTE] == 2
    assert _codes(results) == ["missing-result"]


def test_unreadable_batch_ids_get_safe_file_names(done: Path) -> None:
    """Results files are named after the batch id only when it is a plain name."""
    from batchkit._results.outputs import output_path

    with Journal.open(done, create=False) as journal:
        shard = journal.shards()[0]
    odd = output_path(done, shard.__class__(**{**_fields(shard), "batch_id": "../../etc/passwd"}))
    assert odd is not None
    assert odd.parent == done / RESULTS_DIR
    assert ".." not in odd.name


def _fields(shard: Any) -> dict[str, Any]:
    return {name: getattr(shard, name) for name in shard.__slots__}


# -- bad output files ----------------------------------------------------------------------------------------


def _edit(path: Path, edit: Any) -> list[dict[str, Any]]:
    """Rewrite an output file through ``edit(lines) -> bytes``; return its original lines."""
    lines = [orjson.loads(raw) for raw in path.read_bytes().splitlines()]
    path.write_bytes(edit(lines))
    return lines


def _dump(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def test_a_truncated_output_counts_the_cut_line_as_missing(done: Path) -> None:
    """The half line is a truncated-output finding; its request is missing, the others keep theirs."""
    path = _outputs(done)[0]
    data = path.read_bytes()
    last = orjson.loads(data.splitlines()[-1])["request_id"]
    path.write_bytes(data[: len(data) - 40])
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert "truncated-output" in _codes(results)
    assert _by_id(results)[last]["outcome"] == "missing"
    assert results.outcomes["missing"] == 2 - (last == "c040")


def test_an_empty_output_makes_its_whole_batch_missing(done: Path) -> None:
    """An empty file is one empty-output finding; each of its batch's requests is missing, once."""
    path = _outputs(done)[0]
    before = collect_results(done, download=False).frame
    sent = {line["request_id"] for line in _edit(path, lambda _: b"")}
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert _codes(results).count("empty-output") == 1
    shard = results.frame.filter(pl.col("request_id").is_in(sent))["shard"].unique().to_list()
    frame = results.frame.filter(pl.col("shard").is_in(shard))
    assert set(frame["outcome"]) == {"missing"}
    assert frame.height == 29
    others = pl.col("shard").is_in(shard).not_()
    assert results.frame.filter(others).equals(before.filter(others))


def test_a_line_that_is_not_json_is_reported_and_its_request_missing(done: Path) -> None:
    path = _outputs(done)[0]
    lines = _edit(path, lambda ls: _dump(ls[:3]) + b"<html>502</html>\n" + _dump(ls[4:]))
    results = collect_results(done, download=False)
    _check_units(results, done)
    bad = next(f for f in results.report.findings if f.code == "invalid-result-line")
    assert (bad.file, bad.line) == (str(path), 4)
    assert _by_id(results)[lines[3]["request_id"]]["outcome"] == "missing"


def test_results_for_ids_never_sent_are_reported_not_counted(done: Path) -> None:
    """A line for an unknown id, and one for an id of the other shard: findings, no outcome changes."""
    first, second = _outputs(done)
    other = orjson.loads(second.read_bytes().splitlines()[0])
    before = collect_results(done, download=False).outcomes
    stranger = {**other, "request_id": "nobody-sent-this", "status": "COMPLETED"}
    _edit(first, lambda ls: _dump([*ls, stranger, {**other, "status": "FAILED"}]))
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert results.outcomes == before
    unexpected = [f for f in results.report.findings if f.code == "unexpected-result"]
    assert [(f.request_id, f.severity) for f in unexpected] == [
        ("nobody-sent-this", "warning"),
        (other["request_id"], "warning"),
    ]
    assert "never sent it" in unexpected[0].message
    home = _by_id(results)[other["request_id"]]["shard"]
    assert f"it was sent in {home}" in unexpected[1].message


@pytest.mark.parametrize(
    ("first", "then", "kept"),
    [
        pytest.param("COMPLETED", "FAILED", "completed", id="completed-then-failed"),
        pytest.param("FAILED", "COMPLETED", "completed", id="failed-then-completed"),
        pytest.param("FAILED", "REJECTED", "rejected", id="last-wins-without-completed"),
    ],
)
def test_an_id_listed_twice_counts_once(done: Path, first: str, then: str, kept: str) -> None:
    """Conflicting lines for one id: a duplicate-result finding, one outcome (COMPLETED wins, else the last)."""
    path = _outputs(done)[0]

    def edit(lines: list[dict[str, Any]]) -> bytes:
        target = {**lines[0], "status": first}
        return _dump([target, *lines[1:], {**lines[0], "status": then}])

    request_id = _edit(path, edit)[0]["request_id"]
    results = collect_results(done, download=False)
    _check_units(results, done)
    duplicate = next(f for f in results.report.findings if f.code == "duplicate-result")
    assert duplicate.request_id == request_id
    assert "disagree" in duplicate.message
    assert _by_id(results)[request_id]["outcome"] == kept


def test_missing_lines_make_missing_rows(done: Path) -> None:
    """Lines absent from an output file: their requests are missing, named in one finding per batch."""
    path = _outputs(done)[0]
    lines = _edit(path, lambda ls: _dump(ls[3:]))
    gone = [line["request_id"] for line in lines[:3]]
    results = collect_results(done, download=False)
    _check_units(results, done)
    rows = _by_id(results)
    assert [rows[i]["outcome"] for i in gone] == ["missing"] * 3
    missing = [f for f in results.report.findings if f.code == "missing-result"]
    assert any(all(repr(i) in f.message for i in gone) for f in missing)
    assert {f.severity for f in missing} == {"warning"}


# -- a build directory that changed --------------------------------------------------------------------------


def test_a_hand_edited_manifest_is_reported(done: Path) -> None:
    """requests.parquet no longer matching manifest.json is a manifest-changed finding; outcomes stand."""
    path = done / "manifest.json"
    manifest = orjson.loads(path.read_bytes())
    manifest["requests"]["sha256"] = "0" * 64
    path.write_bytes(orjson.dumps(manifest))
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert _codes(results).count("manifest-changed") == 1
    assert results.outcomes["completed"] == 52


def test_a_request_dropped_from_requests_parquet_is_never_silent(done: Path) -> None:
    """A unit removed by hand: the row counts disagree (manifest-changed), and its result line is an
    unexpected-result; the frame has exactly the remaining units."""
    path = done / "requests.parquet"
    units = pl.read_parquet(path)
    dropped = "c010"
    units.filter(pl.col("request_id") != dropped).write_parquet(path)
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert results.frame.height == 59
    assert _codes(results).count("manifest-changed") == 2  # the file's rows and the per-shard counts
    assert [f.request_id for f in results.report.findings if f.code == "unexpected-result"] == [dropped]


def test_a_unit_moved_to_a_shard_the_manifest_lacks_is_reported(done: Path) -> None:
    """A hand edit pointing a unit at shard 8 of a 1-shard build: findings, no crash, every unit once."""
    path = done / "requests.parquet"
    units = pl.read_parquet(path)
    units.with_columns(
        pl.when(pl.col("request_id") == "c010")
        .then(pl.col("shard") + 7)
        .otherwise(pl.col("shard"))
        .alias("shard")
    ).write_parquet(path)
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert results.frame.height == 60
    assert "manifest-changed" in _codes(results)
    unexpected = [f for f in results.report.findings if f.code == "unexpected-result"]
    assert [f.request_id for f in unexpected] == ["c010"]
    assert "does not list" in unexpected[0].message


def test_a_requests_file_without_its_columns_is_an_error(done: Path) -> None:
    pl.read_parquet(done / "requests.parquet").drop("shard").write_parquet(done / "requests.parquet")
    with pytest.raises(ResultsError, match="no column 'shard'"):
        collect_results(done, download=False)


def test_a_broken_manifest_is_an_input_error(done: Path) -> None:
    (done / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        collect_results(done, download=False)


def test_a_shard_changed_since_submission_is_reported(done: Path) -> None:
    """Bytes changed after the build: shard-changed; a journal that sent other bytes: shard-changed too."""
    shard = done / "campaign-0001.jsonl"
    shard.write_bytes(shard.read_bytes() + b" ")
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert _codes(results).count("shard-changed") == 1
    with sqlite3.connect(done / "journal.sqlite") as db:
        db.execute("UPDATE shards SET sha256 = 'feed' WHERE file = 'campaign-0002.jsonl'")
    results = collect_results(done, download=False)
    changed = [f for f in results.report.findings if f.code == "shard-changed"]
    assert [f.file for f in changed] == ["campaign-0001.jsonl", "campaign-0002.jsonl"]
    assert "rebuilt after it was submitted" in changed[1].message
    assert results.outcomes["completed"] == 52


# -- the source ----------------------------------------------------------------------------------------------


def test_a_moved_source_needs_source(done: Path, tmp_path: Path) -> None:
    """A source that is gone is a clear error; source= with its new place joins it (same bytes, no finding)."""
    moved = tmp_path / "elsewhere.csv"
    (tmp_path / "campaign.csv").rename(moved)
    with pytest.raises(ResultsError, match=r"is gone .*--source"):
        collect_results(done, download=False)
    results = collect_results(done, download=False, source=moved)
    _check_units(results, done)
    assert results.frame.columns[:6] == CAMPAIGN_COLUMNS
    assert _codes(results) == ["missing-result"]


def test_a_changed_source_is_joined_only_when_its_rows_still_match(done: Path, tmp_path: Path) -> None:
    """An edited cell outside the request_id: a source-changed warning, the new value shown. Rows that
    shifted or vanished: refused, naming the first row that no longer matches."""
    path = tmp_path / "campaign.csv"
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("c005,Elif", "c005,Elif-Marie"), encoding="utf-8")
    results = collect_results(done, download=False)
    _check_units(results, done)
    assert "source-changed" in _codes(results)
    assert _by_id(results)["c005"]["first_name"] == "Elif-Marie"

    header, *rows = original.splitlines(keepends=True)
    path.write_text(header + rows[1] + "".join(rows), encoding="utf-8")  # a row inserted at the top
    with pytest.raises(ResultsError, match=r"row 1 gives 'c002', the build sent 'c001'"):
        collect_results(done, download=False)

    path.write_text(header + "".join(rows[:-1]), encoding="utf-8")  # the last row deleted
    with pytest.raises(ResultsError, match=r"not the source this build was made from.*row 60"):
        collect_results(done, download=False)


def test_a_retry_directory_matches_its_rows_by_the_original_request_id(done: Path) -> None:
    """In a `batchkit retry` directory (a retry_of column), c020.r1 is the retry of row c020's request."""
    from batchkit._results.join import _request_id_problems

    manifest = load_manifest(done)
    rows = pl.read_csv(done.parent / "campaign.csv", infer_schema=False).with_row_index("__row", offset=1)
    units = manifest.requests_frame().with_columns(pl.col("request_id") + ".r1")
    assert _request_id_problems(manifest, rows, units) != []
    retried = units.with_columns(pl.col("request_id").str.replace(r"\.r1$", "").alias("retry_of"))
    assert _request_id_problems(manifest, rows, retried) == []
    shifted = retried.with_columns(pl.col("row") + 1)
    assert "row(s) no longer give the request_id" in _request_id_problems(manifest, rows, shifted)[0]


def test_an_in_memory_build_uses_its_snapshot(tmp_path: Path, client: Client) -> None:
    """A DataFrame build keeps a snapshot: results need no source=; a different frame is refused."""
    frame = pl.read_csv(FIXTURES / "campaign.csv", infer_schema=False)
    directory = tmp_path / "memory"
    build(frame, FIXTURES / "campaign.toml", directory, BuildOptions(skip_invalid=True, limits=LIMITS))
    assert (directory / "source.parquet").exists()
    _finish(directory, client)
    results = collect_results(directory, client=client)
    _check_units(results, directory)
    assert results.frame.select(CAMPAIGN_COLUMNS).equals(frame)
    same = collect_results(directory, download=False, source=frame)
    assert same.frame.equals(results.frame)
    with pytest.raises(ResultsError, match="not the source"):
        collect_results(directory, download=False, source=frame.reverse())


def test_source_columns_that_clash_with_result_columns_are_renamed(tmp_path: Path) -> None:
    """A source column named like a result column keeps its values under a source_ name, never lost."""
    frame = pl.read_csv(FIXTURES / "campaign.csv", infer_schema=False).with_columns(
        pl.lit("mine").alias("outcome"), pl.lit("also mine").alias("source_outcome"), pl.lit("7").alias("row")
    )
    directory = tmp_path / "clash"
    build(frame, FIXTURES / "campaign.toml", directory, BuildOptions(skip_invalid=True, limits=LIMITS))
    results = collect_results(directory)
    _check_units(results, directory)
    assert results.frame.columns == [
        *CAMPAIGN_COLUMNS,
        "source_outcome",
        "source_source_outcome",
        "source_row",
        *RESULT_COLUMNS,
        *CHAIN_COLUMNS,
    ]
    assert set(results.frame["source_outcome"]) == {"mine"}
    assert set(results.frame["source_source_outcome"]) == {"also mine"}
    assert set(results.frame["outcome"]) == {"unsubmitted", "invalid"}


def test_a_localization_build_has_one_row_per_language(tmp_path: Path, client: Client) -> None:
    """[each] lang = de, fr, es: three units per source row, the lang column before request_id."""
    directory = tmp_path / "loc"
    build(FIXTURES / "localization.xlsx", FIXTURES / "localization.toml", directory)
    _finish(directory, client)
    results = collect_results(directory, client=client)
    _check_units(results, directory)
    source = pl.read_excel(FIXTURES / "localization.xlsx")
    assert results.frame.height == 3 * source.height
    assert results.frame.columns == [*source.columns, "lang", *RESULT_COLUMNS, *CHAIN_COLUMNS]
    assert results.outcomes["completed"] == 30
    expected = [f"{v}_{lang}" for v in source["video_id"] for lang in ("de", "fr", "es")]
    assert results.frame["request_id"].to_list() == expected
    assert (results.frame["request_id"] == results.frame["video_id"] + "_" + results.frame["lang"]).all()


def test_a_shard_build_has_no_source_columns(tmp_path: Path, client: Client) -> None:
    """A build made by `batchkit shard` from JSONL: the lines are the rows, results start at request_id."""
    from batchkit._shard.reshard import shard_file

    directory = tmp_path / "sharded"
    shard_file(FIXTURES / "sample-batch.jsonl", directory, limits=LIMITS, skip_invalid=True)
    _finish(directory, client)
    results = collect_results(directory, client=client)
    _check_units(results, directory)
    assert results.frame.columns == [*RESULT_COLUMNS, *CHAIN_COLUMNS]


# -- batches in every state ----------------------------------------------------------------------------------


def _journal(directory: Path) -> Journal:
    manifest = load_manifest(directory)
    journal = Journal.open(directory)
    journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in manifest.shards])
    return journal


def _submitted(journal: Journal, file: str, batch_id: str, status: str, output_url: str | None) -> None:
    journal.record_intent(file, webhook_url=None)
    journal.record_submitted(file, batch_id, status="PENDING", metrics={})
    journal.record_status(file, status=status, metrics={}, output_url=output_url)


def test_batches_in_every_end_state(tmp_path: Path) -> None:
    """A FAILED batch without results → failed (batch-failed); a COMPLETED batch without an outputUrl →
    pending with an output-unavailable finding (never missing: its results may exist); a finished batch not
    downloaded yet → pending."""
    directory = _campaign(tmp_path)
    with _journal(directory) as journal:
        _submitted(journal, "campaign-0001.jsonl", "batch_a", "FAILED", None)
        _submitted(journal, "campaign-0002.jsonl", "batch_b", "COMPLETED", "https://api.example.com/r/b")
    results = collect_results(directory, download=False)
    _check_units(results, directory)
    assert (results.outcomes["failed"], results.outcomes["pending"], results.outcomes["invalid"]) == (
        29,
        29,
        2,
    )
    first = results.frame.filter(pl.col("shard") == "campaign-0001.jsonl")
    assert set(first["error_code"]) == {"batch-failed"}
    assert set(first["batch_id"]) == {"batch_a"}
    second = results.frame.filter(pl.col("shard") == "campaign-0002.jsonl")
    assert second["error_message"].str.contains("not downloaded yet").all()
    assert _codes(results) == ["batch-failed"]

    with Journal.open(directory, create=False) as journal:
        journal.record_status("campaign-0002.jsonl", status="COMPLETED", metrics={}, output_url=None)
    results = collect_results(directory, download=False)
    second = results.frame.filter(pl.col("shard") == "campaign-0002.jsonl")
    assert set(second["outcome"]) == {"pending"}
    assert second["error_message"].str.contains("no results file yet").all()
    assert "output-unavailable" in _codes(results)


def test_running_batches_are_pending(tmp_path: Path) -> None:
    """Batches still PENDING: their rows are pending with the batch's status, nothing is downloaded."""
    slow = Sandbox(pending_seconds=60, seed=7)
    directory = _campaign(tmp_path)
    with serve(slow) as url, Client(api_key="k", base_url=url, retry=RetryPolicy(initial=0.01)) as client:
        submit(directory, client=client, poll=FAST_POLL)
        results = collect_results(directory, client=client)
    _check_units(results, directory)
    assert results.outcomes["pending"] == 58
    pending = results.frame.filter(pl.col("outcome") == "pending")
    assert set(pending["error_message"]) == {"its batch is PENDING"}
    assert pending["batch_id"].null_count() == 0
    assert not (directory / RESULTS_DIR).exists()


def test_never_submitted_shards_are_unsubmitted(tmp_path: Path) -> None:
    """No journal at all: every request is unsubmitted, and no API (no key) is needed to say so."""
    directory = _campaign(tmp_path)
    results = collect_results(directory)
    _check_units(results, directory)
    assert (results.outcomes["unsubmitted"], results.outcomes["invalid"]) == (58, 2)
    unsubmitted = results.frame.filter(pl.col("outcome") == "unsubmitted")
    assert unsubmitted["error_message"].str.contains("batchkit submit").all()


def test_refused_and_interrupted_shards(tmp_path: Path, client: Client, sandbox: Sandbox) -> None:
    """A shard the server refused → unsubmitted (shard-refused, with the server's reason); a create that was
    interrupted → pending (it may exist: settle it with submit, never resend blindly)."""
    directory = _campaign(tmp_path)
    sandbox.configure(limits=Limits(min_records=30))
    submit(directory, client=client, poll=FAST_POLL)
    with Journal.open(directory, create=False) as journal:
        assert {s.state for s in journal.shards()} == {"refused"}
        journal.record_intent("campaign-0002.jsonl", webhook_url=None)
    results = collect_results(directory, download=False)
    _check_units(results, directory)
    first = results.frame.filter(pl.col("shard") == "campaign-0001.jsonl")
    assert set(first["outcome"]) == {"unsubmitted"}
    assert set(first["error_code"]) == {"shard-refused"}
    assert first["error_message"].str.contains("30").all()
    second = results.frame.filter(pl.col("shard") == "campaign-0002.jsonl")
    assert set(second["outcome"]) == {"pending"}
    assert second["error_message"].str.contains("interrupted").all()
    assert _codes(results) == ["shard-refused", "submission-uncertain"]


# -- the invariant, for any outputs --------------------------------------------------------------------------

_FATES = ["completed", "failed", "rejected", "missing", "twice-completed-last", "twice-failed"]


@pytest.fixture(scope="module")
def fixed_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    """The campaign built once, both shards COMPLETED with a results file each (rewritten per example)."""
    directory = _campaign(tmp_path_factory.mktemp("property"))
    with _journal(directory) as journal:
        _submitted(journal, "campaign-0001.jsonl", "batch_one", "COMPLETED", "https://api.example.com/r/1")
        _submitted(journal, "campaign-0002.jsonl", "batch_two", "COMPLETED", "https://api.example.com/r/2")
    (directory / RESULTS_DIR).mkdir()
    units = load_manifest(directory).requests_frame().filter(pl.col("status") == "ok")
    ids = [units.filter(pl.col("shard") == n)["request_id"].to_list() for n in (1, 2)]
    return directory, ids


def _line(request_id: str, status: str) -> dict[str, Any]:
    response = {
        "id": f"g-{request_id}",
        "status": status,
        "outputUrl": f"https://cdn.example.com/{request_id}.mp4",
    }
    error = None if status == "COMPLETED" else {"code": f"code_{status.lower()}", "message": status}
    return {"request_id": request_id, "status": status, "error": error, "response": response}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_outcomes_always_add_up(fixed_build: tuple[Path, list[list[str]]], data: st.DataObject) -> None:
    """For any fate of each request (including missing and duplicated lines) and stray lines for ids
    never sent, every unit is in the frame once, with the outcome its lines call for."""
    directory, shards = fixed_build
    expected: dict[str, str] = {}
    for number, ids in enumerate(shards, 1):
        lines: list[dict[str, Any]] = []
        for request_id in ids:
            fate = data.draw(st.sampled_from(_FATES))
            if fate == "twice-completed-last":
                lines += [_line(request_id, "FAILED"), _line(request_id, "COMPLETED")]
                expected[request_id] = "completed"
            elif fate == "twice-failed":
                lines += [_line(request_id, "FAILED"), _line(request_id, "FAILED")]
                expected[request_id] = "failed"
            elif fate == "missing":
                expected[request_id] = "missing"
            else:
                lines.append(_line(request_id, fate.upper()))
                expected[request_id] = fate
        strays = data.draw(st.lists(st.sampled_from(["ghost-1", "ghost-2", *shards[2 - number]]), max_size=3))
        lines += [_line(s, "COMPLETED") for s in strays]
        lines = data.draw(st.permutations(lines))
        batch = "batch_one" if number == 1 else "batch_two"
        (directory / RESULTS_DIR / f"{batch}.output.jsonl").write_bytes(_dump(lines))
    results = collect_results(directory, download=False)
    _check_units(results, directory)
    got = dict(results.frame.select("request_id", "outcome").iter_rows())
    assert {k: got[k] for k in expected} == expected
    assert results.outcomes["invalid"] == 2
    assert results.frame["request_id"].n_unique() == results.frame.height
