"""Shard planning, re-sharding existing JSONL, and the build directory's manifest."""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from batchkit._errors import InputError
from batchkit._report import ValidationFailed
from batchkit._shard.builddir import load_manifest, verify_shards
from batchkit._shard.plan import plan_shards
from batchkit._shard.reshard import shard_file
from batchkit._validate.validate import validate_files
from batchkit._wire.limits import Limits

LINE = (
    '{{"request_id":"{rid}","endpoint":"/v2/generate","payload":{{"model":"lipsync-2","input":['
    '{{"type":"video","url":"https://cdn.example.com/{rid}.mp4"}},'
    '{{"type":"audio","url":"https://cdn.example.com/{rid}.wav"}}]}}}}'
)


def counts(plan: list[tuple[int, int]]) -> list[int]:
    return [end - start for start, end in plan]


def jsonl(path: Path, n: int, *, start: int = 0, newline: str = "\n") -> Path:
    path.write_text("".join(LINE.format(rid=f"r{i:05d}") + newline for i in range(start, start + n)))
    return path


# -- planning ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(20, [20], id="minimum"),
        pytest.param(500, [500], id="maximum"),
        pytest.param(510, [255, 255], id="510-never-500+10"),
        pytest.param(1001, [334, 334, 333], id="1001"),
        pytest.param(3000, [500] * 6, id="3000"),
    ],
)
def test_balanced_counts(n: int, expected: list[int]) -> None:
    plan = plan_shards([100] * n, Limits())
    assert counts(plan) == expected
    assert plan[0][0] == 0
    assert plan[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))


def test_too_few_records_says_how_many_more() -> None:
    with pytest.raises(ValidationFailed) as info:
        plan_shards([100] * 13, Limits())
    (finding,) = info.value.report.findings
    assert finding.code == "too-few-records"
    assert "13 valid requests; a batch needs at least 20 (7 more)" in finding.message


def test_byte_cap_adds_shards_and_balances_them() -> None:
    """40 lines of 100 bytes under a 1,000-byte cap: 4 shards of 10, not 9+9+9+9+4."""
    plan = plan_shards([100] * 40, Limits(min_records=2, max_bytes=1_000))
    assert counts(plan) == [10, 10, 10, 10]


def test_byte_cap_with_uneven_lines() -> None:
    sizes = [50] * 30 + [400] * 5 + [50] * 30
    limits = Limits(min_records=2, max_records=500, max_bytes=1_000)
    plan = plan_shards(sizes, limits)
    assert all(sum(sizes[a:b]) <= 1_000 and 2 <= b - a <= 500 for a, b in plan)
    assert len(plan) == minimum_shards(tuple(sizes), 2, 500, 1_000)


def test_single_line_over_the_cap_cannot_be_sharded() -> None:
    with pytest.raises(ValidationFailed, match="cannot-shard"):
        plan_shards([10] * 25 + [2_000], Limits(min_records=1, max_bytes=1_000))


def test_counts_that_cannot_be_met() -> None:
    """21 lines cannot make shards of exactly 20 (min = max = 20)."""
    with pytest.raises(ValidationFailed) as info:
        plan_shards([10] * 21, Limits(min_records=20, max_records=20))
    assert info.value.report.findings[0].code == "cannot-shard"


@cache
def minimum_shards(sizes: tuple[int, ...], lo: int, hi: int, cap: int) -> int | None:
    """Brute force: the fewest shards of [lo, hi] lines and ≤ cap bytes (None when impossible)."""
    n = len(sizes)
    best: list[int | None] = [0] + [None] * n
    for end in range(1, n + 1):
        for start in range(max(0, end - hi), end - lo + 1):
            if best[start] is not None and sum(sizes[start:end]) <= cap:
                candidate = best[start] + 1  # type: ignore[operator]
                if best[end] is None or candidate < best[end]:  # type: ignore[operator]
                    best[end] = candidate
    return best[n]


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=60), min_size=0, max_size=60),
    lo=st.integers(min_value=1, max_value=6),
    extra=st.integers(min_value=0, max_value=10),
    cap=st.integers(min_value=64, max_value=400),
)
def test_plans_satisfy_the_limits_with_the_fewest_shards(
    sizes: list[int], lo: int, extra: int, cap: int
) -> None:
    limits = Limits(min_records=lo, max_records=lo + extra, max_bytes=cap)
    best = minimum_shards(tuple(sizes), lo, lo + extra, cap) if sizes else None
    try:
        plan = plan_shards(sizes, limits)
    except ValidationFailed as exc:
        code = exc.report.findings[0].code
        assert code in ("too-few-records", "cannot-shard")
        # refusing is right when no plan exists; otherwise only when a window of lo lines breaks the cap
        windows_fit = all(sum(sizes[i : i + lo]) <= cap for i in range(max(len(sizes) - lo + 1, 0)))
        assert best is None or not windows_fit
        return
    assert plan[0][0] == 0
    assert plan[-1][1] == len(sizes)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
    assert all(lo <= b - a <= lo + extra and sum(sizes[a:b]) <= cap for a, b in plan)
    assert len(plan) == best


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=20, max_value=5_000))
def test_count_bound_plans_differ_by_at_most_one(n: int) -> None:
    sizes = counts(plan_shards([10] * n, Limits()))
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)
    assert len(sizes) == -(-n // 500)


# -- re-sharding -------------------------------------------------------------------------------------------------


def test_shard_3000_lines_into_six(tmp_path: Path) -> None:
    source = jsonl(tmp_path / "big.jsonl", 3000)
    result = shard_file(source, tmp_path / "out")
    assert [s.records for s in result.manifest.shards] == [500] * 6
    assert [p.name for p in result.shards][:2] == ["big-0001.jsonl", "big-0002.jsonl"]
    assert b"".join(p.read_bytes() for p in result.shards) == source.read_bytes()
    assert validate_files(result.shards).valid
    manifest = load_manifest(tmp_path / "out")
    assert manifest.mapping is None
    assert manifest.sources[0].format == "jsonl"
    requests = manifest.requests_frame()
    assert requests.select("row", "source_line", "shard", "shard_line").row(2999) == (3000, 3000, 6, 500)


def test_shard_rewrites_crlf_and_bom_canonically(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "win.jsonl", 25, newline="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + b"\r\n")
    result = shard_file(path, tmp_path / "out")
    assert {f.code: f.severity for f in result.report.findings} == {
        "utf8-bom": "warning",
        "crlf-line-endings": "warning",
        "blank-line": "warning",
    }
    data = result.shards[0].read_bytes()
    assert b"\r" not in data
    assert not data.startswith(b"\xef")
    assert data.count(b"\n") == 25


def test_shard_invalid_lines_fail_unless_skipped(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "mixed.jsonl", 30)
    lines = path.read_text().splitlines()
    lines[4] = "{not json"
    lines[9] = lines[9].replace("https://", "ftp://", 1)
    lines[12] = lines[3]  # duplicate request_id of line 4
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationFailed) as info:
        shard_file(path, tmp_path / "out")
    assert [(f.code, f.line) for f in info.value.report.errors] == [
        ("invalid-json", 5),
        ("invalid-url", 10),
        ("duplicate-request-id", 13),
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["findings.ndjson", "report.json"]
    result = shard_file(path, tmp_path / "out", skip_invalid=True)
    assert result.counts.requests == 27
    assert result.counts.invalid == 3
    requests = result.manifest.requests_frame()
    assert requests.filter(requests["status"] == "invalid")["source_line"].to_list() == [5, 10, 13]


def test_shard_missing_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        shard_file(tmp_path / "none.jsonl", tmp_path / "out")


def test_shard_too_few_lines(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        shard_file(jsonl(tmp_path / "few.jsonl", 5), tmp_path / "out")
    assert [f.code for f in info.value.report.errors] == ["too-few-records"]


# -- the manifest ------------------------------------------------------------------------------------------------


def test_manifest_bytes_are_stable_and_ordered(tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", 600)
    shard_file(source, tmp_path / "a")
    shard_file(source, tmp_path / "b")
    first = (tmp_path / "a" / "manifest.json").read_bytes()
    assert first == (tmp_path / "b" / "manifest.json").read_bytes()  # no timestamps, no output paths
    assert first.endswith(b"}\n")
    assert b'\n  "format": "batchkit-build/1",\n' in first
    data = orjson.loads(first)
    assert {k: v for k, v in data["counts"].items() if k != "bytes"} == {
        "rows": 600,
        "units": 600,
        "requests": 600,
        "invalid": 0,
        "shards": 2,
    }
    assert data["requests"]["rows"] == 600


def test_verify_shards_finds_changed_and_missing_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = shard_file(jsonl(tmp_path / "in.jsonl", 1200), out)
    assert verify_shards(out) == []
    first, second, third = result.shards
    first.write_bytes(first.read_bytes().replace(b"r00001", b"r99999"))
    second.unlink()
    third.write_bytes(third.read_bytes() + LINE.format(rid="extra").encode() + b"\n")
    found = {(f.code, f.file) for f in verify_shards(out)}
    assert found == {
        ("shard-changed", "in-0001.jsonl"),
        ("shard-missing", "in-0002.jsonl"),
        ("shard-changed", "in-0003.jsonl"),
    }
    changed = next(f for f in verify_shards(out) if f.file == "in-0003.jsonl")
    assert "401 records instead of 400" in changed.message


def test_load_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"has no manifest\.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "something-else/9"}')
    with pytest.raises(InputError, match="this batchkit reads 'batchkit-build/1'"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        load_manifest(tmp_path)
