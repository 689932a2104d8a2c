"""Reading output.jsonl leniently: hand-written files in ``fixtures/outputs/``, and property tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import fixture_path, json_values
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit._report import CODES
from batchkit._results.outputs import (
    COLUMNS,
    OutputUnreadable,
    _columns,
    _decoder,
    _fast_columns,
    normalise_line,
    read_output,
)
from batchkit._wire.responses import OutputLine


def _rows(path: Path) -> tuple[list[dict[str, Any]], list[tuple[str, int | None]]]:
    columns, findings = read_output(path)
    rows = [dict(zip(COLUMNS, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return rows, [(f.code, f.line) for f in findings]


def test_the_documented_line_shape_is_read() -> None:
    """The line shape of Sync's batch guide: status, error {code, message}, response = a Generation."""
    rows, findings = _rows(fixture_path("outputs", "documented.jsonl"))
    assert findings == []
    assert rows == [
        {
            "request_id": "video_001",
            "result_status": "COMPLETED",
            "error_code": None,
            "error_message": None,
            "output_url": "https://cdn.sync.so/out/6533643b.mp4",
            "output_duration": 12.48,
            "generation_id": "6533643b-acbe-4c40-967e-d9ba9baac39e",
            "result_line": 1,
        },
        {
            "request_id": "video_002",
            "result_status": "FAILED",
            "error_code": "generation_pipeline_failed",
            "error_message": "The generation pipeline failed.",
            "output_url": None,
            "output_duration": None,
            "generation_id": None,
            "result_line": 2,
        },
        {
            "request_id": "video_003",
            "result_status": "REJECTED",
            "error_code": "generation_media_metadata_missing",
            "error_message": "Could not read the media metadata.",
            "output_url": None,
            "output_duration": None,
            "generation_id": "0b1d2f1e-58a4-4d8e-b7e0-1f0a4f8e8c11",
            "result_line": 3,
        },
    ]


def test_every_documented_variant_is_understood() -> None:
    """Status from the response, lower case, error as text / list / object, errorCode, numbers as text,
    requestId, outputMediaUrl, snake_case response keys and unknown keys: all read, none a finding."""
    rows, findings = _rows(fixture_path("outputs", "variants.jsonl"))
    assert findings == []
    got = {
        r["request_id"]: (
            r["result_status"],
            r["error_code"],
            r["error_message"],
            r["output_url"],
            r["output_duration"],
        )
        for r in rows
    }
    assert got == {
        "a1": ("COMPLETED", None, None, "https://cdn.sync.so/out/a1.mp4", 3.0),
        "a2": ("FAILED", "generation_audio_missing", "the audio could not be fetched", None, None),
        "a3": ("FAILED", "generation_timeout", "took too long; gave up", None, None),
        "a4": ("FAILED", "generation_pipeline_failed", "pipeline broke", None, None),
        "a5": ("COMPLETED", None, None, "https://cdn.sync.so/out/a5.mp4", 7.25),
        "42": ("COMPLETED", None, None, "https://cdn.sync.so/out/42.mp4", None),
        "a7": ("REJECTED", "generation_unsupported_model", "model not allowed", None, None),
        "a8": ("COMPLETED", None, None, "https://cdn.sync.so/out/a8.mp4", 1.5),
    }
    assert [r["generation_id"] for r in rows if r["request_id"] in ("a1", "a4", "42")] == [
        "g-a1",
        "g-a4",
        "g-42",
    ]


@pytest.mark.parametrize(
    ("name", "kept", "findings"),
    [
        pytest.param("truncated.jsonl", ["t1", "t2"], [("truncated-output", 3)], id="truncated"),
        pytest.param("not-json.jsonl", ["n1", "n3"], [("invalid-result-line", 2)], id="not-json"),
        pytest.param("empty.jsonl", [], [("empty-output", None)], id="empty"),
        pytest.param("blank-and-crlf.jsonl", ["c1", "c2", "c3"], [], id="bom-crlf-blank-lines"),
        pytest.param(
            "odd-fields.jsonl",
            ["o1", "o2", "o3", "o7"],
            [
                ("invalid-result-field", 1),  # response is a list
                ("invalid-result-field", 1),  # ... so COMPLETED without an output URL
                ("invalid-result-field", 2),  # outputUrl is a number (outputMediaUrl is used)
                ("invalid-result-field", 2),  # outputDuration is not a number
                ("invalid-result-field", 3),  # status is an object (response.status is used)
                ("invalid-result-line", 4),  # no request_id
                ("invalid-result-line", 5),  # a JSON array
                ("invalid-result-line", 6),  # an empty request_id
                ("invalid-result-field", 7),  # no status at all
                ("invalid-result-line", 8),  # two objects on one line
            ],
            id="odd-fields",
        ),
    ],
)
def test_bad_content_is_findings_with_lines_never_a_crash(
    name: str, kept: list[str], findings: list[tuple[str, int | None]]
) -> None:
    """Each bad line is one coded finding with its file and line; every readable line is still kept."""
    path = fixture_path("outputs", name)
    rows, found = _rows(path)
    assert [r["request_id"] for r in rows] == kept
    assert sorted(found, key=lambda f: (f[1] or 0, f[0])) == sorted(findings, key=lambda f: (f[1] or 0, f[0]))
    _, full = read_output(path)
    assert all(f.file == str(path) and f.code in CODES for f in full)


def test_line_numbers_survive_blank_lines_and_a_bom() -> None:
    """Line numbers are physical lines, counting the blank ones, so a finding points at the right line."""
    rows, _ = _rows(fixture_path("outputs", "blank-and-crlf.jsonl"))
    assert [(r["request_id"], r["result_line"]) for r in rows] == [("c1", 1), ("c2", 3), ("c3", 5)]


def test_odd_fields_keep_the_rest_of_the_line() -> None:
    """An unreadable field costs only that field: the other fields of the line are used."""
    rows, _ = _rows(fixture_path("outputs", "odd-fields.jsonl"))
    by_id = {r["request_id"]: r for r in rows}
    assert by_id["o2"]["output_url"] == "https://cdn.sync.so/out/o2.mp4"
    assert by_id["o2"]["output_duration"] is None
    assert (by_id["o3"]["result_status"], by_id["o3"]["error_code"]) == ("FAILED", "generation_timeout")


def test_messages_say_what_and_what_to_do() -> None:
    """A truncated file tells the user to download it again; a bad field names the field and its value."""
    _, truncated = read_output(fixture_path("outputs", "truncated.jsonl"))
    assert "download it again" in truncated[0].message
    _, odd = read_output(fixture_path("outputs", "odd-fields.jsonl"))
    duration = next(f for f in odd if f.pointer == "/response/outputDuration")
    assert duration.request_id == "o2"
    assert '"about ten seconds"' in duration.message


def test_an_unreadable_file_raises_output_unreadable(tmp_path: Path) -> None:
    """Bad content is never an exception, but a path that is not a readable file is (the caller reports it)."""
    with pytest.raises(OutputUnreadable, match=r"is a directory"):
        read_output(tmp_path)


# -- properties -------------------------------------------------------------------------------------------

_texts = st.text(max_size=12)
_maybe = st.one_of(st.none(), _texts)
_statuses = st.sampled_from([None, "", "COMPLETED", "completed", "FAILED", "REJECTED", "PROCESSING", "weird"])


@st.composite
def _typed_lines(draw: st.DrawFn, *, one_alias: bool = False) -> dict[str, Any]:
    """An output line whose fields all have the types the fast path expects (values anything)."""
    line: dict[str, Any] = {"request_id": draw(st.text(min_size=1, max_size=12))}
    if draw(st.booleans()):
        line["status"] = draw(_statuses)
    kind = draw(st.sampled_from(["none", "text", "object", "absent"]))
    if kind == "none":
        line["error"] = None
    elif kind == "text":
        line["error"] = draw(_texts)
    elif kind == "object":
        keys = ["code", "errorCode", "error_code"]
        chosen = (
            [draw(st.sampled_from(keys))] if one_alias else draw(st.lists(st.sampled_from(keys), unique=True))
        )
        error = {key: draw(_maybe) for key in chosen}
        if draw(st.booleans()):
            error["message"] = draw(_maybe)
        line["error"] = error
    for key in ("error_code", "errorCode") if not one_alias else ("error_code",):
        if draw(st.booleans()):
            line[key] = draw(_maybe)
    if draw(st.booleans()):
        response: dict[str, Any] = {}
        one_code = ("id", "status", "error", draw(st.sampled_from(["error_code", "errorCode"])))
        for key in one_code if one_alias else ("id", "status", "error", "error_code", "errorCode"):
            if draw(st.booleans()):
                response[key] = draw(_statuses if key == "status" else _maybe)
        urls = ["outputUrl", "outputMediaUrl", "output_url"]
        for key in urls[:1] if one_alias else urls:
            if draw(st.booleans()):
                response[key] = draw(_maybe)
        if draw(st.booleans()):
            response["outputDuration"] = draw(
                st.one_of(st.none(), st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False))
            )
        line["response"] = response
    else:
        line["response"] = None
    if draw(st.booleans()):  # an unknown key (or a known one the reader does not use), any value
        keys = ["brandNew"] if one_alias else ["payload", "updated_at", "brandNew", "endpoint"]
        line[draw(st.sampled_from(keys))] = draw(json_values())
    return line


@settings(max_examples=150, deadline=None)
@given(st.lists(_typed_lines(), min_size=1, max_size=8))
def test_the_fast_path_and_the_tolerant_path_agree(lines: list[dict[str, Any]]) -> None:
    """The msgspec pass and the line-by-line pass read the same values from the same lines."""
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    fast = _fast_columns(_decoder.decode_lines(data))
    slow = _columns([result for obj in lines if (result := normalise_line(obj)[0]) is not None])
    slow["result_line"] = list(range(1, len(lines) + 1))
    assert fast == slow


@settings(max_examples=150, deadline=None)
@given(_typed_lines(one_alias=True))
def test_the_reader_agrees_with_the_output_line_model(line: dict[str, Any]) -> None:
    """read_output's status, code and message are OutputLine's effective_* values."""
    result, findings = normalise_line(line)
    assert result is not None
    assert findings == []
    model = OutputLine.model_validate(line)
    assert result.status == model.effective_status
    assert result.error_code == (model.effective_error_code or None)
    assert result.error_message == (model.effective_error_message or None)
    response = model.response
    assert result.output_url == ((response.output_url or None) if response is not None else None)
    assert result.generation_id == ((response.id or None) if response is not None else None)


_junk_lines = st.one_of(
    st.builds(lambda v: orjson.dumps(v), json_values()),
    st.builds(lambda line: orjson.dumps(line), _typed_lines()),
    st.binary(max_size=40),
    st.sampled_from([b"", b"   ", b"\r", b"{", b'{"request_id":', b"\xef\xbb\xbf{}", b"null"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_junk_lines, max_size=8), newline=st.booleans())
def test_any_bytes_are_read_without_a_crash(tmp_path: Path, lines: list[bytes], newline: bool) -> None:
    """Whatever the bytes, read_output returns: kept lines have a request_id and a real line number, and
    every finding is a known code located in the file."""
    path = tmp_path / "output.jsonl"
    data = b"\n".join(lines) + (b"\n" if newline else b"")
    path.write_bytes(data)
    columns, findings = read_output(path)
    assert set(columns) == set(COLUMNS)
    assert len({len(v) for v in columns.values()}) == 1
    assert all(isinstance(i, str) and i for i in columns["request_id"])
    total = data.count(b"\n") + 1
    assert all(1 <= n <= total for n in columns["result_line"])
    assert len(set(columns["result_line"])) == len(columns["result_line"])
    for finding in findings:
        assert finding.code in CODES
        assert finding.file == str(path)
        assert finding.line is not None or finding.code == "empty-output"
