"""The exported JSON Schemas: no drift from the models, and the same verdicts as the models on a corpus.

Rules a JSON Schema cannot express (listed in KNOWN_DIFFERENCES) are kept out of the agreement corpus and
asserted separately, so each difference is deliberate and visible.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, ROOT
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from batchkit import BatchLine, GeneratePayload, validate_lines
from batchkit._wire.schemas import SCHEMA_MODELS, json_schema, schema_bytes
from batchkit.cli import main

SCHEMAS = ROOT / "schemas"
LINES = FIXTURES / "lines"
BATCH_LINE = Draft202012Validator(json_schema("batch-line"))
PAYLOAD = Draft202012Validator(json_schema("generate-payload"))


def model_accepts(obj: Any) -> bool:
    """The strict model, validating wire data by wire names only (as the validator does)."""
    try:
        BatchLine.model_validate(obj, by_alias=True, by_name=False)
    except ValidationError:
        return False
    return True


def corpus(kind: str) -> list[Any]:
    return [pytest.param(json.loads(p.read_text()), id=p.stem) for p in sorted((LINES / kind).glob("*.json"))]


@pytest.mark.parametrize("name", sorted(SCHEMA_MODELS))
def test_checked_in_schema_matches_models(name: str) -> None:
    """schemas/*.json are exactly what the models produce (regenerate: batchkit schema --out schemas)."""
    assert (SCHEMAS / f"{name}.schema.json").read_bytes() == schema_bytes(name)


def test_no_stray_schema_files() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(f"{n}.schema.json" for n in SCHEMA_MODELS)


def test_schema_command_writes_identical_files(tmp_path: Path) -> None:
    """`batchkit schema --out DIR` writes the same bytes as the checked-in copies."""
    result = CliRunner().invoke(main, ["schema", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == sorted(p.name for p in SCHEMAS.glob("*.json"))
    for path in written:
        assert path.read_bytes() == (SCHEMAS / path.name).read_bytes()


@pytest.mark.parametrize("name", sorted(SCHEMA_MODELS))
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = json_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("obj", corpus("valid"))
def test_valid_corpus_accepted_by_schema_model_and_validator(obj: Any) -> None:
    """Every valid line passes the schema, the model and the validator (warnings allowed)."""
    assert BATCH_LINE.is_valid(obj), [e.message for e in BATCH_LINE.iter_errors(obj)]
    assert model_accepts(obj)
    assert validate_lines([obj], file_checks=False).valid
    assert PAYLOAD.is_valid(obj["payload"])
    GeneratePayload.model_validate(obj["payload"], by_alias=True, by_name=False)


@pytest.mark.parametrize("obj", corpus("invalid"))
def test_invalid_corpus_refused_by_schema_model_and_validator(obj: Any) -> None:
    """Every invalid line fails the schema and the validator; the model agrees except where listed."""
    assert not BATCH_LINE.is_valid(obj)
    assert not validate_lines([obj], file_checks=False).valid
    if obj != MISSING_ENDPOINT:
        assert not model_accepts(obj)


def test_corpus_is_substantial() -> None:
    assert len(list((LINES / "valid").glob("*.json"))) >= 20
    assert len(list((LINES / "invalid").glob("*.json"))) >= 60


def _line(**payload: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "https://cdn.example.com/v.mp4"},
            {"type": "audio", "url": "https://cdn.example.com/a.wav", "refId": "a1"},
        ],
    }
    body.update(payload)
    return {"request_id": "r1", "endpoint": "/v2/generate", "payload": body}


def _with(change: Any, **payload: Any) -> dict[str, Any]:
    obj = _line(**payload)
    change(obj)
    return obj


def _segment(start: float = 0, end: float = 1, **audio: Any) -> dict[str, Any]:
    return {"startTime": start, "endTime": end, "audioInput": {"refId": "a1", **audio}}


MISSING_ENDPOINT = json.loads((LINES / "invalid" / "missing-endpoint.json").read_text())

#: What JSON Schema cannot say (or Python's jsonschema reads differently), each with a line that shows it:
#: the schema accepts these lines, the model and the validator refuse them.
KNOWN_DIFFERENCES: dict[str, dict[str, Any]] = {
    # Cross-references and comparisons between values are beyond JSON Schema.
    "segment refId names no input": _line(segments=[_segment(refId="zz")]),
    "refIds repeat across inputs": _with(
        lambda o: o["payload"]["input"].append(
            {"type": "audio", "url": "https://c.example.com/b", "refId": "a1"}
        )
    ),
    "segment ends before it starts": _line(segments=[_segment(2, 1)]),
    "audio crop ends before it starts": _line(segments=[_segment(startTime=2, endTime=1)]),
    # Unicode categories: the rules refuse invisible (format) characters, which a portable pattern cannot name.
    "zero-width space in a URL": _with(
        lambda o: o["payload"]["input"][0].update(url="https://cdn.example.com/\u200b")
    ),
    "zero-width space in a request_id": _with(lambda o: o.update(request_id="r\u200b1")),
    # jsonschema applies patterns with Python's re.search, where $ also matches before a final newline
    # (ECMA-262, which JSON Schema specifies, does not).
    "trailing newline in a URL": _with(
        lambda o: o["payload"]["input"][0].update(url="https://cdn.example.com/v\n")
    ),
    "trailing newline in outputFileName": _line(outputFileName="promo\n"),
    "trailing newline in a request_id": _with(lambda o: o.update(request_id="r1\n")),
    # JSON Schema counts 10.0 as an integer; the strict models want 10.
    "integral float for an integer": _line(options={"active_speaker_detection": {"frame_number": 10.0}}),
}


@pytest.mark.parametrize("obj", [pytest.param(v, id=k) for k, v in KNOWN_DIFFERENCES.items()])
def test_known_differences_schema_accepts_model_refuses(obj: dict[str, Any]) -> None:
    """Each known difference is real: the schema accepts, the model and the validator refuse."""
    assert BATCH_LINE.is_valid(obj)
    assert not model_accepts(obj)
    assert not validate_lines([obj], file_checks=False).valid


def test_missing_endpoint_difference() -> None:
    """The model fills in the endpoint for Python callers; the schema and the validator require it on the wire."""
    assert "endpoint" not in MISSING_ENDPOINT
    assert model_accepts(MISSING_ENDPOINT)
    assert not BATCH_LINE.is_valid(MISSING_ENDPOINT)
    assert [f.code for f in validate_lines([MISSING_ENDPOINT], file_checks=False).findings] == [
        "missing-field"
    ]


def test_known_differences_stay_out_of_the_corpus() -> None:
    """No corpus file is one of the known differences (they would make agreement vacuous or false)."""
    corpus_objs = [json.loads(p.read_text()) for p in LINES.glob("*/*.json")]
    for obj in KNOWN_DIFFERENCES.values():
        assert obj not in corpus_objs


def test_schema_expresses_what_it_can() -> None:
    """Rules that JSON Schema can express are in the schema, not only in the model."""
    refused = {
        "video needs a source": _with(
            lambda o: o["payload"]["input"].__setitem__(0, {"type": "video", "url": None})
        ),
        "type tag is required": _with(lambda o: o["payload"]["input"][1].pop("type")),
        "segments need refIds": _with(lambda o: o["payload"]["input"][1].pop("refId"), segments=[_segment()]),
        "crops need both ends": _line(segments=[_segment(startTime=0)]),
        "request_id has no outer space": _with(lambda o: o.update(request_id="r1 ")),
        "endpoint is required": _with(lambda o: o.pop("endpoint")),
    }
    for name, obj in refused.items():
        assert not BATCH_LINE.is_valid(obj), name


# Documented examples of what batchkit reads (the guide's output.jsonl lines, sync-api.md §4.1 and §7.2).
GUIDE_PAYLOAD: dict[str, Any] = {
    "model": "lipsync-2",
    "input": [
        {"type": "video", "url": "https://assets.sync.so/docs/example-video.mp4"},
        {"type": "audio", "url": "https://assets.sync.so/docs/example-audio.wav"},
    ],
}
OUTPUT_LINES: list[dict[str, Any]] = [
    {
        "request_id": "request-1",
        "endpoint": "/v2/generate",
        "payload": GUIDE_PAYLOAD,
        "status": "COMPLETED",
        "error": None,
        "response": {
            "id": "gen_1",
            "createdAt": "2024-01-15T10:30:00Z",
            "status": "COMPLETED",
            "model": "lipsync-2",
            "input": GUIDE_PAYLOAD["input"],
            "outputUrl": "https://cdn.sync.so/out/gen_1.mp4",
            "outputDuration": 4.2,
        },
        "updated_at": "2024-01-15T10:35:00Z",
    },
    {
        "request_id": "request-2",
        "endpoint": "/v2/generate",
        "payload": GUIDE_PAYLOAD,
        "status": "FAILED",
        "error": {"code": "INVALID_INPUT", "message": "..."},
        "response": None,
        "updated_at": "2024-01-15T10:35:00Z",
    },
    {"request_id": "request-3", "error": "generation_timeout"},
]
BATCHES: list[dict[str, Any]] = [
    {
        "id": "batch_abc123",
        "created_at": "2024-01-15T10:30:00Z",
        "status": "PENDING",
        "metrics": {"total_generations": 5, "success_count": 0, "failed_count": 0, "pending_count": 0},
        "webhookUrl": "https://your-webhook-url.com/batch-webhook",
        "outputUrl": "",
    },
    {
        "id": "batch_abc123",
        "created_at": "2024-01-15T10:30:00Z",
        "status": "COMPLETED",
        "metrics": {"total_generations": 5, "success_count": 4, "failed_count": 1, "pending_count": 0},
        "webhookUrl": None,
        "outputUrl": "https://api.sync.so/v2/batches/batch_abc123/result",
    },
    {
        "id": "batch_abc123",
        "createdAt": "2024-01-15T10:30:00Z",
        "status": "COMPLETED",
        "webhookUrl": "https://your-webhook-url.com/batch-webhook",
        "metrics": {"totalGenerations": 5, "successCount": 4, "failedCount": 1, "pendingCount": 0},
        "options": {},
        "outputUrl": "https://api.sync.so/v2/batches/batch_abc123/result",
    },
]


@pytest.mark.parametrize("line", OUTPUT_LINES, ids=["completed", "failed", "error-string"])
def test_output_line_schema_accepts_documented_lines(line: dict[str, Any]) -> None:
    validator = Draft202012Validator(json_schema("output-line"))
    assert validator.is_valid(line), [e.message for e in validator.iter_errors(line)]


@pytest.mark.parametrize("batch", BATCHES, ids=["create", "list", "webhook-camel-case"])
def test_batch_schema_accepts_documented_batches(batch: dict[str, Any]) -> None:
    validator = Draft202012Validator(json_schema("batch"))
    assert validator.is_valid(batch), [e.message for e in validator.iter_errors(batch)]


def test_read_schemas_still_require_the_identifiers() -> None:
    """Lenient, not empty: an output line needs request_id; a batch needs id and status."""
    assert not Draft202012Validator(json_schema("output-line")).is_valid({"status": "COMPLETED"})
    batch = copy.deepcopy(BATCHES[0])
    del batch["status"]
    assert not Draft202012Validator(json_schema("batch")).is_valid(batch)
