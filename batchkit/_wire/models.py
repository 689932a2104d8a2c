"""What batchkit writes: the generate payload and the batch line, with Sync's exact wire names.

These models are strict: unknown keys are refused, types are not coerced, and every rule of
``sync-api.md`` §3 and §11 is enforced (exactly one visual input, a video or an image; at least one audio or
text input unless the request dubs (``dubParams``) or edits dialogue (``dialogueEdit``); URLs absolute
http(s); segment references that resolve). Python attribute names are snake_case; the wire names (``assetId``,
``outputFileName``, ``webhookUrl`` ...) are the aliases, used for validation and for every dump.
Keys inside ``options`` are snake_case on the wire too.

Open enumerations (model, ``sync_mode``, ``model_mode``, ``prompt``) are plain strings here: an unknown value
is a warning of the validator, never a refusal, because Sync adds values faster than libraries follow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from .checks import (
    EMOTIONS,
    IMAGE_MODEL,
    MAX_REQUEST_ID_LENGTH,
    MODEL_MODES,
    OUTPUT_FILE_NAME_PATTERN,
    REQUEST_ID_PATTERN,
    SYNC_MODES,
    URL_PATTERN,
    is_http_url,
    is_output_file_name,
    request_id_problem,
)
from .crossfield import payload_problems
from .limits import KNOWN_MODELS
from .unmodelled import UNMODELLED

__all__ = [
    "ActiveSpeakerDetection",
    "AudioInput",
    "BatchLine",
    "DialogueEdit",
    "DubParams",
    "ElevenLabsProvider",
    "GeneratePayload",
    "GenerationOptions",
    "ImageInput",
    "InputItem",
    "Segment",
    "SegmentAudioInput",
    "TextInput",
    "VideoInput",
]


def _url(value: str) -> str:
    if not is_http_url(value):
        raise PydanticCustomError("invalid_url", "not an absolute http(s) URL without spaces")
    return value


def _output_file_name(value: str) -> str:
    if not is_output_file_name(value):
        raise PydanticCustomError(
            "invalid_output_file_name", "only A-Z a-z 0-9 _ - allowed, 1 to 255 of them"
        )
    return value


def _request_id(value: str) -> str:
    problem = request_id_problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid_request_id", "request_id {problem}", {"problem": problem})
    return value


HttpUrl = Annotated[str, AfterValidator(_url), Field(json_schema_extra={"pattern": URL_PATTERN})]
OutputFileName = Annotated[
    str,
    AfterValidator(_output_file_name),
    Field(json_schema_extra={"pattern": OUTPUT_FILE_NAME_PATTERN, "maxLength": 255}),
]
RequestId = Annotated[
    str,
    AfterValidator(_request_id),
    Field(
        json_schema_extra={"minLength": 1, "maxLength": MAX_REQUEST_ID_LENGTH, "pattern": REQUEST_ID_PATTERN}
    ),
]
Unit = Annotated[float, Field(ge=0, le=1)]
Seconds = Annotated[float, Field(ge=0)]


class _WireModel(BaseModel):
    """Strict, alias-first base for every request model."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict Sync receives: wire names, unset fields left out (as the SDK does)."""
        return self.model_dump(mode="json", exclude_none=True)


def _rules_enabled(info: ValidationInfo) -> bool:
    """The validator turns model-level rules off and reports them itself, with pointers, on the raw data."""
    return not (isinstance(info.context, dict) and info.context.get("rules") is False)


def _require(schema: dict[str, Any], *names: str) -> None:
    schema["required"] = [*names, *(n for n in schema.get("required", []) if n not in names)]


def _tagged_schema(schema: dict[str, Any]) -> None:
    """In schema form: the ``type`` tag is required on the wire (pydantic's discriminator needs it)."""
    _require(schema, "type")


def _source_schema(schema: dict[str, Any]) -> None:
    """In schema form: the ``type`` tag is required, and ``url`` or ``assetId`` is given (not null)."""
    _require(schema, "type")
    schema["anyOf"] = [
        {"required": ["url"], "properties": {"url": {"type": "string"}}},
        {"required": ["assetId"], "properties": {"assetId": {"type": "string"}}},
    ]


class VideoInput(_WireModel):
    """The video to lipsync: a URL or a media-library asset id."""

    model_config = ConfigDict(json_schema_extra=_source_schema)

    type: Literal["video"] = "video"
    url: HttpUrl | None = None
    asset_id: Annotated[str, Field(min_length=1)] | None = Field(default=None, alias="assetId")
    segments_secs: list[list[float]] | None = Field(default=None, description="deprecated: use segments")
    segments_frames: list[list[int]] | None = Field(default=None, description="deprecated: use segments")

    @model_validator(mode="after")
    def _url_or_asset(self, info: ValidationInfo) -> Self:
        if _rules_enabled(info) and self.url is None and self.asset_id is None:
            raise PydanticCustomError("missing_source", "a video input needs url or assetId")
        return self


class ImageInput(_WireModel):
    """A still image to animate (sync-3 only): a URL or a media-library asset id.

    Sync: "Image inputs are sync-3 only." and "Normal lipsync requests must include exactly one visual input
    (video or image) and one audio or text input." (sync.so/docs generate-api/create-with-files and
    generate-api/create); "Image inputs (sync-3 only) support manual speaker selection but not auto-detect.
    The backend rejects ``auto_detect: true`` for images." (sync.so/docs developer-guides/speaker-selection).
    """

    model_config = ConfigDict(json_schema_extra=_source_schema)

    type: Literal["image"] = "image"
    url: HttpUrl | None = None
    asset_id: Annotated[str, Field(min_length=1)] | None = Field(default=None, alias="assetId")

    @model_validator(mode="after")
    def _url_or_asset(self, info: ValidationInfo) -> Self:
        if _rules_enabled(info) and self.url is None and self.asset_id is None:
            raise PydanticCustomError("missing_source", "an image input needs url or assetId")
        return self


class AudioInput(_WireModel):
    """Recorded audio: a URL or a media-library asset id; ``refId`` links it to segments."""

    model_config = ConfigDict(json_schema_extra=_source_schema)

    type: Literal["audio"] = "audio"
    url: HttpUrl | None = None
    asset_id: Annotated[str, Field(min_length=1)] | None = Field(default=None, alias="assetId")
    ref_id: Annotated[str, Field(min_length=1)] | None = Field(default=None, alias="refId")

    @model_validator(mode="after")
    def _url_or_asset(self, info: ValidationInfo) -> Self:
        if _rules_enabled(info) and self.url is None and self.asset_id is None:
            raise PydanticCustomError("missing_source", "an audio input needs url or assetId")
        return self


class ElevenLabsProvider(_WireModel):
    """Text-to-speech through ElevenLabs, the one provider Sync documents."""

    name: Literal["elevenlabs"] = "elevenlabs"
    voice_id: Annotated[str, Field(min_length=1)] = Field(alias="voiceId")
    script: Annotated[str, Field(min_length=1)]
    stability: Unit | None = None
    similarity_boost: Unit | None = Field(default=None, alias="similarityBoost")


class TextInput(_WireModel):
    """A text-to-speech input: Sync speaks ``provider.script`` with ``provider.voiceId``."""

    model_config = ConfigDict(json_schema_extra=_tagged_schema)

    type: Literal["text"] = "text"
    provider: ElevenLabsProvider
    ref_id: Annotated[str, Field(min_length=1)] | None = Field(default=None, alias="refId")


InputItem = Annotated[VideoInput | ImageInput | AudioInput | TextInput, Field(discriminator="type")]


def _documented(*path: str) -> Any:
    """``json_schema_extra`` that lists the keys Sync documents here but batchkit does not model (any value)."""

    def extra(schema: dict[str, Any]) -> None:
        for key in (k for (*where, k) in UNMODELLED if tuple(where) == path):
            schema["properties"][key] = {
                "description": f"documented by Sync, not modelled: {UNMODELLED[(*path, key)]}"
            }

    return extra


class ActiveSpeakerDetection(_WireModel):
    """Which face to lipsync when several people are on screen."""

    model_config = ConfigDict(json_schema_extra=_documented("options", "active_speaker_detection"))

    auto_detect: bool | None = None
    frame_number: Annotated[int, Field(ge=0)] | None = None
    coordinates: Annotated[list[int], Field(min_length=2, max_length=2)] | None = None
    bounding_boxes: list[Annotated[list[int], Field(min_length=4, max_length=4)] | None] | None = None


class GenerationOptions(_WireModel):
    """``options`` of a generate request. Keys are snake_case on the wire."""

    model_config = ConfigDict(json_schema_extra=_documented("options"))

    sync_mode: str | None = Field(default=None, description=f"one of {', '.join(SYNC_MODES)}")
    model_mode: str | None = Field(
        default=None, description=f"one of {', '.join(MODEL_MODES)} (react-1 only)"
    )
    prompt: str | None = Field(default=None, description=f"one of {', '.join(EMOTIONS)} (react-1 only)")
    temperature: Unit | None = None
    active_speaker_detection: ActiveSpeakerDetection | None = None
    occlusion_detection_enabled: bool | None = None


class SegmentAudioInput(_WireModel):
    """The audio input (by ``refId``) a segment plays, optionally cropped (``startTime`` with ``endTime``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"startTime": {"type": "null"}, "endTime": {"type": "null"}}},
                {
                    "required": ["startTime", "endTime"],
                    "properties": {"startTime": {"type": "number"}, "endTime": {"type": "number"}},
                },
            ]
        }
    )

    ref_id: Annotated[str, Field(min_length=1)] = Field(alias="refId")
    start_time: Seconds | None = Field(default=None, alias="startTime")
    end_time: Seconds | None = Field(default=None, alias="endTime")


class Segment(_WireModel):
    """A span of the video lipsynced to one audio input."""

    start_time: Seconds = Field(alias="startTime")
    end_time: Seconds = Field(alias="endTime")
    audio_input: SegmentAudioInput = Field(alias="audioInput")


class DubParams(_WireModel):
    """``dubParams``: native dubbing on ``/v2/generate``. Sync dubs the video's own audio track, then lipsyncs.

    Sync: "Pass the ``dubParams`` object alongside your normal generation request and Sync Labs will extract
    audio from the video input, dub it into the target language, and run lipsync on the dubbed result — all
    as one job." "any audio inputs in the ``input`` array are ignored when ``dubParams`` is present."
    "``sourceLang`` defaults to auto and ``numSpeakers`` defaults to 0 (auto-detect), so only ``targetLang``
    is required." (sync.so/docs/tutorials/dubbing, last updated May 15, 2026). The docs disagree on the
    rest, and batchkit takes the lenient side: the Spanish page says "``providerName`` y ``targetLang`` son
    obligatorios" (sync.so/docs/es/tutorials/dubbing), so ``providerName`` (e.g. ``elevenlabs``) is modelled
    but optional; the newer pt-BR guide says "``dubParams.numSpeakers`` está obsoleto e é ignorado"
    (sync.so/docs/pt-BR/tutorials/video-dubbing-api-guide), so ``numSpeakers`` is accepted with a
    ``deprecated-field`` warning. Codes come from the API reference's ``DubLanguage`` enum, whose list no
    stored copy holds: ``targetLang`` and ``sourceLang`` are open strings.
    """

    target_lang: Annotated[str, Field(min_length=1)] = Field(
        alias="targetLang", description="the language to dub into (a DubLanguage code, e.g. es, fr, hi)"
    )
    source_lang: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, alias="sourceLang", description="the language spoken in the video; default auto"
    )
    num_speakers: Annotated[int, Field(ge=0)] | None = Field(
        default=None, alias="numSpeakers", description="deprecated: speakers are detected automatically"
    )
    provider_name: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, alias="providerName", description="the dubbing provider, e.g. elevenlabs"
    )


class DialogueEdit(_WireModel):
    """``dialogueEdit`` (early access, per organization): render a completed dialogue-edit preview.

    Sync: "a row's payload can carry ``dialogueEdit`` to render a completed preview from
    ``POST /v2/dialogue-edits``: send one video input, the video the preview was made from, and no audio
    input. All dialogue edit rows in a batch must come from the same source video." (sync.so/docs
    batch-api/create-from-rows). Its one key is the preview's ``id``, as Sync's own MCP server sends it
    (``dialogueEdit: { id: dialogueEditId }``, synchronicity-labs/mcp-server src/tools/dialogue.ts).
    """

    id: Annotated[str, Field(min_length=1)] = Field(description="the id of a completed dialogue-edit preview")


def _typed(*kinds: str) -> dict[str, Any]:
    return {"properties": {"type": {"enum": list(kinds)}}, "required": ["type"]}


def _has(key: str) -> dict[str, Any]:
    return {"required": [key], "properties": {key: {"type": "object"}}}


def _input_rules_schema(schema: dict[str, Any]) -> None:
    """In schema form: exactly one visual item (video or image); at least one audio or text item unless the
    request dubs or edits dialogue, and none with dialogueEdit; dubbing and dialogue edits need a video;
    image inputs only with sync-3 (or a model batchkit does not know) and without speaker auto-detection;
    and with segments, a refId on every audio and text item. (That segments name existing refIds is beyond
    JSON Schema.)"""
    _documented()(schema)
    speech = {"contains": _typed("audio", "text")}
    schema["properties"]["input"]["allOf"] = [
        {"contains": _typed("video", "image"), "minContains": 1, "maxContains": 1}
    ]
    needs_video = {"properties": {"input": {"contains": _typed("video")}}}
    image = {"required": ["input"], "properties": {"input": {"contains": _typed("image")}}}
    others = [m for m in KNOWN_MODELS if m != IMAGE_MODEL]
    auto = {
        "required": ["active_speaker_detection"],
        "properties": {
            "active_speaker_detection": {
                "required": ["auto_detect"],
                "properties": {"auto_detect": {"const": True}},
            }
        },
    }
    schema["allOf"] = [
        {"anyOf": [{"properties": {"input": speech}}, _has("dubParams"), _has("dialogueEdit")]},
        {"if": _has("dubParams"), "then": needs_video},
        {
            "if": _has("dialogueEdit"),
            "then": {"properties": {"input": {**needs_video["properties"]["input"], "not": speech}}},
        },
        {"if": image, "then": {"properties": {"model": {"not": {"enum": others}}, "options": {"not": auto}}}},
    ]
    # moved here from the top level: with dubbing rules beside it, the segments rule is one more allOf entry
    schema["allOf"].append(
        {
            "if": {"required": ["segments"], "properties": {"segments": {"type": "array", "minItems": 1}}},
            "then": {
                "properties": {
                    "input": {
                        "items": {
                            "if": _typed("audio", "text"),
                            "then": {"required": ["refId"], "properties": {"refId": {"type": "string"}}},
                        }
                    }
                }
            },
        }
    )


class GeneratePayload(_WireModel):
    """The body of ``POST /v2/generate``, and the ``payload`` of every batch line."""

    model_config = ConfigDict(json_schema_extra=_input_rules_schema)

    model: Annotated[str, Field(min_length=1)]
    input: Annotated[list[InputItem], Field(min_length=1)]
    options: GenerationOptions | None = None
    segments: list[Segment] | None = None
    webhook_url: HttpUrl | None = Field(default=None, alias="webhookUrl")
    output_file_name: OutputFileName | None = Field(default=None, alias="outputFileName")
    dub_params: DubParams | None = Field(default=None, alias="dubParams")
    dialogue_edit: DialogueEdit | None = Field(default=None, alias="dialogueEdit")

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> Self:
        if _rules_enabled(info):
            for problem in payload_problems(self.to_wire()):
                if problem.severity == "error":
                    raise PydanticCustomError(
                        problem.code.replace("-", "_"),
                        "{message} (at {pointer})",
                        {"message": problem.message, "pointer": problem.pointer},
                    )
        return self


def _batch_line_schema(schema: dict[str, Any]) -> None:
    """In schema form: ``endpoint`` is required on the wire (the model fills it in for Python callers)."""
    _require(schema, "request_id", "endpoint", "payload")


class BatchLine(_WireModel):
    """One line of a batch file: ``{"request_id", "endpoint", "payload"}``.

    ``endpoint`` defaults to ``/v2/generate`` when a line is built in Python; a line read from a file must
    name it (the validator reports ``missing-field`` otherwise, and the JSON Schema requires it).
    """

    model_config = ConfigDict(json_schema_extra=_batch_line_schema)

    request_id: RequestId
    endpoint: Literal["/v2/generate"] = "/v2/generate"
    payload: GeneratePayload

    def to_bytes(self) -> bytes:
        """The canonical line: compact JSON, UTF-8, no trailing newline."""
        return orjson.dumps(self.to_wire())
