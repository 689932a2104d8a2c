"""Mappings: the TOML format, templates, [each] expansion, and checks of the constant parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from batchkit._errors import InputError
from batchkit._mapping.mapping import Mapping, load_mapping
from batchkit._mapping.templates import Column, Const, Leaf, parse_template, parse_typed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BASE: dict[str, Any] = {
    "request_id": "{id}",
    "model": "lipsync-2",
    "video": "{video}",
    "audio": "{audio}",
}


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        pytest.param("{a}", (Column("a"),), id="column"),
        pytest.param("x_{a}-{b}.mp4", ("x_", Column("a"), "-", Column("b"), ".mp4"), id="mixed"),
        pytest.param("plain", ("plain",), id="literal"),
        pytest.param("{{a}}", ("{a}",), id="escaped-braces"),
        pytest.param("{first name}", (Column("first name"),), id="space-in-name"),
    ],
)
def test_parse_template(text: str, parts: tuple[object, ...]) -> None:
    assert parse_template(text) == parts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{a", "unbalanced '{'", id="open"),
        pytest.param("a}", "unbalanced '}'", id="close"),
        pytest.param("x{}y", "empty {}", id="empty"),
    ],
)
def test_bad_templates_are_input_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_template(text)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("0.5", "number", 0.5),
        (" 1 ", "number", 1.0),
        ("3", "int", 3),
        ("3.0", "int", 3),
        ("Yes", "bool", True),
        ("false", "bool", False),
    ],
)
def test_parse_typed(text: str, kind: str, value: object) -> None:
    assert parse_typed(text, kind) == (value, None)


@pytest.mark.parametrize(
    ("text", "kind"), [("abc", "number"), ("nan", "number"), ("2.5", "int"), ("maybe", "bool")]
)
def test_parse_typed_refuses(text: str, kind: str) -> None:
    value, problem = parse_typed(text, kind)
    assert value is None
    assert problem is not None
    assert text in problem


def test_fixture_mappings_load() -> None:
    campaign = Mapping.from_toml(FIXTURES / "campaign.toml")
    assert campaign.columns_used() == ["customer_id", "video_url", "audio_url", "lang"]
    localization = Mapping.from_toml(FIXTURES / "localization.toml")
    assert localization.each == {"lang": ["de", "fr", "es"]}
    assert localization.columns_used() == ["video_id", "video_url", "audio_de", "audio_fr", "audio_es"]


def test_each_variables_are_substituted_before_columns() -> None:
    mapping = Mapping.model_validate({**BASE, "audio": "{audio_{lang}}", "each": {"lang": ["de", "fr"]}})
    plans = mapping.compile()
    audio = [plan.tree["payload"]["input"][1]["url"] for plan in plans]
    assert audio == [
        Leaf("/payload/input/1/url", "audio", (Column("audio_de"),), "url", True),
        Leaf("/payload/input/1/url", "audio", (Column("audio_fr"),), "url", True),
    ]
    assert [plan.values for plan in plans] == [{"lang": "de"}, {"lang": "fr"}]


def test_each_variable_alone_becomes_a_constant() -> None:
    mapping = Mapping.model_validate({**BASE, "output_file_name": "promo_{lang}", "each": {"lang": ["de"]}})
    assert mapping.compile()[0].tree["payload"]["outputFileName"] == Const("promo_de")


def test_each_lists_must_have_equal_lengths() -> None:
    with pytest.raises(ValidationError, match="same length"):
        Mapping.model_validate({**BASE, "each": {"lang": ["de", "fr"], "voice": ["v1"]}})


def test_each_values_may_not_hold_braces() -> None:
    with pytest.raises(ValidationError, match="may not contain braces"):
        Mapping.model_validate({**BASE, "each": {"lang": ["{x}"]}})


def test_exactly_one_video_and_one_audio_source() -> None:
    with pytest.raises(ValidationError, match="exactly one of video"):
        Mapping.model_validate({**BASE, "video_asset_id": "{asset}"})
    both = {**BASE, "tts": {"voice_id": "v", "script": "{script}"}}
    with pytest.raises(ValidationError, match="exactly one of audio"):
        Mapping.model_validate(both)


def test_tts_and_options_tree_in_wire_order() -> None:
    data = {
        "request_id": "{id}",
        "model": "react-1",
        "video": "https://cdn.example.com/v.mp4",
        "tts": {"voice_id": "{voice}", "script": "Hi {name}", "stability": 0.4, "similarity_boost": "{sim}"},
        "options": {
            "temperature": 0.3,
            "prompt": "happy",
            "sync_mode": "cut_off",
            "occlusion_detection_enabled": True,
        },
    }
    plan = Mapping.model_validate(data).compile()[0]
    provider = plan.tree["payload"]["input"][1]["provider"]
    assert list(provider) == ["name", "voiceId", "script", "stability", "similarityBoost"]
    assert list(plan.tree["payload"]["options"]) == [
        "sync_mode",
        "prompt",
        "temperature",
        "occlusion_detection_enabled",
    ]
    assert not plan.columnar  # similarityBoost is parsed per row
    resolved = plan.resolve({"id": "r1", "voice": "v1", "name": "Ann", "sim": "0.9"})
    assert orjson.dumps(resolved.obj).decode() == (
        '{"request_id":"r1","endpoint":"/v2/generate","payload":{"model":"react-1","input":['
        '{"type":"video","url":"https://cdn.example.com/v.mp4"},{"type":"text","provider":{"name":'
        '"elevenlabs","voiceId":"v1","script":"Hi Ann","stability":0.4,"similarityBoost":0.9}}],'
        '"options":{"sync_mode":"cut_off","prompt":"happy","temperature":0.3,'
        '"occlusion_detection_enabled":true}}}'
    )


def test_typed_literal_string_is_parsed_once() -> None:
    plan = Mapping.model_validate({**BASE, "options": {"temperature": "0.25"}}).compile()[0]
    assert plan.tree["payload"]["options"]["temperature"] == Const(0.25)


def test_typed_literal_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(InputError, match=r"options.temperature = 'hot' is not a number"):
        Mapping.model_validate({**BASE, "options": {"temperature": "hot"}}).compile()


def test_invalid_constant_fails_at_compile_time() -> None:
    """A constant that would make every request invalid is an error before any row is read."""
    with pytest.raises(InputError, match="every request would be refused"):
        Mapping.model_validate({**BASE, "video": "ftp://cdn.example.com/v.mp4"}).compile()
    with pytest.raises(InputError, match="temperature"):
        Mapping.model_validate({**BASE, "options": {"temperature": 5}}).compile()


def test_constant_warnings_are_collected_once() -> None:
    plan = Mapping.model_validate({**BASE, "model": "lipsync-3"}).compile()[0]
    assert [(p.code, p.pointer) for p in plan.constant_warnings] == [("unknown-model", "/payload/model")]


def test_segments_need_matching_ref_ids() -> None:
    data = {
        **BASE,
        "audio_ref_id": "a1",
        "segments": [{"start_time": 0, "end_time": "{end}", "audio_input": {"ref_id": "a2"}}],
    }
    with pytest.raises(InputError, match="refId 'a2'"):
        Mapping.model_validate(data).compile()
    data["segments"][0]["audio_input"]["ref_id"] = "a1"
    plan = Mapping.model_validate(data).compile()[0]
    assert not plan.columnar
    assert plan.resolve({"id": "r", "video": "https://v/x", "audio": "https://a/x", "end": "2.5"}).obj[
        "payload"
    ]["segments"] == [{"startTime": 0, "endTime": 2.5, "audioInput": {"refId": "a1"}}]


def test_to_dict_round_trips() -> None:
    mapping = Mapping.from_toml(FIXTURES / "localization.toml")
    assert Mapping.model_validate(mapping.to_dict()) == mapping


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = toml(tmp_path, 'request_id = "{id}"\nmodel = "lipsync-2\nvideo = "{v}"\n')
    with pytest.raises(InputError, match=r"mapping.toml:2: mapping is not valid TOML") as info:
        load_mapping(path)
    assert info.value.line == 2


def test_unknown_key_names_the_key_the_line_and_a_suggestion(tmp_path: Path) -> None:
    text = 'request_id = "{id}"\nmodel = "lipsync-2"\nvideo = "{v}"\naudio = "{a}"\noutputFileName = "{id}"\n'
    with pytest.raises(
        InputError, match=r"mapping.toml:5: unknown key 'outputFileName'.*did you mean 'output_file_name'"
    ):
        load_mapping(toml(tmp_path, text))


def test_unknown_option_key_in_a_table(tmp_path: Path) -> None:
    text = 'request_id = "{id}"\nmodel = "m"\nvideo = "{v}"\naudio = "{a}"\n\n[options]\nsyncmode = "loop"\n'
    with pytest.raises(
        InputError, match=r"mapping.toml:7: unknown key 'options.syncmode'.*did you mean 'sync_mode'"
    ):
        load_mapping(toml(tmp_path, text))


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="the mapping needs 'model'"):
        load_mapping(toml(tmp_path, 'request_id = "{id}"\nvideo = "{v}"\naudio = "{a}"\n'))


def test_wrong_type_is_explained(tmp_path: Path) -> None:
    text = 'request_id = "{id}"\nmodel = "m"\nvideo = "{v}"\naudio = "{a}"\n[options]\ntemperature = true\n'
    with pytest.raises(InputError, match="must be a number, or a template string"):
        load_mapping(toml(tmp_path, text))


def test_template_error_in_file_names_the_field(tmp_path: Path) -> None:
    text = 'request_id = "{id"\nmodel = "m"\nvideo = "{v}"\naudio = "{a}"\n'
    with pytest.raises(InputError, match=r"request_id: unbalanced '\{'"):
        load_mapping(toml(tmp_path, text))


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such mapping file"):
        load_mapping(tmp_path / "nope.toml")
