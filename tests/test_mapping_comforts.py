"""Mapping comforts and the newer fields in mappings: [dub], image, [dialogue_edit], template fallbacks,
[where], [each] optional, findings that name their [each] value; every row × value accounted for once."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import (
    BatchLine,
    BuildOptions,
    Finding,
    Limits,
    RetryOptions,
    build,
    collect_results,
    retry_failed,
)
from batchkit._errors import InputError
from batchkit._mapping.mapping import load_mapping
from batchkit._mapping.templates import Column, parse_template
from batchkit._report import CODES, ValidationFailed
from batchkit._validate.validate import validate_lines

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SMALL = Limits(min_records=1)
BASE: dict[str, Any] = {"request_id": "{id}", "model": "lipsync-2", "video": "{video}", "audio": "{audio}"}


def rows(n: int, **columns: Any) -> list[dict[str, str]]:
    """``n`` valid rows (id, video, audio, audio_de, audio_fr); ``columns`` add or replace columns: a list
    of values, or a function of the 0-based row number."""
    out = [
        {
            "id": f"r{i:02d}",
            "video": f"https://cdn.example.com/v/{i}.mp4",
            "audio": f"https://cdn.example.com/a/{i}.wav",
            "audio_de": f"https://cdn.example.com/a/{i}_de.wav",
            "audio_fr": f"https://cdn.example.com/a/{i}_fr.wav",
        }
        for i in range(n)
    ]
    for name, values in columns.items():
        for i, row in enumerate(out):
            row[name] = values(i) if callable(values) else values[i]
    return out


def write_csv(path: Path, data: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(data[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(data)
    return path


def lines_of(result: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in result.shards for line in path.read_bytes().splitlines()]


# -- the newer fields in mappings -----------------------------------------------------------------------------


def test_dubbing_fixture_builds_one_request_per_video_and_language(tmp_path: Path) -> None:
    """fixtures/dubbing.toml: 10 videos × 5 languages, no audio input, targetLang from the loop variable."""
    result = build(FIXTURES / "localization.xlsx", FIXTURES / "dubbing.toml", tmp_path / "o")
    assert (result.counts.units, result.counts.requests) == (50, 50)
    lines = lines_of(result)
    assert lines[0]["payload"] == {
        "model": "lipsync-2",
        "input": [{"type": "video", "url": "https://cdn.example.com/videos/v01_welcome.mp4"}],
        "outputFileName": "v01_de",
        "dubParams": {"targetLang": "de"},
    }
    assert [line["payload"]["dubParams"]["targetLang"] for line in lines[:5]] == [
        "de",
        "fr",
        "es",
        "pt",
        "ja",
    ]
    assert result.report.findings == []


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_per_row_dub_fields_and_images_are_checked_like_any_line(tmp_path: Path, chunk_rows: int) -> None:
    """A per-row target language may not be empty; an image needs sync-3, row by row (the columnar path
    flags what only the rules may clear, so both paths agree)."""
    data = rows(
        6,
        target=["es", "", "fr", 'q"uote', "de", "pt"],
        model=["sync-3", "lipsync-2", "sync-3", "sync-3", "sync-9", "sync-3"],
    )
    dub = {"request_id": "{id}", "model": "lipsync-2", "video": "{video}", "dub": {"target_lang": "{target}"}}
    opts = BuildOptions(limits=SMALL, skip_invalid=True, chunk_rows=chunk_rows)
    result = build(write_csv(tmp_path / "d.csv", data), dub, tmp_path / "d", opts)
    assert [(f.code, f.row) for f in result.report.errors] == [("empty-value", 2)]
    assert [line["payload"]["dubParams"]["targetLang"] for line in lines_of(result)] == [
        "es",
        "fr",
        'q"uote',
        "de",
        "pt",
    ]
    image = {"request_id": "{id}", "model": "{model}", "image": "{video}", "audio": "{audio}"}
    result = build(write_csv(tmp_path / "i.csv", data), image, tmp_path / "i", opts)
    assert [(f.code, f.row, f.column) for f in result.report.errors] == [("unsupported-input", 2, "model")]
    assert [(f.code, f.row) for f in result.report.warnings] == [("unknown-model", 5)]
    for line in lines_of(result):
        assert line["payload"]["input"][0]["type"] == "image"
        assert orjson.dumps(line) == BatchLine.model_validate(line).to_bytes()
    assert validate_lines(lines_of(result), limits=SMALL, file_checks=False).valid


def test_dialogue_edit_mapping(tmp_path: Path) -> None:
    mapping = {
        "request_id": "{id}",
        "model": "lipsync-2",
        "video": "{video}",
        "dialogue_edit": {"id": "{edit}"},
    }
    result = build(
        write_csv(tmp_path / "e.csv", rows(3, edit=["e1", "e2", "e3"])),
        mapping,
        tmp_path / "o",
        BuildOptions(limits=SMALL),
    )
    assert [line["payload"]["dialogueEdit"] for line in lines_of(result)] == [
        {"id": "e1"},
        {"id": "e2"},
        {"id": "e3"},
    ]
    assert all(len(line["payload"]["input"]) == 1 for line in lines_of(result))


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        pytest.param({**BASE, "dub": {"target_lang": "es"}}, r"\[dub\] takes no audio", id="dub-with-audio"),
        pytest.param(
            {"request_id": "{id}", "model": "sync-3", "image": "{v}", "dub": {"target_lang": "es"}},
            r"\[dub\] needs a video",
            id="dub-with-image",
        ),
        pytest.param(
            {
                "request_id": "{id}",
                "model": "x",
                "video": "{v}",
                "dub": {"target_lang": "es"},
                "dialogue_edit": {"id": "e"},
            },
            "not both",
            id="dub-and-edit",
        ),
        pytest.param({**BASE, "image": "{i}"}, "exactly one of video", id="video-and-image"),
        pytest.param(
            {"request_id": "{id}", "model": "lipsync-2", "image": "{v}", "audio": "{a}"},
            "image inputs are sync-3 only",
            id="constant-model-refuses-images",
        ),
        pytest.param({**BASE, "dub": {"targetlang": "es"}}, "dub.target_lang", id="dub-key"),
    ],
)
def test_mapping_errors_for_the_newer_fields(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_mapping(mapping).compile()


# -- template fallbacks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        pytest.param("Hi {first|there}!", ("Hi ", Column("first", "there"), "!"), id="fallback"),
        pytest.param("{a|}", (Column("a", ""),), id="empty-fallback"),
        pytest.param("{a|b|c}", (Column("a", "b|c"),), id="first-bar-splits"),
        pytest.param(r"{a\|b}", (Column("a|b"),), id="escaped-bar"),
        pytest.param("{{x|y}}", ("{x|y}",), id="literal-braces"),
    ],
)
def test_fallback_syntax(text: str, parts: tuple[object, ...]) -> None:
    assert parse_template(text) == parts


def test_a_fallback_cannot_hold_braces() -> None:
    with pytest.raises(InputError, match="unbalanced"):
        parse_template("{a|{b}}")


@pytest.mark.parametrize("chunk_rows", [2, 1000])
def test_fallbacks_fill_empty_cells_in_both_build_paths(tmp_path: Path, chunk_rows: int) -> None:
    """Empty (or blank) cells take the fallback; a fallback that needs JSON escaping goes the careful way;
    an empty fallback of an optional field leaves the field out."""
    data = rows(
        4,
        first=["Ann", "", " ", "Bo"],
        name=["x", "", "y", ""],
        alt=["", "", "", "https://cdn.example.com/alt.wav"],
    )
    mapping = {
        **BASE,
        "audio": "{alt|https://cdn.example.com/default.wav}",
        "output_file_name": "{name|}",
        "webhook_url": 'https://hooks.example.com/{first|"friend"}',
    }
    opts = BuildOptions(limits=SMALL, chunk_rows=chunk_rows)
    result = build(write_csv(tmp_path / "f.csv", data), mapping, tmp_path / "o", opts)
    payloads = [line["payload"] for line in lines_of(result)]
    default = "https://cdn.example.com/default.wav"
    assert [p["input"][1]["url"] for p in payloads] == [default] * 3 + ["https://cdn.example.com/alt.wav"]
    assert [p.get("outputFileName") for p in payloads] == ["x", None, "y", None]
    friend = 'https://hooks.example.com/"friend"'
    assert [p["webhookUrl"] for p in payloads] == [
        "https://hooks.example.com/Ann",
        friend,
        friend,
        "https://hooks.example.com/Bo",
    ]
    assert result.report.findings == []
    for path in result.shards:
        for line in path.read_bytes().splitlines():
            assert line == BatchLine.model_validate(orjson.loads(line)).to_bytes()


def test_fallback_results_match_the_python_rendering(tmp_path: Path) -> None:
    """The same rows built columnar and row by row (a number field forces the latter) give the same text."""
    data = rows(5, first=["Ann", "", "  ", "Zoë", ""])
    script = {"voice_id": "v", "script": 'Hi {first|there}, "welcome"'}
    fast = {**BASE, "tts": script}
    del fast["audio"]
    slow = {**fast, "tts": {**script, "stability": "0.5"}}
    source = write_csv(tmp_path / "s.csv", data)
    a = build(source, fast, tmp_path / "a", BuildOptions(limits=SMALL))
    b = build(source, slow, tmp_path / "b", BuildOptions(limits=SMALL))
    scripts = [line["payload"]["input"][1]["provider"]["script"] for line in lines_of(a)]
    assert scripts == [
        'Hi Ann, "welcome"',
        'Hi there, "welcome"',
        'Hi there, "welcome"',
        'Hi Zoë, "welcome"',
        'Hi there, "welcome"',
    ]
    assert scripts == [line["payload"]["input"][1]["provider"]["script"] for line in lines_of(b)]


# -- [where] and [each] optional --------------------------------------------------------------------------------


def test_where_keeps_listed_values_and_reports_the_rest_as_filtered(tmp_path: Path) -> None:
    data = rows(
        8,
        consent=["yes", "YES ", "no", "", "true", "1", "Yes", "nope"],
        id=lambda i: "same" if i in (2, 3) else f"r{i}",
    )
    mapping = {**BASE, "where": {"consent": ["yes", True, 1]}}
    result = build(write_csv(tmp_path / "w.csv", data), mapping, tmp_path / "o", BuildOptions(limits=SMALL))
    requests = result.manifest.requests_frame()
    assert requests["status"].to_list() == ["ok", "ok", "filtered", "filtered", "ok", "ok", "ok", "filtered"]
    assert (result.counts.requests, result.counts.filtered, result.counts.invalid) == (5, 3, 0)
    (note,) = result.report.findings  # no duplicate-request-id: filtered units are no requests
    assert (note.code, note.severity) == ("filtered-rows", "warning")
    assert "3 row(s) were left out by [where] (consent in (yes, true, 1))" in note.message
    assert requests["message"][2] == "left out by [where]: column consent is 'no', not one of yes, true, 1"
    assert requests["message"][3] == "left out by [where]: column consent is empty, not one of yes, true, 1"
    results = collect_results(tmp_path / "o", download=False)
    assert results.outcomes["filtered"] == 3
    assert results.frame.filter(pl.col("outcome") == "filtered")["error_code"].to_list() == ["filtered"] * 3


def test_a_where_column_the_source_lacks_is_a_missing_column(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        build(write_csv(tmp_path / "w.csv", rows(3)), {**BASE, "where": {"consnet": ["yes"]}}, tmp_path / "o")
    assert [f.code for f in info.value.report.findings] == ["missing-column"]


def test_optional_each_values_skip_their_request_not_the_row(tmp_path: Path) -> None:
    """A blank audio_de skips the de request of that row only; a blank column that is not chosen by the
    optional variable is still invalid; the build succeeds without --skip-invalid when nothing is invalid."""
    data = rows(4, audio_de=["", "https://cdn.example.com/x_de.wav", "", "https://cdn.example.com/y_de.wav"])
    mapping = {
        **BASE,
        "request_id": "{id}_{lang}",
        "audio": "{audio_{lang}}",
        "each": {"lang": ["de", "fr"], "optional": True},
    }
    result = build(write_csv(tmp_path / "o.csv", data), mapping, tmp_path / "o", BuildOptions(limits=SMALL))
    requests = result.manifest.requests_frame()
    assert requests.select("request_id", "status").rows() == [
        ("r00_de", "skipped"), ("r00_fr", "ok"), ("r01_de", "ok"), ("r01_fr", "ok"),
        ("r02_de", "skipped"), ("r02_fr", "ok"), ("r03_de", "ok"), ("r03_fr", "ok"),
    ]  # fmt: skip
    assert (result.counts.requests, result.counts.skipped, result.counts.invalid) == (6, 2, 0)
    skipped = [f for f in result.report.findings if f.code == "optional-empty"]
    assert [str(f).split(":")[0] for f in skipped] == [
        "o.csv row 1 (line 2) [lang=de], column audio_de",
        "o.csv row 3 (line 4) [lang=de], column audio_de",
    ]
    assert load_mapping(result.manifest.mapping or {}).to_dict()["each"] == {
        "lang": ["de", "fr"],
        "optional": True,
    }
    # a blank video is the row's own problem: invalid for every language, not skipped
    data[1]["video"] = ""
    with pytest.raises(ValidationFailed) as info:
        build(write_csv(tmp_path / "p.csv", data), mapping, tmp_path / "p", BuildOptions(limits=SMALL))
    assert [(f.code, f.row, f.each) for f in info.value.report.errors] == [
        ("empty-value", 2, {"lang": "de"}),
        ("empty-value", 2, {"lang": "fr"}),
    ]


def test_optional_can_name_some_variables_only(tmp_path: Path) -> None:
    data = rows(2, audio_de=["", "https://cdn.example.com/x.wav"], name_de=["", "n"], name_fr=["m", "n"])
    mapping = {
        **BASE,
        "request_id": "{id}_{lang}{v}",
        "audio": "{audio_{lang}}",
        "each": {"lang": ["de", "fr"], "v": ["1", "2"], "optional": ["v"]},
    }
    with pytest.raises(ValidationFailed) as info:  # lang is not optional: a blank audio_de is an error
        build(write_csv(tmp_path / "s.csv", data), mapping, tmp_path / "o", BuildOptions(limits=SMALL))
    assert [f.code for f in info.value.report.errors] == ["empty-value"]


def test_findings_of_expanded_rows_name_their_value_and_json_stays_compatible() -> None:
    finding = Finding(
        code="empty-value",
        severity="error",
        message="m",
        source="s.xlsx",
        row=7,
        each={"lang": "de"},
        column="audio_de",
    )
    assert finding.location == "s.xlsx row 7 [lang=de], column audio_de"
    plain = Finding(code="empty-value", severity="error", message="m", source="s.xlsx", row=7)
    assert "each" not in plain.model_dump(exclude_none=True)
    assert set(CODES) >= {
        "optional-empty",
        "filtered-rows",
        "unsupported-input",
        "ignored-input",
        "unmodelled-field",
    }


def test_skipped_and_filtered_units_are_not_retried(tmp_path: Path) -> None:
    data = rows(3, consent=["yes", "no", "yes"])
    build(
        write_csv(tmp_path / "r.csv", data),
        {**BASE, "where": {"consent": ["yes"]}},
        tmp_path / "o",
        BuildOptions(limits=SMALL),
    )
    for outcome in ("skipped", "filtered"):
        with pytest.raises(InputError, match=f"cannot retry {outcome!r} units"):
            retry_failed(
                tmp_path / "o", tmp_path / f"r-{outcome}", RetryOptions(only=[outcome], download=False)
            )


# -- the invariant: every source row × [each] value is accounted for exactly once ------------------------------------

CELL = st.sampled_from(["ok", "ok", "ok", "", " ", "bad url", "yes", "no"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cells=st.lists(
        st.tuples(CELL, CELL, CELL, st.sampled_from(["yes", "no", "", "YES"])), min_size=1, max_size=25
    ),
    optional=st.booleans(),
    where=st.booleans(),
    fallback=st.booleans(),
    chunk_rows=st.integers(min_value=2, max_value=30),
)
def test_every_row_and_value_is_in_a_shard_invalid_skipped_or_filtered(
    tmp_path_factory: pytest.TempPathFactory,
    cells: list[tuple[str, str, str, str]],
    optional: bool,
    where: bool,
    fallback: bool,
    chunk_rows: int,
) -> None:
    folder = tmp_path_factory.mktemp("acct")

    def url(value: str, i: int, tag: str) -> str:
        return {
            "ok": f"https://cdn.example.com/{tag}/{i}",
            "bad url": "cdn.example.com/x",
            "yes": "yes",
            "no": "no",
        }.get(value, value)

    data = [
        {
            "id": f"r{i}",
            "video": url(v, i, "v"),
            "audio_de": url(de, i, "de"),
            "audio_fr": url(fr, i, "fr"),
            "consent": c,
        }
        for i, (v, de, fr, c) in enumerate(cells)
    ]
    mapping: dict[str, Any] = {
        "request_id": "{id}_{lang}",
        "model": "lipsync-2",
        "video": "{video}",
        "audio": "{audio_{lang}|https://cdn.example.com/default.wav}" if fallback else "{audio_{lang}}",
        "each": {"lang": ["de", "fr"], **({"optional": True} if optional else {})},
    }
    if where:
        mapping["where"] = {"consent": ["yes"]}
    try:
        result = build(
            write_csv(folder / "a.csv", data),
            mapping,
            folder / "o",
            BuildOptions(limits=SMALL, skip_invalid=True, chunk_rows=chunk_rows),
        )
    except ValidationFailed as exc:  # nothing at all to send
        failure: ValidationFailed | None = exc
    else:
        failure = None
    if failure is not None:
        codes = [f.code for f in failure.report.findings if f.row is None]
        assert [c for c in codes if c != "filtered-rows"] == ["too-few-records"]
        return
    requests = result.manifest.requests_frame()
    assert requests.select("row", "lang").rows() == [
        (i + 1, lang) for i in range(len(data)) for lang in ("de", "fr")
    ]
    statuses = requests["status"].to_list()
    counts = result.counts
    assert (
        counts.units == len(statuses) == counts.requests + counts.invalid + counts.skipped + counts.filtered
    )
    assert (statuses.count("ok"), statuses.count("skipped"), statuses.count("filtered")) == (
        counts.requests,
        counts.skipped,
        counts.filtered,
    )
    assert sum(1 for path in result.shards for _ in path.read_bytes().splitlines()) == counts.requests
    for (_row, lang, status), original in zip(
        requests.select("row", "lang", "status").rows(), [d for d in data for _ in (0, 1)], strict=True
    ):
        kept = not where or original["consent"].strip().lower() == "yes"
        assert (status == "filtered") == (not kept)
        if status == "skipped":
            assert optional
            assert not fallback
            assert not original[f"audio_{lang}"].strip()
        if status == "ok":
            assert original["video"].startswith("https://")
    if not optional:
        assert counts.skipped == 0


def test_the_toml_form_of_the_comforts(tmp_path: Path) -> None:
    """[each] optional and [where] read from TOML, round-trip through to_dict, and name their line on error."""
    path = tmp_path / "m.toml"
    path.write_text(
        'request_id = "{id}_{lang}"\nmodel = "lipsync-2"\nvideo = "{video}"\naudio = "{audio_{lang}|https://x.example.com/a.wav}"\n'
        '\n[each]\nlang = ["de", "fr"]\noptional = ["lang"]\n\n[where]\nconsent = ["yes", true]\n',
        encoding="utf-8",
    )
    mapping = load_mapping(path)
    assert mapping.optional_each == {"lang"}
    assert mapping.row_filter.describe() == "consent in (yes, true)"
    assert load_mapping(mapping.to_dict()) == mapping
    path.write_text(path.read_text().replace('optional = ["lang"]', 'optional = ["lng"]'), encoding="utf-8")
    with pytest.raises(InputError, match=r"m\.toml.*optional names 'lng'"):
        load_mapping(path)
