"""RangeFile: seekable reads over HTTP Range, counted and bounded, whatever the server does with Range."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit._probe.config import ProbeConfig, TimeBudgetExceeded
from batchkit._probe.fetch import FetchError
from batchkit._probe.rangefile import ByteBudgetExceeded, RangeFile
from batchkit.sandbox._media import MediaHost

from .conftest import quick

DATA = bytes(range(256)) * 1200  # 307,200 bytes: several 64 KiB blocks and a short last one


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One connection pool for the module's reads."""
    with httpx.Client() as http:
        yield http


@pytest.fixture
def blob_url(media: MediaHost) -> str:
    """DATA, served with Range support."""
    return media.url(media.put(DATA))


def test_reads_and_seeks_return_the_bytes_at_those_offsets(blob_url: str, client: httpx.Client) -> None:
    """Reads across block edges, from the end and past the end give exactly the file's bytes."""
    with RangeFile(blob_url, client, config=quick()) as f:
        assert f.read(10) == DATA[:10]
        f.seek(65_530)
        assert f.read(20) == DATA[65_530:65_550]
        f.seek(-100, io.SEEK_END)
        assert f.read() == DATA[-100:]
        f.seek(len(DATA) + 5)
        assert f.read(10) == b""
        assert f.size == len(DATA)
        assert f.range_supported is True
        assert f.status == 206


def test_cached_blocks_cost_no_request(blob_url: str, client: httpx.Client) -> None:
    """Rereading bytes already fetched sends nothing; every body byte received is counted."""
    with RangeFile(blob_url, client, config=quick()) as f:
        f.read(100)
        f.seek(0)
        f.read(65_536)
        assert (f.requests, f.bytes_read) == (1, 65_536)
        f.read(1)
        assert (f.requests, f.bytes_read) == (2, 131_072)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(st.tuples(st.integers(0, len(DATA) + 1000), st.integers(0, 150_000)), min_size=1, max_size=6)
)
def test_any_sequence_of_seeks_and_reads_matches_the_file(
    blob_url: str, client: httpx.Client, ops: list[tuple[int, int]]
) -> None:
    """Random seek/read sequences read the same bytes as slicing the file, with a tiny block cache."""
    with RangeFile(
        blob_url, client, config=quick(block_size=4096, cache_blocks=2, byte_budget=10 << 20)
    ) as f:
        for offset, length in ops:
            f.seek(offset)
            assert f.read(length) == DATA[offset : offset + length]


def test_byte_budget_is_a_hard_stop(blob_url: str, client: httpx.Client) -> None:
    """Past the budget a read raises ByteBudgetExceeded; what was read before stays readable."""
    with RangeFile(blob_url, client, config=quick(byte_budget=100_000)) as f:
        assert f.read(65_536) == DATA[:65_536]
        with pytest.raises(ByteBudgetExceeded, match="byte budget of 100,000"):
            f.read(100_000)
        assert f.bytes_read <= 100_000
        f.seek(0)
        assert f.read(10) == DATA[:10]


def test_eof_on_failure_answers_end_of_file_and_keeps_the_reason(blob_url: str, client: httpx.Client) -> None:
    """With eof_on_failure, a read past the budget is empty, the cause is kept, and nothing more is sent."""
    with RangeFile(blob_url, client, config=quick(byte_budget=70_000), eof_on_failure=True) as f:
        f.read(65_536)
        assert f.read(100_000) == b""
        assert isinstance(f.failure, ByteBudgetExceeded)
        sent = f.requests
        assert f.read(100_000) == b""
        assert f.requests == sent


def test_server_ignoring_range_is_read_only_as_far_as_needed(media: MediaHost, client: httpx.Client) -> None:
    """A 200 with the whole 5 GB body: the stream is read to what the reads need, never to the end."""
    url = media.url("huge.mp4", size="5G", norange=1)
    with RangeFile(url, client, config=quick(byte_budget=1 << 20)) as f:
        head = f.read(1000)
        assert head[4:8] == b"ftyp"
        assert f.range_supported is False
        assert f.status == 200
        f.seek(300_000)
        assert len(f.read(1000)) == 1000
        assert f.bytes_read < 400_000
        f.seek(4_000_000_000)
        with pytest.raises(ByteBudgetExceeded, match="ignores Range"):
            f.read(10)
        assert f.bytes_read <= 1 << 20


def test_server_ignoring_range_on_a_small_file_gives_all_of_it(
    media: MediaHost, client: httpx.Client
) -> None:
    """Without Range or Content-Length, a small file is read whole and its real size learned at the end."""
    url = media.url("small.wav", duration=0.5, norange=1, chunked=1)
    with RangeFile(url, client, config=quick()) as f:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(0)
        assert len(f.read()) == size == f.size
        assert f.range_supported is False


def test_a_lying_size_guess_is_corrected_by_content_range(blob_url: str, client: httpx.Client) -> None:
    """A HEAD's Content-Length is only a guess: the first 206's Content-Range sets the size."""
    with RangeFile(blob_url, client, config=quick(), size=10**12) as f:
        assert f.size == len(DATA)


def test_416_ends_the_file(media: MediaHost, client: httpx.Client) -> None:
    """A start past the end gets 416 with bytes */size: an empty read, and the size is learned."""
    with RangeFile(media.url("tiny.txt"), client, config=quick(block_size=4096)) as f:
        f.seek(100_000)
        assert f.read(10) == b""
        assert f.size is not None
        assert f.size < 100


def test_zero_length_file(media: MediaHost, client: httpx.Client) -> None:
    """An empty file reads as empty, size 0, whatever its Content-Type claims."""
    with RangeFile(media.url("nothing.mp4", **{"as": "empty"}), client, config=quick()) as f:
        assert f.read(100) == b""
        assert f.size == 0


def test_http_errors_raise_fetch_error(media: MediaHost, client: httpx.Client) -> None:
    """A 404 to the first Range read is a FetchError carrying the status."""
    with (
        RangeFile(media.url("gone.mp4", status=404), client, config=quick()) as f,
        pytest.raises(FetchError) as caught,
    ):
        f.read(1)
    assert caught.value.status == 404


def test_a_stalled_body_is_bounded_by_the_time_budget(media: MediaHost, client: httpx.Client) -> None:
    """A server that stops mid-body never holds a read past the read timeout or the time budget."""
    config = quick(read_timeout=0.2, time_budget=0.5, retries=0)
    with (
        RangeFile(media.url("stall.mp4", stall=10), client, config=config) as f,
        pytest.raises((FetchError, TimeBudgetExceeded)),
    ):
        f.read(100)


def test_a_client_that_sends_the_api_key_is_refused(blob_url: str) -> None:
    """RangeFile will not read through a client whose default headers carry x-api-key."""
    with (
        httpx.Client(headers={"x-api-key": "sk-live"}) as keyed,
        pytest.raises(ValueError, match="x-api-key"),
    ):
        RangeFile(blob_url, keyed, config=ProbeConfig())
