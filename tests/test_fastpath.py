"""The fast gate is sound (it never clears a line the rules would report) and complete on the sample batch."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from conftest import FIXTURES, json_values, mutated_lines, valid_lines
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import DEFAULT_LIMITS, Limits
from batchkit._validate.fastpath import fast_request_id, fast_request_ids, gate
from batchkit._wire.rules import duplicate_keys, line_problems

MODELS = frozenset(DEFAULT_LIMITS.known_models)
ENDPOINT = DEFAULT_LIMITS.endpoint
SAMPLE = FIXTURES / "sample-batch.jsonl"


def slow_findings(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """What the authoritative slow path reports for one line (its codes), independently of the gate."""
    try:
        raw.decode("utf-8")
        obj = orjson.loads(raw)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return ["unreadable"]
    return [p.code for p in duplicate_keys(raw) + line_problems(obj, limits)]


def assert_sound(raw: bytes, cleared: str | None) -> None:
    if cleared is not None:
        assert slow_findings(raw) == [], raw
        assert orjson.loads(raw)["request_id"] == cleared


def corpus_lines() -> list[bytes]:
    """Every line of every fixture: the sample batch, the bad corpus and the single-line corpus."""
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    for path in sorted((FIXTURES / "bad").glob("*.jsonl")):
        lines.extend(path.read_bytes().splitlines(keepends=True))
    for path in sorted((FIXTURES / "lines").glob("*/*.json")):
        lines.append(orjson.dumps(json.loads(path.read_text())))
    return lines


def test_gate_clears_every_line_of_the_sample_batch() -> None:
    """Complete on the sample: every line takes the fast path, one at a time and as a chunk."""
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    ids = [orjson.loads(line)["request_id"] for line in lines]
    assert len(lines) == 25
    assert fast_request_ids(lines, ENDPOINT, MODELS) == ids
    assert [fast_request_id(line, ENDPOINT, MODELS) for line in lines] == ids


def test_gate_is_sound_on_the_fixture_corpus() -> None:
    """No line of any fixture is cleared unless the rules find nothing; and bad lines are never cleared."""
    lines = corpus_lines()
    cleared = fast_request_ids(lines, ENDPOINT, MODELS)
    for raw, request_id in zip(lines, cleared, strict=True):
        assert_sound(raw, request_id)
        assert fast_request_id(raw, ENDPOINT, MODELS) == request_id
    assert sum(c is not None for c in cleared) >= 25


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xef\xbb\xbf" + SAMPLE.read_bytes().splitlines()[0], id="bom"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\n", id="blank"),
        pytest.param(b"[]", id="array"),
        pytest.param(SAMPLE.read_bytes().splitlines()[0][:-1], id="truncated"),
        pytest.param(SAMPLE.read_bytes().splitlines()[0] * 2, id="two-objects"),
        pytest.param(
            SAMPLE.read_bytes().splitlines()[0].replace(b"cdn.example", b"cdn.\xffexample"), id="bad-utf8"
        ),
        pytest.param(
            SAMPLE.read_bytes().splitlines()[0].replace(b'"model"', b'"model":"nope","model"'),
            id="duplicate-key-known-last",
        ),
        pytest.param(
            SAMPLE.read_bytes()
            .splitlines()[0]
            .replace(b'"type":"video",', b'"type":"video","type":"audio",'),
            id="duplicate-type-tag",
        ),
    ],
)
def test_gate_refuses_odd_bytes(raw: bytes) -> None:
    """Lines the rules would report (or that need a closer look) are never cleared."""
    assert fast_request_id(raw, ENDPOINT, MODELS) is None or slow_findings(raw) == []
    assert_sound(raw, fast_request_id(raw, ENDPOINT, MODELS))


def test_a_duplicate_key_always_looks_closer() -> None:
    """A key given twice hides one of its values from some JSON reader: never cleared, always reported,
    whichever of the two values is the bad one (and even when both are good)."""
    line = SAMPLE.read_bytes().splitlines()[0]
    bad_first = line.replace(b'"webhookUrl":', b'"webhookUrl":"ftp://x","webhookUrl":')
    good_twice = line.replace(b'"webhookUrl":', b'"webhookUrl":"https://ok.example.com","webhookUrl":')
    spaced = line.replace(b'"model":', b'"model" : "lipsync-2", "model":')
    for raw in (bad_first, good_twice, spaced):
        assert fast_request_id(raw, ENDPOINT, MODELS) is None
        assert fast_request_ids([raw, line], ENDPOINT, MODELS)[0] is None
        assert gate(ENDPOINT, tuple(sorted(MODELS))).block(raw + b"\n") is None
        assert "duplicate-key" in slow_findings(raw)


def test_gate_accepts_line_endings() -> None:
    """A line may keep its LF or CRLF ending."""
    line = SAMPLE.read_bytes().splitlines()[0]
    for ending in (b"", b"\n", b"\r\n"):
        assert fast_request_id(line + ending, ENDPOINT, MODELS) == "spring26-0001-ava-thompson"


def test_plain_chunk_with_one_unusual_string_still_clears_every_clean_line() -> None:
    """A non-ASCII URL or an upper-case scheme sends the chunk to the exact check; clean lines still clear."""
    lines = SAMPLE.read_bytes().splitlines()
    unusual = [
        lines[3].replace(b"https://cdn.example.com", b"HTTPS://cdn.example.com"),
        lines[5].replace(b"/audio/", "/áudio/".encode()),
        lines[7].replace(b'"spring26-0008', '"spring26-ü-0008'.encode()),
    ]
    chunk = [*lines[:3], *unusual, *lines[8:]]
    ids = fast_request_ids(chunk, ENDPOINT, MODELS)
    assert None not in ids
    spaced = lines[4].replace(b"/audio/", b"/au dio/")
    ids = fast_request_ids([*lines[:4], spaced, *lines[5:]], ENDPOINT, MODELS)
    assert ids.index(None) == 4
    assert ids.count(None) == 1


def test_chunk_of_mixed_shapes() -> None:
    """After a line of another shape, the rest of the chunk is judged with the general struct."""
    lines = SAMPLE.read_bytes().splitlines()
    first = orjson.loads(lines[0])
    first["payload"]["input"].reverse()  # audio first: not the common shape
    chunk = [orjson.dumps(first), *lines]
    assert None not in fast_request_ids(chunk, ENDPOINT, MODELS)


def test_gate_honours_the_limits_profile() -> None:
    """A different endpoint or model list changes what is cleared, exactly as for the rules."""
    line = SAMPLE.read_bytes().splitlines()[0]
    assert fast_request_id(line, "/v3/generate", MODELS) is None
    assert fast_request_id(line.replace(b"/v2/generate", b"/v3/generate"), "/v3/generate", MODELS) is not None
    assert fast_request_id(line, ENDPOINT, frozenset({"lipsync-2-pro"})) is None


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(valid_lines(), st.sampled_from([b"", b"\n", b"\r\n"]))
def test_gate_sound_on_valid_lines(line: dict[str, Any], ending: bytes) -> None:
    """Generated valid lines: whatever the gate clears, the rules find nothing in."""
    raw = orjson.dumps(line) + ending
    assert_sound(raw, fast_request_id(raw, ENDPOINT, MODELS))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_lines())
def test_gate_sound_on_mutated_lines(line: Any) -> None:
    """Small mutations of valid lines (keys dropped or renamed, values retyped, odd strings) are never
    cleared when the rules would report them."""
    raw = orjson.dumps(line)
    assert_sound(raw, fast_request_id(raw, ENDPOINT, MODELS))


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(valid_lines(), mutated_lines()), min_size=1, max_size=12))
def test_chunk_gate_sound_and_consistent(lines: list[Any]) -> None:
    """The chunk gate clears exactly what the one-line gate clears, and only clean lines."""
    raws = [orjson.dumps(line) for line in lines]
    cleared = fast_request_ids(raws, ENDPOINT, MODELS)
    assert cleared == [fast_request_id(raw, ENDPOINT, MODELS) for raw in raws]
    for raw, request_id in zip(raws, cleared, strict=True):
        assert_sound(raw, request_id)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_gate_never_raises_on_bytes(raw: bytes) -> None:
    """Arbitrary bytes never raise out of the gate, and never pass it unless clean."""
    assert_sound(raw, fast_request_id(raw, ENDPOINT, MODELS))


@settings(max_examples=200)
@given(valid_lines(), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_gate_sound_on_byte_mutations(line: dict[str, Any], at: int, junk: bytes) -> None:
    """Bytes spliced into a valid line never get past the gate unless the result is clean."""
    raw = orjson.dumps(line)
    at %= len(raw) + 1
    mutated = raw[:at] + junk + raw[at:]
    assert_sound(mutated, fast_request_id(mutated, ENDPOINT, MODELS))


@settings(max_examples=150)
@given(json_values())
def test_gate_on_any_json_value(value: Any) -> None:
    """Any JSON value at all: cleared only if clean."""
    raw = orjson.dumps(value)
    assert_sound(raw, fast_request_id(raw, ENDPOINT, MODELS))


def test_a_first_input_without_type_is_not_taken_for_a_video() -> None:
    """Found by hypothesis: a lone (non-union) msgspec tagged struct does not require its tag, so an input
    item with no "type" once passed the gate as the video. The rules report it; the gate must not clear it."""
    raw = (
        b'{"request_id":"0","endpoint":"/v2/generate","payload":{"model":"lipsync-2","input":'
        b'[{"url":"https://0.example.com/"},{"type":"text","provider":{"voiceId":"0","script":"0"}}]}}'
    )
    assert fast_request_id(raw, ENDPOINT, MODELS) is None
    assert fast_request_ids([raw], ENDPOINT, MODELS) == [None]
    assert "missing-field" in slow_findings(raw)
    fixed = raw.replace(b'[{"url"', b'[{"type":"video","url"')
    assert fast_request_id(fixed, ENDPOINT, MODELS) == "0"


def _as_text(line: Any, style: str) -> bytes:
    """One line written the way some producer writes it."""
    if style == "spaced":
        return json.dumps(line).encode()
    if style == "ascii":
        return json.dumps(line, separators=(",", ":"), ensure_ascii=True).encode()
    return orjson.dumps(line)


@st.composite
def blocks(draw: st.DrawFn) -> bytes:
    """Blocks of lines as files hold them, including the ways a block can fool a line counter: blank lines,
    an object across two lines, two objects on one line, duplicate keys, CR LF."""
    lines = draw(
        st.lists(st.one_of(valid_lines(rare=False), valid_lines(), mutated_lines()), min_size=1, max_size=8)
    )
    style = draw(st.sampled_from(["compact", "spaced", "ascii"]))
    texts = [_as_text(line, style) for line in lines]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(texts) - 1))
        trick = draw(st.sampled_from(["blank", "split", "join", "duplicate", "crlf", "space"]))
        text = texts[at]
        if trick == "blank":
            texts.insert(at, draw(st.sampled_from([b"", b" ", b"\t"])))
        elif trick == "split" and b'"payload":' in text:
            head, _, tail = text.partition(b'"payload":')
            texts[at : at + 1] = [head + b'"payload":', tail]
        elif trick == "join" and at + 1 < len(texts):
            texts[at : at + 2] = [texts[at] + draw(st.sampled_from([b"", b" "])) + texts[at + 1]]
        elif trick == "duplicate" and text.startswith(b'{"request_id":'):
            texts[at] = text.replace(b'{"request_id":', b'{"request_id":"x","request_id":', 1)
        elif trick == "crlf":
            texts[at] = text + b"\r"
        elif trick == "space":
            texts[at] = text + b" "
    end = draw(st.sampled_from([b"\n", b""]))
    return b"\n".join(texts) + end


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(blocks())
def test_block_gate_is_sound(block: bytes) -> None:
    """Whatever the block gate clears is one clean line per line of the block, with the ids in order."""
    cleared = gate(ENDPOINT, tuple(sorted(MODELS))).block(block)
    if cleared is None:
        return
    ids, canonical = cleared
    lines = block.split(b"\n")
    if not block.endswith(b"\n"):
        lines.append(b"")
    lines = lines[:-1] if lines[-1] == b"" else lines
    assert len(lines) == len(ids)
    for raw, request_id in zip(lines, ids, strict=True):
        assert_sound(raw, request_id)
    assert not canonical or b"\r" not in block


def test_block_gate_clears_the_sample_batch_in_any_common_style() -> None:
    """The sample batch as batchkit writes it, as json.dumps writes it, and with CR LF: all cleared."""
    lines = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines()]
    ids = [line["request_id"] for line in lines]
    checker = gate(ENDPOINT, tuple(sorted(MODELS)))
    assert checker.block(SAMPLE.read_bytes()) == (ids, True)
    for style in ("spaced", "ascii"):
        assert checker.block(b"\n".join(_as_text(line, style) for line in lines) + b"\n") == (ids, False)
    assert checker.block(SAMPLE.read_bytes().replace(b"\n", b"\r\n")) == (ids, False)


def test_a_null_provider_name_is_not_cleared() -> None:
    """Found by hypothesis: the models refuse ``"name": null`` (it is the one provider field that is not
    nullable), so the gate must not clear it either."""
    raw = (
        b'{"request_id":"0","endpoint":"/v2/generate","payload":{"model":"lipsync-2","input":[{"type":"video",'
        b'"url":"https://0.example.com/"},{"type":"text","provider":{"voiceId":"0","script":"0","name":null}}]}}'
    )
    assert slow_findings(raw) == ["invalid-value"]
    assert fast_request_id(raw, ENDPOINT, MODELS) is None
    assert gate(ENDPOINT, tuple(sorted(MODELS))).block(raw + b"\n") is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"/audio/", b"/au\x7fdio/"),  # DEL, written raw (JSON allows it)
        (b"/audio/", b"/au dio/"),
        (b"https://cdn", b"http:///cdn"),
        (b'"request_id":"spring26-0001-ava-thompson"', b'"request_id":" spring26-0001-ava-thompson"'),
        (b'"request_id":"spring26-0001-ava-thompson"', b'"request_id":"spring26-0001-ava-thompson\x7f"'),
        (b"/audio/", "/áudio/".encode()),
    ],
)
def test_a_block_without_escapes_still_checks_every_string(old: bytes, new: bytes) -> None:
    """Without a single escape in a block, the string checks take a shortcut; it refuses what the rules do."""
    block = SAMPLE.read_bytes().replace(old, new, 1)
    assert b"\\" not in block
    cleared = gate(ENDPOINT, tuple(sorted(MODELS))).block(block)
    first = block.splitlines()[0]
    if slow_findings(first):
        assert cleared is None
    else:  # a non-ASCII URL is fine: the block looks closer, and the line is cleared one by one
        assert fast_request_id(first, ENDPOINT, MODELS) is not None
