"""A fast gate for the common case: a line with nothing to report.

Decoding into ``msgspec`` structs checks structure in one native pass, several times faster than building the
pydantic models. The gate answers only "certainly clean" (the line's ``request_id``) or "look closer" (None);
every line it does not clear goes through :func:`batchkit._wire.rules.line_problems`, which is the authority and
says exactly what is wrong. The gate is narrower than the rules, never wider:

* Lines with rarer features (segments, active speaker detection, deprecated fields, duplicate keys of the
  wrong type...) always look closer. So do image inputs, ``dubParams`` and ``dialogueEdit`` (their rules
  change what a clean line is: no audio needed, or none allowed, sync-3 only), and the keys Sync documents
  that batchkit does not model (``_wire/unmodelled.py``): the structs below have none of them, and refuse
  unknown tags and fields, so such a line never decodes here.
* It works on a chunk of lines at a time. Each line is decoded and its shape checked (one video, some audio,
  every input with a source, unique ``refId``s, known model and enum values). Lines of the most common shape
  (``[video with url, audio with url or text]``, no react-only options) decode into a struct that encodes the
  whole shape, so nothing is left to check in Python; other lines take a general struct and a short walk.
* The strings that have rules (URLs, ``outputFileName``, ``request_id``) are checked for the whole chunk at
  once, with a few C-speed passes over the joined strings instead of a Python call per string. That batch
  check accepts plain ASCII only; when any string of a chunk is anything else (a URL with non-ASCII
  characters, an upper-case scheme), the chunk's lines are checked one by one with the exact rules of
  ``_checks``.

``tests/test_fastpath.py`` checks, over the fixture corpus and generated lines and mutations, that the gate
never clears a line the rules would report (soundness), and that it clears every line of the sample batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from .._wire.checks import MAX_REQUEST_ID_LENGTH, is_http_url, is_output_file_name, request_id_problem

__all__ = ["fast_request_id", "fast_request_ids"]

_NonEmpty = Annotated[str, Meta(min_length=1)]
_Unit = Annotated[float, Meta(ge=0, le=1)]
_RequestId = Annotated[str, Meta(min_length=1, max_length=MAX_REQUEST_ID_LENGTH)]
_OutputFileName = Annotated[str, Meta(min_length=1, max_length=255)]
_SyncMode = Literal["bounce", "loop", "cut_off", "silence", "remap"]


class _Provider(Struct, forbid_unknown_fields=True, gc=False):
    voiceId: _NonEmpty
    script: _NonEmpty
    name: Literal["elevenlabs"] = "elevenlabs"
    stability: _Unit | None = None
    similarityBoost: _Unit | None = None


class _Text(Struct, tag_field="type", tag="text", forbid_unknown_fields=True, gc=False):
    provider: _Provider
    refId: _NonEmpty | None = None


# The general shape.


class _Video(Struct, tag_field="type", tag="video", forbid_unknown_fields=True, gc=False):
    url: str | None = None
    assetId: _NonEmpty | None = None


class _Audio(Struct, tag_field="type", tag="audio", forbid_unknown_fields=True, gc=False):
    url: str | None = None
    assetId: _NonEmpty | None = None
    refId: _NonEmpty | None = None


class _Options(Struct, forbid_unknown_fields=True, gc=False):
    sync_mode: _SyncMode | None = None
    temperature: _Unit | None = None
    occlusion_detection_enabled: bool | None = None
    model_mode: Literal["lips", "face", "head"] | None = None
    prompt: Literal["happy", "sad", "angry", "disgusted", "surprised", "neutral"] | None = None


class _Payload(Struct, forbid_unknown_fields=True, gc=False):
    model: _NonEmpty
    input: Annotated[list[_Video | _Audio | _Text], Meta(min_length=1)]
    options: _Options | None = None
    webhookUrl: str | None = None
    outputFileName: _OutputFileName | None = None


class _Line(Struct, forbid_unknown_fields=True, gc=False):
    request_id: _RequestId
    endpoint: str
    payload: _Payload


# The common shape: exactly one video with a url, then one audio with a url or one text-to-speech input
# (so one refId at most), and no option that only react-1 reads.


class _UrlVideo(Struct, forbid_unknown_fields=True, gc=False):
    # Not a tagged struct: msgspec requires a tag only inside a union, and this one stands alone in a tuple,
    # so "type" is an ordinary required field here (an item without it must not pass as a video).
    type: Literal["video"]
    url: str
    assetId: _NonEmpty | None = None


class _UrlAudio(Struct, tag_field="type", tag="audio", forbid_unknown_fields=True, gc=False):
    url: str
    assetId: _NonEmpty | None = None
    refId: _NonEmpty | None = None


class _CommonOptions(Struct, forbid_unknown_fields=True, gc=False):
    sync_mode: _SyncMode | None = None
    temperature: _Unit | None = None
    occlusion_detection_enabled: bool | None = None


class _CommonPayload(Struct, forbid_unknown_fields=True, gc=False):
    model: _NonEmpty
    input: tuple[_UrlVideo, _UrlAudio | _Text]
    options: _CommonOptions | None = None
    webhookUrl: str | None = None
    outputFileName: _OutputFileName | None = None


class _CommonLine(Struct, forbid_unknown_fields=True, gc=False):
    request_id: _RequestId
    endpoint: str
    payload: _CommonPayload


_decode = msgspec.json.Decoder(_Line).decode
_decode_common = msgspec.json.Decoder(_CommonLine).decode
_NOT_DECODED = (msgspec.DecodeError, UnicodeDecodeError)  # msgspec.ValidationError is a DecodeError

# The batch string checks join a chunk's strings with "\n". Deleting the allowed bytes from the joined text
# must leave exactly the separators: then no string holds any other byte, nor a newline of its own.
_URL_BYTES = bytes(range(0x21, 0x7F))  # printable ASCII but space
_ID_BYTES = bytes(range(0x20, 0x7F))  # printable ASCII
_NAME_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#: After a separator, anything but ``http(s)://`` and a host character is a URL the batch check refuses.
_BAD_URL_START = re.compile(r"\n(?![Hh][Tt][Tt][Pp][Ss]?://[^/?#\n])").search


def fast_request_ids(lines: Sequence[bytes], endpoint: str, known_models: frozenset[str]) -> list[str | None]:
    """For each line, its ``request_id`` when the line certainly has no finding at all, else None.

    A line may end with its line ending (JSON whitespace). ``request_id`` uniqueness is not checked here.
    """
    ids, urls, names = _scan(lines, endpoint, known_models)
    if _all_plain(urls, names, [i for i in ids if i is not None]):
        return ids
    return [
        None if i is None else fast_request_id(raw, endpoint, known_models)
        for raw, i in zip(lines, ids, strict=True)
    ]


def fast_request_id(raw: bytes, endpoint: str, known_models: frozenset[str]) -> str | None:
    """One line's ``request_id`` when it certainly has no finding, else None; strings checked exactly."""
    (request_id,), urls, names = _scan((raw,), endpoint, known_models)
    if (
        request_id is None
        or request_id_problem(request_id) is not None
        or not all(map(is_http_url, urls[1:]))
        or not all(map(is_output_file_name, names))
    ):
        return None
    return request_id


def _scan(
    lines: Sequence[bytes], endpoint: str, known_models: frozenset[str]
) -> tuple[list[str | None], list[str], list[str]]:
    """Decode and check every line but for the string rules; collect the strings those rules apply to.

    Returns each line's request_id (None: look closer), and the URLs (after a leading ``""``) and output file
    names of the lines that have one.
    """
    ids: list[str | None] = []
    urls: list[str] = [""]  # so that "\n".join(urls) puts a separator before every URL
    names: list[str] = []
    add_id = ids.append
    add_url = urls.append
    common = True  # until a line of the chunk has another shape
    for raw in lines:
        line: _CommonLine | _Line
        try:
            line = _decode_common(raw) if common else _decode(raw)
        except _NOT_DECODED:
            if not common:
                add_id(None)
                continue
            try:
                line = _decode(raw)
            except _NOT_DECODED:
                add_id(None)
                continue
            common = False  # lines of other shapes: decode the rest of the chunk with the general struct
        payload = line.payload
        if line.endpoint != endpoint or payload.model not in known_models:
            add_id(None)
            continue
        if isinstance(payload, _CommonPayload):
            video, audio = payload.input
            add_url(video.url)
            if isinstance(audio, _UrlAudio):
                add_url(audio.url)
        elif not _general_input(payload, urls):
            add_id(None)
            continue
        if payload.webhookUrl is not None:
            add_url(payload.webhookUrl)
        if payload.outputFileName is not None:
            names.append(payload.outputFileName)
        add_id(line.request_id)
    return ids, urls, names


def _general_input(payload: _Payload, urls: list[str]) -> bool:
    """Whether a payload of the general shape is clean but for its strings; collect its URLs if so."""
    videos = 0
    audios = 0
    refs: set[str] = set()
    found: list[str] = []
    for item in payload.input:
        if isinstance(item, _Text):
            ref = item.refId
        else:
            if item.url is not None:
                found.append(item.url)
            elif item.assetId is None:
                return False
            if isinstance(item, _Video):
                videos += 1
                continue
            ref = item.refId
        audios += 1
        if ref is not None:
            if ref in refs:
                return False
            refs.add(ref)
    options = payload.options
    if (
        videos != 1
        or not audios
        or (
            options is not None
            and (options.model_mode is not None or options.prompt is not None)
            and payload.model != "react-1"
        )
    ):
        return False
    urls.extend(found)
    return True


def _all_plain(urls: list[str], names: list[str], request_ids: list[str]) -> bool:
    """True when every string is plain ASCII and passes its rule (each a subset of the exact rule)."""
    joined = "\n".join(urls)
    if len(joined.encode().translate(None, _URL_BYTES)) != len(urls) - 1 or _BAD_URL_START(joined):
        return False
    if names and len("\n".join(names).encode().translate(None, _NAME_BYTES)) != len(names) - 1:
        return False
    if not request_ids:
        return True
    joined = "\n" + "\n".join(request_ids) + "\n"
    return (
        len(joined.encode().translate(None, _ID_BYTES)) == len(request_ids) + 1
        and "\n " not in joined
        and " \n" not in joined
    )
