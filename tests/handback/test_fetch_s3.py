"""fetch_outputs into S3 through s3fs, against moto's standalone S3 server on loopback (a real S3 protocol
server in its own process, dummy credentials, never the internet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servers import FAST, MP4, S3, MediaHost, item

from batchkit import InputError
from batchkit._handback.fetch import fetch_outputs
from batchkit._handback.stores import FsspecStore, open_destination


def _objects(store: FsspecStore, bucket: str) -> dict[str, dict[str, Any]]:
    store.fs.invalidate_cache()
    found: dict[str, dict[str, Any]] = store.fs.find(bucket, detail=True)
    return found


def test_videos_land_whole_in_s3_and_a_rerun_touches_nothing(
    media_host: MediaHost, s3: S3, tmp_path: Path
) -> None:
    """Objects under the prefix (with folders) hold the exact bytes, no temporary key remains, the ledger names
    s3:// URLs; the second run sends no media request and leaves every object's ETag and date as they were."""
    bucket = s3.bucket("delivery-ok")
    store = open_destination(f"s3://{bucket}/client/2026", storage_options=s3.options)
    assert isinstance(store, FsspecStore)
    items = [
        item(media_host, f"/ok/{i}", f"{lang}/intro_{lang}.mp4") for i, lang in enumerate(["de", "fr", "ja"])
    ]
    items.append(item(media_host, "/octet/x", "poster-less.mp4"))
    result = fetch_outputs(items, store, ledger_path=tmp_path / "fetched.parquet", options=FAST)
    assert result.ok
    objects = _objects(store, bucket)
    assert sorted(objects) == sorted(f"{bucket}/client/2026/{i.name}" for i in items)
    assert store.fs.cat_file(f"{bucket}/client/2026/de/intro_de.mp4") == MP4
    assert {e.destination for e in result.fetched} == {f"s3://{bucket}/client/2026/{i.name}" for i in items}
    before = {key: (info["ETag"], info["LastModified"]) for key, info in objects.items()}
    requests = media_host.count()
    again = fetch_outputs(items, store, ledger_path=tmp_path / "fetched.parquet", options=FAST)
    assert len(again.present) == 4
    assert again.fetched == []
    assert media_host.count() == requests
    after = {key: (info["ETag"], info["LastModified"]) for key, info in _objects(store, bucket).items()}
    assert after == before


def test_a_failed_download_leaves_no_object_and_no_temporary_key(
    media_host: MediaHost, s3: S3, tmp_path: Path
) -> None:
    """An HTML page and a truncated body end as findings; the bucket holds only the good video."""
    bucket = s3.bucket("delivery-bad")
    store = open_destination(f"s3://{bucket}/out", storage_options=s3.options)
    items = [item(media_host, "/ok/a"), item(media_host, "/html/b"), item(media_host, "/truncate/c")]
    result = fetch_outputs(items, store, ledger_path=tmp_path / "fetched.parquet", options=FAST)
    assert sorted(f.code for f in result.findings) == ["fetch-not-video", "fetch-truncated"]
    assert sorted(_objects(store, bucket)) == [f"{bucket}/out/ok-a.mp4"]  # type: ignore[arg-type]


def test_a_missing_bucket_is_refused_before_any_media_request(
    media_host: MediaHost, s3: S3, tmp_path: Path
) -> None:
    """No such bucket: one InputError naming the destination and what to check; the bucket is not created."""
    store = open_destination("s3://no-such-bucket/out", storage_options=s3.options)
    with pytest.raises(InputError, match=r"s3://no-such-bucket/out.*bucket does not exist"):
        fetch_outputs(
            [item(media_host, "/ok/a")], store, ledger_path=tmp_path / "fetched.parquet", options=FAST
        )
    assert media_host.count() == 0
    assert not store.fs.exists("no-such-bucket")
