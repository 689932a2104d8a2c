"""The cross-field rules of a generate payload, applied to wire data of any shape.

One video input, some audio or text, unique ``refId`` values that segments resolve, times running forwards, and
the advisory warnings (open enumerations, options the model ignores). They run on the raw dict, so they also
run on lines that failed the structural checks of :mod:`batchkit._wire.models`, and the models run them
after their own field checks. :class:`Problem` is how every rule of the wire contract reports.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard

from .checks import EMOTIONS, MODEL_MODES, SYNC_MODES
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
                                f"refId {show(ref)} is already used by input {ref_ids[ref]}; refIds must be unique",
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
