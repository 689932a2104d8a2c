"""The probe cache (hits, misses, changed validators, refresh, re-signed URLs) and media.parquet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from batchkit import InputError
from batchkit._probe import MediaInfo, ProbeCache, default_cache_dir, probe_urls, write_media_parquet
from batchkit._probe.cache import MEDIA_COLUMNS, validators_match
from batchkit.sandbox._media import MediaHost

from .conftest import quick


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ProbeCache]:
    """An empty cache in the test's own folder."""
    with ProbeCache(tmp_path / "probe.sqlite3") as store:
        yield store


def test_second_probe_is_a_hit_that_costs_one_head(media: MediaHost, cache: ProbeCache) -> None:
    """Unchanged validators: the cached result comes back, marked from_cache, for one HEAD and no body bytes."""
    url = media.url("cached.mp4", duration=14)
    first = probe_urls([url], config=quick(), cache=cache)[url]
    assert not first.from_cache
    assert first.bytes_read > 0
    assert len(cache) == 1
    media.reset()
    second = probe_urls([url], config=quick(), cache=cache)[url]
    assert second.from_cache
    assert (second.bytes_read, second.requests) == (0, 1)
    assert second.duration == first.duration
    assert [r.method for r in media.requests] == ["HEAD"]


def test_changed_validators_are_probed_again(media: MediaHost, cache: ProbeCache) -> None:
    """A file replaced at the same URL (new ETag and Last-Modified) is a miss, and its new length is learned."""
    url = media.url("replaced.mp4", duration=10)
    assert probe_urls([url], config=quick(), cache=cache)[url].duration == pytest.approx(10, abs=0.05)
    media.replace("replaced.mp4", duration=40)
    again = probe_urls([url], config=quick(), cache=cache)[url]
    assert not again.from_cache
    assert again.duration == pytest.approx(40, abs=0.05)
    assert cache.get(url).duration == again.duration  # type: ignore[union-attr]


def test_refresh_ignores_the_cache_and_stores_the_new_result(media: MediaHost, cache: ProbeCache) -> None:
    """refresh=True probes again even when validators match."""
    url = media.url("refresh.wav", duration=5)
    probe_urls([url], config=quick(), cache=cache)
    fresh = probe_urls([url], config=quick(), cache=cache, refresh=True)[url]
    assert not fresh.from_cache
    assert fresh.bytes_read > 0


def test_without_validators_nothing_is_cached(media: MediaHost, cache: ProbeCache) -> None:
    """A server that sends neither ETag nor Last-Modified cannot be revalidated: no entry is kept."""
    url = media.url("novalidators.mp4", etag=0, lastmod=0)
    probe_urls([url], config=quick(), cache=cache)
    assert len(cache) == 0
    assert not probe_urls([url], config=quick(), cache=cache)[url].from_cache


def test_failures_to_reach_a_host_are_never_cached(media: MediaHost, cache: ProbeCache) -> None:
    """A 503 today may work tomorrow: unreachable results are not stored."""
    url = media.url("down.mp4", status=503)
    assert probe_urls([url], config=quick(), cache=cache)[url].problem == "media-unreachable"
    assert len(cache) == 0


def test_a_resigned_url_hits_the_entry_of_its_object(media: MediaHost, cache: ProbeCache) -> None:
    """The key drops signature parameters: tomorrow's freshly signed link reuses today's probe."""
    today = media.url(
        "signed.mp4",
        duration=9,
        **{"X-Amz-Date": "20260115T100000Z", "X-Amz-Expires": "3600", "X-Amz-Signature": "aaa"},
    )
    tomorrow = today.replace("20260115T100000Z", "20260116T100000Z").replace("Signature=aaa", "Signature=bbb")
    probe_urls([today], config=quick(), cache=cache)
    hit = probe_urls([tomorrow], config=quick(), cache=cache)[tomorrow]
    assert hit.from_cache
    assert hit.url == tomorrow


def test_a_refused_head_is_revalidated_with_the_first_block(media: MediaHost, cache: ProbeCache) -> None:
    """When HEAD is refused (presigned GET URLs), the first Range read's validators decide the hit."""
    url = media.url("nohead.mp4", head=403)
    probe_urls([url], config=quick(), cache=cache)
    again = probe_urls([url], config=quick(), cache=cache)[url]
    assert again.from_cache
    assert again.requests == 2
    assert 0 < again.bytes_read <= 65_536


def test_validators_must_include_etag_or_last_modified() -> None:
    """A matching length alone proves nothing; any validator known on both sides must be equal."""
    cached = MediaInfo("u", etag='"a"', size=10)
    assert validators_match(cached, '"a"', None, 10)
    assert not validators_match(cached, '"b"', None, 10)
    assert not validators_match(cached, '"a"', None, 11)
    assert not validators_match(MediaInfo("u", size=10), None, None, 10)


def test_cache_folder_follows_batchkit_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$BATCHKIT_CACHE_DIR places the cache; an unusable folder is an InputError naming it."""
    monkeypatch.setenv("BATCHKIT_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    with ProbeCache() as store:
        assert store.path == tmp_path / "here" / "probe.sqlite3"
        assert store.path.exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot open the probe cache"):
        ProbeCache(blocker / "probe.sqlite3")


def test_media_parquet_has_one_row_per_url_and_is_written_atomically(
    media: MediaHost, tmp_path: Path
) -> None:
    """media.parquet: the documented columns, status ok or the code, no temporary file left, no credentials."""
    good, bad = media.url("table.mp4", duration=11), media.url("table-gone.mp4", status=404)
    infos = list(probe_urls([(good, "video"), (bad, "audio")], config=quick()).values())
    infos.append(MediaInfo("https://user:pw@cdn.example.com/x.mp4", "video", problem="media-unreachable"))
    path = write_media_parquet(infos, tmp_path / "build" / "media.parquet")
    table = pl.read_parquet(path)
    assert table.columns == list(MEDIA_COLUMNS)
    assert table.get_column("status").to_list() == ["ok", "media-unreachable", "media-unreachable"]
    assert table.get_column("kind").to_list() == ["video", "audio", "video"]
    assert table.get_column("duration")[0] == pytest.approx(11, abs=0.05)
    assert table.get_column("url")[2] == "https://***@cdn.example.com/x.mp4"
    assert [p.name for p in path.parent.iterdir()] == ["media.parquet"]
    empty = write_media_parquet([], tmp_path / "empty.parquet")
    assert pl.read_parquet(empty).columns == list(MEDIA_COLUMNS)
