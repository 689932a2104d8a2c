"""Shared test helpers: the fixtures folder, and a clean environment for every test."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

#: Environment variables that could change what batchkit or httpx do during a test.
_PREFIXES = ("SYNC_", "BATCHKIT_")
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hostile-full",
        action="store_true",
        default=False,
        help="also run the slow part of the hostile-input harness (tests/hostile): real processes, big inputs, "
        "full disks",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hostile_full: the slow part of the hostile-input harness; runs only with --hostile-full"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hostile-full"):
        return
    skip = pytest.mark.skip(reason="the slow hostile-input harness runs with --hostile-full")
    for item in items:
        if "hostile_full" in item.keywords:
            item.add_marker(skip)


def fixture_path(*parts: str) -> Path:
    """A path under ``fixtures/``: ``fixture_path("bad", "bom.jsonl")``."""
    return FIXTURES.joinpath(*parts)


@pytest.fixture(autouse=True)
def restore_batchkit_logger() -> Iterator[None]:
    """The CLI configures the ``batchkit`` logger (level, handler); put it back after every test."""
    logger = logging.getLogger("batchkit")
    saved = logger.level, logger.handlers[:], logger.propagate
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test starts without ``SYNC_*``, ``BATCHKIT_*`` or proxy variables (any spelling), and with a
    batch registry of its own (``BATCHKIT_STATE_DIR``; subprocesses inherit it), never the user's."""
    for name in list(os.environ):
        if name.upper().startswith(_PREFIXES) or name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCHKIT_STATE_DIR", str(tmp_path_factory.mktemp("state")))


class FakeTime:
    """A wall clock for reconciliation that moves only when slept on: waits past a create's in-flight
    horizon take no real time. ``ticks`` advances a sandbox ``ManualClock`` along, when given."""

    def __init__(self, ticks: Any = None) -> None:
        from datetime import UTC, datetime

        self.ticks = ticks
        self.moment = ticks.now() if ticks is not None else datetime.now(UTC)

    def now(self) -> Any:
        return self.ticks.now() if self.ticks is not None else self.moment

    def sleep(self, seconds: float) -> None:
        from datetime import timedelta

        if self.ticks is not None:
            self.ticks.advance(max(seconds, 0.0))
        else:
            self.moment += timedelta(seconds=max(seconds, 0.0))


def fast_policy(ticks: Any = None, **changes: Any) -> Any:
    """A ReconcilePolicy on :class:`FakeTime`: a lost create is settled at once, without real waiting."""
    from batchkit._submit.reconcile import ReconcilePolicy

    clock = FakeTime(ticks)
    settings: dict[str, Any] = {"skew": 3600.0, "in_flight": 1.0, "second_look": 0.5, **changes}
    return ReconcilePolicy(now=clock.now, sleep=clock.sleep, **settings)


# Hypothesis strategies shared by the property tests: valid batch lines (as wire dicts) and mutations of them.

KNOWN_MODELS = ("lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta", "react-1", "sync-3")
_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%"


def urls() -> st.SearchStrategy[str]:
    """Absolute http(s) URLs, sometimes with upper-case schemes, queries or non-ASCII letters."""
    host = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
    segment = st.text(alphabet=_SAFE + "éñüß", min_size=0, max_size=10)
    return st.builds(
        lambda scheme, h, parts, query: f"{scheme}://{h}.example.com/{'/'.join(parts)}{query}",
        st.sampled_from(["https", "http", "HTTPS", "Https"]),
        host,
        st.lists(segment, max_size=3),
        st.sampled_from(["", "?sig=abc&t=1", "#frag"]),
    )


def request_ids() -> st.SearchStrategy[str]:
    """Usable request_ids: mostly plain ASCII, sometimes any printable text without outer whitespace."""
    plain = st.text(alphabet=_SAFE + ":/ ", min_size=1, max_size=40).filter(lambda s: s.strip() == s)
    fancy = st.text(min_size=1, max_size=20).filter(lambda s: s.isprintable() and s.strip() == s)
    return st.one_of(plain, plain, fancy)


def output_file_names() -> st.SearchStrategy[str]:
    return st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=40
    )


@st.composite
def valid_lines(draw: st.DrawFn, *, rare: bool = True) -> dict[str, Any]:
    """A batch line (wire dict) with no finding at all. ``rare=False`` leaves out the rarer features
    (segments, active speaker detection, image inputs, dubbing, dialogue edits) that the fast gate never
    clears."""
    # dubbing and dialogue edits take no audio (a dubbing request ignores it: a warning); images need sync-3
    mode = draw(st.sampled_from(["speech", "speech", "speech", "image", "dub", "edit"])) if rare else "speech"
    model = "sync-3" if mode == "image" else draw(st.sampled_from(KNOWN_MODELS))
    source = st.one_of(
        st.builds(lambda u: {"url": u}, urls()),
        st.builds(lambda a: {"assetId": a}, st.text(min_size=1, max_size=12)),
    )
    video = {"type": "image" if mode == "image" else "video", **draw(source)}
    use_segments = rare and mode in ("speech", "image") and draw(st.booleans())
    n_audio = draw(st.integers(1, 3)) if mode in ("speech", "image") else 0
    audios: list[dict[str, Any]] = []
    for k in range(n_audio):
        if draw(st.booleans()):
            item: dict[str, Any] = {"type": "audio", **draw(source)}
        else:
            provider: dict[str, Any] = {
                "voiceId": draw(st.text(min_size=1, max_size=10)),
                "script": draw(st.text(min_size=1, max_size=40)),
            }
            if draw(st.booleans()):
                provider["name"] = "elevenlabs"
            if draw(st.booleans()):
                provider["stability"] = draw(st.floats(0, 1))
            if draw(st.booleans()):
                provider["similarityBoost"] = draw(st.one_of(st.floats(0, 1), st.integers(0, 1)))
            item = {"type": "text", "provider": provider}
        if use_segments or draw(st.booleans()):
            item["refId"] = f"ref-{k}"
        audios.append(item)
    items = [video, *audios]
    if draw(st.booleans()):
        items = draw(st.permutations(items))
    payload: dict[str, Any] = {"model": model, "input": items}
    if draw(st.booleans()):
        options: dict[str, Any] = {}
        if draw(st.booleans()):
            options["sync_mode"] = draw(st.sampled_from(["bounce", "loop", "cut_off", "silence", "remap"]))
        if draw(st.booleans()):
            options["temperature"] = draw(st.one_of(st.floats(0, 1), st.sampled_from([0, 1])))
        if draw(st.booleans()):
            options["occlusion_detection_enabled"] = draw(st.booleans())
        if model == "react-1" and draw(st.booleans()):
            options["model_mode"] = draw(st.sampled_from(["lips", "face", "head"]))
            options["prompt"] = draw(st.sampled_from(["happy", "sad", "neutral"]))
        if rare and draw(st.booleans()):
            options["active_speaker_detection"] = {
                "auto_detect": mode != "image" and draw(st.booleans()),  # images: manual selection only
                "frame_number": draw(st.integers(0, 1000)),
                "coordinates": draw(st.lists(st.integers(0, 2000), min_size=2, max_size=2)),
            }
        payload["options"] = options
    if use_segments:
        refs = [a["refId"] for a in audios]
        spans = []
        for s, ref in enumerate(draw(st.lists(st.sampled_from(refs), min_size=1, max_size=3))):
            span: dict[str, Any] = {
                "startTime": s * 2.0,
                "endTime": s * 2.0 + 1.5,
                "audioInput": {"refId": ref},
            }
            if draw(st.booleans()):
                span["audioInput"].update({"startTime": 0.0, "endTime": 1.0})
            spans.append(span)
        payload["segments"] = spans
    if mode == "dub":
        dub: dict[str, Any] = {"targetLang": draw(st.sampled_from(["es", "fr", "de", "hi", "pt-BR"]))}
        if draw(st.booleans()):
            dub["sourceLang"] = draw(st.sampled_from(["auto", "en"]))
        if draw(st.booleans()):
            dub["providerName"] = "elevenlabs"
        payload["dubParams"] = dub
    elif mode == "edit":
        payload["dialogueEdit"] = {"id": draw(st.uuids()).hex}
    if draw(st.booleans()):
        payload["webhookUrl"] = draw(urls())
    if draw(st.booleans()):
        payload["outputFileName"] = draw(output_file_names())
    return {"request_id": draw(request_ids()), "endpoint": "/v2/generate", "payload": payload}


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value (64-bit integers, finite floats)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


#: Strings that sit at the edges of the string rules.
ODD_STRINGS = [
    "",
    " ",
    "https://",
    "https:///x",
    "http://a b",
    "HTTPS://CDN.EXAMPLE.COM/V.MP4",
    "https://cdn.example.com/v.mp4\n",
    "https://cdn.example.com/\u200bv.mp4",
    "https://cdn.example.com/\u00a0v.mp4",
    "https://maría.example.com/v.mp4",
    "ftp://cdn.example.com/v.mp4",
    "//cdn.example.com/v.mp4",
    "cdn.example.com/v.mp4",
    " padded ",
    "tab\there",
    "a" * 300,
    "../../etc",
    "promo_🎉",
    "lipsync-2",
    "react-1",
    "video",
    "audio",
    "text",
    "elevenlabs",
    "/v2/generate",
]


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.extend(_paths(value, (*path, key)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.extend(_paths(value, (*path, i)))
    return out


@st.composite
def mutated_lines(draw: st.DrawFn) -> Any:
    """A valid line with one to three small mutations: keys dropped or renamed, values retyped or swapped
    for odd strings, list items duplicated or removed."""
    obj = copy.deepcopy(draw(valid_lines(rare=draw(st.integers(0, 2)) == 0)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(obj) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = obj
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["drop", "rename", "retype", "odd", "duplicate", "null"]))
        if action == "drop":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            new = draw(st.sampled_from([key.lower(), key.upper(), key + "_", _snake(key), "type", "url"]))
            parent[new] = parent.pop(key)
        elif action == "retype":
            parent[key] = draw(json_values())
        elif action == "odd":
            parent[key] = draw(st.sampled_from(ODD_STRINGS))
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[key] = None
    return obj


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)
