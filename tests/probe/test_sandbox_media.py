"""The sandbox's media host: synthesised files that real parsers read, and the HTTP behaviours it offers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO, cast

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from batchkit.sandbox import Sandbox
from batchkit.sandbox._media import MediaHost, media_url
from batchkit.sandbox._media_files import ClipSpec, Filler, VirtualFile, mp3_file, mp4_file, wav_file


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """A plain client, redirects not followed."""
    with httpx.Client(timeout=5) as client:
        yield client


SPECS = [
    pytest.param(ClipSpec(duration=12), id="faststart"),
    pytest.param(ClipSpec(duration=28, moov="end", size=18_000_000), id="index-at-end"),
    pytest.param(ClipSpec(duration=3, tracks="v", width=638, height=358, fps=25), id="video-only-odd-size"),
    pytest.param(ClipSpec(duration=9, tracks="a", brand=b"M4A ", sample_rate=44100, channels=1), id="m4a"),
    pytest.param(ClipSpec(duration=60, moov="end", size=5_000_000_000), id="5GB-64-bit-offsets"),
]


@pytest.mark.parametrize("spec", SPECS)
def test_synthesised_mp4_is_read_by_pyav_and_tinytag(spec: ClipSpec) -> None:
    """PyAV and tinytag both read the clip's duration and tracks, and PyAV decodes a real H.264 frame."""
    av = pytest.importorskip("av")
    from tinytag import TinyTag

    file = mp4_file(spec)
    assert file.size == (spec.size or file.size)
    reader = _Reader(file)
    with av.open(reader, options={"probesize": "32", "analyzeduration": "0"}) as container:
        assert container.duration / 1e6 == pytest.approx(spec.duration, abs=0.05)
        assert [s.type for s in container.streams] == [k for k in ("video", "audio") if k[0] in spec.tracks]
        if "v" in spec.tracks:
            frame = next(container.decode(video=0))
            assert (frame.width, frame.height) == (spec.width, spec.height)
    tag = TinyTag.get(file_obj=cast(BinaryIO, _Reader(file)))
    assert tag.duration == pytest.approx(spec.duration, abs=0.05)
    assert (tag.samplerate == spec.sample_rate) is ("a" in spec.tracks)


@pytest.mark.parametrize(
    ("file", "duration"),
    [pytest.param(wav_file(12.5), 12.5, id="wav"), pytest.param(mp3_file(7.3), 7.32, id="mp3")],
)
def test_synthesised_audio_is_read_by_both_parsers(file: VirtualFile, duration: float) -> None:
    """WAV and MP3 durations are exact for PyAV and tinytag."""
    av = pytest.importorskip("av")
    from tinytag import TinyTag

    with av.open(_Reader(file)) as container:
        assert container.duration / 1e6 == pytest.approx(duration, abs=0.03)
    name = "x.mp3" if file.content_type == "audio/mpeg" else "x.wav"
    tag = TinyTag.get(file_obj=cast(BinaryIO, _Reader(file)), filename=name)
    assert tag.duration == pytest.approx(duration, abs=0.03)


@settings(max_examples=50, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(
                lambda n, p: Filler(n, ((p, 1),)), st.integers(0, 300), st.binary(min_size=1, max_size=7)
            ),
        ),
        max_size=6,
    ),
    start=st.integers(0, 1500),
    length=st.integers(0, 1500),
)
def test_virtual_files_read_like_their_bytes(parts: list[bytes | Filler], start: int, length: int) -> None:
    """Any range of a VirtualFile equals the same slice of its bytes built out in full."""
    file = VirtualFile(tuple(parts), "application/octet-stream")
    whole = b"".join(p if isinstance(p, bytes) else (p.unit[0][0] * p.length)[: p.length] for p in parts)
    assert file.size == len(whole)
    assert file.read(start, start + length) == whole[start : start + length]
    assert file.truncated(start).read() == whole[:start]


def test_ranges_heads_and_416(sandbox: Sandbox, http: httpx.Client) -> None:
    """Range forms answer 206 with Content-Range; past the end is 416 bytes */size; HEAD has no body."""
    url = sandbox.media.url("ranges.mp4")
    size = int(http.head(url).headers["content-length"])
    first = http.get(url, headers={"range": "bytes=0-99"})
    assert (first.status_code, first.headers["content-range"], len(first.content)) == (
        206,
        f"bytes 0-99/{size}",
        100,
    )
    assert (
        http.get(url, headers={"range": "bytes=-10"}).headers["content-range"]
        == f"bytes {size - 10}-{size - 1}/{size}"
    )
    beyond = http.get(url, headers={"range": f"bytes={size}-"})
    assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{size}")
    head = http.head(url)
    assert head.content == b""
    assert head.headers["accept-ranges"] == "bytes"
    assert "etag" in head.headers


def test_behaviours_selected_by_parameters(sandbox: Sandbox, http: httpx.Client) -> None:
    """status, head, redirect, flaky, norange, ctype, length, chunked and the validators switches do what they say."""
    media = sandbox.media
    assert http.get(media.url("s.mp4", status=410)).status_code == 410
    assert http.head(media.url("h.mp4", head=405)).status_code == 405
    hop = http.get(media.url("r.mp4", redirect=2))
    assert hop.status_code == 302
    assert "redirect=1" in hop.headers["location"]
    loop = http.get(media.url("r.mp4", redirect="loop"))
    assert "redirect=loop2" in loop.headers["location"]
    flaky = media.url("f.mp4", flaky=1, retry_after=7)
    assert (http.get(flaky).status_code, http.get(flaky).status_code) == (503, 200)
    assert http.get(media.url("f2.mp4", flaky=1, retry_after=7)).headers["retry-after"] == "7"
    whole = http.get(media.url("n.mp4", norange=1), headers={"range": "bytes=0-9"})
    assert whole.status_code == 200
    assert "accept-ranges" not in whole.headers
    assert http.head(media.url("c.mp4", ctype="text/plain")).headers["content-type"] == "text/plain"
    assert http.head(media.url("l.mp4", length="10G")).headers["content-length"] == "10000000000"
    assert "content-length" not in http.head(media.url("k.mp4", chunked=1)).headers
    bare = http.head(media.url("v.mp4", etag=0, lastmod=0)).headers
    assert "etag" not in bare
    assert "last-modified" not in bare
    assert http.get(media.url("nothing.bin")).status_code == 400


def test_validators_change_with_content_not_with_signatures(sandbox: Sandbox, http: httpx.Client) -> None:
    """Shaping parameters and replace() change the ETag; re-signing and behaviour parameters do not."""
    media = sandbox.media

    def etag(url: str) -> str:
        return str(http.head(url).headers["etag"])

    base = etag(media.url("same.mp4", duration=5))
    assert etag(media.url("same.mp4", duration=5, **{"X-Amz-Signature": "x", "Expires": "1"})) == base
    assert etag(media.url("same.mp4", duration=5, delay=0.01)) == base
    assert etag(media.url("same.mp4", duration=6)) != base
    media.replace("same.mp4")
    assert etag(media.url("same.mp4", duration=5)) != base


def test_the_host_records_requests_in_flight_and_key_leaks(sandbox: Sandbox, http: httpx.Client) -> None:
    """Requests are logged with their Host and Range; an x-api-key sent to the media host is recorded."""
    media = sandbox.media
    media.reset()
    url = media.url("seen.mp4")
    http.get(url, headers={"range": "bytes=0-0", "x-api-key": "sk-leaked"})
    (seen,) = media.requests
    assert (seen.method, seen.path, seen.range, seen.api_key_sent) == (
        "GET",
        "/_media/seen.mp4",
        "bytes=0-0",
        True,
    )
    assert media.key_leaks == [seen]
    assert media.max_in_flight() == 1
    assert media.bytes_sent == 1


def test_media_urls_without_a_running_sandbox() -> None:
    """media_url builds URLs from any base; MediaHost.url needs the sandbox to be served."""
    assert (
        media_url("http://h:1/", "a b.mp4", duration=3, norange=True)
        == "http://h:1/_media/a%20b.mp4?duration=3&norange=1"
    )
    with pytest.raises(RuntimeError, match="not being served"):
        MediaHost().url("x.mp4")


class _Reader(io.RawIOBase):
    """A VirtualFile as a seekable binary file, without HTTP."""

    def __init__(self, file: VirtualFile) -> None:
        super().__init__()
        self._file, self._pos = file, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._file.size}[whence]
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._file.read(self._pos, self._pos + len(buffer))
        memoryview(buffer)[: len(data)] = data
        self._pos += len(data)
        return len(data)
