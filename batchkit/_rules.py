"""Every rule a batch line must satisfy, applied to parsed JSON and reported as coded problems.

Two layers, each reporting independently so that one bad line yields all of its problems:

* structure (types, required and unknown keys, ranges, URL and name checks) comes from the pydantic models
  of ``_models`` with their cross-field rules switched off, and is mapped here to stable codes;
* cross-field rules (one video, some audio, segment references, open-enum warnings) run on the raw dict in
  :func:`payload_problems`, which tolerates any shape, since it also runs on lines that failed structure.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard

from pydantic import ValidationError

from ._limits import DEFAULT_LIMITS, Limits
from ._models import EMOTIONS, MODEL_MODES, SYNC_MODES, BatchLine

__all__ = ["Problem", "Severity", "line_problems", "payload_problems", "pointer"]

Severity = Literal["error", "warning"]

_INPUT_TAGS: Final = frozenset({"video", "audio", "text"})
_REACT_ONLY: Final = ("model_mode", "prompt")
_OPEN_ENUMS: Final = {"sync_mode": SYNC_MODES, "model_mode": MODEL_MODES, "prompt": EMOTIONS}
#: Every key the wire contract knows, for "did you mean" hints on unknown keys.
_KNOWN_KEYS: Final = [
    "request_id",
    "endpoint",
    "payload",
    "model",
    "input",
    "options",
    "segments",
    "webhookUrl",
    "outputFileName",
    "type",
    "url",
    "assetId",
    "refId",
    "segments_secs",
    "segments_frames",
    "provider",
    "name",
    "voiceId",
    "script",
    "stability",
    "similarityBoost",
    "sync_mode",
    "model_mode",
    "prompt",
    "temperature",
    "active_speaker_detection",
    "occlusion_detection_enabled",
    "auto_detect",
    "frame_number",
    "coordinates",
    "bounding_boxes",
    "startTime",
    "endTime",
    "audioInput",
]
#: pydantic error types that name our own checks, and the code each one is reported under.
_CODE_BY_TYPE: Final = {
    "missing": "missing-field",
    "extra_forbidden": "unknown-field",
    "invalid_url": "invalid-url",
    "invalid_output_file_name": "invalid-output-file-name",
    "invalid_request_id": "invalid-request-id",
    "union_tag_not_found": "missing-field",
}


#: pydantic error types that mean "an object was expected here".
_OBJECT_TYPES: Final = frozenset({"model_type", "model_attributes_type", "dict_type"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one line, before it is given a place (file and line, or source row)."""

    code: str
    pointer: str
    message: str
    severity: Severity = "error"


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) to ``parts``: ``pointer("payload", "input", 1)`` is ``/payload/input/1``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def line_problems(obj: Any, limits: Limits = DEFAULT_LIMITS) -> list[Problem]:
    """Every problem of one parsed batch line, structural and cross-field, in a stable order."""
    if not isinstance(obj, dict):
        kind = _json_kind(obj)
        return [Problem("not-an-object", "", f"line is a JSON {kind}; each line must be one JSON object")]
    problems: list[Problem] = []
    # The endpoint is checked against the limits profile here, so pydantic sees the documented one. On the
    # wire only the wire names count (``assetId``, not ``asset_id``), so validation is by alias alone.
    try:
        BatchLine.model_validate(
            {**obj, "endpoint": "/v2/generate"}, context={"rules": False}, by_alias=True, by_name=False
        )
    except ValidationError as exc:
        problems.extend(_from_pydantic(exc))
    if "endpoint" not in obj:
        problems.append(
            Problem(
                "missing-field",
                "/endpoint",
                f'required field \'endpoint\' is missing; add "endpoint": "{limits.endpoint}"',
            )
        )
    elif obj["endpoint"] != limits.endpoint:
        problems.append(
            Problem(
                "wrong-endpoint",
                "/endpoint",
                f"endpoint is {_show(obj['endpoint'])}; batch lines must use {limits.endpoint!r}",
            )
        )
    payload = obj.get("payload")
    if isinstance(payload, dict):
        problems.extend(payload_problems(payload, limits=limits, base=("payload",)))
    return problems


def payload_problems(
    payload: Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS, base: tuple[str, ...] = ()
) -> list[Problem]:
    """The cross-field rules of a generate payload (wire names), for any shape of ``payload``."""
    problems: list[Problem] = []
    items = payload.get("input")
    videos: list[int] = []
    audios: list[int] = []
    ref_ids: dict[str, int] = {}
    unreferenced: list[int] = []
    if isinstance(items, list):
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "video":
                videos.append(i)
                for key in ("segments_secs", "segments_frames"):
                    if item.get(key) is not None:
                        problems.append(
                            Problem(
                                "deprecated-field",
                                pointer(*base, "input", i, key),
                                f"{key} is deprecated; use the top-level segments array",
                                "warning",
                            )
                        )
            elif kind in ("audio", "text"):
                audios.append(i)
                ref = item.get("refId")
                if isinstance(ref, str) and ref:
                    if ref in ref_ids:
                        problems.append(
                            Problem(
                                "invalid-value",
                                pointer(*base, "input", i, "refId"),
                                f"refId {ref!r} is already used by input {ref_ids[ref]}; refIds must be unique",
                            )
                        )
                    else:
                        ref_ids[ref] = i
                else:
                    unreferenced.append(i)
            if kind in ("video", "audio") and item.get("url") is None and item.get("assetId") is None:
                problems.append(
                    Problem(
                        "missing-field",
                        pointer(*base, "input", i, "url"),
                        f"the {kind} input has neither url nor assetId; give one of them",
                    )
                )
        if not videos:
            problems.append(
                Problem(
                    "missing-video", pointer(*base, "input"), 'input has no {"type": "video"} item; add one'
                )
            )
        elif len(videos) > 1:
            problems.append(
                Problem(
                    "multiple-videos",
                    pointer(*base, "input", videos[1]),
                    f"input has {len(videos)} video items (at {', '.join(map(str, videos))}); Sync takes one",
                )
            )
        if not audios:
            problems.append(
                Problem(
                    "missing-audio",
                    pointer(*base, "input"),
                    'input has no "audio" or "text" item; add a recorded audio URL or a text-to-speech input',
                )
            )
    segments = payload.get("segments")
    if isinstance(segments, list) and segments:
        problems.extend(_segment_problems(segments, ref_ids, unreferenced, base))
    problems.extend(_advisory_problems(payload, limits, base))
    return problems


def _segment_problems(
    segments: list[Any], ref_ids: Mapping[str, int], unreferenced: list[int], base: tuple[str, ...]
) -> list[Problem]:
    problems = [
        Problem(
            "missing-field",
            pointer(*base, "input", i, "refId"),
            "this audio input has no refId, which is required when segments are used",
        )
        for i in unreferenced
    ]
    for s, segment in enumerate(segments):
        if not isinstance(segment, dict):
            continue
        start, end = segment.get("startTime"), segment.get("endTime")
        if _is_number(start) and _is_number(end) and start >= end:
            problems.append(
                Problem(
                    "invalid-value",
                    pointer(*base, "segments", s, "endTime"),
                    f"segment ends at {end} s, not after its start at {start} s",
                )
            )
        audio = segment.get("audioInput")
        if not isinstance(audio, dict):
            continue
        ref = audio.get("refId")
        if isinstance(ref, str) and ref and ref not in ref_ids:
            known = ", ".join(repr(r) for r in ref_ids) or "none"
            problems.append(
                Problem(
                    "segment-ref-missing",
                    pointer(*base, "segments", s, "audioInput", "refId"),
                    f"segment refers to refId {ref!r}, which no audio or text input has (known: {known})",
                )
            )
        crop_start, crop_end = audio.get("startTime"), audio.get("endTime")
        if (crop_start is None) != (crop_end is None):
            missing = "endTime" if crop_end is None else "startTime"
            problems.append(
                Problem(
                    "missing-field",
                    pointer(*base, "segments", s, "audioInput", missing),
                    "audioInput crops need both startTime and endTime",
                )
            )
        elif _is_number(crop_start) and _is_number(crop_end) and crop_start >= crop_end:
            problems.append(
                Problem(
                    "invalid-value",
                    pointer(*base, "segments", s, "audioInput", "endTime"),
                    f"audio crop ends at {crop_end} s, not after its start at {crop_start} s",
                )
            )
    return problems


def _advisory_problems(payload: Mapping[str, Any], limits: Limits, base: tuple[str, ...]) -> list[Problem]:
    """Warnings: values Sync may have added since (open enums) and options the model ignores."""
    problems: list[Problem] = []
    model = payload.get("model")
    if isinstance(model, str) and model and model not in limits.known_models:
        close = difflib.get_close_matches(model, limits.known_models, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(limits.known_models)}"
        problems.append(
            Problem(
                "unknown-model", pointer(*base, "model"), f"model {model!r} is not known{hint}", "warning"
            )
        )
    options = payload.get("options")
    if not isinstance(options, dict):
        return problems
    for key, allowed in _OPEN_ENUMS.items():
        value = options.get(key)
        if isinstance(value, str) and value not in allowed:
            problems.append(
                Problem(
                    "unknown-value",
                    pointer(*base, "options", key),
                    f"{key} {value!r} is not one of {', '.join(allowed)}",
                    "warning",
                )
            )
    if isinstance(model, str) and model != "react-1":
        for key in _REACT_ONLY:
            if options.get(key) is not None:
                problems.append(
                    Problem(
                        "ignored-option",
                        pointer(*base, "options", key),
                        f"{key} only works with model react-1; {model!r} ignores it",
                        "warning",
                    )
                )
    return problems


def _from_pydantic(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = _strip_tags(error["loc"])
        kind = error["type"]
        where = pointer(*loc)
        name = _name(loc)
        code = _CODE_BY_TYPE.get(kind, "invalid-value")
        if loc == ("request_id",) and kind != "missing":
            code = "invalid-request-id"
        if kind == "missing":
            message = f"required field {name!r} is missing"
        elif kind == "extra_forbidden":
            message = (
                f"unknown field {name!r}{_did_you_mean(name)}; the wire contract has no such key, "
                "so remove it or fix its name"
            )
        elif kind in _OBJECT_TYPES:
            message = f"{name or 'line'} must be a JSON object, not {_json_kind(error['input'])}"
        elif kind == "union_tag_not_found":
            message = 'input item has no "type"; use "video", "audio" or "text"'
            where = pointer(*loc, "type")
        elif kind == "union_tag_invalid":
            tag = (error.get("ctx") or {}).get("tag")
            message = f'input type {tag!r} is not one of "video", "audio", "text"'
            where = pointer(*loc, "type")
        elif kind == "invalid_request_id":
            message = error["msg"]
        elif code == "invalid-request-id":
            message = f"request_id must be a string, not {_json_kind(error['input'])}"
        elif code != "invalid-value":
            message = f"{name} {_show(error['input'])} is invalid: {error['msg']}"
        else:
            message = f"{name or 'value'} {_show(error['input'])}: {error['msg']}"
        problems.append(Problem(code, where, message))
    return problems


def _name(loc: tuple[int | str, ...]) -> str:
    """How a message names the value at ``loc``: its key, or ``input[1]`` for an array item."""
    if not loc:
        return ""
    if isinstance(loc[-1], int):
        return f"{_name(loc[:-1]) or 'item'}[{loc[-1]}]"
    return str(loc[-1])


def _strip_tags(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """pydantic puts the union tag in the location (``input/0/video/url``); JSON pointers do not have it."""
    out: list[int | str] = []
    for i, part in enumerate(loc):
        if i >= 2 and isinstance(loc[i - 1], int) and loc[i - 2] == "input" and part in _INPUT_TAGS:
            continue
        out.append(part)
    return tuple(out)


def _did_you_mean(name: str) -> str:
    camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
    for candidate in (camel, *difflib.get_close_matches(name, _KNOWN_KEYS, n=1, cutoff=0.75)):
        if candidate != name and candidate in _KNOWN_KEYS:
            return f" (did you mean {candidate!r}?)"
    return ""


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
