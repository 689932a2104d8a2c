"""fetch_outputs against a media host that misbehaves on purpose (loopback http.server): what is a video,
what is retried, what is renewed, and what ends as which coded finding, with nothing half-written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from servers import (
    FAST,
    MP4,
    MediaHost,
    item,
    media_host_fixture,  # noqa: F401 - fixtures
    tree,
)

from batchkit._handback.fetch import FETCH_CODES, FetchItem, fetch_outputs


def _fetch(host: MediaHost, tmp_path: Path, items: list[FetchItem], **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("options", FAST)
    return fetch_outputs(items, tmp_path / "v", ledger_path=tmp_path / "fetched.parquet", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path", ["/ok/a", "/octet/a", "/webm/a"], ids=["video-mp4", "octet-stream-mp4", "untyped-webm"]
)
def test_video_bodies_are_accepted(media_host: MediaHost, tmp_path: Path, path: str) -> None:
    """video/*, or a generic binary type whose first bytes are an MP4 (ftyp) or WebM (EBML) file, is a video."""
    result = _fetch(media_host, tmp_path, [item(media_host, path)])
    assert result.findings == []
    assert len(result.fetched) == 1
    assert (tmp_path / "v" / result.fetched[0].name).stat().st_size == result.fetched[0].bytes > 0


@pytest.mark.parametrize(
    ("path", "code", "words"),
    [
        pytest.param("/html/a", "fetch-not-video", "text/html", id="html-page"),
        pytest.param("/octet-html/a", "fetch-not-video", "Access denied", id="html-as-octet-stream"),
        pytest.param("/video-json/a", "fetch-not-video", "not found", id="json-as-video"),
        pytest.param("/empty/a", "fetch-empty", "empty body", id="empty"),
        pytest.param("/teapot/a", "fetch-failed", "418", id="other-4xx"),
    ],
)
def test_bodies_that_are_not_videos_are_findings_and_never_files(
    media_host: MediaHost, tmp_path: Path, path: str, code: str, words: str
) -> None:
    """A page, an empty body or a refusal is one coded finding naming what came back, tried once, no file left."""
    result = _fetch(media_host, tmp_path, [item(media_host, path)])
    assert [f.code for f in result.findings] == [code]
    assert code in FETCH_CODES
    assert words in result.findings[0].message
    assert "sig=secret" not in result.findings[0].message
    assert result.fetched == []
    assert media_host.count(path) == 1
    assert tree(tmp_path / "v") == {}


def test_a_truncated_body_is_retried_then_reported(media_host: MediaHost, tmp_path: Path) -> None:
    """A body shorter than its Content-Length is retried max_attempts times, then fetch-truncated; no file stays."""
    result = _fetch(
        media_host, tmp_path, [item(media_host, "/truncate/a")], options=replace(FAST, max_attempts=3)
    )
    assert [f.code for f in result.findings] == ["fetch-truncated"]
    assert "3 tries" in result.findings[0].message
    assert media_host.count("/truncate/") == 3
    assert tree(tmp_path / "v") == {}


def test_503_then_ok_honours_retry_after(media_host: MediaHost, tmp_path: Path) -> None:
    """Two 503s with Retry-After: 7, then the video: fetched, after two waits of exactly what the server asked."""
    waits: list[float] = []
    options = replace(FAST, sleep=waits.append)
    result = _fetch(media_host, tmp_path, [item(media_host, "/flaky/a")], options=options)
    assert result.findings == []
    assert (tmp_path / "v" / "flaky-a.mp4").read_bytes() == MP4
    assert waits == [7.0, 7.0]
    assert media_host.count("/flaky/") == 3


def test_retry_after_is_capped_and_retries_are_bounded(media_host: MediaHost, tmp_path: Path) -> None:
    """A host that stays busy: waits capped at retry_after_max, attempts at max_attempts, then fetch-failed."""
    media_host.flaky_failures = 100
    waits: list[float] = []
    options = replace(FAST, sleep=waits.append, max_attempts=4, retry_after_max=2.5)
    result = _fetch(media_host, tmp_path, [item(media_host, "/flaky/a")], options=options)
    assert [f.code for f in result.findings] == ["fetch-failed"]
    assert "503" in result.findings[0].message
    assert waits == [2.5, 2.5, 2.5]
    assert media_host.count("/flaky/") == 4


def test_a_slow_host_times_out_into_a_finding(media_host: MediaHost, tmp_path: Path) -> None:
    """No answer within the read timeout: retried, then fetch-failed saying it timed out."""
    options = replace(FAST, timeout=0.2, max_attempts=2)
    result = _fetch(media_host, tmp_path, [item(media_host, "/slow/a")], options=options)
    assert [f.code for f in result.findings] == ["fetch-failed"]
    assert "timed out" in result.findings[0].message
    assert media_host.count("/slow/") == 2


def test_a_gone_link_is_renewed_once(media_host: MediaHost, tmp_path: Path) -> None:
    """404 → renew(item) gives a working URL → fetched; renew is asked exactly once."""
    asked: list[str] = []

    def renew(it: FetchItem) -> str:
        asked.append(it.request_id)
        return f"{media_host.url}/ok/renewed?sig=new"

    result = _fetch(media_host, tmp_path, [item(media_host, "/gone/a", generation_id="g1")], renew=renew)
    assert result.findings == []
    assert asked == ["gone-a"]
    assert result.renewed == 1
    assert result.fetched[0].source == f"{media_host.url}/gone/a"  # the results' URL, without its query


@pytest.mark.parametrize(
    ("renewed_path", "words"),
    [
        pytest.param("/gone/b", "again after renewing", id="still-gone"),
        pytest.param(None, "could not be renewed", id="no-fresh-link"),
    ],
)
def test_what_renewal_does_not_fix_is_fetch_expired(
    media_host: MediaHost, tmp_path: Path, renewed_path: str | None, words: str
) -> None:
    """A renewed link that still fails, or no fresh link at all, ends as fetch-expired (one renewal, no loop)."""
    asked: list[str] = []

    def renew(it: FetchItem) -> str | None:
        asked.append(it.request_id)
        return None if renewed_path is None else f"{media_host.url}{renewed_path}"

    result = _fetch(media_host, tmp_path, [item(media_host, "/gone/a", generation_id="g1")], renew=renew)
    assert [f.code for f in result.findings] == ["fetch-expired"]
    assert words in result.findings[0].message
    assert len(asked) == 1


def test_an_expired_signature_400_is_renewed(media_host: MediaHost, tmp_path: Path) -> None:
    """S3's way of saying a presigned URL expired (400 ExpiredToken) counts as expired and is renewed."""
    result = _fetch(
        media_host, tmp_path, [item(media_host, "/expired/a")], renew=lambda it: f"{media_host.url}/ok/x"
    )
    assert result.findings == []
    assert result.renewed == 1


def test_no_output_url_is_renewed_or_reported(media_host: MediaHost, tmp_path: Path) -> None:
    """An item without a URL asks renew first; without renew it is fetch-no-url, without any request."""
    bare = FetchItem("r1", None, "r1.mp4", generation_id="g1")
    result = _fetch(media_host, tmp_path, [bare])
    assert [f.code for f in result.findings] == ["fetch-no-url"]
    assert result.media_requests == 0
    again = _fetch(media_host, tmp_path, [bare], renew=lambda it: f"{media_host.url}/ok/r1")
    assert again.findings == []
    assert len(again.fetched) == 1


def test_a_rerun_retries_only_what_failed(media_host: MediaHost, tmp_path: Path) -> None:
    """Good files are kept; the next run sends requests only for the items that had findings."""
    items = [item(media_host, f"/ok/{i}") for i in range(5)] + [item(media_host, "/flaky/x")]
    media_host.flaky_failures = 2
    first = _fetch(media_host, tmp_path, items, options=replace(FAST, max_attempts=1))
    assert first.failed == ["flaky-x"]
    before = media_host.count("/ok/")
    second = _fetch(media_host, tmp_path, items, options=replace(FAST, max_attempts=1))
    assert second.failed == ["flaky-x"]
    third = _fetch(media_host, tmp_path, items, options=replace(FAST, max_attempts=1))
    assert third.ok
    assert [e.request_id for e in third.fetched] == ["flaky-x"]
    assert len(third.present) == 5
    assert media_host.count("/ok/") == before
    assert media_host.count("/flaky/") == 3


def test_no_media_request_carries_an_api_key_or_a_compressed_body(
    media_host: MediaHost, tmp_path: Path
) -> None:
    """The client fetch makes sends no x-api-key or Authorization, asks for identity encoding, says who it is."""
    _fetch(media_host, tmp_path, [item(media_host, f"/ok/{i}") for i in range(3)])
    assert len(media_host.headers) == 3
    for headers in media_host.headers:
        assert "x-api-key" not in headers
        assert "authorization" not in headers
        assert headers["accept-encoding"] == "identity"
        assert headers["user-agent"].startswith("batchkit/")


def test_many_items_run_concurrently_over_few_connections(media_host: MediaHost, tmp_path: Path) -> None:
    """40 items with concurrency 4: every file fetched, each with its own bytes, in the given order."""
    items = [item(media_host, f"/ok/{i}") for i in range(40)]
    result = _fetch(media_host, tmp_path, items, concurrency=4)
    assert result.ok
    assert [e.request_id for e in result.fetched] == [i.request_id for i in items]
    assert sorted(tree(tmp_path / "v")) == sorted(i.name for i in items)
