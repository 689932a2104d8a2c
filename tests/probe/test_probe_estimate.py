"""Cost estimates: prices.toml, Sync's estimate endpoints (the sandbox's), totals, unknowns, speed of shape."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st

from batchkit import AuthenticationError, Client, InputError
from batchkit._probe import ApiPrices, EstimateItem, TablePrices, estimate
from batchkit.sandbox import Fault, Sandbox
from batchkit.sandbox._config import SANDBOX_PRICES

PRICES = TablePrices({"lipsync-2": 0.05, "lipsync-2-pro": 0.08})


def items() -> list[EstimateItem]:
    """Six requests over two models, two languages and two shards; one without a length, one unpriced."""
    return [
        EstimateItem("r1", "lipsync-2", 10.0, "es", "batch-00001"),
        EstimateItem("r2", "lipsync-2", 20.0, "fr", "batch-00001"),
        EstimateItem("r3", "lipsync-2-pro", 10.0, "es", "batch-00002"),
        EstimateItem("r4", "lipsync-2-pro", 5.5, "fr", "batch-00002"),
        EstimateItem("r5", "lipsync-2", None, "es", "batch-00002"),
        EstimateItem("r6", "react-1", 8.0, "fr", "batch-00002"),
    ]


def test_seconds_times_price_with_totals_by_model_each_and_shard() -> None:
    """Known costs are seconds × price; groups add up; unknown rows make the totals None, never 0."""
    result = estimate(items(), PRICES)
    assert (result.requests, result.priced, result.unknown_seconds, result.unknown_price) == (6, 4, 1, 1)
    assert result.known_usd == pytest.approx(10 * 0.05 + 20 * 0.05 + 10 * 0.08 + 5.5 * 0.08)
    assert result.total_usd is None
    assert result.unpriced_models == ("react-1",)
    assert result.by_model["lipsync-2"].known_usd == pytest.approx(1.5)
    assert result.by_model["lipsync-2"].unknown == 1
    assert result.by_model["lipsync-2"].total_usd is None
    assert result.by_model["lipsync-2-pro"].total_usd == pytest.approx(1.24)
    assert result.by_each["es"].known_usd == pytest.approx(0.5 + 0.8)
    assert result.by_shard["batch-00001"].total_usd == pytest.approx(1.5)
    assert result.source == "price table"


def test_all_known_gives_a_total() -> None:
    """Without unknowns, total_usd equals known_usd; empty each/shard groups are left out."""
    result = estimate([EstimateItem("a", "lipsync-2", 12.0), EstimateItem("b", "lipsync-2", 3.0)], PRICES)
    assert result.total_usd == pytest.approx(0.75)
    assert result.by_each == {}
    assert result.by_shard == {}


def test_a_frame_gives_the_same_estimate_as_items() -> None:
    """A polars frame (columns model, seconds, each, shard) is estimated like the same items."""
    rows = items()
    frame = pl.DataFrame(
        {
            "request_id": [i.request_id for i in rows],
            "model": [i.model for i in rows],
            "seconds": [i.seconds for i in rows],
            "each": [i.each for i in rows],
            "shard": [i.shard for i in rows],
        }
    )
    assert estimate(frame, PRICES).to_dict() == estimate(rows, PRICES).to_dict()
    with pytest.raises(InputError, match="seconds"):
        estimate(frame.drop("seconds"), PRICES)


def test_unusable_lengths_are_unknown() -> None:
    """NaN, infinite, zero and negative lengths are unknown, not free."""
    odd = [EstimateItem(str(i), "lipsync-2", s) for i, s in enumerate([math.nan, math.inf, 0.0, -3.0])]
    result = estimate(odd, PRICES)
    assert (result.unknown_seconds, result.known_usd, result.total_usd) == (4, 0.0, None)


def test_to_dict_is_json_ready() -> None:
    """to_dict has totals, unknown counts and every group, with null for unknown totals."""
    data = estimate(items(), PRICES).to_dict()
    assert data["total_usd"] is None
    assert data["unknown"] == 2
    assert set(data["by_model"]) == {"lipsync-2", "lipsync-2-pro", "react-1"}
    assert data["by_shard"]["batch-00001"]["total_usd"] == pytest.approx(1.5)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["lipsync-2", "lipsync-2-pro", "react-1"]),
            st.one_of(st.none(), st.floats(0.1, 40.0)),
            st.sampled_from(["es", "fr", None]),
            st.sampled_from(["s1", "s2", "s3"]),
        ),
        max_size=40,
    )
)
def test_totals_equal_the_sum_of_their_parts(rows: list[tuple[str, float | None, str | None, str]]) -> None:
    """By model, by each value and by shard, the parts add up to the whole: requests, unknowns and dollars."""
    result = estimate([EstimateItem(str(i), m, s, e, sh) for i, (m, s, e, sh) in enumerate(rows)], PRICES)
    expected = sum(s * PRICES.prices[m] for m, s, _, _ in rows if s is not None and m in PRICES.prices)
    assert result.known_usd == pytest.approx(expected)
    for groups in (result.by_model, result.by_shard):
        assert sum(g.requests for g in groups.values()) == result.requests == len(rows)
        assert sum(g.unknown for g in groups.values()) == result.unknown
        assert sum(g.known_usd for g in groups.values()) == pytest.approx(result.known_usd)
    if result.by_each:
        assert sum(g.known_usd for g in result.by_each.values()) == pytest.approx(result.known_usd)


# -- prices.toml -------------------------------------------------------------------------------------------


def test_prices_toml(tmp_path: Path) -> None:
    """The documented layout reads into a price table named after its file."""
    path = tmp_path / "prices.toml"
    path.write_text('# USD per second\ncurrency = "USD"\n[prices]\n"lipsync-2" = 0.05\n"sync-3" = 1\n')
    prices = TablePrices.from_toml(path)
    assert prices.prices == {"lipsync-2": 0.05, "sync-3": 1.0}
    assert prices.source == str(path)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param('[prices]\n"lipsync-2" = ', "not valid TOML", id="bad-toml"),
        pytest.param('[prices]\n"lipsync-2" = -0.05\n', "must be finite and ≥ 0", id="negative"),
        pytest.param('[prices]\n"lipsync-2" = nan\n', "must be finite and ≥ 0", id="nan"),
        pytest.param('[prices]\n"lipsync-2" = inf\n', "must be finite and ≥ 0", id="infinite"),
        pytest.param('[prices]\n"lipsync-2" = "0.05"\n', "a price is a number", id="string"),
        pytest.param('[prices]\n"lipsync-2" = true\n', "a price is a number", id="boolean"),
        pytest.param('"lipsync-2" = 0.05\n', "unknown key(s) lipsync-2", id="no-table"),
        pytest.param("[prices]\n", "no [prices] table", id="empty-table"),
        pytest.param('currency = "EUR"\n[prices]\n"lipsync-2" = 0.05\n', "must be in USD", id="currency"),
    ],
)
def test_bad_price_files_are_one_line_errors(tmp_path: Path, text: str, said: str) -> None:
    """Each way a price file can be wrong is an InputError of one line naming the file."""
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=r"prices\.toml") as caught:
        TablePrices.from_toml(path)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_price_file(tmp_path: Path) -> None:
    """A path that does not exist is an InputError that says it cannot be read."""
    with pytest.raises(InputError, match="cannot read the price file"):
        TablePrices.from_toml(tmp_path / "nope.toml")


# -- Sync's endpoints (the sandbox's) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One plain connection pool for calling the sandbox directly."""
    with httpx.Client() as pool:
        yield pool


@pytest.fixture(scope="module")
def client(sandbox: Sandbox) -> Iterator[Client]:
    """A batchkit client of the served sandbox."""
    assert sandbox.url is not None
    with Client(api_key="sk-sandbox", base_url=sandbox.url) as api:
        yield api


def test_api_prices_ask_once_per_model_and_rounded_length(sandbox: Sandbox, client: Client) -> None:
    """A thousand requests over two models and three rounded lengths cost six API calls, priced as documented."""
    before = sandbox.requests[("POST", "/v2/generations/estimate")]
    prices = ApiPrices(client)
    rows = [EstimateItem(f"r{i}", ("lipsync-2", "sync-3")[i % 2], 10.0 + (i % 3) + 0.25) for i in range(1000)]
    result = estimate(rows, prices)
    assert sandbox.requests[("POST", "/v2/generations/estimate")] - before == prices.calls == 6
    expected = sum(r.seconds * SANDBOX_PRICES[r.model] for r in rows if r.seconds is not None)
    assert result.total_usd == pytest.approx(expected)
    assert result.source == "Sync's estimate API"


def test_api_prices_unknown_model_is_unknown_not_zero(client: Client) -> None:
    """422 cost_estimate_unavailable makes the price unknown, and the estimate's total None."""
    result = estimate(
        [EstimateItem("a", "lipsync-9", 5.0), EstimateItem("b", "lipsync-2", 5.0)], ApiPrices(client)
    )
    assert result.unpriced_models == ("lipsync-9",)
    assert result.total_usd is None
    assert result.known_usd == pytest.approx(0.25)


def test_fallback_to_analyze_cost_when_the_newer_endpoint_is_missing(
    sandbox: Sandbox, client: Client
) -> None:
    """A 404 from /v2/generations/estimate moves to /v2/analyze/cost with the caller's example payloads."""
    sandbox.inject(Fault(route="POST /v2/generations/estimate", kind="status", status=404, times=None))
    asked: list[tuple[str, float]] = []
    media = sandbox.media

    def example(model: str, seconds: float) -> tuple[dict[str, object], float]:
        asked.append((model, seconds))
        clip = media.url("example.mp4", duration=seconds)
        voice = media.url("example.wav", duration=seconds)
        return {"input": [{"type": "video", "url": clip}, {"type": "audio", "url": voice}]}, seconds

    try:
        result = estimate(
            [EstimateItem(str(i), "lipsync-2-pro", 7.5) for i in range(50)],
            ApiPrices(client, examples=example),
        )
    finally:
        sandbox.clear_faults()
    assert asked == [("lipsync-2-pro", 8.0)]
    assert result.total_usd == pytest.approx(50 * 7.5 * SANDBOX_PRICES["lipsync-2-pro"])


def test_without_examples_the_fallback_prices_nothing(sandbox: Sandbox, client: Client) -> None:
    """With the newer endpoint gone and no example payloads, every price is unknown."""
    sandbox.inject(Fault(route="POST /v2/generations/estimate", kind="status", status=404, times=None))
    try:
        result = estimate([EstimateItem("a", "lipsync-2", 3.0)], ApiPrices(client))
    finally:
        sandbox.clear_faults()
    assert result.total_usd is None
    assert result.unknown_price == 1


def test_estimate_endpoints_need_the_api_key(sandbox: Sandbox, http: httpx.Client) -> None:
    """Both estimate routes answer 401 without a good x-api-key, like every /v2 route; ApiPrices raises it."""
    assert sandbox.url is not None
    for path, body in (
        ("/v2/generations/estimate", {"model": "lipsync-2", "duration": 5}),
        ("/v2/analyze/cost", {}),
    ):
        assert http.post(sandbox.url + path, json=body).status_code == 401
    sandbox.configure(api_keys=("sk-right",))
    try:
        with Client(api_key="sk-wrong", base_url=sandbox.url) as wrong, pytest.raises(AuthenticationError):
            ApiPrices(wrong).rate("lipsync-2", 5.0)
    finally:
        sandbox.configure(api_keys=None)


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        pytest.param(
            {"model": "lipsync-2", "duration": 12},
            200,
            {"estimatedFrameCount": 360.0, "estimatedGenerationCost": 0.6, "estimatedCredits": None},
            id="default-fps",
        ),
        pytest.param(
            {"model": "sync-3", "duration": 2.5, "fps": 24},
            200,
            {"estimatedFrameCount": 60.0, "estimatedGenerationCost": 0.3, "estimatedCredits": None},
            id="fps",
        ),
        pytest.param({"model": "nope", "duration": 2}, 422, None, id="unpriced-model"),
        pytest.param({"model": "lipsync-2", "duration": 0}, 400, None, id="zero-duration"),
        pytest.param({"model": "lipsync-2"}, 400, None, id="no-duration"),
    ],
)
def test_sandbox_estimate_endpoint(
    sandbox: Sandbox, http: httpx.Client, body: dict[str, object], status: int, answer: object
) -> None:
    """POST /v2/generations/estimate: frames = duration × fps, cost = duration × the sandbox price."""
    assert sandbox.url is not None
    response = http.post(sandbox.url + "/v2/generations/estimate", json=body, headers={"x-api-key": "k"})
    assert response.status_code == status
    if answer is not None:
        assert response.json() == answer
    if status == 422:
        assert response.json()["errorCode"] == "cost_estimate_unavailable"


@pytest.mark.parametrize(
    ("mode", "seconds"),
    [
        pytest.param(None, 4.0, id="cut-off"),
        pytest.param("silence", 9.0, id="silence"),
        pytest.param("loop", 9.0, id="loop"),
    ],
)
def test_sandbox_analyze_cost_bills_the_output_length(
    sandbox: Sandbox, http: httpx.Client, mode: str | None, seconds: float
) -> None:
    """POST /v2/analyze/cost times its own media URLs and bills the output's length under sync_mode."""
    assert sandbox.url is not None
    media = sandbox.media
    body: dict[str, object] = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": media.url("v.mp4", duration=4)},
            {"type": "audio", "url": media.url("a.wav", duration=9)},
        ],
    }
    if mode:
        body["options"] = {"sync_mode": mode}
    response = http.post(sandbox.url + "/v2/analyze/cost", json=body, headers={"x-api-key": "k"})
    assert response.status_code == 200
    assert response.json() == [
        {"estimatedFrameCount": seconds * 30, "estimatedGenerationCost": pytest.approx(seconds * 0.05)}
    ]


class _LengthPrices:
    """PRICES without flat_rates: estimate takes its two-pass, length-aware path."""

    source = "price table"

    def rate(self, model: str, seconds: float) -> float | None:
        return PRICES.rate(model, seconds)


def test_flat_and_length_aware_price_books_agree() -> None:
    """A book with flat_rates (one pass) and one without (two passes) give the same estimate."""
    rows = [
        EstimateItem(
            str(i),
            ("lipsync-2", "react-1", "lipsync-2-pro")[i % 3],
            (i % 7) * 4.5 or None,
            ("es", "fr")[i % 2],
            f"s{i % 4}",
        )
        for i in range(200)
    ]
    flat, aware = estimate(rows, PRICES), estimate(rows, _LengthPrices())
    assert flat.known_usd == pytest.approx(aware.known_usd)
    assert (flat.requests, flat.priced, flat.unknown_seconds, flat.unknown_price, flat.unpriced_models) == (
        aware.requests, aware.priced, aware.unknown_seconds, aware.unknown_price, aware.unpriced_models,
    )  # fmt: skip
    for mine, theirs in (
        (flat.by_model, aware.by_model),
        (flat.by_each, aware.by_each),
        (flat.by_shard, aware.by_shard),
    ):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert (mine[key].requests, mine[key].priced, mine[key].unknown) == (
                theirs[key].requests, theirs[key].priced, theirs[key].unknown,
            )  # fmt: skip
            assert mine[key].known_usd == pytest.approx(theirs[key].known_usd)
