"""A user's own JSON Schema (--schema) applied to every line, reported under code ``policy``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FIXTURES

from batchkit import InputError, Policy, load_policy, validate_file, validate_lines

PRO_ONLY = FIXTURES / "policy-pro-only.json"
SAMPLE = FIXTURES / "sample-batch.jsonl"


def make_line(i: int, model: str = "lipsync-2", **payload: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "input": [
            {"type": "video", "url": "https://cdn.example.com/v.mp4"},
            {"type": "audio", "url": f"https://cdn.example.com/{i}.wav"},
        ],
        **payload,
    }
    return {"request_id": f"row-{i}", "endpoint": "/v2/generate", "payload": body}


def test_pro_only_policy_on_the_sample() -> None:
    """Every sample line whose model is not lipsync-2-pro gets one policy finding at /payload/model."""
    report = validate_file(SAMPLE, schema=PRO_ONLY)
    models = [orjson.loads(line)["payload"]["model"] for line in SAMPLE.read_bytes().splitlines()]
    offending = [n for n, model in enumerate(models, 1) if model != "lipsync-2-pro"]
    assert [(f.code, f.line) for f in report.findings] == [("policy", n) for n in offending]
    first = report.findings[0]
    assert first.pointer == "/payload/model"
    assert first.request_id == "spring26-0001-ava-thompson"
    assert first.message == "policy-pro-only.json: 'lipsync-2-pro' was expected, got 'lipsync-2'"
    assert report.stats.valid_records == 25 - len(offending)
    assert not report.valid


def test_policy_passes_compliant_lines() -> None:
    lines = [make_line(i, model="lipsync-2-pro") for i in range(3)]
    assert validate_lines(lines, schema=PRO_ONLY, file_checks=False).findings == []


def test_policy_adds_to_the_rules_on_slow_lines() -> None:
    """A line with its own errors gets those and the policy's, all of them."""
    line = make_line(1, outputFileName="bad name")
    report = validate_lines([line], schema=PRO_ONLY, file_checks=False)
    assert [f.code for f in report.findings] == ["invalid-output-file-name", "policy"]


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param(str(PRO_ONLY), id="path-str"),
        pytest.param(PRO_ONLY, id="path"),
        pytest.param(orjson.loads(PRO_ONLY.read_bytes()), id="dict"),
        pytest.param(load_policy(PRO_ONLY), id="policy"),
    ],
)
def test_policy_sources(schema: Any) -> None:
    """A policy may be given as a path, a dict or a compiled Policy."""
    report = validate_lines([make_line(1)], schema=schema, file_checks=False)
    assert [(f.code, f.pointer) for f in report.findings] == [("policy", "/payload/model")]


def test_several_violations_are_sorted_and_located() -> None:
    """Each violation is its own finding, in a stable order, with a pointer into the line."""
    policy = Policy(
        {
            "properties": {
                "request_id": {"pattern": "^spring26-"},
                "payload": {"required": ["webhookUrl", "outputFileName"]},
            }
        },
        name="house.json",
    )
    report = validate_lines([make_line(1)], schema=policy, file_checks=False)
    assert [(f.pointer, f.message) for f in report.findings] == [
        ("/payload", "house.json: 'outputFileName' is a required property"),
        ("/payload", "house.json: 'webhookUrl' is a required property"),
        ("/request_id", "house.json: 'row-1' does not match '^spring26-'"),
    ]


def test_boolean_schemas() -> None:
    """true accepts every line; false refuses every line."""
    assert list(Policy(True).problems({"a": 1})) == []
    assert [p for p, _ in Policy(False).problems({"a": 1})] == [""]


def test_format_is_asserted() -> None:
    """Policies can rely on formats jsonschema checks (here: email)."""
    policy = Policy({"properties": {"request_id": {"format": "email"}}})
    assert [m for _, m in policy.problems({"request_id": "nobody"})] == ["policy: 'nobody' is not a 'email'"]
    assert list(policy.problems({"request_id": "a@example.com"})) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"{not json", "is not valid JSON", id="not-json"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'{"type": "nope"}', "is not a valid JSON Schema (at /type)", id="bad-schema"),
        pytest.param(b'{"$schema": "https://example.com/my-draft"}', "unknown $schema", id="unknown-draft"),
    ],
)
def test_unusable_policy_files(tmp_path: Path, content: bytes, message: str) -> None:
    """Every unusable policy is an InputError that names the file and says what is wrong."""
    path = tmp_path / "policy.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        load_policy(path)
    assert "policy.json" in str(info.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read schema"):
        load_policy(tmp_path / "nope.json")


def test_unresolvable_ref_is_an_input_error() -> None:
    """A $ref that cannot be resolved stops the run with a clear error (nothing is fetched)."""
    policy = Policy({"properties": {"payload": {"$ref": "https://example.com/remote.json"}}}, name="p.json")
    with pytest.raises(InputError, match=r"p\.json: cannot resolve a \$ref"):
        validate_lines([make_line(1)], schema=policy, file_checks=False)


def test_older_drafts_are_honoured() -> None:
    """$schema picks the draft: draft-04's boolean exclusiveMaximum works."""
    policy = Policy(
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "properties": {"n": {"maximum": 5, "exclusiveMaximum": True}},
        }
    )
    assert len(list(policy.problems({"n": 5}))) == 1
    assert list(policy.problems({"n": 4})) == []
