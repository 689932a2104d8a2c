"""fetch_outputs into S3 through s3fs, against moto's standalone S3 server on loopback (a real S3 protocol
server in its own process, dummy credentials, never the internet).

One test, so that a parallel run starts the server once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servers import FAST, MP4, S3, MediaHost, item, media_host_fixture, s3_fixture  # noqa: F401 - fixtures

from batchkit import InputError
from batchkit._handback.fetch import fetch_outputs
from batchkit._handback.stores import FsspecStore, open_destination


def _objects(store: FsspecStore, bucket: str) -> dict[str, dict[str, Any]]:
    store.fs.invalidate_cache()
    found: dict[str, dict[str, Any]] = store.fs.find(bucket, detail=True)
    return found


def test_s3_destinations_get_whole_objects_resume_and_refuse_a_missing_bucket(
    media_host: MediaHost, s3: S3, tmp_path: Path
) -> None:
    """1. Objects under the prefix (with folders) hold the exact bytes; a page and a truncated body leave no object
    (the discarded upload never appears); the ledger names s3:// URLs.
    2. A second run sends no media request and leaves every object's ETag and date as they were.
    3. A missing bucket is one InputError before any media request, and is not created."""
    bucket = s3.bucket("delivery")
    store = open_destination(f"s3://{bucket}/client/2026", storage_options=s3.options)
    assert isinstance(store, FsspecStore)
    good = [
        item(media_host, f"/ok/{i}", f"{lang}/intro_{lang}.mp4") for i, lang in enumerate(["de", "fr", "ja"])
    ]
    good.append(item(media_host, "/octet/x", "untyped.mp4"))
    bad = [item(media_host, "/html/b"), item(media_host, "/truncate/c")]
    ledger = tmp_path / "fetched.parquet"
    result = fetch_outputs([*good, *bad], store, ledger_path=ledger, options=FAST)
    assert sorted(f.code for f in result.findings) == ["fetch-not-video", "fetch-truncated"]
    objects = _objects(store, bucket)
    assert sorted(objects) == sorted(f"{bucket}/client/2026/{i.name}" for i in good)
    assert store.fs.cat_file(f"{bucket}/client/2026/de/intro_de.mp4") == MP4
    assert {e.destination for e in result.fetched} == {f"s3://{bucket}/client/2026/{i.name}" for i in good}

    before = {key: (info["ETag"], info["LastModified"]) for key, info in objects.items()}
    requests = media_host.count()
    again = fetch_outputs(good, store, ledger_path=ledger, options=FAST)
    assert len(again.present) == 4
    assert again.fetched == []
    assert media_host.count() == requests
    after = {key: (info["ETag"], info["LastModified"]) for key, info in _objects(store, bucket).items()}
    assert after == before

    missing = open_destination("s3://no-such-bucket/out", storage_options=s3.options)
    with pytest.raises(InputError, match=r"s3://no-such-bucket/out.*bucket does not exist"):
        fetch_outputs(good, missing, ledger_path=tmp_path / "other.parquet", options=FAST)
    assert media_host.count() == requests
    assert not missing.fs.exists("no-such-bucket")
