"""The newer documented request fields: image inputs (sync-3), dubParams, dialogueEdit, and keys Sync
documents that batchkit does not model; the webhook's second signature header; the sandbox accepting them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from batchkit import (
    DEFAULT_LIMITS,
    BatchLine,
    DialogueEdit,
    DubParams,
    GeneratePayload,
    ImageInput,
    Limits,
    VideoInput,
    WebhookVerificationError,
    sign_payload,
    validate_lines,
    verify_signature,
)
from batchkit._validate.fastpath import fast_request_id
from batchkit._wire.rules import line_problems
from batchkit._wire.schemas import json_schema
from batchkit.sandbox import ManualClock, Sandbox, serve
from batchkit.sandbox._upload import UploadRefused, parse_upload

V = {"type": "video", "url": "https://cdn.example.com/v.mp4"}
I = {"type": "image", "url": "https://cdn.example.com/face.png"}  # noqa: E741
A = {"type": "audio", "url": "https://cdn.example.com/a.wav"}
T = {"type": "text", "provider": {"voiceId": "v1", "script": "hello"}}
SCHEMA = Draft202012Validator(json_schema("batch-line"))


def line(*items: dict[str, Any], model: str = "lipsync-2", **payload: Any) -> dict[str, Any]:
    return {
        "request_id": "r1",
        "endpoint": "/v2/generate",
        "payload": {"model": model, "input": list(items), **payload},
    }


def found(obj: Any) -> list[tuple[str, str, str]]:
    return [(p.code, p.severity, p.pointer) for p in line_problems(obj)]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(line(I, A, model="sync-3"), [], id="image-sync-3"),
        pytest.param(line(I, T, model="sync-3"), [], id="image-tts"),
        pytest.param(line(I, A), [("unsupported-input", "error", "/payload/model")], id="image-needs-sync-3"),
        pytest.param(
            line(I, A, model="sync-4"),
            [("unknown-model", "warning", "/payload/model")],
            id="image-unknown-model-is-lenient",
        ),
        pytest.param(
            line(V, I, A, model="sync-3"),
            [("multiple-videos", "error", "/payload/input/1")],
            id="video-and-image",
        ),
        pytest.param(
            line(I, A, model="sync-3", options={"active_speaker_detection": {"auto_detect": True}}),
            [("invalid-value", "error", "/payload/options/active_speaker_detection/auto_detect")],
            id="image-auto-detect",
        ),
        pytest.param(
            line(
                I,
                A,
                model="sync-3",
                options={"active_speaker_detection": {"frame_number": 0, "coordinates": [1, 2]}},
            ),
            [],
            id="image-manual-speaker",
        ),
        pytest.param(line(V, dubParams={"targetLang": "es"}), [], id="dub-needs-no-audio"),
        pytest.param(
            line(V, A, dubParams={"targetLang": "es"}),
            [("ignored-input", "warning", "/payload/input/1")],
            id="dub-ignores-audio",
        ),
        pytest.param(
            line(V, dubParams={"targetLang": "es", "numSpeakers": 0}),
            [("deprecated-field", "warning", "/payload/dubParams/numSpeakers")],
            id="dub-num-speakers-deprecated",
        ),
        pytest.param(
            line(V, dubParams={"targetLang": "es", "sourceLang": "auto", "providerName": "elevenlabs"}),
            [],
            id="dub-full",
        ),
        pytest.param(
            line(V, dubParams={}),
            [("missing-field", "error", "/payload/dubParams/targetLang")],
            id="dub-target",
        ),
        pytest.param(
            line(V, dubParams={"targetLang": 3}),
            [("invalid-value", "error", "/payload/dubParams/targetLang")],
            id="dub-target-type",
        ),
        pytest.param(
            line(I, model="sync-3", dubParams={"targetLang": "es"}),
            [("unsupported-input", "error", "/payload/input/0")],
            id="dub-needs-a-video",
        ),
        pytest.param(line(V, dialogueEdit={"id": "e1"}), [], id="dialogue-edit"),
        pytest.param(
            line(V, T, dialogueEdit={"id": "e1"}),
            [("unsupported-input", "error", "/payload/input/1")],
            id="dialogue-edit-no-audio",
        ),
        pytest.param(
            line(V, dialogueEdit={"id": ""}),
            [("invalid-value", "error", "/payload/dialogueEdit/id")],
            id="dialogue-edit-empty-id",
        ),
        pytest.param(
            line(V, dialogueEdit={"id": "e1", "preview": 1}),
            [("unknown-field", "error", "/payload/dialogueEdit/preview")],
            id="dialogue-edit-unknown-key",
        ),
        pytest.param(
            line(I, model="sync-3", dialogueEdit={"id": "e1"}),
            [("unsupported-input", "error", "/payload/input/0")],
            id="dialogue-edit-needs-a-video",
        ),
        pytest.param(line(V), [("missing-audio", "error", "/payload/input")], id="still-needs-audio"),
    ],
)
def test_rules_of_the_newer_fields(obj: dict[str, Any], expected: list[tuple[str, str, str]]) -> None:
    """Each documented rule, with its code, severity and pointer; the JSON Schema agrees on the verdict."""
    assert found(obj) == expected
    errors = [e for e in expected if e[1] == "error"]
    assert SCHEMA.is_valid(obj) == (not errors), [e.message for e in SCHEMA.iter_errors(obj)]
    assert validate_lines([obj], file_checks=False).valid == (not errors)


def test_the_gate_never_clears_the_newer_fields() -> None:
    """Clean lines with an image, dubParams or dialogueEdit take the slow path, which finds nothing."""
    for obj in (
        line(I, A, model="sync-3"),
        line(V, dubParams={"targetLang": "es"}),
        line(V, dialogueEdit={"id": "e"}),
    ):
        raw = orjson.dumps(obj)
        assert fast_request_id(raw, DEFAULT_LIMITS.endpoint, frozenset(DEFAULT_LIMITS.known_models)) is None
        assert line_problems(obj) == []


def test_documented_unmodelled_keys_are_warnings_unknown_keys_errors() -> None:
    """projectId (and bounding_boxes_url) are documented by Sync: a warning, the line passes, the schema
    lists them; a typo is still an error with a hint, and a retired v2 option says it was retired."""
    obj = line(V, A, projectId="0b6b2b0e-6a43-4f39-9a53-3c4b8f0f4d11")
    obj["payload"]["options"] = {
        "active_speaker_detection": {"bounding_boxes_url": "https://cdn.example.com/b.json"}
    }
    problems = line_problems(obj)
    assert [(p.code, p.severity, p.pointer) for p in problems] == [
        ("unmodelled-field", "warning", "/payload/options/active_speaker_detection/bounding_boxes_url"),
        ("unmodelled-field", "warning", "/payload/projectId"),
    ]
    assert "sent as is" in problems[1].message
    assert validate_lines([obj], file_checks=False).valid
    assert SCHEMA.is_valid(obj)
    with pytest.raises(ValidationError):  # batchkit never writes them itself
        BatchLine.model_validate(obj)
    typo = line(V, dub_params={"targetLang": "es"})
    (problem,) = line_problems(typo)[:1]
    assert (problem.code, problem.severity) == ("unknown-field", "error")
    assert "did you mean 'dubParams'?" in problem.message
    retired = line(V, A, options={"output_format": "mp4"})
    (problem,) = line_problems(retired)
    assert problem.code == "unknown-field"
    assert "older v2 API" in problem.message


def test_models_round_trip_the_newer_fields() -> None:
    """Python names in, wire names out, and the wire validates back to the same model."""
    dub = GeneratePayload(
        model="lipsync-2",
        input=[VideoInput(url="https://cdn.example.com/v.mp4")],
        dub_params=DubParams(target_lang="es", source_lang="auto", provider_name="elevenlabs"),
    )
    assert dub.to_wire() == {
        "model": "lipsync-2",
        "input": [{"type": "video", "url": "https://cdn.example.com/v.mp4"}],
        "dubParams": {"targetLang": "es", "sourceLang": "auto", "providerName": "elevenlabs"},
    }
    image = GeneratePayload(
        model="sync-3", input=[ImageInput(asset_id="img"), {"type": "audio", "assetId": "a"}]
    )
    edit = GeneratePayload(
        model="lipsync-2", input=[VideoInput(asset_id="v")], dialogue_edit=DialogueEdit(id="e1")
    )
    for payload in (dub, image, edit):
        wire = payload.to_wire()
        again = GeneratePayload.model_validate(wire, by_alias=True, by_name=False)
        assert again == payload
        assert again.to_wire() == wire
        assert Draft202012Validator(json_schema("generate-payload")).is_valid(wire)
    assert isinstance(image.input[0], ImageInput)
    with pytest.raises(ValidationError, match="does not take image inputs"):
        GeneratePayload(
            model="lipsync-2",
            input=[ImageInput(url="https://x.example.com/i.png"), {"type": "audio", "assetId": "a"}],
        )
    with pytest.raises(ValidationError, match="needs url or assetId"):
        ImageInput()


def test_webhook_signature_in_either_documented_header() -> None:
    """The request's headers, any letter case: Sync-Signature first, else X-Signature-Primary."""
    body = orjson.dumps({"id": "batch_1", "status": "COMPLETED"})
    good = sign_payload(body, "whsec_x", timestamp=1_800_000_000)
    now = 1_800_000_010
    verify_signature(body, {"x-signature-primary": good}, "whsec_x", now=now)
    verify_signature(body, {"Sync-Signature": good, "X-Signature-Primary": "t=1,v1=00"}, "whsec_x", now=now)
    verify_signature(body, httpx.Headers({"X-SIGNATURE-PRIMARY": good}), "whsec_x", now=now)
    with pytest.raises(WebhookVerificationError, match="no Sync-Signature or X-Signature-Primary") as info:
        verify_signature(body, {"content-type": "application/json"}, "whsec_x", now=now)
    assert info.value.reason == "malformed-header"
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(body, {"X-Signature-Primary": good.replace("v1=", "v1=0")}, "whsec_x", now=now)
    assert info.value.reason == "mismatch"


def _batch(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def _records(n: int, make: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        obj = make(i)
        obj["request_id"] = f"req-{i}"
        out.append(obj)
    return out


def test_sandbox_accepts_and_completes_a_dubbing_batch() -> None:
    """A localization batch with dubParams (no audio), images for sync-3 and a dialogue edit completes."""

    def make(i: int) -> dict[str, Any]:
        video = {"type": "video", "url": f"https://media.test/v/{i}.mp4"}
        if i < 15:
            return line(video, dubParams={"targetLang": ["de", "fr", "es"][i % 3]})
        if i < 19:
            return line({"type": "image", "url": f"https://media.test/i/{i}.png"}, A, model="sync-3")
        return line({"type": "video", "url": "https://media.test/v/edit.mp4"}, dialogueEdit={"id": "e1"})

    clock = ManualClock()
    with serve(Sandbox(clock=clock)) as url, httpx.Client(base_url=url, headers={"x-api-key": "k"}) as client:
        created = client.post("/v2/batch", files={"input": ("b.jsonl", _batch(_records(20, make)))})
        assert created.status_code == 201, created.text
        clock.advance(3600)
        done = client.get(f"/v2/batch/{created.json()['id']}").json()
        assert done["status"] == "COMPLETED"
        assert done["metrics"]["success_count"] == 20
        output = httpx.get(client.get(done["outputUrl"]).headers["location"]).content
    statuses = {json.loads(raw)["status"] for raw in output.splitlines()}
    assert statuses == {"COMPLETED"}


def test_sandbox_refuses_dialogue_edits_of_different_videos() -> None:
    """'All dialogue edit rows in a batch must come from the same source video': refused, naming the line."""

    def make(i: int) -> dict[str, Any]:
        video = {"type": "video", "url": f"https://media.test/v/{'b' if i == 7 else 'a'}.mp4"}
        return line(video, dialogueEdit={"id": f"e{i}"})

    with pytest.raises(UploadRefused) as info:
        parse_upload(_batch(_records(20, make)), Limits())
    (message,) = info.value.messages
    assert message.startswith("line 8: dialogue edit rows in a batch must come from the same source video")
    same = _records(20, lambda i: line(V, dialogueEdit={"id": f"e{i}"}))
    assert len(parse_upload(_batch(same), Limits())) == 20


def test_results_of_the_newer_requests_parse_leniently() -> None:
    """A result line of a dubbing request: the newer errorCode is read, dubParams kept as an extra key."""
    from batchkit import OutputLine

    line = OutputLine.model_validate(
        {
            "request_id": "v01_de",
            "status": "FAILED",
            "response": {
                "id": "gen_1",
                "status": "FAILED",
                "input": [I],
                "dubParams": {"targetLang": "de"},
                "errorCode": "generation_audio_missing",
                "error": "The video has no audio track to dub",
            },
        }
    )
    assert line.effective_error_code == "generation_audio_missing"
    assert line.effective_error_message == "The video has no audio track to dub"
    assert line.response is not None
    assert line.response.model_extra == {"dubParams": {"targetLang": "de"}}
