"""Results keep a typed source's own column types (Parquet, DataFrames); CSV stays text; a pandas index
that may hold the request id becomes a column, never dropped; pandas back on request."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

import batchkit
from batchkit import BuildOptions, Limits, RunOptions, build, collect_results, read_source
from batchkit._errors import InputError

SMALL = Limits(min_records=1)
MAPPING: dict[str, Any] = {"request_id": "{id}", "model": "lipsync-2", "video": "{video}", "audio": "{audio}"}


def typed(n: int = 4) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"00{i}" for i in range(n)],
            "video": [f"https://cdn.example.com/v/{i}.mp4" for i in range(n)],
            "audio": [f"https://cdn.example.com/a/{i}.wav" for i in range(n)],
            "n": list(range(n)),
            "price": [i * 1.25 for i in range(n)],
            "day": [datetime.date(2026, 1, i + 1) for i in range(n)],
            "at": [datetime.datetime(2026, 1, 1, 12, i) for i in range(n)],
            "vip": [i % 2 == 0 for i in range(n)],
            "nothing": [None] * n,
        }
    )


def test_a_parquet_source_comes_back_in_its_own_types(tmp_path: Path) -> None:
    frame = typed()
    path = tmp_path / "rows.parquet"
    frame.write_parquet(path)
    build(path, MAPPING, tmp_path / "o", BuildOptions(limits=SMALL))
    joined = collect_results(tmp_path / "o", download=False).frame
    assert joined.select(frame.columns).schema == frame.schema
    assert joined.select(frame.columns).equals(frame)
    assert joined["id"].to_list() == ["000", "001", "002", "003"]  # built from text: 007 stays 007


def test_a_csv_source_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    typed().drop("nothing").write_csv(path)
    build(path, MAPPING, tmp_path / "o", BuildOptions(limits=SMALL))
    joined = collect_results(tmp_path / "o", download=False).frame
    assert {joined.schema[c] for c in ("id", "n", "price", "day", "vip")} == {pl.String}


def test_a_polars_frame_comes_back_typed_from_its_snapshot_and_as_given(tmp_path: Path) -> None:
    frame = typed()
    build(frame, MAPPING, tmp_path / "o", BuildOptions(limits=SMALL))
    kept = ["id", "n", "price", "day", "at", "vip"]
    for source in (None, frame):  # the build's snapshot, or the frame given again
        joined = collect_results(tmp_path / "o", download=False, source=source).frame
        assert joined.select(kept).equals(frame.select(kept))
        assert joined["nothing"].null_count() == 4  # all nulls: kept as text in the snapshot


def test_a_named_pandas_index_is_a_column_the_mapping_can_read(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "video": [f"https://cdn.example.com/v/{i}.mp4" for i in range(3)],
            "audio": [f"https://cdn.example.com/a/{i}.wav" for i in range(3)],
            "n": [10, 20, 30],
        },
        index=pd.Index(["c1", "c2", "c3"], name="customer_id"),
    )
    result = build(df, {**MAPPING, "request_id": "{customer_id}"}, tmp_path / "o", BuildOptions(limits=SMALL))
    assert result.manifest.requests_frame()["request_id"].to_list() == ["c1", "c2", "c3"]
    results = collect_results(tmp_path / "o", download=False, source=df)
    assert results.frame.columns[:4] == ["customer_id", "video", "audio", "n"]
    back = results.to_pandas()
    assert isinstance(back, pd.DataFrame)
    assert back["customer_id"].tolist() == ["c1", "c2", "c3"]
    assert back["n"].tolist() == [10, 20, 30]
    assert str(back["n"].dtype) == "int64"


@pytest.mark.parametrize(
    ("index", "columns"),
    [
        pytest.param(pd.RangeIndex(3), ["a"], id="default-range-is-positions"),
        pytest.param(pd.RangeIndex(5, 8), ["index", "a"], id="shifted-range"),
        pytest.param(pd.Index([9, 4, 7]), ["index", "a"], id="filtered"),
        pytest.param(
            pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)], names=["group", None]),
            ["group", "level_1", "a"],
            id="multi",
        ),
    ],
)
def test_pandas_indexes(index: Any, columns: list[str]) -> None:
    source = read_source(pd.DataFrame({"a": ["1", "2", "3"]}, index=index))
    assert source.columns == columns


def test_an_index_named_like_a_column_is_an_input_error() -> None:
    df = pd.DataFrame({"id": ["1", "2"]}, index=pd.Index(["a", "b"], name="id"))
    with pytest.raises(InputError, match="rename it"):
        read_source(df)


def test_run_on_a_pandas_frame_offers_pandas_back(tmp_path: Path) -> None:
    """batchkit.run(pandas_df): RunResult.frame is polars with the frame's own types; to_pandas() is pandas."""
    df = typed(20).drop("nothing").to_pandas().set_index("id")  # the sandbox takes batches of 20 or more
    options = RunOptions(sandbox=True, poll=batchkit.PollPolicy(initial=0.05, maximum=0.2))
    result = batchkit.run(df, {**MAPPING, "request_id": "{id}"}, tmp_path / "o", options)
    assert result.results.outcomes["completed"] == 20
    assert result.frame["n"].dtype == pl.Int64
    assert result.frame["day"].dtype.is_temporal()  # pandas holds dates as datetime64
    back = result.to_pandas()
    assert isinstance(back, pd.DataFrame)
    assert back["id"].tolist()[:3] == ["000", "001", "002"]
    assert back["outcome"].tolist() == ["completed"] * 20
