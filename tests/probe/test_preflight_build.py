"""``build --probe`` against the sandbox's media host: every hidden problem is a coded finding at its source row,
a row whose media fails is invalid (or skipped), and every unit still ends in exactly one place."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import (
    PROBE_CODES,
    BuildOptions,
    Finding,
    Limits,
    ValidationFailed,
    build,
    load_manifest,
    probe_directory,
    probe_source,
)
from batchkit.sandbox import Sandbox

from .sheets import FAILING, FIXTURES, HIDDEN, quick_probe, read_lines, sheet

MAPPING = FIXTURES / "preflight.toml"


def _codes_by_row(findings: list[Finding]) -> dict[int, list[tuple[str, str | None]]]:
    found: dict[int, list[tuple[str, str | None]]] = {}
    for finding in findings:
        if finding.code in PROBE_CODES and finding.row is not None:
            found.setdefault(finding.row, []).append((finding.code, finding.column))
    return found


def test_every_hidden_problem_is_found_at_its_row(sandbox: Sandbox, tmp_path: Path) -> None:
    """The README's sheet: each of rows 3-12 hides one problem; each is a finding at that row and column, the
    failing rows are invalid in requests.parquet (with their code) and in no shard, media.parquet is written."""
    source = sheet(tmp_path, sandbox.url)
    out = tmp_path / "out"
    result = build(source, MAPPING, out, BuildOptions(skip_invalid=True, probe=quick_probe(tmp_path)))
    found = _codes_by_row(result.report.findings)
    assert {row: sorted(codes) for row, codes in found.items()} == {
        row: sorted(codes) for row, codes in HIDDEN.items()
    }
    for finding in result.report.findings:
        if finding.code in PROBE_CODES:
            assert finding.source == "preflight.csv"
            assert finding.source_line == finding.row + 1
            assert finding.request_id == f"p{finding.row:02d}"
            assert finding.pointer in ("/payload/input/0/url", "/payload/input/1/url")
    requests = result.manifest.requests_frame()
    invalid = requests.filter(pl.col("status") == "invalid")
    assert set(invalid.get_column("row").to_list()) == FAILING
    for row, code in invalid.select("row", "code").iter_rows():
        assert code == HIDDEN[row][0][0]
    sent = {line["request_id"] for path in result.shards for line in read_lines(path)}
    assert sent == {f"p{row:02d}" for row in range(1, 33) if row not in FAILING}
    media = pl.read_parquet(out / "media.parquet")
    assert media.height == 35  # distinct URLs: the shared base video once
    assert dict(media.group_by("status").len().iter_rows())["ok"] == 31
    lengths = pl.read_parquet(out / "lengths.parquet")
    assert lengths.get_column("request_id").to_list() == requests.get_column("request_id").to_list()
    assert sandbox.media.key_leaks == []


def test_tts_and_segment_problems_are_found_at_their_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    """The two codes a URL-audio sheet cannot hide: a script too long to speak in 30 s (a warning: the row
    is sent), and a segment that ends after its video (an error: the row is invalid)."""
    media = sandbox.media
    long = "Thank you for being with us this year, and here is everything that is new for you. " * 6
    tts = tmp_path / "tts.csv"
    tts.write_text(
        "id,lang,video,script\n"
        f"t1,en,{media.url('tts-video.mp4', duration=12)},Hello there and welcome back\n"
        f't2,ja,{media.url("tts-video.mp4", duration=12)},"{long}"\n'
    )
    tts_mapping = {
        "request_id": "{id}", "model": "lipsync-2", "video": "{video}",
        "tts": {"voice_id": "v1", "script": "{script}"},
    }  # fmt: skip
    checked = probe_source(tts, tts_mapping, BuildOptions(probe=quick_probe(tmp_path)))
    assert [(f.row, f.code, f.column) for f in checked.report.findings] == [
        (2, "tts-may-be-too-long", "script")
    ]
    segments = tmp_path / "segments.csv"
    segments.write_text(
        "id,video,audio,end\n"
        f"s1,{media.url('seg.mp4', duration=12)},{media.url('seg.wav', duration=12)},5\n"
        f"s2,{media.url('seg.mp4', duration=12)},{media.url('seg.wav', duration=12)},20\n"
    )
    segment_mapping = {
        "request_id": "{id}", "model": "lipsync-2", "video": "{video}", "audio": "{audio}",
        "audio_ref_id": "voice",
        "segments": [{"start_time": 0, "end_time": "{end}", "audio_input": {"ref_id": "voice"}}],
    }  # fmt: skip
    with pytest.raises(ValidationFailed) as failed:
        build(segments, segment_mapping, tmp_path / "seg", BuildOptions(probe=quick_probe(tmp_path)))
    report = failed.value.report
    assert [(f.row, f.code, f.pointer) for f in report.findings if f.code in PROBE_CODES] == [
        (2, "segment-beyond-media", "/payload/segments/0/endTime")
    ]


def test_failing_media_fail_the_build_unless_skipped(sandbox: Sandbox, tmp_path: Path) -> None:
    """Without --skip-invalid a row whose media fails fails the build: only the report and its findings are
    written."""
    out = tmp_path / "out"
    with pytest.raises(ValidationFailed) as failed:
        build(sheet(tmp_path, sandbox.url), MAPPING, out, BuildOptions(probe=quick_probe(tmp_path)))
    assert failed.value.report.error_counts["media-too-long"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["findings.ndjson", "report.json"]


def test_a_url_the_mapping_sets_for_every_row_is_reported_once(sandbox: Sandbox, tmp_path: Path) -> None:
    """A broken constant video makes every row invalid, with one finding (no row) instead of one per row."""
    source = tmp_path / "rows.csv"
    source.write_text(
        "id,audio\n" + "".join(f"r{i},{sandbox.media.url(f'c{i}.wav', duration=5)}\n" for i in range(4))
    )
    mapping = {
        "request_id": "{id}", "model": "lipsync-2", "video": sandbox.media.url("gone.mp4", status=404),
        "audio": "{audio}",
    }  # fmt: skip
    with pytest.raises(ValidationFailed) as failed:
        build(source, mapping, tmp_path / "out", BuildOptions(probe=quick_probe(tmp_path), skip_invalid=True))
    media = [f for f in failed.value.report.findings if f.code in PROBE_CODES]
    assert [(f.code, f.row) for f in media] == [("media-unreachable", None)]
    assert "set in the mapping, so on every request" in media[0].message


def test_a_second_build_asks_the_cache_and_refresh_reads_again(sandbox: Sandbox, tmp_path: Path) -> None:
    """The second probe of unchanged media only revalidates (a HEAD per URL, no body); --refresh reads again."""
    source = sheet(tmp_path, sandbox.url)
    options = BuildOptions(skip_invalid=True, probe=quick_probe(tmp_path))
    build(source, MAPPING, tmp_path / "one", options)
    sandbox.media.reset()
    again = probe_source(source, MAPPING, options)
    assert again.cached == 34  # every definite answer (media or not) with validators: all but the 404
    assert sandbox.media.count("GET") == 1
    sandbox.media.reset()
    fresh = probe_source(source, MAPPING, BuildOptions(probe=quick_probe(tmp_path, refresh=True)))
    assert fresh.cached == 0
    assert sandbox.media.count("GET") >= 35
    assert {code for code, _ in fresh.report.counts.items() if code in PROBE_CODES} >= {"media-too-long"}


def test_probe_directory_locates_findings_at_source_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    """An existing build (made without --probe) probed afterwards: findings at its source rows, through
    requests.parquet; media.parquet and lengths.parquet land in the directory, the shards stay as they are."""
    out = tmp_path / "out"
    build(sheet(tmp_path, sandbox.url), MAPPING, out, BuildOptions())
    before = (out / "preflight-0001.jsonl").read_bytes()
    result = probe_directory(out, quick_probe(tmp_path))
    assert {row: sorted(c) for row, c in _codes_by_row(result.report.findings).items()} == {
        row: sorted(codes) for row, codes in HIDDEN.items()
    }
    assert (out / "preflight-0001.jsonl").read_bytes() == before
    assert (out / "media.parquet").is_file()
    assert (out / "lengths.parquet").is_file()
    assert load_manifest(out).counts.invalid == 0


_KINDS = {
    "ok": ("ok.wav", {"duration": 6}),
    "gone": ("gone.wav", {"status": 404}),
    "page": ("page.wav", {"as": "html"}),
    "long": ("long.wav", {"duration": 31}),
    "blank": None,
}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(sorted(_KINDS)), min_size=1, max_size=30))
def test_every_row_ends_in_exactly_one_place(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory,
                                             kinds: list[str]) -> None:  # fmt: skip
    """Whatever the media of each row: a row is in a shard (its media good) or invalid in requests.parquet
    with a finding at its row, never both and never neither."""
    folder = tmp_path_factory.mktemp("rows")
    lines = ["id,audio"]
    for i, kind in enumerate(kinds):
        spec = _KINDS[kind]
        lines.append(f"r{i},{sandbox.media.url(f'{i}-' + spec[0], **spec[1]) if spec else ''}")
    source = folder / "rows.csv"
    source.write_text("\n".join(lines) + "\n")
    mapping = {
        "request_id": "{id}", "model": "lipsync-2", "video": sandbox.media.url("v.mp4", duration=6),
        "audio": "{audio}",
    }  # fmt: skip
    options = BuildOptions(
        skip_invalid=True, probe=quick_probe(folder, cache=False), limits=Limits(min_records=1)
    )
    try:
        result = build(source, mapping, folder / "out", options)
    except ValidationFailed as exc:  # nothing valid: every row is reported
        assert all(kind != "ok" for kind in kinds)
        rows = {f.row for f in exc.report.errors if f.row is not None}
        assert rows == set(range(1, len(kinds) + 1))
        return
    requests = result.manifest.requests_frame()
    sent = {line["request_id"] for path in result.shards for line in read_lines(path)}
    reported = {f.row for f in result.report.errors if f.row is not None}
    for row, request_id, status in requests.select("row", "request_id", "status").iter_rows():
        good = kinds[row - 1] == "ok"
        assert (request_id in sent) is good
        assert (row in reported) is not good
        assert status == ("ok" if good else "invalid")
