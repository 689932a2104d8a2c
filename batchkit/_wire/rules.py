"""Every rule a batch line must satisfy, applied to parsed JSON and reported as coded problems.

Two layers, each reporting independently so that one bad line yields all of its problems:

* structure (types, required and unknown keys, ranges, URL and name checks) comes from the pydantic models
  of :mod:`batchkit._wire.models` with their cross-field rules switched off, and is mapped here to stable codes;
* cross-field rules (one video, some audio, segment references, open-enum warnings) run on the raw dict in
  :func:`batchkit._wire.crossfield.payload_problems`, which tolerates any shape, since it also runs on lines
  that failed structure.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Final

from pydantic import ValidationError

from .crossfield import Problem, json_kind, payload_problems, pointer, show
from .limits import DEFAULT_LIMITS, Limits
from .models import BatchLine
from .unmodelled import RETIRED_OPTIONS, UNMODELLED, unmodelled_note

__all__ = ["duplicate_keys", "line_problems"]

_INPUT_TAGS: Final = frozenset({"video", "image", "audio", "text"})
_TAGS_SHOWN: Final = '"video", "image", "audio" or "text"'
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
    "dubParams",
    "targetLang",
    "sourceLang",
    "numSpeakers",
    "providerName",
    "dialogueEdit",
    "id",
    *(path[-1] for path in UNMODELLED),
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


def line_problems(obj: Any, limits: Limits = DEFAULT_LIMITS) -> list[Problem]:
    """Every problem of one parsed batch line, structural and cross-field, in a stable order."""
    if not isinstance(obj, dict):
        kind = json_kind(obj)
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
                f"endpoint is {show(obj['endpoint'])}; batch lines must use {limits.endpoint!r}",
            )
        )
    payload = obj.get("payload")
    if isinstance(payload, dict):
        problems.extend(payload_problems(payload, limits=limits, base=("payload",)))
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
            message = f"required field {show(name)} is missing"
        elif kind == "extra_forbidden" and (note := unmodelled_note(loc)) is not None:
            problems.append(
                Problem(
                    "unmodelled-field",
                    where,
                    f"{show(name)} is documented by Sync but not modelled by batchkit, so its value is not "
                    f"checked and it is sent as is; where it is documented: {note}",
                    "warning",
                )
            )
            continue
        elif kind == "extra_forbidden" and loc[:2] == ("payload", "options") and name in RETIRED_OPTIONS:
            message = (
                f"unknown field {show(name)}: an option of the older v2 API that Sync no longer documents "
                "(nor does its SDK), so remove it"
            )
        elif kind == "extra_forbidden":
            message = (
                f"unknown field {show(name)}{_did_you_mean(name)}; the wire contract has no such key, "
                "so remove it or fix its name"
            )
        elif kind in _OBJECT_TYPES:
            message = f"{name or 'line'} must be a JSON object, not {json_kind(error['input'])}"
        elif kind == "union_tag_not_found":
            message = f'input item has no "type"; use {_TAGS_SHOWN}'
            where = pointer(*loc, "type")
        elif kind == "union_tag_invalid":
            tag = (error.get("ctx") or {}).get("tag")
            message = f"input type {show(tag)} is not one of {_TAGS_SHOWN}"
            where = pointer(*loc, "type")
        elif kind == "invalid_request_id":
            message = error["msg"]
        elif code == "invalid-request-id":
            message = f"request_id must be a string, not {json_kind(error['input'])}"
        elif code != "invalid-value":
            message = f"{name} {show(error['input'])} is invalid: {error['msg']}"
        else:
            message = f"{name or 'value'} {show(error['input'])}: {error['msg']}"
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
    if len(name) > 64:
        return ""
    camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
    for candidate in (camel, *difflib.get_close_matches(name, _KNOWN_KEYS, n=1, cutoff=0.75)):
        if candidate != name and candidate in _KNOWN_KEYS:
            return f" (did you mean {candidate!r}?)"
    return ""


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers the keys it had more than once."""

    __slots__ = ("repeated",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.repeated: list[str] = []
        if len(self) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen and key not in self.repeated:
                    self.repeated.append(key)
                seen.add(key)


def duplicate_keys(text: str | bytes) -> list[Problem]:
    """A ``duplicate-key`` problem for every key that appears twice in one object of a JSON line.

    JSON parsers disagree on which of the values counts (batchkit's reads the last, others the first or
    refuse), so a duplicate can hide a bad value from one reader and show it to another. ``text`` must be
    valid JSON; a line nested too deeply for Python's parser is not checked (it has other problems).
    """
    colons = text.count(":") if isinstance(text, str) else text.count(b":")
    if colons < 2:
        return []  # at most one key
    try:
        root = json.loads(text, object_pairs_hook=_Object)
    except (ValueError, RecursionError):
        return []
    problems: list[Problem] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _Object):
            for key in value.repeated:
                problems.append(
                    Problem(
                        "duplicate-key",
                        pointer(*where, key),
                        f"key {show(key)} appears more than once in this object; JSON readers disagree on "
                        "which value counts (Sync may read the first), so keep only one",
                    )
                )
            stack.extend((item, (*where, key)) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((item, (*where, i)) for i, item in reversed(list(enumerate(value))))
    return problems
