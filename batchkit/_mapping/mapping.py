"""How a source row becomes a generate request: the mapping (a TOML file or the same as a Python object).

Every string field is a template over the row's columns: ``{name}`` reads column ``name``, ``{{`` and ``}}``
are literal braces, anything else is literal text. ``[each]`` expands one row into one request per value
(``lang = ["de", "fr", "es"]``); loop variables are substituted first, so ``audio = "{audio_{lang}}"`` reads
column ``audio_de`` for ``lang = "de"``. Numbers and booleans (``options.temperature``, ``tts.stability``,
segment times) are TOML values, or templates whose text is parsed per row.

The visual input is ``video`` (or ``video_asset_id``), or for sync-3 a still ``image`` (or ``image_asset_id``).
``[dub]`` dubs the video's own audio track into ``target_lang`` (``payload.dubParams``: no audio input);
``[dialogue_edit]`` renders a completed dialogue-edit preview (``payload.dialogueEdit``: no audio input).
``[where]`` keeps only the rows whose columns hold listed values, and ``[each] optional = true`` lets an
expansion's values be blank (:mod:`batchkit._mapping.select`); the units they leave out are reported as
``filtered`` or ``skipped``, never dropped.

This module holds the :class:`Mapping` model, checked when it is made, and :func:`load_mapping`, whose errors
name the file, line and key. :meth:`Mapping.compile` turns a mapping into one
:class:`~batchkit._mapping.templates.UnitPlan` per unit (one per ``[each]`` position); templates and the compiled
plan are in :mod:`batchkit._mapping.templates`.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from .._errors import InputError
from .._files import read_input
from .._wire.crossfield import show
from .._wire.limits import DEFAULT_LIMITS, Limits
from .select import RowFilter, check_optional, check_where, split_each
from .templates import (
    Const,
    Kind,
    Leaf,
    UnitPlan,
    compile_leaf,
    parse_template,
    substitute,
    walk_leaves,
)

__all__ = ["Mapping", "load_mapping"]

Num = StrictFloat | StrictInt | str
Int = StrictInt | str
Flag = StrictBool | str

_VAR: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TTSMapping(_Strict):
    """``[tts]``: text-to-speech through ElevenLabs instead of a recorded audio URL."""

    voice_id: str
    script: str
    stability: Num | None = None
    similarity_boost: Num | None = None


class ActiveSpeakerMapping(_Strict):
    auto_detect: Flag | None = None
    frame_number: Int | None = None
    coordinates: list[Int] | None = None
    bounding_boxes: list[list[Int] | None] | None = None


class OptionsMapping(_Strict):
    """``[options]``: any documented generation option, literal or per row."""

    sync_mode: str | None = None
    model_mode: str | None = None
    prompt: str | None = None
    temperature: Num | None = None
    active_speaker_detection: ActiveSpeakerMapping | None = None
    occlusion_detection_enabled: Flag | None = None


class SegmentAudioMapping(_Strict):
    ref_id: str
    start_time: Num | None = None
    end_time: Num | None = None


class SegmentMapping(_Strict):
    """``[[segments]]``: a span of the video lipsynced to the input whose refId is ``audio_input.ref_id``."""

    start_time: Num
    end_time: Num
    audio_input: SegmentAudioMapping


class DubMapping(_Strict):
    """``[dub]``: native dubbing (``payload.dubParams``): Sync dubs the video's own audio into ``target_lang``."""

    target_lang: str
    source_lang: str | None = None
    num_speakers: Int | None = None
    provider_name: str | None = None


class DialogueEditMapping(_Strict):
    """``[dialogue_edit]``: render a completed dialogue-edit preview (``payload.dialogueEdit``, early access)."""

    id: str


_VISUALS: Final = ("video", "video_asset_id", "image", "image_asset_id")
_SPEECH: Final = ("audio", "audio_asset_id", "tts")


class Mapping(_Strict):
    """How a row becomes a request. Strings are templates (``{column}``); see the module doc."""

    request_id: str
    model: str
    video: str | None = None
    video_asset_id: str | None = None
    image: str | None = None
    image_asset_id: str | None = None
    audio: str | None = None
    audio_asset_id: str | None = None
    audio_ref_id: str | None = None
    tts: TTSMapping | None = None
    dub: DubMapping | None = None
    dialogue_edit: DialogueEditMapping | None = None
    options: OptionsMapping | None = None
    segments: list[SegmentMapping] | None = None
    output_file_name: str | None = None
    webhook_url: str | None = None
    each: dict[str, list[str]] = {}
    #: ``optional`` of ``[each]`` (split out when read, put back by :meth:`to_dict`)
    each_optional: StrictBool | list[str] = False
    where: dict[str, list[StrictStr | StrictInt | StrictBool]] = {}

    @model_validator(mode="before")
    @classmethod
    def _split_each(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "each_optional" in data:
                msg = "unknown key 'each_optional'; write optional = true inside [each]"
                raise ValueError(msg)
            each, optional = split_each(data.get("each"))
            if optional is not False:
                data = {**data, "each": each, "each_optional": optional}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        visuals = [k for k in _VISUALS if getattr(self, k) is not None]
        if len(visuals) != 1:
            msg = (
                "give exactly one of video or video_asset_id (the video), or image or image_asset_id "
                "(a still image, sync-3 only)"
            )
            raise ValueError(msg)
        _check_inputs(self, visuals[0], [k for k in _SPEECH if getattr(self, k) is not None])
        _check_each(self.each)
        check_optional(self.each_optional, list(self.each))
        check_where(self.where)
        templates = list(
            _templates(self.model_dump(exclude={"each", "each_optional", "where"}, exclude_none=True))
        )
        for unit in self.units():
            for path, template in templates:
                parse_template(substitute(template, unit), where=path)
        return self

    @classmethod
    def from_toml(cls, path: str | Path) -> Mapping:
        """Load a mapping file; errors name the file, line and key."""
        return load_mapping(path)

    def to_dict(self) -> dict[str, Any]:
        """The mapping as plain data (what the manifest records), unset keys left out."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        optional = data.pop("each_optional")
        if optional is not False:
            data["each"] = {**data["each"], "optional": optional}
        if not data["where"]:
            del data["where"]
        return data

    @property
    def each_names(self) -> list[str]:
        return list(self.each)

    @property
    def row_filter(self) -> RowFilter:
        """``[where]``: which rows become requests (an empty filter keeps every row)."""
        return RowFilter.of(self.where)

    @property
    def optional_each(self) -> frozenset[str]:
        """The ``[each]`` variables whose values may be blank (their units are then skipped)."""
        return check_optional(self.each_optional, list(self.each))

    def units(self) -> list[dict[str, str]]:
        """One dict of loop-variable values per request a row expands to (``[{}]`` without ``[each]``)."""
        if not self.each:
            return [{}]
        width = len(next(iter(self.each.values())))
        return [{name: values[i] for name, values in self.each.items()} for i in range(width)]

    def columns_used(self) -> list[str]:
        """Every column a template reads, over all units, in first-use order."""
        seen: dict[str, None] = {}
        for unit in self.units():
            for leaf in walk_leaves(self._tree(unit, DEFAULT_LIMITS)):
                seen.update(dict.fromkeys(leaf.columns))
        seen.update(dict.fromkeys(self.where))
        return list(seen)

    def compile(self, limits: Limits = DEFAULT_LIMITS) -> list[UnitPlan]:
        """One :class:`UnitPlan` per unit. Raises :class:`InputError` when a constant part is invalid."""
        plans = []
        for index, unit in enumerate(self.units()):
            tree = self._tree(unit, limits)
            plan = UnitPlan(index=index, values=unit, tree=tree, leaves=list(walk_leaves(tree)))
            plan.check_constants(limits)
            plans.append(plan)
        return plans

    def _tree(self, unit: dict[str, str], limits: Limits) -> dict[str, Any]:
        """The wire line for one unit, keys in model order, with :class:`Leaf` or :class:`Const` leaves."""
        optional = self.optional_each

        def leaf(pointer: str, name: str, value: Any, kind: Kind, *, required: bool = False) -> Leaf | Const:
            return compile_leaf(pointer, name, value, kind, unit, required=required, optional=optional)

        key = next(k for k in _VISUALS if getattr(self, k) is not None)
        visual: dict[str, Any] = {"type": Const("image" if key.startswith("image") else "video")}
        if key.endswith("asset_id"):
            visual["assetId"] = leaf(
                "/payload/input/0/assetId", key, getattr(self, key), "text", required=True
            )
        else:
            visual["url"] = leaf("/payload/input/0/url", key, getattr(self, key), "url", required=True)
        speech = self._speech_tree(leaf)
        payload: dict[str, Any] = {
            "model": leaf("/payload/model", "model", self.model, "text", required=True),
            "input": [visual] if speech is None else [visual, speech],
        }
        if self.options is not None:
            payload["options"] = _options_tree(self.options, leaf)
        if self.segments is not None:
            payload["segments"] = [_segment_tree(i, s, leaf) for i, s in enumerate(self.segments)]
        if self.webhook_url is not None:
            payload["webhookUrl"] = leaf("/payload/webhookUrl", "webhook_url", self.webhook_url, "url")
        if self.output_file_name is not None:
            payload["outputFileName"] = leaf(
                "/payload/outputFileName", "output_file_name", self.output_file_name, "name"
            )
        if self.dub is not None:
            payload["dubParams"] = _dub_tree(self.dub, leaf)
        if self.dialogue_edit is not None:
            payload["dialogueEdit"] = {
                "id": leaf(
                    "/payload/dialogueEdit/id",
                    "dialogue_edit.id",
                    self.dialogue_edit.id,
                    "text",
                    required=True,
                )
            }
        return {
            "request_id": leaf("/request_id", "request_id", self.request_id, "rid", required=True),
            "endpoint": Const(limits.endpoint),
            "payload": payload,
        }

    def _speech_tree(self, leaf: Any) -> dict[str, Any] | None:
        """The second input: recorded audio, or text-to-speech; None when the request has neither."""
        second: dict[str, Any]
        if self.tts is not None:
            base = "/payload/input/1/provider"
            provider: dict[str, Any] = {
                "name": Const("elevenlabs"),
                "voiceId": leaf(f"{base}/voiceId", "tts.voice_id", self.tts.voice_id, "text", required=True),
                "script": leaf(f"{base}/script", "tts.script", self.tts.script, "text", required=True),
            }
            if self.tts.stability is not None:
                provider["stability"] = leaf(
                    f"{base}/stability", "tts.stability", self.tts.stability, "number"
                )
            if self.tts.similarity_boost is not None:
                provider["similarityBoost"] = leaf(
                    f"{base}/similarityBoost", "tts.similarity_boost", self.tts.similarity_boost, "number"
                )
            second = {"type": Const("text"), "provider": provider}
        elif self.audio is not None:
            second = {
                "type": Const("audio"),
                "url": leaf("/payload/input/1/url", "audio", self.audio, "url", required=True),
            }
        elif self.audio_asset_id is not None:
            second = {
                "type": Const("audio"),
                "assetId": leaf(
                    "/payload/input/1/assetId", "audio_asset_id", self.audio_asset_id, "text", required=True
                ),
            }
        else:
            return None
        if self.audio_ref_id is not None:
            second["refId"] = leaf("/payload/input/1/refId", "audio_ref_id", self.audio_ref_id, "text")
        return second


def _check_inputs(mapping: Mapping, visual: str, speech: list[str]) -> None:
    """One audio source, or none with ``[dub]`` (Sync ignores it) or ``[dialogue_edit]`` (none allowed);
    both of those need a video."""
    modes = [name for name in ("dub", "dialogue_edit") if getattr(mapping, name) is not None]
    if len(modes) > 1:
        msg = "give [dub] or [dialogue_edit], not both"
        raise ValueError(msg)
    if not modes:
        if len(speech) != 1:
            msg = "give exactly one of audio (a URL template), audio_asset_id, or a [tts] table"
            raise ValueError(msg)
        return
    mode = f"[{modes[0]}]"
    if speech:
        why = (
            "Sync ignores audio when it dubs" if modes[0] == "dub" else "a dialogue edit takes no audio input"
        )
        given = "[tts]" if speech[0] == "tts" else speech[0]
        msg = f"{mode} takes no {given} ({why}); leave it out"
        raise ValueError(msg)
    if mapping.audio_ref_id is not None:
        msg = "audio_ref_id names the refId of an audio input, which a request with {mode} does not have"
        raise ValueError(msg.format(mode=mode))
    if visual.startswith("image"):
        msg = f"{mode} needs a video (video or video_asset_id): it works on the video's own audio track"
        raise ValueError(msg)


def _dub_tree(dub: DubMapping, leaf: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "targetLang": leaf(
            "/payload/dubParams/targetLang", "dub.target_lang", dub.target_lang, "text", required=True
        )
    }
    if dub.source_lang is not None:
        out["sourceLang"] = leaf("/payload/dubParams/sourceLang", "dub.source_lang", dub.source_lang, "text")
    if dub.num_speakers is not None:
        out["numSpeakers"] = leaf(
            "/payload/dubParams/numSpeakers", "dub.num_speakers", dub.num_speakers, "int"
        )
    if dub.provider_name is not None:
        out["providerName"] = leaf(
            "/payload/dubParams/providerName", "dub.provider_name", dub.provider_name, "text"
        )
    return out


def _options_tree(options: OptionsMapping, leaf: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kind in (
        ("sync_mode", "text"),
        ("model_mode", "text"),
        ("prompt", "text"),
        ("temperature", "number"),
    ):
        value = getattr(options, key)
        if value is not None:
            out[key] = leaf(f"/payload/options/{key}", f"options.{key}", value, kind)
    asd = options.active_speaker_detection
    if asd is not None:
        base = "/payload/options/active_speaker_detection"
        node: dict[str, Any] = {}
        if asd.auto_detect is not None:
            node["auto_detect"] = leaf(
                f"{base}/auto_detect", "active_speaker_detection.auto_detect", asd.auto_detect, "bool"
            )
        if asd.frame_number is not None:
            node["frame_number"] = leaf(
                f"{base}/frame_number", "active_speaker_detection.frame_number", asd.frame_number, "int"
            )
        if asd.coordinates is not None:
            node["coordinates"] = [
                leaf(
                    f"{base}/coordinates/{i}", "active_speaker_detection.coordinates", v, "int", required=True
                )
                for i, v in enumerate(asd.coordinates)
            ]
        if asd.bounding_boxes is not None:
            node["bounding_boxes"] = [
                None
                if box is None
                else [
                    leaf(
                        f"{base}/bounding_boxes/{i}/{j}",
                        "active_speaker_detection.bounding_boxes",
                        v,
                        "int",
                        required=True,
                    )
                    for j, v in enumerate(box)
                ]
                for i, box in enumerate(asd.bounding_boxes)
            ]
        out["active_speaker_detection"] = node
    if options.occlusion_detection_enabled is not None:
        out["occlusion_detection_enabled"] = leaf(
            "/payload/options/occlusion_detection_enabled",
            "options.occlusion_detection_enabled",
            options.occlusion_detection_enabled,
            "bool",
        )
    return out


def _segment_tree(i: int, segment: SegmentMapping, leaf: Any) -> dict[str, Any]:
    base = f"/payload/segments/{i}"
    audio: dict[str, Any] = {
        "refId": leaf(
            f"{base}/audioInput/refId",
            f"segments[{i}].audio_input.ref_id",
            segment.audio_input.ref_id,
            "text",
            required=True,
        )
    }
    for key, wire in (("start_time", "startTime"), ("end_time", "endTime")):
        value = getattr(segment.audio_input, key)
        if value is not None:
            audio[wire] = leaf(
                f"{base}/audioInput/{wire}", f"segments[{i}].audio_input.{key}", value, "number"
            )
    return {
        "startTime": leaf(
            f"{base}/startTime", f"segments[{i}].start_time", segment.start_time, "number", required=True
        ),
        "endTime": leaf(
            f"{base}/endTime", f"segments[{i}].end_time", segment.end_time, "number", required=True
        ),
        "audioInput": audio,
    }


def _templates(data: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(data, str):
        yield path or "value", data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _templates(value, f"{path}.{key}" if path else key)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _templates(value, f"{path}[{i}]")


def _check_each(each: dict[str, list[str]]) -> None:
    widths = {name: len(values) for name, values in each.items()}
    for name, values in each.items():
        if not _VAR.fullmatch(name):
            msg = f"[each] variable {name!r} must be a name of letters, digits and underscores"
            raise ValueError(msg)
        if not values:
            msg = f"[each] {name} is empty; list at least one value"
            raise ValueError(msg)
        for value in values:
            if "{" in value or "}" in value or "|" in value:
                msg = f"[each] {name} value {value!r} may not contain braces or |"
                raise ValueError(msg)
    if len(set(widths.values())) > 1:
        shown = ", ".join(f"{n} has {w}" for n, w in widths.items())
        msg = f"[each] lists must have the same length, one value per request ({shown})"
        raise ValueError(msg)


# -- loading -------------------------------------------------------------------------------------------------

_TOML_AT: Final = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_mapping(source: str | Path | dict[str, Any] | Mapping) -> Mapping:
    """A :class:`Mapping` from a TOML file, a dict, or a Mapping (returned as is)."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, dict):
        return _validate(source, name="mapping", text=None)
    path = Path(source)
    try:
        text = read_input(path, what="mapping file").decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"cannot read mapping {path}: byte {exc.start + 1} is not UTF-8; save it as UTF-8"
        raise InputError(msg, path=path) from None
    try:
        data = tomllib.loads(text)
    except RecursionError:
        msg = f"{path}: mapping is nested too deeply to read (arrays or tables inside each other); flatten it"
        raise InputError(msg, path=path) from None
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_AT.search(str(exc))
        line = int(found.group(1)) if found else None
        detail = _TOML_AT.sub("", str(exc)).strip()
        where = f"{path}:{line}" if line else str(path)
        msg = f"{where}: mapping is not valid TOML: {detail}"
        raise InputError(msg, path=path, line=line) from exc
    return _validate(data, name=str(path), text=text, path=path)


def _validate(data: dict[str, Any], *, name: str, text: str | None, path: Path | None = None) -> Mapping:
    try:
        return Mapping.model_validate(data)
    except RecursionError:
        msg = f"{name}: mapping is nested too deeply to read; flatten it"
        raise InputError(msg, path=path) from None
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = [str(p) for p in error["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
        key = ".".join(loc)
        line = _line_of(text, loc[-1]) if text and loc else None
        where = f"{name}:{line}" if line else name
        if error["type"] == "extra_forbidden":
            hint = _did_you_mean(loc, data)
            msg = f"{where}: unknown key {key!r} in the mapping{hint}"
        elif error["type"] == "missing":
            msg = f"{where}: the mapping needs {key!r}"
        elif error["type"] == "value_error":
            msg = f"{where}: {error['msg'].removeprefix('Value error, ')}"
        else:
            msg = f"{where}: {key or 'mapping'} {show(error['input'])}: {_type_hint(error['type'])}"
        raise InputError(msg, path=path, line=line, column=key or None) from exc
    except InputError as exc:  # a template error raised while validating
        msg = f"{name}: {exc}"
        raise InputError(msg, path=path) from exc


_UNION_TAGS: Final = frozenset({"str", "float", "int", "bool", "list[...]", "constrained-str"})


def _type_hint(kind: str) -> str:
    if kind.startswith(("float", "int")):
        return 'must be a number, or a template string such as "{column}"'
    if kind.startswith("bool"):
        return "must be true or false, or a template string"
    if kind.startswith("string"):
        return 'must be a string (a template such as "{column}" or literal text)'
    if kind.startswith(("list", "dict", "model")):
        return "has the wrong shape; see the mapping format in the README"
    return kind


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*(\[+\s*)?([\w.\"-]*\.)?\"?{re.escape(key)}\"?\s*(=|\]|\.)", re.MULTILINE)
    found = pattern.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _did_you_mean(loc: list[str], data: dict[str, Any]) -> str:
    models: dict[str, type[BaseModel]] = {
        "": Mapping,
        "tts": TTSMapping,
        "options": OptionsMapping,
        "options.active_speaker_detection": ActiveSpeakerMapping,
        "dub": DubMapping,
        "dialogue_edit": DialogueEditMapping,
    }
    parent = ".".join(p for p in loc[:-1] if not p.isdigit())
    model = models.get(parent, SegmentMapping if parent.startswith("segments") else None)
    if model is None:
        return ""
    known = [name for name in model.model_fields if name != "each_optional"]
    name = loc[-1]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    close = [snake] if snake in known else difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    where = f" [{parent}]" if parent else ""
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; known keys{where}: {', '.join(known)}"
