"""Retry: failed, missing and rejected units become a new build directory that joins back to the same rows."""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._errors import InputError, ResultsError
from batchkit._report import ValidationFailed
from batchkit._results.outputs import output_path
from batchkit._results.results import collect_results
from batchkit._retry.retry import RetryOptions, next_request_id, retry_failed, retry_name
from batchkit._shard.builddir import load_manifest, verify_shards
from batchkit._submit.journal import Journal
from batchkit._submit.submit import submit, wait
from batchkit._validate.validate import validate_files
from batchkit._wire.limits import Limits
from batchkit.sandbox import Sandbox, serve

FAST_POLL = PollPolicy(initial=0.02, factor=1.5, maximum=0.1)
LIMITS = Limits(min_records=20, max_records=25)
TENS = Limits(min_records=10, max_records=25)
MAPPING: dict[str, Any] = {
    "request_id": "{id}",
    "model": "lipsync-2",
    "video": "{video}",
    "audio": "{audio}",
    "output_file_name": "{id}",
}


def write_source(path: Path, n: int, marks: dict[int, str] | None = None) -> Path:
    """``n`` rows ``u001``…; ``marks`` puts a sandbox marker (fail, reject, missing) on 1-based rows."""
    marks = marks or {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "name", "video", "audio"])
        for i in range(1, n + 1):
            audio = f"https://cdn.example.com/a/{i}.wav" + (f"?sandbox={marks[i]}" if i in marks else "")
            writer.writerow([f"u{i:03d}", f"Name {i}", f"https://cdn.example.com/v/{i}.mp4", audio])
    return path


def shard_ids(directory: Path) -> list[str]:
    return [
        orjson.loads(line)["request_id"]
        for path in load_manifest(directory).shard_paths()
        for line in path.read_bytes().splitlines()
    ]


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(pending_seconds=0.02, seconds_per_generation=0.001, seed=3)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[Client]:
    with (
        serve(sandbox) as url,
        Client(api_key="test-key", base_url=url, retry=RetryPolicy(initial=0.01)) as c,
    ):
        yield c


def run_batch(directory: Path, client: Client) -> None:
    submit(directory, client=client, poll=FAST_POLL)
    wait(directory, client=client, poll=FAST_POLL)


@pytest.fixture
def finished(tmp_path: Path, client: Client) -> Path:
    """60 rows in 3 shards, submitted and finished: 15 failed, 15 rejected, 15 missing, 15 completed."""
    marks = {i: ("fail", "reject", "missing")[i % 3] for i in range(1, 46)}
    source = write_source(tmp_path / "people.csv", 60, marks)
    directory = tmp_path / "build"
    build(source, MAPPING, directory, BuildOptions(limits=LIMITS))
    run_batch(directory, client)
    return directory


@pytest.fixture
def few(tmp_path: Path, client: Client) -> Path:
    """25 rows in one shard, finished: 2 failed, 1 rejected, 1 missing."""
    source = write_source(tmp_path / "few.csv", 25, {4: "fail", 9: "fail", 12: "reject", 20: "missing"})
    directory = tmp_path / "few"
    build(source, MAPPING, directory, BuildOptions(limits=LIMITS))
    run_batch(directory, client)
    return directory


def test_retry_builds_balanced_shards_of_exactly_the_failed_units(
    finished: Path, client: Client, tmp_path: Path
) -> None:
    """45 failed/missing/rejected units → 23 + 22, new ids linked to the originals, nothing else changed."""
    out = tmp_path / "retry"
    result = retry_failed(finished, out, client=client)
    assert result.selected == {"failed": 15, "missing": 15, "rejected": 15}
    assert result.outcomes["completed"] == 15
    assert result.build is not None
    assert [s.records for s in result.build.manifest.shards] == [23, 22]
    assert [p.name for p in result.build.shards] == ["people-retry1-0001.jsonl", "people-retry1-0002.jsonl"]
    requests = result.build.manifest.requests_frame()
    assert requests.columns[-1] == "retry_of"
    expected = [f"u{i:03d}" for i in range(1, 46)]
    assert requests["retry_of"].to_list() == expected
    assert requests["request_id"].to_list() == [f"{rid}.r1" for rid in expected]
    assert shard_ids(out) == requests["request_id"].to_list()
    assert requests["row"].to_list() == list(range(1, 46))
    assert set(requests["status"].to_list()) == {"ok"}
    # every line is the original line with only the request_id changed
    originals = {
        orjson.loads(line)["request_id"]: orjson.loads(line)
        for path in load_manifest(finished).shard_paths()
        for line in path.read_bytes().splitlines()
    }
    for path in result.build.shards:
        for line in path.read_bytes().splitlines():
            obj = orjson.loads(line)
            assert line == orjson.dumps(obj)  # canonical
            original = originals[obj["request_id"].removesuffix(".r1")]
            assert {**obj, "request_id": original["request_id"]} == original
    assert validate_files(result.build.shards, limits=LIMITS).valid
    assert verify_shards(out) == []
    manifest = load_manifest(out)
    assert manifest.sources == load_manifest(finished).sources
    assert manifest.mapping == load_manifest(finished).mapping
    assert manifest.retry is not None
    assert (manifest.retry.of, manifest.retry.mode) == (str(finished.resolve()), "shards")


def test_a_retry_submits_and_joins_back_to_the_same_rows(
    finished: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """DIR2's results carry the source columns of the very rows the retried units came from."""
    out = tmp_path / "retry"
    retry_failed(finished, out, client=client)
    sandbox.configure(rules=())  # the second try succeeds
    run_batch(out, client)
    results = collect_results(out, client=client)
    assert results.outcomes["completed"] == 45
    frame = results.frame
    assert frame["id"].to_list() == [f"u{i:03d}" for i in range(1, 46)]
    assert frame["name"].to_list() == [f"Name {i}" for i in range(1, 46)]
    assert (frame["request_id"] == frame["id"] + ".r1").all()
    assert frame["output_url"].is_not_null().all()


def test_a_retry_of_a_retry_counts_up(finished: Path, client: Client, tmp_path: Path) -> None:
    """The units that fail again are retried as .r2 (name -retry2), still linked to the row."""
    first = tmp_path / "retry1"
    retry_failed(finished, first, client=client)
    run_batch(first, client)
    twenty = Limits(min_records=10, max_records=25)  # 30 units cannot make shards of 20–25
    second = retry_failed(
        first, tmp_path / "retry2", RetryOptions(only=["failed", "rejected"], limits=twenty), client=client
    )
    assert second.selected == {"failed": 15, "rejected": 15}
    assert second.build is not None
    assert second.build.manifest.name == "people-retry2"
    requests = second.build.manifest.requests_frame()
    first_ids = load_manifest(first).requests_frame().filter(pl.col("row") % 3 != 2)
    assert requests["retry_of"].to_list() == first_ids["request_id"].to_list()
    assert requests["request_id"].to_list() == [rid.replace(".r1", ".r2") for rid in requests["retry_of"]]
    assert requests["row"].to_list() == first_ids["row"].to_list()


def test_too_few_units_are_refused_with_the_two_ways_out(few: Path, client: Client, tmp_path: Path) -> None:
    """4 units cannot make a batch of 20: a too-few-records finding that says how many and what to do."""
    out = tmp_path / "retry"
    with pytest.raises(ValidationFailed) as info:
        retry_failed(few, out, client=client)
    [finding] = info.value.report.findings
    assert finding.code == "too-few-records"
    assert "4 units to retry (2 failed, 1 missing, 1 rejected)" in finding.message
    assert "at least 20 (16 more)" in finding.message
    assert "--realtime" in finding.message
    assert "--hold" in finding.message
    assert f"--include-held {out}" in finding.message
    assert not out.exists()


def test_lower_limits_let_few_units_make_a_batch(few: Path, client: Client, tmp_path: Path) -> None:
    result = retry_failed(few, tmp_path / "retry", RetryOptions(limits=Limits(min_records=1)), client=client)
    assert result.build is not None
    assert [s.records for s in result.build.manifest.shards] == [4]
    assert result.build.manifest.limits.min_records == 1


@pytest.mark.parametrize(
    ("only", "message"),
    [
        pytest.param(["invalid"], "fix them in the source", id="invalid"),
        pytest.param(["completed"], "already have their video", id="completed"),
        pytest.param(["pending"], "still running", id="pending"),
        pytest.param(["lost"], "unknown outcome 'lost'", id="unknown"),
        pytest.param([], "at least one outcome", id="none"),
    ],
)
def test_outcomes_that_cannot_be_retried_are_refused(
    few: Path, client: Client, tmp_path: Path, only: list[str], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        retry_failed(few, tmp_path / "retry", RetryOptions(only=only), client=client)
    assert not (tmp_path / "retry").exists()


def test_only_selects_one_outcome(finished: Path, client: Client, tmp_path: Path) -> None:
    result = retry_failed(finished, tmp_path / "r", RetryOptions(only="missing", limits=TENS), client=client)
    assert result.selected == {"missing": 15}
    assert result.build is not None
    assert result.build.manifest.requests_frame()["retry_of"].to_list() == [
        f"u{i:03d}" for i in range(1, 46) if i % 3 == 2
    ]


def test_nothing_to_retry_writes_nothing(tmp_path: Path, client: Client) -> None:
    directory = tmp_path / "ok"
    build(write_source(tmp_path / "ok.csv", 20), MAPPING, directory, BuildOptions(limits=LIMITS))
    run_batch(directory, client)
    result = retry_failed(directory, tmp_path / "retry", client=client)
    assert (result.units, result.build, result.selected) == (0, None, {})
    assert result.outcomes["completed"] == 20
    assert not (tmp_path / "retry").exists()


def test_unsubmitted_units_can_be_retried_without_the_api(tmp_path: Path) -> None:
    """A build never submitted: every unit is unsubmitted; only an explicit --only takes them."""
    directory = tmp_path / "b"
    build(write_source(tmp_path / "s.csv", 22), MAPPING, directory, BuildOptions(limits=LIMITS))
    assert retry_failed(directory, tmp_path / "r0", RetryOptions(download=False)).units == 0
    result = retry_failed(directory, tmp_path / "r", RetryOptions(only=["unsubmitted"], download=False))
    assert result.selected == {"unsubmitted": 22}


def test_rerunning_the_same_retry_is_idempotent(finished: Path, client: Client, tmp_path: Path) -> None:
    """The same selection into the same directory rewrites nothing, even after it was submitted."""
    out = tmp_path / "retry"
    retry_failed(finished, out, client=client)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = retry_failed(finished, out, client=client)
    assert again.reused
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    run_batch(out, client)
    assert retry_failed(finished, out, client=client).reused


def test_a_damaged_unsubmitted_copy_is_written_again(finished: Path, client: Client, tmp_path: Path) -> None:
    out = tmp_path / "retry"
    first = retry_failed(finished, out, client=client)
    assert first.build is not None
    first.build.shards[0].unlink()
    again = retry_failed(finished, out, client=client)
    assert not again.reused
    assert verify_shards(out) == []


def test_another_selection_into_a_used_directory_needs_force(
    finished: Path, client: Client, tmp_path: Path
) -> None:
    out = tmp_path / "retry"
    retry_failed(finished, out, RetryOptions(only=["failed"], limits=TENS), client=client)
    with pytest.raises(InputError, match="pass --force to replace it"):
        retry_failed(finished, out, RetryOptions(only=["missing"], limits=TENS), client=client)
    replaced = retry_failed(
        finished, out, RetryOptions(only=["missing"], force=True, limits=TENS), client=client
    )
    assert replaced.selected == {"missing": 15}
    assert load_manifest(out).retry is not None
    assert load_manifest(out).retry.only == ["missing"]  # type: ignore[union-attr]


def test_a_submitted_directory_is_never_replaced(finished: Path, client: Client, tmp_path: Path) -> None:
    out = tmp_path / "retry"
    retry_failed(finished, out, RetryOptions(only=["failed"], limits=TENS), client=client)
    run_batch(out, client)
    with pytest.raises(InputError, match="already submitted"):
        retry_failed(finished, out, RetryOptions(only=["failed", "missing"], force=True), client=client)


def test_units_retried_elsewhere_are_not_retried_twice(
    finished: Path, client: Client, tmp_path: Path
) -> None:
    """Retrying the same units into a second directory would pay for them twice: refused unless forced."""
    retry_failed(finished, tmp_path / "a", RetryOptions(only=["failed"], limits=TENS), client=client)
    with pytest.raises(InputError, match="already retried into") as info:
        retry_failed(finished, tmp_path / "b", RetryOptions(only=["failed", "missing"]), client=client)
    assert "15 of these units" in str(info.value)
    other = retry_failed(
        finished, tmp_path / "c", RetryOptions(only=["missing"], limits=TENS), client=client
    )  # disjoint
    assert other.selected == {"missing": 15}
    forced = retry_failed(
        finished, tmp_path / "b", RetryOptions(only=["failed"], force=True, limits=TENS), client=client
    )
    assert forced.selected == {"failed": 15}
    shutil.rmtree(tmp_path / "a")  # gone: nothing there can be sent any more
    again = retry_failed(
        finished, tmp_path / "d", RetryOptions(only=["rejected"], limits=TENS), client=client
    )
    assert again.units == 15


def test_the_retried_directory_itself_is_refused_as_out(few: Path, client: Client) -> None:
    with pytest.raises(InputError, match="the directory being retried"):
        retry_failed(few, few, RetryOptions(mode="held"), client=client)


def test_a_changed_shard_is_not_read_back(finished: Path, client: Client, tmp_path: Path) -> None:
    path = load_manifest(finished).shard_paths()[0]
    path.write_bytes(path.read_bytes().replace(b"lipsync-2", b"lipsync-3", 1))
    with pytest.raises(Exception, match="changed since the build"):
        retry_failed(finished, tmp_path / "r", client=client)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(pl.col("shard_line") + 100, id="line-out-of-range"),
        pytest.param(pl.col("shard_line").reverse(), id="lines-swapped"),
    ],
)
def test_an_edited_requests_file_is_an_error_not_a_crash(
    finished: Path, client: Client, tmp_path: Path, edit: pl.Expr
) -> None:
    path = finished / "requests.parquet"
    name = edit.meta.output_name()
    pl.read_parquet(path).with_columns(edit.alias(name)).write_parquet(path)
    with pytest.raises(ResultsError, match="was it edited"):
        retry_failed(finished, tmp_path / "r", client=client)
    assert not (tmp_path / "r").exists()


def test_hold_then_include_held_joins_each_unit_to_its_own_row(
    few: Path, client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """--hold keeps 4 units; the next build of another source takes them and marks the directory consumed."""
    held_dir = tmp_path / "held"
    held = retry_failed(few, held_dir, RetryOptions(mode="held"), client=client)
    assert held.build is not None
    assert held.build.counts.shards == 0
    assert held.build.manifest.unsharded is not None
    assert held.build.manifest.unsharded.mode == "held"
    lines = (held_dir / "held.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["request_id"] for line in lines] == [
        "u004.r1",
        "u009.r1",
        "u012.r1",
        "u020.r1",
    ]
    assert set(held.build.manifest.requests_frame()["status"].to_list()) == {"held"}

    nxt = tmp_path / "next.csv"
    with nxt.open("w", encoding="utf-8") as handle:
        handle.write("id,name,video,audio\n")
        for i in range(1, 19):
            handle.write(
                f"n{i:03d},New {i},https://cdn.example.com/v/n{i}.mp4,https://cdn.example.com/a/n{i}.wav\n"
            )
    combined = tmp_path / "combined"
    result = build(nxt, MAPPING, combined, BuildOptions(limits=LIMITS, include_held=[held_dir]))
    assert result.counts.requests == 22  # 18 new + 4 held: a batch again
    assert [s.name for s in result.manifest.sources] == ["next.csv", "few.csv"]
    requests = result.manifest.requests_frame()
    held_rows = requests.filter(pl.col("source") == 1)
    assert held_rows.select("request_id", "row", "retry_of").rows() == [
        ("u004.r1", 4, "u004"),
        ("u009.r1", 9, "u009"),
        ("u012.r1", 12, "u012"),
        ("u020.r1", 20, "u020"),
    ]
    assert requests.filter(pl.col("source") == 0)["retry_of"].null_count() == 18
    consumed = load_manifest(held_dir).unsharded
    assert consumed is not None
    assert consumed.consumed_by == str(combined.resolve())

    sandbox.configure(rules=())
    run_batch(combined, client)
    frame = collect_results(combined, client=client).frame
    assert frame["outcome"].to_list() == ["completed"] * 22
    by_id = dict(zip(frame["request_id"].to_list(), frame["id"].to_list(), strict=True))
    assert by_id["u009.r1"] == "u009"  # the held unit joined to its own source row
    assert by_id["n001"] == "n001"
    assert (
        dict(zip(frame["request_id"].to_list(), frame["name"].to_list(), strict=True))["u012.r1"] == "Name 12"
    )


def test_a_consumed_held_directory_is_refused(few: Path, client: Client, tmp_path: Path) -> None:
    held_dir = tmp_path / "held"
    retry_failed(few, held_dir, RetryOptions(mode="held"), client=client)
    source = write_source(tmp_path / "n.csv", 20)
    build(source, MAPPING, tmp_path / "one", BuildOptions(limits=LIMITS, include_held=[held_dir]))
    build(
        source, MAPPING, tmp_path / "one", BuildOptions(limits=LIMITS, include_held=[held_dir])
    )  # the same build again
    with pytest.raises(InputError, match="already included in") as info:
        build(source, MAPPING, tmp_path / "two", BuildOptions(limits=LIMITS, include_held=[held_dir]))
    assert str((tmp_path / "one").resolve()) in str(info.value)
    assert retry_failed(
        few, held_dir, RetryOptions(mode="held"), client=client
    ).reused  # the same retry: untouched
    assert load_manifest(held_dir).unsharded.consumed_by is not None  # type: ignore[union-attr]
    with pytest.raises(InputError, match="already included"):  # another one would un-consume it: never
        retry_failed(few, held_dir, RetryOptions(mode="held", only=["failed"], force=True), client=client)


def test_held_requests_colliding_with_new_ids_are_findings(few: Path, client: Client, tmp_path: Path) -> None:
    """A new row whose request_id equals a held one: the held unit is invalid, named with its source row."""
    held_dir = tmp_path / "held"
    retry_failed(few, held_dir, RetryOptions(mode="held"), client=client)
    source = tmp_path / "clash.csv"
    with source.open("w", encoding="utf-8") as handle:
        handle.write("id,name,video,audio\n")
        for i in range(1, 21):
            rid = "u009.r1" if i == 5 else f"k{i:03d}"
            handle.write(f"{rid},K {i},https://cdn.example.com/v/{i}.mp4,https://cdn.example.com/a/{i}.wav\n")
    mapping = {k: v for k, v in MAPPING.items() if k != "output_file_name"}  # "u009.r1" is no file name
    result = build(
        source,
        mapping,
        tmp_path / "b",
        BuildOptions(limits=LIMITS, include_held=[held_dir], skip_invalid=True),
    )
    [dup] = result.report.errors
    assert dup.code == "duplicate-request-id"
    assert (dup.source, dup.row, dup.request_id) == ("few.csv", 9, "u009.r1")
    assert "held request" in dup.message
    assert "row 5" in dup.message
    assert result.counts.requests == 23
    assert load_manifest(tmp_path / "b").requests_frame().filter(pl.col("request_id") == "u009.r1")[
        "status"
    ].to_list() == ["ok", "invalid"]  # accounted for: invalid in b, with its own row
    with pytest.raises(ValidationFailed):  # rebuilding b (allowed: b consumed it) without --skip-invalid
        build(source, mapping, tmp_path / "b", BuildOptions(limits=LIMITS, include_held=[held_dir]))


def test_held_lines_are_validated_with_the_new_limits(few: Path, client: Client, tmp_path: Path) -> None:
    held_dir = tmp_path / "held"
    retry_failed(few, held_dir, RetryOptions(mode="held"), client=client)
    strict = Limits(min_records=1, max_records=500, endpoint="/v3/generate")
    source = write_source(tmp_path / "n.csv", 3)
    with pytest.raises(ValidationFailed) as info:
        build(source, {**MAPPING}, tmp_path / "b", BuildOptions(limits=strict, include_held=[held_dir]))
    wrong = [f for f in info.value.report.errors if f.code == "wrong-endpoint"]
    assert {(f.source, f.row) for f in wrong} >= {("few.csv", 4), ("few.csv", 20)}
    assert all(f.file is not None and f.file.endswith("held.jsonl") for f in wrong if f.source == "few.csv")


def test_include_held_refuses_other_directories(few: Path, tmp_path: Path) -> None:
    source = write_source(tmp_path / "n.csv", 20)
    with pytest.raises(InputError, match="holds no requests for a later build"):
        build(source, MAPPING, tmp_path / "b", BuildOptions(limits=LIMITS, include_held=[few]))


def test_a_held_directory_cannot_be_retried(few: Path, client: Client, tmp_path: Path) -> None:
    retry_failed(few, tmp_path / "held", RetryOptions(mode="held"), client=client)
    with pytest.raises(InputError, match="--include-held"):
        retry_failed(tmp_path / "held", tmp_path / "again", client=client)


# -- pure functions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("c020", "c020.r1"),
        ("c020.r1", "c020.r2"),
        ("c020.r9", "c020.r10"),
        ("c020.r0", "c020.r0.r1"),
        ("c020.r01", "c020.r01.r1"),
        (".r3", ".r3.r1"),
        ("a.b.r2", "a.b.r3"),
    ],
)
def test_next_request_id(before: str, after: str) -> None:
    assert next_request_id(before) == after


@given(st.lists(st.text(min_size=1, max_size=12), unique=True, max_size=30))
def test_next_request_id_never_merges_two_ids(ids: list[str]) -> None:
    """Different request_ids always get different next ids, and the original stays recognisable."""
    nexts = [next_request_id(i) for i in ids]
    assert len(set(nexts)) == len(ids)
    assert all(n.startswith(i.rsplit(".r", 1)[0]) for i, n in zip(ids, nexts, strict=True))


def test_retry_name() -> None:
    assert [retry_name(n) for n in ("c", "c-retry1", "c-retry12", "c-retry0")] == [
        "c-retry1",
        "c-retry2",
        "c-retry13",
        "c-retry0-retry1",
    ]


# -- property: every selected unit exactly once, without a server ------------------------------------------

_BASE: dict[str, Path] = {}
_KINDS = ("COMPLETED", "FAILED", "REJECTED", "missing", "twice-failed", "failed-then-completed")


def _base(root: Path) -> Path:
    """A 30-unit build in 3 shards whose journal says: submitted, COMPLETED (made once per session)."""
    if "dir" not in _BASE:
        directory = root / "base"
        build(
            write_source(root / "p.csv", 30),
            MAPPING,
            directory,
            BuildOptions(limits=Limits(min_records=1, max_records=10)),
        )
        manifest = load_manifest(directory)
        with Journal.open(directory) as journal:
            journal.sync_shards([(s.file, s.sha256, s.records, s.bytes) for s in manifest.shards])
            for number, shard in enumerate(manifest.shards, 1):
                journal.record_intent(shard.file, webhook_url=None)
                journal.record_submitted(shard.file, f"batch_{number}", status="PROCESSING", metrics={})
                journal.record_status(
                    shard.file, status="COMPLETED", metrics={}, output_url=f"https://x.test/{number}"
                )
        _BASE["dir"] = directory
    return _BASE["dir"]


def _line(rid: str, status: str) -> bytes:
    error = None if status == "COMPLETED" else {"code": "generation_pipeline_failed", "message": "no"}
    response = {"id": f"g-{rid}", "status": status, "outputUrl": f"https://o.test/{rid}.mp4"}
    return orjson.dumps({"request_id": rid, "status": status, "error": error, "response": response}) + b"\n"


@pytest.fixture(scope="module")
def base_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="batchkit-retry-prop-"))
    yield root
    _BASE.clear()
    shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kinds=st.lists(st.sampled_from(_KINDS), min_size=30, max_size=30),
    only=st.sets(st.sampled_from(["failed", "missing", "rejected"]), min_size=1),
    order=st.randoms(use_true_random=False),
)
def test_every_selected_unit_appears_exactly_once(
    base_root: Path, kinds: list[str], only: set[str], order: Any
) -> None:
    """For any mix of results (missing and duplicated lines too), DIR2 holds each selected unit once."""
    directory = _base(base_root)
    manifest = load_manifest(directory)
    units = manifest.requests_frame()
    with Journal.open(directory) as journal:
        records = {s.file: s for s in journal.shards()}
    for number, shard in enumerate(manifest.shards, 1):
        ids = units.filter(pl.col("shard") == number)["request_id"].to_list()
        lines: list[bytes] = []
        for rid in ids:
            kind = kinds[int(rid[1:]) - 1]
            if kind == "twice-failed":
                lines += [_line(rid, "FAILED"), _line(rid, "FAILED")]
            elif kind == "failed-then-completed":
                lines += [_line(rid, "FAILED"), _line(rid, "COMPLETED")]
            elif kind != "missing":
                lines.append(_line(rid, kind))
        order.shuffle(lines)  # output.jsonl promises no order
        path = output_path(directory, records[shard.file])
        assert path is not None
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"".join(lines))
    outcomes = dict(
        zip(*collect_results(directory, download=False).frame.select("request_id", "outcome"), strict=True)
    )
    out = Path(tempfile.mkdtemp(prefix="retry-", dir=base_root))
    result = retry_failed(
        directory,
        out,
        RetryOptions(only=sorted(only), download=False, limits=Limits(min_records=1), force=True),
    )
    wanted = sorted(rid for rid, outcome in outcomes.items() if outcome in only)
    got = [] if result.build is None else result.build.manifest.requests_frame()["retry_of"].to_list()
    assert sorted(got) == wanted
    assert len(got) == len(set(got))
    for rid, kind in zip([f"u{i:03d}" for i in range(1, 31)], kinds, strict=True):
        expected = {
            "FAILED": "failed",
            "REJECTED": "rejected",
            "missing": "missing",
            "twice-failed": "failed",
        }
        if kind in expected:
            assert (rid in got) == (expected[kind] in only)
    if result.build is not None:
        assert shard_ids(out) == [f"{rid}.r1" for rid in got]
    shutil.rmtree(out)
    (directory / "retries.json").unlink(missing_ok=True)


def test_an_in_memory_source_travels_with_its_snapshot(
    client: Client, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A DataFrame build keeps source.parquet; the held directory and the build including it carry it along."""
    rows = {
        "id": [f"m{i:02d}" for i in range(22)],
        "video": [f"https://c.example.com/{i}.mp4" for i in range(22)],
        "audio": [
            f"https://c.example.com/{i}.wav" + ("?sandbox=fail" if i in (3, 7) else "") for i in range(22)
        ],
    }
    mapping = {"request_id": "{id}", "model": "lipsync-2", "video": "{video}", "audio": "{audio}"}
    build(pl.DataFrame(rows), mapping, tmp_path / "b")
    run_batch(tmp_path / "b", client)
    retry_failed(tmp_path / "b", tmp_path / "held", RetryOptions(mode="held"), client=client)
    assert (tmp_path / "held" / "source.parquet").is_file()
    fresh = pl.DataFrame({k: [f"{v[0][:1]}z{i}" for i in range(18)] for k, v in rows.items()}).with_columns(
        pl.format("https://c.example.com/z{}.mp4", pl.int_range(18)).alias("video"),
        pl.format("https://c.example.com/z{}.wav", pl.int_range(18)).alias("audio"),
    )
    combined = build(fresh, mapping, tmp_path / "c", BuildOptions(include_held=[tmp_path / "held"]))
    assert [s.snapshot for s in combined.manifest.sources] == ["source.parquet", "source-2.parquet"]
    sandbox.configure(rules=())
    run_batch(tmp_path / "c", client)
    frame = collect_results(tmp_path / "c", client=client).frame
    held = frame.filter(pl.col("request_id").str.ends_with(".r1"))
    assert held.select("id", "request_id", "outcome").rows() == [
        ("m03", "m03.r1", "completed"),
        ("m07", "m07.r1", "completed"),
    ]
