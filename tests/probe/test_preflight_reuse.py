"""Reuse, not re-pay (``build --reuse``) and sample first (``run --sample``), against the sandbox over loopback."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import (
    BuildOptions,
    JournalError,
    Limits,
    RunOptions,
    build,
    collect_results,
    find_reusable,
    run,
)
from batchkit._build.reuse import COMPLETED_SCHEMA, Reusable, payload_key
from batchkit._retry.sample import choose_sample, sample_directory, write_sample
from batchkit._submit.journal import Journal
from batchkit._submit.realtime import read_realtime_lines
from batchkit.sandbox import Sandbox

from .sheets import FIXTURES, quick_probe, read_lines, sheet

MAPPING = FIXTURES / "preflight.toml"
CAMPAIGN = FIXTURES / "campaign.csv"
CAMPAIGN_MAPPING = FIXTURES / "campaign.toml"
FAST = RunOptions(sandbox=True, skip_invalid=True)


def _sent(folder: Path) -> list[dict[str, object]]:
    manifest_files = sorted(folder.glob("*-0*.jsonl")) + sorted(folder.glob("realtime.jsonl"))
    return [line for path in manifest_files for line in read_lines(path)]


def test_payload_key_ignores_the_request_id_only() -> None:
    """Renumbered rows are the same request; any change of the payload is another one."""
    line = {"request_id": "a", "endpoint": "/v2/generate", "payload": {"model": "lipsync-2", "input": []}}
    same = orjson.dumps({**line, "request_id": "b"})
    other = orjson.dumps({**line, "payload": {"model": "lipsync-2-pro", "input": []}})
    assert payload_key(orjson.dumps(line)) == payload_key(same) != payload_key(other)
    assert payload_key(b"not json") is None


def test_a_second_export_sends_only_what_is_new_or_changed(tmp_path: Path) -> None:
    """Day 1 runs; day 2 (three voice-overs changed, two customers added, rows renumbered) reuses the rest:
    they are in no shard, their results are day 1's (reused_from, reused_request_id), the rest are sent."""
    day1 = run(CAMPAIGN, CAMPAIGN_MAPPING, tmp_path / "day1", FAST)
    completed = day1.frame.filter(pl.col("outcome") == "completed").get_column("customer_id").to_list()
    rows = pl.read_csv(CAMPAIGN, infer_schema=False)
    changed = ["c001", "c002", "c003"]
    rows = rows.with_columns(
        pl.when(pl.col("customer_id").is_in(changed))
        .then(pl.col("audio_url").str.replace(r"\.wav", "-v2.wav"))
        .otherwise(pl.col("audio_url"))
        .alias("audio_url")
    )
    new = rows.head(2).with_columns(
        pl.Series("customer_id", ["n1", "n2"]), pl.Series("audio_url", ["https://cdn.example.com/n1.wav"] * 2)
    )
    rows = pl.concat([new, rows.reverse()])  # renumbered: every old row has another position
    rows.write_csv(tmp_path / "day2.csv")
    reuse = find_reusable([tmp_path / "day1"])
    assert reuse.count == len(completed)
    day2 = run(
        tmp_path / "day2.csv", CAMPAIGN_MAPPING, tmp_path / "day2", dataclasses.replace(FAST, reuse=reuse)
    )
    sent = {line["request_id"] for line in _sent(tmp_path / "day2")}
    assert not sent & (set(completed) - set(changed))
    assert set(changed) | {"n1", "n2"} <= sent
    frame = day2.frame
    reused = frame.filter(pl.col("reused_from").is_not_null())
    assert sorted(reused.get_column("customer_id").to_list()) == sorted(set(completed) - set(changed))
    assert set(reused.get_column("outcome").to_list()) == {"completed"}
    assert reused.get_column("reused_request_id").to_list() == reused.get_column("request_id").to_list()
    day1_urls = dict(day1.frame.select("customer_id", "output_url").iter_rows())
    for customer, url in reused.select("customer_id", "output_url").iter_rows():
        assert url == day1_urls[customer]
    assert day2.manifest.counts.reused == len(reused)
    # day 3 reuses day 2: what day 2 reused is offered again, still named after the directory that made it
    chained = find_reusable([tmp_path / "day2"])
    origins = set(chained.completed.get_column("reused_from").to_list())
    assert origins == {str(tmp_path / "day1"), str(tmp_path / "day2")}


def test_a_request_still_pending_elsewhere_is_sent_with_a_warning(tmp_path: Path) -> None:
    """Identical to one still running in a --reuse directory: sent again, and the report says so."""
    first = build(CAMPAIGN, CAMPAIGN_MAPPING, tmp_path / "a", BuildOptions(skip_invalid=True))
    line = next(iter(read_lines(first.shards[0])))
    pending = pl.DataFrame(
        {
            "key": [payload_key(orjson.dumps(line))],
            "reused_from": [str(tmp_path / "a")],
            "reused_request_id": ["c001"],
        }
    )
    offer = Reusable((str(tmp_path / "a"),), pl.DataFrame(schema=COMPLETED_SCHEMA), pending)
    second = build(CAMPAIGN, CAMPAIGN_MAPPING, tmp_path / "b", BuildOptions(skip_invalid=True, reuse=offer))
    warnings = [f for f in second.report.findings if f.code == "reuse-pending"]
    assert [(f.row, f.request_id) for f in warnings] == [(1, "c001")]
    assert second.counts.requests == first.counts.requests


def _offer(lines: list[dict[str, object]], keep: set[int]) -> Reusable:
    rows = [
        {"key": payload_key(orjson.dumps(line)), "reused_from": "earlier", "reused_request_id": line["request_id"],
         "batch_id": "batch_1", "output_url": f"https://out.example/{line['request_id']}.mp4",
         "output_duration": 3.0, "generation_id": f"gen_{i}"}
        for i, line in enumerate(lines) if i in keep
    ]  # fmt: skip
    return Reusable(("earlier",), pl.DataFrame(rows, schema=COMPLETED_SCHEMA))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    completed=st.sets(st.integers(0, 29), max_size=30),
    changed=st.sets(st.integers(0, 29), max_size=10),
    shuffle=st.randoms(use_true_random=False),
)
def test_reuse_never_sends_a_completed_line_twice(
    tmp_path_factory: pytest.TempPathFactory, completed: set[int], changed: set[int], shuffle: object
) -> None:
    """Whatever completed before and whatever changed since: a unit identical to a completed one is reused
    (in no shard, its outcome carried), every other valid unit is sent, each exactly once."""
    folder = tmp_path_factory.mktemp("reuse")
    source = folder / "rows.csv"
    rows = [(f"r{i}", f"https://cdn.example.com/{i}.wav") for i in range(30)]
    source.write_text("id,audio\n" + "".join(f"{r},{a}\n" for r, a in rows))
    mapping = {
        "request_id": "{id}",
        "model": "lipsync-2",
        "video": "https://cdn.example.com/v.mp4",
        "audio": "{audio}",
    }
    limits = Limits(min_records=20)
    before = build(source, mapping, folder / "before", BuildOptions(limits=limits))
    offer = _offer(read_lines(before.shards[0]), completed)
    after = [(f"x{i}", a + ("?v=2" if i in changed else "")) for i, (_, a) in enumerate(rows)]
    shuffle.shuffle(after)  # type: ignore[attr-defined]
    source.write_text("id,audio\n" + "".join(f"{r},{a}\n" for r, a in after))
    built = build(source, mapping, folder / "after", BuildOptions(limits=limits, reuse=offer))
    sent = _sent(folder / "after")
    keys = {payload_key(orjson.dumps(line)) for line in sent}
    assert not keys & set(offer.completed.get_column("key").to_list())
    expected_reused = {f"x{i}" for i in completed - changed}
    requests = built.manifest.requests_frame()
    assert (
        set(requests.filter(pl.col("status") == "reused").get_column("request_id").to_list())
        == expected_reused
    )
    assert len(sent) + len(expected_reused) == 30
    assert len({line["request_id"] for line in sent}) == len(sent)
    carried = pl.read_parquet(folder / "after" / "reused.parquet")
    assert set(carried.get_column("request_id").to_list()) == expected_reused


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(st.tuples(st.sampled_from(["v1", "v2", "v3", None]), st.sampled_from(["de", "fr", "es", None])),
                   min_size=1, max_size=60),
    n=st.integers(1, 20),
)  # fmt: skip
def test_a_sample_covers_every_value_and_video(units: list[tuple[str | None, str | None]], n: int) -> None:
    """Every [each] value and every video appears; the sample is N units unless covering them needs more."""
    videos, labels = [u[0] for u in units], [u[1] for u in units]
    picked = choose_sample(videos, labels, n)
    assert picked == sorted(set(picked))
    assert {videos[i] for i in picked} >= set(videos) - {None}
    assert {labels[i] for i in picked} >= set(labels) - {None}
    cover = len(set(videos) - {None}) + len(set(labels) - {None})
    assert len(picked) == min(len(units), max(n, len(picked))) <= max(n, cover)


def test_a_sample_first_then_the_full_run_sends_the_rest_exactly_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """run --sample 3 sends 3 requests one by one from OUT-sample; the full run sends every other valid
    request, not those 3, and its results show every row once (sample ∪ rest = everything)."""
    source = sheet(tmp_path, sandbox.url)
    out = tmp_path / "campaign"
    probe = quick_probe(tmp_path)
    sample = run(source, MAPPING, out, RunOptions(sandbox=True, skip_invalid=True, probe=probe, sample=3))
    assert sample.directory == sample_directory(out)
    assert sample.manifest.unsharded is not None
    assert sample.manifest.unsharded.mode == "realtime"
    assert sample.results.outcomes["completed"] == 3
    picked = set(sample.frame.get_column("customer_id").to_list())
    assert {"p11"} <= picked  # the only other distinct video
    full = run(source, MAPPING, out, RunOptions(sandbox=True, skip_invalid=True, probe=probe))
    sent = {line["request_id"] for line in _sent(out)}
    assert not sent & picked
    valid = set(full.frame.filter(pl.col("outcome") != "invalid").get_column("customer_id").to_list())
    assert sent | picked == valid
    assert len(sent) + len(picked) == len(valid) == 25
    reused = full.frame.filter(pl.col("reused_from").is_not_null())
    assert set(reused.get_column("customer_id").to_list()) == picked
    assert full.frame.height == 32


def test_the_full_run_waits_for_an_unfinished_sample(sandbox: Sandbox, tmp_path: Path) -> None:
    """A sample with requests not finished stops the full run, which would pay for them twice."""
    source = sheet(tmp_path, sandbox.url)
    out = tmp_path / "campaign"
    probe = quick_probe(tmp_path)
    built = build(source, MAPPING, out, BuildOptions(skip_invalid=True, probe=probe))
    folder = write_sample(out, built.manifest, 2)
    with Journal.open(folder) as journal:  # as if the sample had been interrupted before its first create
        journal.sync_generations(rid for rid, _ in read_realtime_lines(folder))
    with pytest.raises(JournalError, match="not finished"):
        run(source, MAPPING, out, RunOptions(sandbox=True, skip_invalid=True, probe=probe))
    assert not (out / "journal.sqlite").exists()
    shutil.rmtree(folder)
    assert collect_results(out, download=False).outcomes["unsubmitted"] == 25
