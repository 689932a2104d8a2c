"""fetch_outputs against the sandbox over loopback: every completed output fetched, verified, resumable,
expired links renewed through the API, and the key never sent to the media host."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import httpx
import polars as pl
import pytest
from servers import FAST, MP4, SandboxBatch, finished_batch_fixture, sandbox_server_fixture, tree  # noqa: F401 - fixtures

from batchkit import ConfigurationError
from batchkit._handback.fetch import FETCH_CODES, FetchItem, FetchProgress, fetch_outputs, renew_from


def test_fetches_every_completed_output_as_a_real_mp4(finished_batch: SandboxBatch, tmp_path: Path) -> None:
    """18 completed requests give 18 files named after outputFileName, the sandbox's MP4 bytes, in the ledger
    (with fsync=True: durable files, the same outcome)."""
    items = finished_batch.items()
    result = fetch_outputs(
        items,
        tmp_path / "videos",
        ledger_path=tmp_path / "fetched.parquet",
        options=replace(FAST, fsync=True),
    )
    assert result.ok
    assert result.findings == []
    assert len(items) == len(result.fetched) == 18
    files = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert files == sorted(f"take_{i:03d}.mp4" for i in range(20) if i not in (4, 9))
    assert all((tmp_path / "videos" / name).read_bytes() == MP4 for name in files)
    assert result.media_requests == finished_batch.media_requests == 18
    ledger = pl.read_parquet(tmp_path / "fetched.parquet")
    assert ledger.columns == [
        "request_id", "name", "destination", "bytes", "sha256", "fetched_at", "source", "generation_id",
    ]  # fmt: skip
    assert ledger.height == 18
    assert set(ledger["sha256"]) == {hashlib.sha256(MP4).hexdigest()}
    assert set(ledger["bytes"]) == {len(MP4)}
    assert not any("?" in source or "sig=" in source for source in ledger["source"])
    assert not (tmp_path / ".fetched.parquet.journal").exists()


def test_a_second_run_sends_no_media_request_and_touches_no_file(
    finished_batch: SandboxBatch, tmp_path: Path
) -> None:
    """Re-running a finished fetch: zero media requests on the server, and every inode and mtime unchanged."""
    items = finished_batch.items()
    ledger = tmp_path / "state" / "fetched.parquet"
    fetch_outputs(items, tmp_path / "videos", ledger_path=ledger, options=FAST)
    before = tree(tmp_path)
    served = finished_batch.media_requests
    again = fetch_outputs(items, tmp_path / "videos", ledger_path=ledger, options=FAST)
    assert again.fetched == []
    assert again.findings == []
    assert len(again.present) == 18
    assert again.media_requests == 0
    assert finished_batch.media_requests == served
    assert tree(tmp_path) == before


def test_a_missing_or_changed_file_is_fetched_again_and_only_it(
    finished_batch: SandboxBatch, tmp_path: Path
) -> None:
    """The ledger is checked against the destination: a deleted file and a file of another size are re-fetched."""
    items = finished_batch.items()
    ledger = tmp_path / "fetched.parquet"
    fetch_outputs(items, tmp_path / "v", ledger_path=ledger, options=FAST)
    (tmp_path / "v" / "take_000.mp4").unlink()
    (tmp_path / "v" / "take_001.mp4").write_bytes(b"edited by hand")
    served = finished_batch.media_requests
    result = fetch_outputs(items, tmp_path / "v", ledger_path=ledger, options=FAST)
    assert sorted(e.name for e in result.fetched) == ["take_000.mp4", "take_001.mp4"]
    assert finished_batch.media_requests - served == 2
    assert (tmp_path / "v" / "take_001.mp4").read_bytes() == MP4


def test_sha256_verification_catches_a_same_size_edit(finished_batch: SandboxBatch, tmp_path: Path) -> None:
    """verify_existing='sha256' re-reads present files: one with the same size but other bytes is re-fetched."""
    items = finished_batch.items()[:3]
    ledger = tmp_path / "fetched.parquet"
    fetch_outputs(items, tmp_path / "v", ledger_path=ledger, options=FAST)
    edited = tmp_path / "v" / items[0].name
    edited.write_bytes(b"\0" * len(MP4))
    by_size = fetch_outputs(items, tmp_path / "v", ledger_path=ledger, options=FAST)
    assert by_size.fetched == []
    by_hash = fetch_outputs(
        items, tmp_path / "v", ledger_path=ledger, options=replace(FAST, verify_existing="sha256")
    )
    assert [e.name for e in by_hash.fetched] == [items[0].name]
    assert edited.read_bytes() == MP4


def test_expired_links_are_renewed_through_the_api_once(finished_batch: SandboxBatch, tmp_path: Path) -> None:
    """After the links expire (sandbox clock), each download gets 403, asks GET /v2/generate/{id}, and succeeds."""
    items = finished_batch.items()[:5]
    finished_batch.clock.advance(2 * 3600)
    result = fetch_outputs(
        items,
        tmp_path / "v",
        ledger_path=tmp_path / "l.parquet",
        renew=renew_from(finished_batch.client),
        options=FAST,
    )
    assert result.ok
    assert len(result.fetched) == 5
    assert result.renewed == 5
    assert result.media_requests == 10  # one 403 and one 200 each
    assert finished_batch.renewals == 5
    assert finished_batch.key_leaks == []
    assert {e.source for e in result.fetched} == {
        httpx.URL(i.output_url or "").copy_with(query=None).__str__() for i in items
    }


def test_an_expired_link_without_a_way_to_renew_is_a_finding(
    finished_batch: SandboxBatch, tmp_path: Path
) -> None:
    """Without renew, an expired link ends as fetch-expired (nothing written), and a later run with renew fetches it."""
    items = finished_batch.items()[:2]
    finished_batch.clock.advance(2 * 3600)
    result = fetch_outputs(items, tmp_path / "v", ledger_path=tmp_path / "l.parquet", options=FAST)
    assert [f.code for f in result.findings] == ["fetch-expired", "fetch-expired"]
    assert all(f.code in FETCH_CODES and f.request_id for f in result.findings)
    assert "403" in result.findings[0].message
    assert "renew" in result.findings[0].message
    assert "sig=" not in result.findings[0].message
    assert tree(tmp_path / "v") == {}
    again = fetch_outputs(
        items,
        tmp_path / "v",
        ledger_path=tmp_path / "l.parquet",
        renew=renew_from(finished_batch.client),
        options=FAST,
    )
    assert again.ok
    assert len(again.fetched) == 2


def test_a_renewal_that_is_refused_is_fetch_expired(finished_batch: SandboxBatch, tmp_path: Path) -> None:
    """An item whose generation id the API does not know: the renewal's 404 is reported in the finding."""
    good = finished_batch.items()[0]
    finished_batch.clock.advance(2 * 3600)
    lost = FetchItem(good.request_id, good.output_url, good.name, generation_id="no-such-generation")
    result = fetch_outputs(
        [lost],
        tmp_path / "v",
        ledger_path=tmp_path / "l.parquet",
        renew=renew_from(finished_batch.client),
        options=FAST,
    )
    assert [f.code for f in result.findings] == ["fetch-expired"]
    assert "fresh link failed" in result.findings[0].message
    assert "404" in result.findings[0].message


def test_a_client_carrying_the_api_key_is_refused_before_any_request(
    finished_batch: SandboxBatch, tmp_path: Path
) -> None:
    """Media hosts must never see x-api-key: an http client that would send it is refused up front."""
    with (
        httpx.Client(headers={"x-api-key": "sk-test"}) as keyed,
        pytest.raises(ConfigurationError, match="x-api-key"),
    ):
        fetch_outputs(finished_batch.items(), tmp_path / "v", ledger_path=tmp_path / "l.parquet", http=keyed)
    assert finished_batch.media_requests == 0


def test_a_given_http_client_is_used_and_left_open(finished_batch: SandboxBatch, tmp_path: Path) -> None:
    """With http=..., every media request goes through that client (its event hooks see them), which stays open."""
    seen: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: seen.append(r.url.path)]}) as http:
        result = fetch_outputs(
            finished_batch.items()[:4],
            tmp_path / "v",
            ledger_path=tmp_path / "l.parquet",
            http=http,
            options=FAST,
        )
        assert not http.is_closed
    assert result.ok
    assert len(seen) == 4
    assert all(p.startswith("/_outputs/") for p in seen)


def test_progress_reports_bytes_and_files_up_to_the_total(
    finished_batch: SandboxBatch, tmp_path: Path
) -> None:
    """on_progress sees bytes grow to the total once every length is known, and every file counted once."""
    seen: list[FetchProgress] = []
    items = finished_batch.items()
    fetch_outputs(
        items,
        tmp_path / "v",
        ledger_path=tmp_path / "l.parquet",
        on_progress=seen.append,
        concurrency=3,
        options=FAST,
    )
    last = seen[-1]
    assert (last.files_done, last.files_total) == (18, 18)
    assert last.bytes_done == last.bytes_total == last.bytes_estimate == 18 * len(MP4)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    assert seen[0].bytes_total is None


def test_the_media_host_serves_ranges_etags_and_refuses_what_it_should(finished_batch: SandboxBatch) -> None:
    """The sandbox's output URLs: 200/206 with ETag and Content-Length; 403 forged; 404 unknown; 400 + leak with a key."""
    url = finished_batch.items()[0].output_url or ""
    with httpx.Client() as http:
        full = http.get(url)
        assert (full.status_code, full.headers["content-type"], full.content) == (200, "video/mp4", MP4)
        assert full.headers["content-length"] == str(len(MP4))
        assert full.headers["etag"]
        part = http.get(url, headers={"range": "bytes=0-7"})
        assert (part.status_code, part.content) == (206, MP4[:8])
        assert part.headers["content-range"] == f"bytes 0-7/{len(MP4)}"
        assert http.head(url).headers["content-length"] == str(len(MP4))
        assert http.get(url.replace("sig=", "sig=0")).status_code == 403
        assert http.get(httpx.URL(url).copy_with(path="/_outputs/nope.mp4")).status_code == 404
        assert http.get(url, headers={"x-api-key": "sk-test"}).status_code == 400
    assert [leak.path for leak in finished_batch.key_leaks] == [httpx.URL(url).path]


def test_get_generate_answers_a_fresh_link_for_a_batch_request(finished_batch: SandboxBatch) -> None:
    """GET /v2/generate/{id} knows batch generations and answers a link valid from now, after the old one expired."""
    line = next(line for line in finished_batch.lines if line["status"] == "COMPLETED")
    old = line["response"]["outputUrl"]
    finished_batch.clock.advance(2 * 3600)
    with httpx.Client() as http:
        assert http.get(old).status_code == 403
        generation = finished_batch.client.generations.get(line["response"]["id"])
        assert generation.status == "COMPLETED"
        assert generation.output_url
        assert generation.output_url != old
        assert http.get(generation.output_url).content == MP4
