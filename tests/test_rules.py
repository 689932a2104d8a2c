"""The rules: every problem of a line, coded, with a JSON pointer and a message that says how to fix it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from conftest import json_values, mutated_lines
from hypothesis import given, settings

from batchkit import DEFAULT_LIMITS, Limits
from batchkit._wire.crossfield import Problem, payload_problems, pointer
from batchkit._wire.rules import line_problems


def line(**payload: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "https://cdn.example.com/v.mp4"},
            {"type": "audio", "url": "https://cdn.example.com/a.wav"},
        ],
    }
    body.update(payload)
    return {"request_id": "r1", "endpoint": "/v2/generate", "payload": body}


def changed(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    obj = line()
    change(obj)
    return obj


def found(obj: Any, limits: Limits = DEFAULT_LIMITS) -> list[tuple[str, str]]:
    return [(p.code, p.pointer) for p in line_problems(obj, limits)]


def test_pointer_escapes() -> None:
    """RFC 6901: ``~`` becomes ``~0`` and ``/`` becomes ``~1``; the root is the empty string."""
    assert pointer("payload", "input", 1, "url") == "/payload/input/1/url"
    assert pointer("a/b", "c~d") == "/a~1b/c~0d"
    assert pointer() == ""


def test_clean_line_has_no_problem() -> None:
    assert line_problems(line()) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param([1], [("not-an-object", "")], id="array"),
        pytest.param("x", [("not-an-object", "")], id="string"),
        pytest.param(None, [("not-an-object", "")], id="null"),
        pytest.param(3.5, [("not-an-object", "")], id="number"),
        pytest.param(
            {},
            [("missing-field", "/request_id"), ("missing-field", "/payload"), ("missing-field", "/endpoint")],
            id="empty-object",
        ),
        pytest.param(
            changed(lambda o: o.pop("endpoint")), [("missing-field", "/endpoint")], id="no-endpoint"
        ),
        pytest.param(
            changed(lambda o: o.update(endpoint="/v2/batch")),
            [("wrong-endpoint", "/endpoint")],
            id="endpoint",
        ),
        pytest.param(
            changed(lambda o: o.update(request_id=7)), [("invalid-request-id", "/request_id")], id="rid-int"
        ),
        pytest.param(
            changed(lambda o: o.update(request_id="")),
            [("invalid-request-id", "/request_id")],
            id="rid-empty",
        ),
        pytest.param(changed(lambda o: o.update(extra=1)), [("unknown-field", "/extra")], id="extra"),
        pytest.param(
            changed(lambda o: o["payload"]["input"].pop(0)),
            [("missing-video", "/payload/input")],
            id="no-video",
        ),
        pytest.param(
            changed(lambda o: o["payload"]["input"].pop(1)),
            [("missing-audio", "/payload/input")],
            id="no-audio",
        ),
        pytest.param(
            changed(lambda o: o["payload"]["input"].append({"type": "video", "assetId": "x"})),
            [("multiple-videos", "/payload/input/2")],
            id="two-videos",
        ),
        pytest.param(
            changed(lambda o: o["payload"]["input"][1].update(url="ftp://x")),
            [("invalid-url", "/payload/input/1/url")],
            id="ftp",
        ),
        pytest.param(
            changed(lambda o: o["payload"]["input"][1].pop("type")),
            [("missing-field", "/payload/input/1/type"), ("missing-audio", "/payload/input")],
            id="no-type",
        ),
        pytest.param(
            changed(lambda o: o["payload"]["input"][0].update(type="picture")),
            [("invalid-value", "/payload/input/0/type"), ("missing-video", "/payload/input")],
            id="unknown-type",
        ),
        pytest.param(
            changed(lambda o: o["payload"]["input"][0].update(type="image")),
            [("unsupported-input", "/payload/model")],
            id="image-without-sync-3",
        ),
        pytest.param(
            changed(lambda o: o["payload"].update(outputFileName="a.mp4")),
            [("invalid-output-file-name", "/payload/outputFileName")],
            id="file-name",
        ),
        pytest.param(
            changed(lambda o: o["payload"].update(options={"temperature": 2})),
            [("invalid-value", "/payload/options/temperature")],
            id="temperature",
        ),
        pytest.param(
            changed(
                lambda o: o["payload"].update(options={"active_speaker_detection": {"coordinates": [1]}})
            ),
            [("invalid-value", "/payload/options/active_speaker_detection/coordinates")],
            id="coordinates",
        ),
        pytest.param(
            changed(
                lambda o: o["payload"]["input"].__setitem__(1, {"type": "text", "provider": {"script": "s"}})
            ),
            [("missing-field", "/payload/input/1/provider/voiceId")],
            id="voice-id",
        ),
    ],
)
def test_line_problems(obj: Any, expected: list[tuple[str, str]]) -> None:
    """Each kind of problem has its code and points at the offending value."""
    assert found(obj) == expected


def test_every_problem_of_a_line_is_reported() -> None:
    """One line with five unrelated errors yields all five, in a stable order."""
    obj = line(outputFileName="../x", webhookUrl="x", options={"temperature": -1, "bogus": 1})
    obj["request_id"] = " r"
    assert sorted(found(obj)) == [
        ("invalid-output-file-name", "/payload/outputFileName"),
        ("invalid-request-id", "/request_id"),
        ("invalid-url", "/payload/webhookUrl"),
        ("invalid-value", "/payload/options/temperature"),
        ("unknown-field", "/payload/options/bogus"),
    ]
    assert found(obj) == found(copy.deepcopy(obj))


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("asset_id", "assetId"),
        ("output_file_name", "outputFileName"),
        ("webhook_url", "webhookUrl"),
        ("outputFilename", "outputFileName"),
        ("webhookURL", "webhookUrl"),
        ("modle", "model"),
    ],
)
def test_did_you_mean(key: str, hint: str) -> None:
    """Misspelt or snake_case keys are refused on the wire, with the right name suggested."""
    obj = line()
    obj["payload"][key] = "x"
    problems = [p for p in line_problems(obj) if p.code == "unknown-field"]
    assert len(problems) == 1
    assert f"did you mean {hint!r}?" in problems[0].message


def test_warnings() -> None:
    """Open enumerations, react-only options and deprecated fields are warnings, not errors."""
    obj = line(model="lipsync-2-prp", options={"sync_mode": "stretch", "prompt": "happy"})
    obj["payload"]["input"][0]["segments_secs"] = [[0, 1]]
    problems = line_problems(obj)
    assert {(p.code, p.pointer) for p in problems} == {
        ("unknown-model", "/payload/model"),
        ("unknown-value", "/payload/options/sync_mode"),
        ("ignored-option", "/payload/options/prompt"),
        ("deprecated-field", "/payload/input/0/segments_secs"),
    }
    assert {p.severity for p in problems} == {"warning"}
    assert "did you mean 'lipsync-2-pro'?" in next(p.message for p in problems if p.code == "unknown-model")


def test_react_options_are_fine_for_react() -> None:
    assert line_problems(line(model="react-1", options={"model_mode": "lips", "prompt": "sad"})) == []


def segments_line(*segments: dict[str, Any], refs: tuple[str | None, ...] = ("a1",)) -> dict[str, Any]:
    obj = line(segments=list(segments))
    obj["payload"]["input"] = [obj["payload"]["input"][0]]
    for i, ref in enumerate(refs):
        item: dict[str, Any] = {"type": "audio", "url": f"https://cdn.example.com/{i}.wav"}
        if ref is not None:
            item["refId"] = ref
        obj["payload"]["input"].append(item)
    return obj


def test_segment_rules() -> None:
    """Segments must name an existing refId, run forwards, and crop with both ends."""
    ok = {"startTime": 0, "endTime": 1, "audioInput": {"refId": "a1"}}
    assert line_problems(segments_line(ok)) == []
    assert found(segments_line({**ok, "audioInput": {"refId": "zz"}})) == [
        ("segment-ref-missing", "/payload/segments/0/audioInput/refId")
    ]
    assert found(segments_line(ok, {**ok, "startTime": 3, "endTime": 2})) == [
        ("invalid-value", "/payload/segments/1/endTime")
    ]
    assert found(segments_line({**ok, "audioInput": {"refId": "a1", "startTime": 1}})) == [
        ("missing-field", "/payload/segments/0/audioInput/endTime")
    ]
    assert found(segments_line({**ok, "audioInput": {"refId": "a1", "startTime": 2, "endTime": 1}})) == [
        ("invalid-value", "/payload/segments/0/audioInput/endTime")
    ]
    assert found(segments_line(ok, refs=("a1", None))) == [("missing-field", "/payload/input/2/refId")]
    assert found(segments_line(ok, refs=("a1", "a1"))) == [("invalid-value", "/payload/input/2/refId")]


def test_limits_profile_is_used() -> None:
    """The endpoint and the known models come from the limits profile."""
    custom = Limits(endpoint="/v3/generate", known_models=("lipsync-9",))
    assert found(line(), custom) == [("wrong-endpoint", "/endpoint"), ("unknown-model", "/payload/model")]
    moved = line(model="lipsync-9")
    moved["endpoint"] = "/v3/generate"
    assert found(moved, custom) == []


def test_messages_say_what_and_how() -> None:
    """Messages name the value, the rule, and a way out."""
    (p,) = line_problems(line(webhookUrl="hooks.example.com"))
    assert p == Problem(
        "invalid-url",
        "/payload/webhookUrl",
        "webhookUrl 'hooks.example.com' is invalid: not an absolute http(s) URL without spaces",
    )
    (p,) = line_problems(changed(lambda o: o["payload"]["input"][1].pop("url")))
    assert p.message == "the audio input has neither url nor assetId; give one of them"
    (p,) = line_problems(changed(lambda o: o["payload"].update(input="x")))
    assert p.message == "input 'x': Input should be a valid list"
    (p,) = line_problems(changed(lambda o: o["payload"]["input"].__setitem__(0, 3)))[:1]
    assert p.message == "input[0] must be a JSON object, not number"


@settings(max_examples=200)
@given(json_values())
def test_payload_problems_tolerate_any_shape(payload: Any) -> None:
    """The cross-field rules run on whatever the payload is, and never raise."""
    if isinstance(payload, dict):
        assert all(isinstance(p, Problem) for p in payload_problems(payload))
    assert isinstance(
        line_problems({"request_id": "r", "endpoint": "/v2/generate", "payload": payload}), list
    )


@settings(max_examples=200)
@given(mutated_lines())
def test_line_problems_never_raise_and_point_inside_the_line(obj: Any) -> None:
    """Mutated lines: problems are listed (never raised), each with a kebab-case code and a pointer."""
    for problem in line_problems(obj):
        assert problem.code == problem.code.lower()
        assert " " not in problem.code
        assert problem.pointer == "" or problem.pointer.startswith("/")
        assert problem.message
