"""The request models: exact wire names, strict validation, cross-field rules, canonical bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import valid_lines
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from batchkit import (
    ActiveSpeakerDetection,
    AudioInput,
    BatchLine,
    ElevenLabsProvider,
    GeneratePayload,
    GenerationOptions,
    Segment,
    SegmentAudioInput,
    TextInput,
    VideoInput,
    validate_lines,
)

#: The full generate body the SDK sends (sync-api.md §3.1, captured from syncsdk 0.3.0).
SDK_BODY: dict[str, Any] = {
    "model": "lipsync-2",
    "input": [
        {"type": "video", "url": "https://v.mp4"},
        {"type": "audio", "assetId": "as1", "refId": "a1"},
        {
            "type": "text",
            "provider": {
                "name": "elevenlabs",
                "voiceId": "vid",
                "script": "hi",
                "stability": 0.5,
                "similarityBoost": 0.7,
            },
            "refId": "t1",
        },
    ],
    "options": {
        "sync_mode": "cut_off",
        "model_mode": "face",
        "prompt": "happy",
        "temperature": 0.5,
        "active_speaker_detection": {"auto_detect": False, "frame_number": 10, "coordinates": [100, 200]},
        "occlusion_detection_enabled": True,
    },
    "segments": [
        {"startTime": 0.0, "endTime": 2.5, "audioInput": {"refId": "a1", "startTime": 0.0, "endTime": 2.5}}
    ],
    "webhookUrl": "https://h/w",
    "outputFileName": "out_1",
}


def test_sdk_body_round_trips_exactly() -> None:
    """The SDK's captured body validates, and to_wire gives back the same keys and values."""
    payload = GeneratePayload.model_validate(SDK_BODY)
    assert payload.to_wire() == SDK_BODY
    assert isinstance(payload.input[2], TextInput)
    assert payload.input[2].provider.voice_id == "vid"


def test_python_construction_uses_snake_case_and_writes_wire_names() -> None:
    """Python callers use snake_case attribute names; the wire gets camelCase, options stay snake_case."""
    line = BatchLine(
        request_id="row-1",
        payload=GeneratePayload(
            model="lipsync-2",
            input=[
                VideoInput(asset_id="v-asset"),
                AudioInput(url="https://cdn.example.com/a.wav", ref_id="a1"),
                TextInput(
                    provider=ElevenLabsProvider(voice_id="v", script="hola", similarity_boost=0.2),
                    ref_id="t1",
                ),
            ],
            options=GenerationOptions(
                sync_mode="loop", active_speaker_detection=ActiveSpeakerDetection(auto_detect=True)
            ),
            segments=[
                Segment(start_time=0, end_time=1, audio_input=SegmentAudioInput(ref_id="a1")),
                Segment(start_time=1, end_time=2, audio_input=SegmentAudioInput(ref_id="t1")),
            ],
            webhook_url="https://hooks.example.com/x",
            output_file_name="row_1",
        ),
    )
    wire = line.to_wire()
    assert wire["endpoint"] == "/v2/generate"
    payload = wire["payload"]
    assert payload["input"][0] == {"type": "video", "assetId": "v-asset"}
    assert payload["input"][1] == {"type": "audio", "url": "https://cdn.example.com/a.wav", "refId": "a1"}
    assert payload["input"][2]["provider"] == {
        "name": "elevenlabs",
        "voiceId": "v",
        "script": "hola",
        "similarityBoost": 0.2,
    }
    assert payload["options"] == {"sync_mode": "loop", "active_speaker_detection": {"auto_detect": True}}
    assert payload["segments"][0] == {"startTime": 0.0, "endTime": 1.0, "audioInput": {"refId": "a1"}}
    assert payload["webhookUrl"] == "https://hooks.example.com/x"
    assert payload["outputFileName"] == "row_1"
    assert BatchLine.model_validate(wire) == line


@pytest.mark.parametrize("key", ["assetId", "asset_id"])
def test_asset_id_accepted_by_wire_and_python_name(key: str) -> None:
    """Models accept both spellings on input (Python callers); the dump always uses the wire name."""
    video = VideoInput.model_validate({"type": "video", key: "abc"})
    assert video.asset_id == "abc"
    assert video.to_wire() == {"type": "video", "assetId": "abc"}


def test_to_bytes_is_canonical() -> None:
    """Compact JSON, UTF-8 (not escaped), no newline; byte-identical for equal lines."""
    line = BatchLine.model_validate(
        {
            "request_id": "kunde-müller",
            "endpoint": "/v2/generate",
            "payload": {
                "model": "lipsync-2",
                "input": [
                    {"type": "video", "url": "https://cdn.example.com/v.mp4"},
                    {"type": "text", "provider": {"voiceId": "v", "script": "¡Hola!"}},
                ],
            },
        }
    )
    raw = line.to_bytes()
    assert raw == orjson.dumps(line.to_wire())
    assert b": " not in raw
    assert b", " not in raw
    assert "müller".encode() in raw
    assert "¡Hola!".encode() in raw
    assert not raw.endswith(b"\n")
    assert BatchLine.model_validate_json(raw).to_bytes() == raw


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        pytest.param(
            VideoInput, {"type": "video", "url": "https://a.example/v", "fps": 30}, id="video-extra"
        ),
        pytest.param(GenerationOptions, {"output_format": "mp4"}, id="old-option"),
        pytest.param(GenerationOptions, {"syncMode": "loop"}, id="camel-option"),
        pytest.param(ElevenLabsProvider, {"voiceId": "v", "script": "s", "speed": 1}, id="provider-extra"),
        pytest.param(
            BatchLine,
            {"request_id": "r", "endpoint": "/v2/generate", "payload": SDK_BODY, "priority": 1},
            id="line-extra",
        ),
    ],
)
def test_unknown_keys_refused(cls: type[Any], data: dict[str, Any]) -> None:
    """Request models forbid keys the wire contract does not have."""
    with pytest.raises(ValidationError) as info:
        cls.model_validate(data)
    assert "extra_forbidden" in {e["type"] for e in info.value.errors()}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param({"temperature": "0.5"}, "float_type", id="string-for-float"),
        pytest.param({"temperature": True}, "float_type", id="bool-for-float"),
        pytest.param({"temperature": 1.01}, "less_than_equal", id="over-one"),
        pytest.param({"occlusion_detection_enabled": "true"}, "bool_type", id="string-for-bool"),
        pytest.param({"sync_mode": 1}, "string_type", id="int-for-string"),
    ],
)
def test_no_coercion(data: dict[str, Any], error: str) -> None:
    """Strict: values are never converted from another JSON type."""
    with pytest.raises(ValidationError) as info:
        GenerationOptions.model_validate(data)
    assert [e["type"] for e in info.value.errors()] == [error]


def test_integers_are_numbers() -> None:
    """A JSON integer is a fine float (temperature 1, endTime 3)."""
    assert GenerationOptions.model_validate({"temperature": 1}).temperature == 1.0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param(lambda p: p["input"].pop(0), "missing_video", id="no-video"),
        pytest.param(lambda p: p.update(input=p["input"][:1]), "missing_audio", id="no-audio"),
        pytest.param(lambda p: p["input"].append(p["input"][0]), "multiple_videos", id="two-videos"),
        pytest.param(
            lambda p: p["segments"][0]["audioInput"].update(refId="zz"),
            "segment_ref_missing",
            id="segment-ref",
        ),
        pytest.param(lambda p: p["input"][2].pop("refId"), "missing_field", id="segments-need-ref-ids"),
        pytest.param(
            lambda p: p["input"].__setitem__(0, {"type": "video"}), "missing_source", id="no-source"
        ),
        pytest.param(lambda p: p.update(outputFileName="a/b"), "invalid_output_file_name", id="file-name"),
        pytest.param(lambda p: p.update(webhookUrl="ftp://h/w"), "invalid_url", id="webhook-url"),
    ],
)
def test_cross_field_rules_in_the_model(change: Any, error: str) -> None:
    """The model enforces the same rules as the validator, with the code as the error type."""
    body = orjson.loads(orjson.dumps(SDK_BODY))
    change(body)
    with pytest.raises(ValidationError) as info:
        GeneratePayload.model_validate(body)
    assert error in {e["type"] for e in info.value.errors()}


@pytest.mark.parametrize("request_id", ["", " x", "x\n", "a" * 257, "tab\tinside"])
def test_request_id_rule(request_id: str) -> None:
    """request_id must be 1–256 printable characters without outer whitespace."""
    with pytest.raises(ValidationError) as info:
        BatchLine(request_id=request_id, payload=GeneratePayload.model_validate(SDK_BODY))
    assert {e["type"] for e in info.value.errors()} == {"invalid_request_id"}


def test_endpoint_is_fixed() -> None:
    """The endpoint defaults to /v2/generate and nothing else is a BatchLine."""
    payload = GeneratePayload.model_validate(SDK_BODY)
    assert BatchLine(request_id="r", payload=payload).endpoint == "/v2/generate"
    with pytest.raises(ValidationError):
        BatchLine.model_validate({"request_id": "r", "endpoint": "/v2/lipsync", "payload": SDK_BODY})


def test_open_enumerations_are_plain_strings() -> None:
    """Unknown models and enum values are accepted by the model (the validator only warns about them)."""
    body = {**SDK_BODY, "model": "lipsync-3", "options": {"sync_mode": "stretch"}}
    assert GeneratePayload.model_validate(body).model == "lipsync-3"


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(valid_lines())
def test_generated_lines_round_trip(line: dict[str, Any]) -> None:
    """Any valid wire line validates and dumps back to the same data (plus the provider's default name),
    and its canonical bytes validate clean."""
    model = BatchLine.model_validate(line, by_alias=True, by_name=False)
    expected = orjson.loads(orjson.dumps(line))
    for item in expected["payload"]["input"]:
        if item["type"] == "text":
            item["provider"].setdefault("name", "elevenlabs")
    assert model.to_wire() == expected
    assert BatchLine.model_validate_json(model.to_bytes()) == model
    assert validate_lines([model.to_bytes()], file_checks=False).findings == []
