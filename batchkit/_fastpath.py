"""A fast gate for the common case: a line with nothing to report.

Decoding into ``msgspec`` structs checks structure in one native pass, several times faster than building the
pydantic models. The gate answers only "certainly clean" (the line's ``request_id``) or "look closer" (None);
every line it does not clear goes through :func:`batchkit._rules.line_problems`, which is the authority and
says exactly what is wrong. Lines with rarer features (segments, active speaker detection, deprecated fields)
always take the slow path, which keeps this gate small. A test checks over the fixture corpus and generated
lines that the gate never clears a line the rules would report.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from ._checks import is_http_url, is_output_file_name, request_id_problem

__all__ = ["fast_request_id"]

_NonEmpty = Annotated[str, Meta(min_length=1)]
_Unit = Annotated[float, Meta(ge=0, le=1)]


class _Video(Struct, tag_field="type", tag="video", forbid_unknown_fields=True):
    url: str | None = None
    assetId: _NonEmpty | None = None


class _Audio(Struct, tag_field="type", tag="audio", forbid_unknown_fields=True):
    url: str | None = None
    assetId: _NonEmpty | None = None
    refId: _NonEmpty | None = None


class _Provider(Struct, forbid_unknown_fields=True):
    voiceId: _NonEmpty
    script: _NonEmpty
    name: Literal["elevenlabs"] = "elevenlabs"
    stability: _Unit | None = None
    similarityBoost: _Unit | None = None


class _Text(Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    provider: _Provider
    refId: _NonEmpty | None = None


class _Options(Struct, forbid_unknown_fields=True):
    sync_mode: Literal["bounce", "loop", "cut_off", "silence", "remap"] | None = None
    temperature: _Unit | None = None
    occlusion_detection_enabled: bool | None = None
    model_mode: Literal["lips", "face", "head"] | None = None
    prompt: Literal["happy", "sad", "angry", "disgusted", "surprised", "neutral"] | None = None


class _Payload(Struct, forbid_unknown_fields=True):
    model: str
    input: Annotated[list[_Video | _Audio | _Text], Meta(min_length=1)]
    options: _Options | None = None
    webhookUrl: str | None = None
    outputFileName: str | None = None


class _Line(Struct, forbid_unknown_fields=True):
    request_id: str
    endpoint: str
    payload: _Payload


_decode = msgspec.json.Decoder(_Line).decode


def fast_request_id(raw: bytes, endpoint: str, known_models: frozenset[str]) -> str | None:
    """The line's ``request_id`` when the line certainly has no finding at all; None to look closer."""
    try:
        line = _decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    payload = line.payload
    if line.endpoint != endpoint or payload.model not in known_models:
        return None
    request_id = line.request_id
    if request_id_problem(request_id) is not None:
        return None
    videos = 0
    audios = 0
    refs: set[str] = set()
    for item in payload.input:
        if isinstance(item, _Text):
            audios += 1
            ref = item.refId
        else:
            if item.url is None:
                if item.assetId is None:
                    return None
            elif not is_http_url(item.url):
                return None
            if isinstance(item, _Video):
                videos += 1
                continue
            audios += 1
            ref = item.refId
        if ref is not None:
            if ref in refs:
                return None
            refs.add(ref)
    if videos != 1 or not audios:
        return None
    options = payload.options
    if options is not None and payload.model != "react-1" and (options.model_mode or options.prompt):
        return None
    if payload.webhookUrl is not None and not is_http_url(payload.webhookUrl):
        return None
    if payload.outputFileName is not None and not is_output_file_name(payload.outputFileName):
        return None
    return request_id
