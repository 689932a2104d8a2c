"""The cross-field rules of a generate payload, applied to wire data of any shape.

One visual input (a video, or with sync-3 an image), some audio or text unless the request dubs or edits
dialogue, unique ``refId`` values that segments resolve, times running forwards, and the advisory warnings
(open enumerations, options the model ignores, inputs a dubbing request ignores). They run on the raw dict, so they also
run on lines that failed the structural checks of :mod:`batchkit._wire.models`, and the models run them
after their own field checks. :class:`Problem` is how every rule of the wire contract reports.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeGuard

from .checks import EMOTIONS, IMAGE_MODEL, MODEL_MODES, SYNC_MODES
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["Problem", "Severity", "json_kind", "payload_problems", "pointer", "show"]

Severity = Literal["error", "warning"]

_REACT_ONLY: Final = ("model_mode", "prompt")
_OPEN_ENUMS: Final = {"sync_mode": SYNC_MODES, "model_mode": MODEL_MODES, "prompt": EMOTIONS}


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


def payload_problems(
    payload: Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS, base: tuple[str, ...] = ()
) -> list[Problem]:
    """The cross-field rules of a generate payload (wire names), for any shape of ``payload``."""
    problems: list[Problem] = []
    items = payload.get("input")
    found = _Inputs()
    if isinstance(items, list):
        found = _inputs(items, base, problems)
        problems.extend(_input_problems(payload, found, limits, base))
    segments = payload.get("segments")
    if isinstance(segments, list) and segments:
        problems.extend(_segment_problems(segments, found.ref_ids, found.unreferenced, base))
    problems.extend(_advisory_problems(payload, limits, base))
    return problems


@dataclass(slots=True)
class _Inputs:
    """Where each kind of input item is in ``input``."""

    videos: list[int] = field(default_factory=list)
    images: list[int] = field(default_factory=list)
    audios: list[int] = field(default_factory=list)
    ref_ids: dict[str, int] = field(default_factory=dict)
    unreferenced: list[int] = field(default_factory=list)

    @property
    def visuals(self) -> list[int]:
        return sorted(self.videos + self.images)


def _inputs(items: list[Any], base: tuple[str, ...], problems: list[Problem]) -> _Inputs:
    """Sort the input items by kind; report deprecated fields, duplicate refIds and missing sources."""
    found = _Inputs()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "video":
            found.videos.append(i)
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
        elif kind == "image":
            found.images.append(i)
        elif kind in ("audio", "text"):
            found.audios.append(i)
            ref = item.get("refId")
            if isinstance(ref, str) and ref:
                if ref in found.ref_ids:
                    problems.append(
                        Problem(
                            "invalid-value",
                            pointer(*base, "input", i, "refId"),
                            f"refId {show(ref)} is already used by input {found.ref_ids[ref]}; refIds must be unique",
                        )
                    )
                else:
                    found.ref_ids[ref] = i
            else:
                found.unreferenced.append(i)
        if kind in ("video", "image", "audio") and item.get("url") is None and item.get("assetId") is None:
            problems.append(
                Problem(
                    "missing-field",
                    pointer(*base, "input", i, "url"),
                    f"the {kind} input has neither url nor assetId; give one of them",
                )
            )
    return found


def _input_problems(
    payload: Mapping[str, Any], found: _Inputs, limits: Limits, base: tuple[str, ...]
) -> list[Problem]:
    """One visual input (video or image), speech unless the request dubs or edits dialogue, and the rules of
    images, ``dubParams`` and ``dialogueEdit``."""
    problems: list[Problem] = []
    visuals = found.visuals
    if not visuals:
        problems.append(
            Problem(
                "missing-video",
                pointer(*base, "input"),
                'input has no {"type": "video"} (or, with sync-3, {"type": "image"}) item; add one',
            )
        )
    elif len(visuals) > 1:
        problems.append(
            Problem(
                "multiple-videos",
                pointer(*base, "input", visuals[1]),
                f"input has {len(visuals)} visual items, videos or images (at {', '.join(map(str, visuals))}); "
                "Sync takes exactly one",
            )
        )
    dub = payload.get("dubParams") is not None
    edit = payload.get("dialogueEdit") is not None
    if not found.audios and not dub and not edit:
        problems.append(
            Problem(
                "missing-audio",
                pointer(*base, "input"),
                'input has no "audio" or "text" item; add a recorded audio URL or a text-to-speech input',
            )
        )
    problems.extend(_image_problems(payload, found, limits, base))
    for key, on in (("dubParams", dub), ("dialogueEdit", edit)):
        if on:
            problems.extend(_mode_problems(key, found, base))
    return problems


def _image_problems(
    payload: Mapping[str, Any], found: _Inputs, limits: Limits, base: tuple[str, ...]
) -> list[Problem]:
    """Images are sync-3 only, and take manual speaker selection only (sync-api.md §11)."""
    if not found.images:
        return []
    problems: list[Problem] = []
    model = payload.get("model")
    # an unknown model may be a newer one that takes images: its unknown-model warning is enough
    if isinstance(model, str) and model in limits.known_models and model != IMAGE_MODEL:
        problems.append(
            Problem(
                "unsupported-input",
                pointer(*base, "model"),
                f"model {show(model)} does not take image inputs (input {found.images[0]} is an image); image "
                f"inputs are {IMAGE_MODEL} only: use model {IMAGE_MODEL!r}, or a video",
            )
        )
    options = payload.get("options")
    detection = options.get("active_speaker_detection") if isinstance(options, dict) else None
    if isinstance(detection, dict) and detection.get("auto_detect") is True:
        problems.append(
            Problem(
                "invalid-value",
                pointer(*base, "options", "active_speaker_detection", "auto_detect"),
                "auto_detect is for video inputs only (Sync rejects it for images); select the speaker "
                "with frame_number and coordinates, or bounding_boxes",
            )
        )
    return problems


def _mode_problems(key: str, found: _Inputs, base: tuple[str, ...]) -> list[Problem]:
    """``dubParams`` dubs the video's own audio track (audio inputs are ignored); ``dialogueEdit`` takes the
    video the preview was made from and no audio input (sync-api.md §11)."""
    problems = [
        Problem(
            "unsupported-input",
            pointer(*base, "input", i),
            f"{key} needs a video input (it works on the video's own audio track); an image has none: "
            "give the video instead",
        )
        for i in found.images
    ]
    for i in found.audios:
        if key == "dubParams":
            problems.append(
                Problem(
                    "ignored-input",
                    pointer(*base, "input", i),
                    "Sync ignores audio and text inputs when dubParams is present (it dubs the video's own "
                    "audio track); remove this input, or drop dubParams to lipsync to it instead",
                    "warning",
                )
            )
        else:
            problems.append(
                Problem(
                    "unsupported-input",
                    pointer(*base, "input", i),
                    "a dialogueEdit request takes one video input and no audio or text input (the preview "
                    "holds the new audio); remove this input",
                )
            )
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
            known = ", ".join(show(r, 30) for r in list(ref_ids)[:5]) or "none"
            problems.append(
                Problem(
                    "segment-ref-missing",
                    pointer(*base, "segments", s, "audioInput", "refId"),
                    f"segment refers to refId {show(ref)}, which no audio or text input has (known: {known})",
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
                "unknown-model", pointer(*base, "model"), f"model {show(model)} is not known{hint}", "warning"
            )
        )
    dub = payload.get("dubParams")
    if isinstance(dub, dict) and dub.get("numSpeakers") is not None:
        problems.append(
            Problem(
                "deprecated-field",
                pointer(*base, "dubParams", "numSpeakers"),
                "numSpeakers is deprecated and ignored: Sync detects the speakers itself; remove it",
                "warning",
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
                    f"{key} {show(value)} is not one of {', '.join(allowed)}",
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
                        f"{key} only works with model react-1; {show(model)} ignores it",
                        "warning",
                    )
                )
    return problems


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


#: Renders values for messages: a few levels, items and characters of any value, never the whole of it.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxtuple = _REPR.maxlist = _REPR.maxarray = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxlong = 40


def show(value: Any, limit: int = 60) -> str:
    """``value`` for a message, in at most ``limit`` characters, whatever its size or depth."""
    _REPR.maxstring = _REPR.maxother = max(limit, 8)
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # an int too long to print, a container nested too deep
        text = f"<{json_kind(value)}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
