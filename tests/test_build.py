"""Build: rows → validated canonical lines → balanced shards, with every row accounted for."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit._build.build import build
from batchkit._build.options import BuildOptions
from batchkit._errors import InputError
from batchkit._report import CODES, ValidationFailed
from batchkit._shard.builddir import load_manifest, verify_shards
from batchkit._validate.validate import validate_files, validate_lines
from batchkit._wire.limits import Limits
from batchkit._wire.models import BatchLine

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MAPPING: dict[str, Any] = {
    "request_id": "{id}",
    "model": "lipsync-2",
    "video": "{video}",
    "audio": "{audio}",
    "output_file_name": "{id}",
}
SMALL = Limits(min_records=1, max_records=500)


def table(n: int, **overrides: dict[int, str]) -> list[dict[str, str]]:
    """``n`` valid rows (id, name, video, audio, script); ``overrides`` set column values by 1-based row."""
    rows = [
        {
            "id": f"r{i:03d}",
            "name": f"Name {i}",
            "video": f"https://cdn.example.com/v/{i}.mp4",
            "audio": f"https://cdn.example.com/a/{i}.wav",
            "script": f"Hello number {i}",
        }
        for i in range(1, n + 1)
    ]
    for column, values in overrides.items():
        for row, value in values.items():
            rows[row - 1][column] = value
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def shard_lines(out: Path) -> list[bytes]:
    manifest = load_manifest(out)
    return [line for path in manifest.shard_paths() for line in path.read_bytes().splitlines()]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- the fixtures ------------------------------------------------------------------------------------------------


def test_campaign_fails_by_default_with_a_report_and_no_shards(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValidationFailed) as info:
        build(FIXTURES / "campaign.csv", FIXTURES / "campaign.toml", out)
    found = [(f.code, f.row, f.source_line, f.column, f.request_id) for f in info.value.report.errors]
    assert found == [
        ("invalid-url", 7, 8, "audio_url", "c007"),
        ("empty-value", 13, 14, "audio_url", "c013"),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["findings.ndjson", "report.json"]
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["valid"] is False
    assert report["counts"] == {"invalid-url": 1, "empty-value": 1}
    assert report["findings_file"] == "findings.ndjson"
    every = [orjson.loads(line) for line in (out / "findings.ndjson").read_bytes().splitlines()]
    assert [(f["code"], f["row"]) for f in every] == [("invalid-url", 7), ("empty-value", 13)]


def test_campaign_skip_invalid_builds_balanced_shards(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = build(
        FIXTURES / "campaign.csv",
        FIXTURES / "campaign.toml",
        out,
        BuildOptions(skip_invalid=True, limits=Limits(max_records=40)),
    )
    assert result.counts.model_dump() == {
        "rows": 60,
        "units": 60,
        "requests": 58,
        "invalid": 2,
        "shards": 2,
        "bytes": result.counts.bytes,
        "skipped": 0,
        "filtered": 0,
    }
    assert [s.records for s in result.manifest.shards] == [29, 29]
    assert [p.name for p in result.shards] == ["campaign-0001.jsonl", "campaign-0002.jsonl"]
    assert validate_files(result.shards, limits=Limits(max_records=40)).valid
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert list(manifest) == [
        "format",
        "batchkit_version",
        "name",
        "limits",
        "sources",
        "mapping",
        "each",
        "counts",
        "shards",
        "requests",
    ]
    assert manifest["shards"][0]["first_request_id"] == "c001"
    assert manifest["shards"][1]["last_request_id"] == "c060"
    sandbox = [line for line in shard_lines(out) if b"sandbox=" in line]
    assert len(sandbox) == 6  # 3 fail, 2 reject, 1 missing: left for the sandbox to act on
    requests = result.manifest.requests_frame()
    assert requests.columns == [
        "request_id",
        "source",
        "row",
        "source_line",
        "shard",
        "shard_line",
        "status",
        "code",
        "message",
    ]
    assert requests.filter(pl.col("status") == "invalid")["request_id"].to_list() == ["c007", "c013"]
    assert requests.filter(pl.col("request_id") == "c032").select("shard", "shard_line").row(0) == (2, 1)
    assert manifest["shards"][1]["first_request_id"] == "c032"
    assert verify_shards(out) == []


def test_campaign_with_default_limits_is_one_shard(tmp_path: Path) -> None:
    """58 requests fit one batch of 20–500, and the fewest shards wins."""
    result = build(
        FIXTURES / "campaign.csv", FIXTURES / "campaign.toml", tmp_path / "o", BuildOptions(skip_invalid=True)
    )
    assert [s.records for s in result.manifest.shards] == [58]


def test_localization_expands_each_language(tmp_path: Path) -> None:
    result = build(FIXTURES / "localization.xlsx", FIXTURES / "localization.toml", tmp_path / "loc")
    assert (result.counts.rows, result.counts.requests, result.counts.shards) == (10, 30, 1)
    ids = [orjson.loads(line)["request_id"] for line in shard_lines(tmp_path / "loc")]
    assert ids[:4] == ["v01_de", "v01_fr", "v01_es", "v02_de"]
    first = orjson.loads(shard_lines(tmp_path / "loc")[1])
    assert first["payload"]["input"][1]["url"] == "https://cdn.example.com/dubs/v01_fr.wav"
    requests = result.manifest.requests_frame()
    assert requests["lang"].to_list()[:3] == ["de", "fr", "es"]
    assert requests["row"].to_list()[:4] == [1, 1, 1, 2]
    assert result.manifest.each == ["lang"]
    assert result.manifest.sources[0].sheet == "Videos"


def test_localization_with_text_to_speech(tmp_path: Path) -> None:
    mapping = {
        "request_id": "{video_id}-{lang}",
        "model": "lipsync-2",
        "video": "{video_url}",
        "tts": {"voice_id": "{voice_id}", "script": "{script_{lang}}", "stability": 0.5},
        "each": {"lang": ["de", "fr", "es"]},
    }
    result = build(FIXTURES / "localization.xlsx", mapping, tmp_path / "tts")
    line = orjson.loads(shard_lines(tmp_path / "tts")[2])
    assert line["payload"]["input"][1] == {
        "type": "text",
        "provider": {
            "name": "elevenlabs",
            "voiceId": "voice_narrator_1",
            "script": "Bienvenido a la parte 1: welcome.",
            "stability": 0.5,
        },
    }
    assert result.counts.requests == 30


# -- determinism and the output directory ------------------------------------------------------------------------


def test_same_input_gives_byte_identical_output(tmp_path: Path) -> None:
    """Reruns and different chunk sizes (including the copy path) write the same bytes."""
    source = write_csv(tmp_path / "t.csv", table(45, audio={9: "ftp://x/9.wav"}))
    limits = Limits(min_records=5, max_records=10)
    outputs = []
    for number, chunk_rows in enumerate([100_000, 100_000, 4, 17]):
        out = tmp_path / f"out{number}"
        build(source, MAPPING, out, BuildOptions(limits=limits, skip_invalid=True, chunk_rows=chunk_rows))
        outputs.append(files_of(out))
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]
    assert [len(orjson.loads(outputs[0]["t-0001.jsonl"].splitlines()[0]))] == [3]


def test_rebuild_replaces_the_previous_shards(tmp_path: Path) -> None:
    out = tmp_path / "out"
    limits = Limits(min_records=5, max_records=20)
    build(write_csv(tmp_path / "t.csv", table(60)), MAPPING, out, BuildOptions(limits=limits))
    assert sorted(p.name for p in out.glob("t-*.jsonl")) == ["t-0001.jsonl", "t-0002.jsonl", "t-0003.jsonl"]
    build(write_csv(tmp_path / "t.csv", table(25)), MAPPING, out, BuildOptions(limits=limits))
    assert sorted(p.name for p in out.glob("t-*.jsonl")) == ["t-0001.jsonl", "t-0002.jsonl"]
    assert [s.records for s in load_manifest(out).shards] == [13, 12]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert verify_shards(out) == []


def test_failed_rebuild_removes_the_previous_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(write_csv(tmp_path / "t.csv", table(25)), MAPPING, out)
    with pytest.raises(ValidationFailed):
        build(write_csv(tmp_path / "t.csv", table(25, audio={3: ""})), MAPPING, out)
    assert sorted(p.name for p in out.iterdir()) == ["findings.ndjson", "report.json"]


def test_submitted_directory_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = write_csv(tmp_path / "t.csv", table(25))
    build(source, MAPPING, out)
    (out / "journal.sqlite").write_bytes(b"")
    with pytest.raises(InputError, match=r"already submitted \(it has journal.sqlite\)"):
        build(source, MAPPING, out)
    assert build(source, MAPPING, out, BuildOptions(force=True)).counts.requests == 25


def test_dataframe_source_writes_a_snapshot(tmp_path: Path) -> None:
    frame = pl.DataFrame(table(22)).with_columns(pl.Series("n", range(22)))
    result = build(frame, MAPPING, tmp_path / "df")
    source = result.manifest.sources[0]
    assert (source.path, source.format, source.snapshot, source.name) == (
        None,
        "dataframe",
        "source.parquet",
        "polars.DataFrame",
    )
    snapshot = pl.read_parquet(tmp_path / "df" / "source.parquet")
    assert snapshot["n"].to_list()[:3] == [0, 1, 2]  # the frame's own types: the results get them back
    assert result.shards[0].name == "batch-0001.jsonl"
    raw = orjson.loads((tmp_path / "df" / "manifest.json").read_bytes())
    assert raw["sources"][0]["snapshot"] == "source.parquet"
    assert raw["sources"][0]["sha256"] == source.sha256


def test_name_is_sanitised(tmp_path: Path) -> None:
    result = build(
        write_csv(tmp_path / "t.csv", table(20)), MAPPING, tmp_path / "o", BuildOptions(name="Q3 promo/v2")
    )
    assert result.shards[0].name == "Q3_promo_v2-0001.jsonl"


def test_progress_reports_rows(tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    build(
        pl.DataFrame(table(30)),
        MAPPING,
        tmp_path / "o",
        BuildOptions(chunk_rows=12),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(12, 30), (24, 30), (30, 30)]


# -- bad rows ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        pytest.param("audio", "https://cdn.example.com/a b.wav", "invalid-url", id="space-in-url"),
        pytest.param("video", "ftp://cdn.example.com/v.mp4", "invalid-url", id="ftp-scheme"),
        pytest.param("video", "javascript:alert(1)", "invalid-url", id="js-scheme"),
        pytest.param("video", "https://cdn.example.com/v\n.mp4", "invalid-url", id="newline-in-url"),
        pytest.param("id", "../../etc", "invalid-output-file-name", id="path-traversal-name"),
        pytest.param("id", "promo_😀", "invalid-output-file-name", id="emoji-name"),
        pytest.param("id", "x" * 300, "invalid-request-id", id="300-characters"),
        pytest.param("id", " r999", "invalid-request-id", id="leading-space-id"),
        pytest.param("audio", "=HYPERLINK(A1)", "formula-in-cell", id="formula"),
        pytest.param("audio", "", "empty-value", id="empty"),
        pytest.param("audio", "   ", "empty-value", id="blank"),
    ],
)
def test_bad_cell_is_a_located_finding_and_never_a_line(
    tmp_path: Path, column: str, value: str, code: str
) -> None:
    rows = table(25, **{column: {4: value}})
    out = tmp_path / "out"
    result = build(write_csv(tmp_path / "t.csv", rows), MAPPING, out, BuildOptions(skip_invalid=True))
    errors = result.report.errors
    assert code in {f.code for f in errors}
    assert {(f.row, f.source) for f in errors} == {(4, "t.csv")}
    assert column in {f.column for f in errors if f.code == code}
    assert result.counts.requests == 24
    assert not any(b"r004" in line for line in shard_lines(out))
    assert validate_lines(shard_lines(out), limits=Limits()).valid


def test_300_character_name_alone_is_an_invalid_output_file_name(tmp_path: Path) -> None:
    mapping = {**MAPPING, "output_file_name": "{name}"}
    rows = table(21, name={i: f"name{i}" for i in range(1, 22)})
    rows[1]["name"] = "n" * 300
    result = build(
        write_csv(tmp_path / "t.csv", rows), mapping, tmp_path / "o", BuildOptions(skip_invalid=True)
    )
    assert [(f.code, f.row, f.column) for f in result.report.errors] == [
        ("invalid-output-file-name", 2, "name")
    ]


def test_text_needing_escapes_is_written_canonically(tmp_path: Path) -> None:
    """Quotes, backslashes, newlines and non-ASCII text in values give the model's canonical line."""
    mapping = {**MAPPING, "audio": None, "tts": {"voice_id": "v1", "script": "{script}"}}
    del mapping["audio"]
    scripts = {1: 'She said "hi"', 2: "back\\slash", 3: "two\nlines", 4: "Grüße, 東京 ✓", 5: "tab\there"}
    rows = table(20, script=scripts, id={6: 'q"uote'})
    mapping["output_file_name"] = "n{name}".replace("{name}", "x")
    out = tmp_path / "o"
    build(write_csv(tmp_path / "t.csv", rows), mapping, out)
    lines = shard_lines(out)
    assert len(lines) == 20
    for line in lines:
        assert line == BatchLine.model_validate(orjson.loads(line)).to_bytes()
    assert orjson.loads(lines[2])["payload"]["input"][1]["provider"]["script"] == "two\nlines"
    assert orjson.loads(lines[5])["request_id"] == 'q"uote'


def test_duplicate_request_ids_name_both_rows(tmp_path: Path) -> None:
    rows = table(25, id={7: "r002", 9: "r002"})
    out = tmp_path / "o"
    result = build(
        write_csv(tmp_path / "t.csv", rows), MAPPING, out, BuildOptions(skip_invalid=True, chunk_rows=5)
    )
    dups = [f for f in result.report.errors if f.code == "duplicate-request-id"]
    assert [(f.row, f.source_line, f.request_id) for f in dups] == [(7, 8, "r002"), (9, 10, "r002")]
    assert all("row 2 (line 3)" in f.message for f in dups)
    requests = result.manifest.requests_frame()
    assert requests.filter(pl.col("request_id") == "r002")["status"].to_list() == ["ok", "invalid", "invalid"]
    assert result.counts.requests == 23
    assert validate_files(result.shards).valid
    assert requests.filter(pl.col("row") == 10).select("shard_line").item() == 8  # rows 7 and 9 left out


def test_missing_column_is_one_finding_before_any_row(tmp_path: Path) -> None:
    mapping = {**MAPPING, "video": "{video_url}", "output_file_name": "{Name}"}
    out = tmp_path / "o"
    with pytest.raises(ValidationFailed) as info:
        build(write_csv(tmp_path / "t.csv", table(25)), mapping, out)
    found = [(f.code, f.column, f.row) for f in info.value.report.findings]
    assert found == [("missing-column", "video_url", None), ("missing-column", "Name", None)]
    assert "did you mean 'name'?" in info.value.report.findings[1].message
    assert sorted(p.name for p in out.iterdir()) == ["findings.ndjson", "report.json"]


def test_each_variable_may_not_shadow_a_column(tmp_path: Path) -> None:
    mapping = {**MAPPING, "each": {"name": ["a"]}}
    with pytest.raises(InputError, match="'name' is also a column"):
        build(write_csv(tmp_path / "t.csv", table(25)), mapping, tmp_path / "o")


def test_too_few_records_says_how_many_are_missing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with pytest.raises(ValidationFailed) as info:
        build(write_csv(tmp_path / "t.csv", table(8)), MAPPING, out)
    (finding,) = info.value.report.errors
    assert finding.code == "too-few-records"
    assert "8 valid requests; a batch needs at least 20 (12 more)" in finding.message
    assert "--min-records" in finding.message
    assert "one by one" in finding.message
    assert sorted(p.name for p in out.iterdir()) == ["findings.ndjson", "report.json"]


def test_header_only_csv_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("id,video,audio\n")
    with pytest.raises(InputError, match="has no data rows"):
        build(path, MAPPING, tmp_path / "o")


def test_ragged_row_is_a_finding(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", table(21))
    text = path.read_text().splitlines()
    text[5] += ",surplus"
    path.write_text("\n".join(text) + "\n")
    result = build(path, MAPPING, tmp_path / "o", BuildOptions(skip_invalid=True))
    assert [(f.code, f.row, f.source_line) for f in result.report.errors] == [("ragged-row", 5, 6)]


def test_ndjson_source_with_a_bad_line(tmp_path: Path) -> None:
    rows = table(21)
    data = (
        b"\n".join(orjson.dumps(r) for r in rows[:3])
        + b"\n{broken\n"
        + b"\n".join(orjson.dumps(r) for r in rows[3:])
    )
    path = tmp_path / "rows.ndjson"
    path.write_bytes(data + b"\n")
    result = build(path, MAPPING, tmp_path / "o", BuildOptions(skip_invalid=True))
    assert [(f.code, f.row, f.source_line) for f in result.report.errors] == [("invalid-json", 4, 4)]
    assert result.counts.requests == 21


def test_optional_fields_are_left_out_when_empty(tmp_path: Path) -> None:
    """An optional field whose column is empty in a row is left out of that row's line."""
    mapping = {**MAPPING, "output_file_name": "{name}", "webhook_url": "{hook}"}
    rows = [
        dict(r, name=f"n{i}", hook="https://hooks.example.com/x" if i % 2 else "")
        for i, r in enumerate(table(20))
    ]
    rows[4]["name"] = ""
    build(write_csv(tmp_path / "t.csv", rows), mapping, tmp_path / "o")
    payloads = [orjson.loads(line)["payload"] for line in shard_lines(tmp_path / "o")]
    assert "webhookUrl" not in payloads[0]
    assert payloads[1]["webhookUrl"] == "https://hooks.example.com/x"
    assert "outputFileName" not in payloads[4]
    assert payloads[5]["outputFileName"] == "n5"
    assert list(payloads[1]) == ["model", "input", "webhookUrl", "outputFileName"]


def test_per_row_numbers_are_parsed(tmp_path: Path) -> None:
    mapping = {**MAPPING, "options": {"temperature": "{temp}", "sync_mode": "{mode}"}}
    rows = [dict(r, temp="0.25", mode="loop") for r in table(22)]
    rows[1]["temp"] = "warm"
    rows[2]["mode"] = "boomerang"
    result = build(
        write_csv(tmp_path / "t.csv", rows), mapping, tmp_path / "o", BuildOptions(skip_invalid=True)
    )
    assert [(f.code, f.severity, f.row) for f in result.report.findings] == [
        ("invalid-value", "error", 2),
        ("unknown-value", "warning", 3),
    ]
    options = [orjson.loads(line)["payload"]["options"] for line in shard_lines(tmp_path / "o")]
    assert options[0] == {"sync_mode": "loop", "temperature": 0.25}
    assert options[1] == {"sync_mode": "boomerang", "temperature": 0.25}


def test_constant_warning_is_reported_once(tmp_path: Path) -> None:
    result = build(
        write_csv(tmp_path / "t.csv", table(30)), {**MAPPING, "model": "lipsync-9"}, tmp_path / "o"
    )
    assert [(f.code, f.row) for f in result.report.findings] == [("unknown-model", None)]
    assert result.counts.requests == 30


def test_byte_cap_makes_more_shards_with_balanced_counts(tmp_path: Path) -> None:
    limits = Limits(min_records=2, max_records=500, max_bytes=2_000)
    result = build(
        write_csv(tmp_path / "t.csv", table(40)), MAPPING, tmp_path / "o", BuildOptions(limits=limits)
    )
    sizes = [s.bytes for s in result.manifest.shards]
    assert max(sizes) <= 2_000
    assert sum(s.records for s in result.manifest.shards) == 40
    counts = [s.records for s in result.manifest.shards]
    assert max(counts) - min(counts) <= 1
    assert validate_files(result.shards, limits=limits).valid


def test_line_over_the_byte_limit_is_line_too_large(tmp_path: Path) -> None:
    mapping = {**MAPPING, "audio": None, "tts": {"voice_id": "v", "script": "{script}"}}
    del mapping["audio"]
    rows = table(21, script={3: "word " * 200})
    limits = Limits(min_records=1, max_bytes=600)
    result = build(
        write_csv(tmp_path / "t.csv", rows),
        mapping,
        tmp_path / "o",
        BuildOptions(limits=limits, skip_invalid=True),
    )
    assert [(f.code, f.row) for f in result.report.errors] == [("line-too-large", 3)]


# -- the invariant: every row in exactly one shard or in the report ------------------------------------------------

CELLS = st.sampled_from(
    [
        "ok",
        "ok",
        "ok",
        "",
        " ",
        "with space",
        'q"uote',
        "back\\slash",
        "ünï",
        "=1+1",
        "line\nbreak",
        "../x",
        "dup",
    ]
)


def cell(kind: str, value: str, i: int) -> str:
    if value == "ok":
        return {
            "id": f"id{i}",
            "url": f"https://cdn.example.com/{i}.mp4",
            "text": f"text {i}",
        }[kind]
    if kind == "url" and value == "with space":
        return f"https://cdn.example.com/{i} x.mp4"
    if kind == "url" and value == "ünï":
        return f"https://cdn.example.com/ü{i}.mp4"
    return value


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cells=st.lists(st.tuples(CELLS, CELLS, CELLS, CELLS), min_size=1, max_size=40),
    tts=st.booleans(),
    each=st.booleans(),
    chunk_rows=st.integers(min_value=2, max_value=50),
    max_records=st.integers(min_value=2, max_value=9),
    name_from=st.sampled_from(["id", "text", None]),
    as_csv=st.booleans(),
)
def test_every_row_lands_in_one_shard_or_in_the_report(
    tmp_path_factory: pytest.TempPathFactory,
    cells: list[tuple[str, str, str, str]],
    tts: bool,
    each: bool,
    chunk_rows: int,
    max_records: int,
    name_from: str | None,
    as_csv: bool,
) -> None:
    """Random tables and mappings: each unit is in one shard line or reported at its row, never both;
    every written line passes the validator and is the model's canonical serialization."""
    folder = tmp_path_factory.mktemp("prop")
    rows = [
        {
            "id": cell("id", a, i),
            "video": cell("url", b, i),
            "audio": cell("url", c, i),
            "text": cell("text", d, i),
        }
        for i, (a, b, c, d) in enumerate(cells)
    ]
    mapping: dict[str, Any] = {
        "request_id": "{id}{lang}" if each else "{id}",
        "model": "lipsync-2",
        "video": "{video}",
    }
    if tts:
        mapping["tts"] = {"voice_id": "voice", "script": "{text}"}
    else:
        mapping["audio"] = "{audio}"
    if name_from is not None:
        mapping["output_file_name"] = "{" + name_from + "}"
    if each:
        mapping["each"] = {"lang": ["_de", "_fr"]}
    limits = Limits(min_records=1, max_records=max_records)
    out = folder / "out"
    blank = {i + 1 for i, row in enumerate(rows) if not any(v.strip() for v in row.values())}
    source: Any = write_csv(folder / "rows.csv", rows) if as_csv else pl.DataFrame(rows)
    if len(blank) == len(rows):
        with pytest.raises(InputError, match="has no data rows"):
            build(source, mapping, out, BuildOptions(limits=limits))
        return
    failure: ValidationFailed | None = None
    try:
        result = build(
            source, mapping, out, BuildOptions(limits=limits, skip_invalid=True, chunk_rows=chunk_rows)
        )
    except ValidationFailed as exc:  # nothing valid at all
        failure = exc
    if failure is not None:
        assert [f.code for f in failure.report.findings if f.row is None] == ["too-few-records"]
        assert not any(out.glob("*.jsonl"))
        return
    units = (len(rows) - len(blank)) * (2 if each else 1)
    requests = result.manifest.requests_frame()
    assert requests.height == units
    assert {f.row for f in result.report.findings if f.code == "blank-row"} == blank
    assert not set(requests["row"].to_list()) & blank
    ok = requests.filter(pl.col("status") == "ok")
    bad = requests.filter(pl.col("status") == "invalid")
    lines = {
        (number, line_no): line
        for number, path in enumerate(result.manifest.shard_paths(), 1)
        for line_no, line in enumerate(path.read_bytes().splitlines(), 1)
    }
    assert len(lines) == ok.height == result.counts.requests
    for rid, shard, shard_line in ok.select("request_id", "shard", "shard_line").iter_rows():
        assert orjson.loads(lines[(shard, shard_line)])["request_id"] == rid
    errors: dict[int | None, list[str | None]] = {}
    for finding in result.report.errors:
        errors.setdefault(finding.row, []).append(finding.request_id)
    for row, rid in bad.select("row", "request_id").iter_rows():
        assert row in errors  # every invalid unit is reported at its row
        assert rid in errors[row] or None in errors[row]
    for row, rid in ok.select("row", "request_id").iter_rows():
        assert all(other is not None and other != rid for other in errors.get(row, []))
    assert all(f.code in CODES for f in result.report.findings)
    assert validate_lines(list(lines.values()), limits=limits, file_checks=False).valid
    assert validate_files(result.shards, limits=limits).valid
    for line in lines.values():
        assert line == BatchLine.model_validate(orjson.loads(line)).to_bytes()


def test_per_row_option_that_may_be_empty(tmp_path: Path) -> None:
    """An object whose first member may be left out is still canonical JSON, empty or not."""
    mapping = {**MAPPING, "model": "react-1", "options": {"sync_mode": "{mode}", "model_mode": "{mode2}"}}
    rows = [
        dict(r, mode="loop" if i % 3 else "", mode2="" if i % 2 else "lips") for i, r in enumerate(table(24))
    ]
    build(write_csv(tmp_path / "t.csv", rows), mapping, tmp_path / "o")
    lines = shard_lines(tmp_path / "o")
    options = [orjson.loads(line)["payload"]["options"] for line in lines[:4]]
    assert options == [
        {"model_mode": "lips"},
        {"sync_mode": "loop"},
        {"sync_mode": "loop", "model_mode": "lips"},
        {},
    ]
    for line in lines:
        assert line == BatchLine.model_validate(orjson.loads(line)).to_bytes()


def test_provisional_and_copied_shards_are_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines written straight into provisional shards, or copied after planning, give the same files."""
    source = write_csv(tmp_path / "t.csv", table(130))
    limits = Limits(min_records=5, max_records=40)
    import batchkit._shard.write as shard_module

    adopted: list[int] = []
    original = shard_module._provisional_shards

    def spy(spill: Any, name: str, *rest: Any) -> Any:
        adopted.append(len(spill.segments))
        return original(spill, name, *rest)

    monkeypatch.setattr(shard_module, "_provisional_shards", spy)
    build(source, MAPPING, tmp_path / "direct", BuildOptions(limits=limits, chunk_rows=9))
    assert adopted == [4]  # 130 rows → 33, 33, 32, 32, written in place
    monkeypatch.setattr("batchkit._sources.source.Source.count_rows", lambda self: None)
    build(source, MAPPING, tmp_path / "copied", BuildOptions(limits=limits, chunk_rows=9))
    assert adopted == [4]  # no layout: planned afterwards, copied
    direct, copied = files_of(tmp_path / "direct"), files_of(tmp_path / "copied")
    assert sorted(direct) == [
        "findings.ndjson",
        "manifest.json",
        "report.json",
        "requests.parquet",
        *[f"t-000{i}.jsonl" for i in range(1, 5)],
    ]
    assert direct == copied


def test_blank_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", table(22))
    lines = path.read_text().splitlines()
    lines[3:3] = [",,,,", ""]
    path.write_text("\n".join(lines) + "\n")
    result = build(path, MAPPING, tmp_path / "o", BuildOptions(chunk_rows=4))
    assert [(f.code, f.severity, f.row, f.source_line) for f in result.report.findings] == [
        ("blank-row", "warning", 3, 4),
        ("blank-row", "warning", 4, 5),
    ]
    assert (result.counts.rows, result.counts.requests) == (22, 22)
    assert result.manifest.requests_frame()["row"].to_list()[:4] == [1, 2, 5, 6]
