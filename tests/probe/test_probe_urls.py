"""probe_urls against the sandbox's media host over loopback: good media, bad media, bad hosts, politeness."""

from __future__ import annotations

import io
import statistics
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchkit import ConfigurationError
from batchkit._probe import MediaInfo, ProbeConfig, probe_urls
from batchkit.sandbox import Sandbox, serve
from batchkit.sandbox._media import MediaHost

from .conftest import Sleeps, quick

PARSERS = [pytest.param("av", id="pyav"), pytest.param("tinytag", id="tinytag")]

GOOD: list[Any] = [
    pytest.param("a.mp4", {"duration": 12}, 12.0, True, True, "mp4", id="mp4-faststart"),
    pytest.param(
        "b.mp4",
        {"duration": 28, "size": "18M", "moov": "end"},
        28.0,
        True,
        True,
        "mp4",
        id="mp4-index-at-end",
    ),
    pytest.param("c.mov", {"duration": 8}, 8.0, True, True, "mov", id="quicktime"),
    pytest.param("d.m4a", {"duration": 9}, 9.0, False, True, "m4a", id="m4a"),
    pytest.param("e.mp4", {"tracks": "v", "duration": 31}, 31.0, True, False, "mp4", id="video-only"),
    pytest.param("f.wav", {"duration": 12.5}, 12.5, False, True, "wav", id="wav"),
    pytest.param("g.mp3", {"duration": 7}, 7.0, False, True, "mp3", id="mp3"),
    pytest.param("h.mp4", {"ctype": "text/plain"}, 10.0, True, True, "mp4", id="mp4-served-as-text"),
    pytest.param(
        "i.mp4", {"size": "5G", "duration": 1800, "moov": "end"}, 1800.0, True, True, "mp4", id="5GB"
    ),
    pytest.param("j.mp4", {"redirect": 2}, 10.0, True, True, "mp4", id="two-redirects"),
    pytest.param("k.mp4", {"head": 403}, 10.0, True, True, "mp4", id="HEAD-refused"),
    pytest.param("l.mp4", {"head": 405}, 10.0, True, True, "mp4", id="HEAD-not-allowed"),
    pytest.param("m.mp4", {"chunked": 1}, 10.0, True, True, "mp4", id="no-content-length"),
    pytest.param("n.mp4", {"length": "10G"}, 10.0, True, True, "mp4", id="HEAD-lies-about-length"),
]

BAD: list[Any] = [
    pytest.param(
        "a.mp4", {"as": "html", "ctype": "video/mp4"}, "media-not-media", "HTML page", id="html-as-mp4"
    ),
    pytest.param("b.json", {}, "media-not-media", "JSON", id="json-page"),
    pytest.param("c.txt", {"ctype": "video/mp4"}, "media-not-media", "plain text", id="text-as-mp4"),
    pytest.param("d.mp4", {"as": "empty"}, "media-not-media", "0 bytes", id="zero-length"),
    pytest.param("e.mp4", {"status": 404}, "media-unreachable", "404", id="404"),
    pytest.param("f.mp4", {"status": 500}, "media-unreachable", "500", id="500-after-retries"),
    pytest.param("g.mp4", {"status": 403}, "media-unreachable", "403", id="403-on-get-too"),
    pytest.param("h.mp4", {"redirect": "loop"}, "media-unreachable", "redirect loop", id="redirect-loop"),
    pytest.param(
        "i.mp4", {"redirect": 9}, "media-unreachable", "more than 5 redirects", id="too-many-redirects"
    ),
    pytest.param(
        "j.mp4", {"moov": "end", "truncate": "500k"}, "media-unreadable", "cut short", id="cut-index-at-end"
    ),
    pytest.param("k.mp4", {"truncate": "500k"}, "media-unreadable", "cut short", id="cut-index-first"),
    pytest.param(
        "l.wav", {"duration": 20, "truncate": "300k"}, "media-unreadable", "cut short", id="cut-wav"
    ),
    pytest.param("m.3gp", {}, "media-unsupported", "3GP", id="3gp"),
]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(("name", "params", "duration", "video", "audio", "container"), GOOD)
def test_media_is_read(
    media: MediaHost,
    parser: str,
    name: str,
    params: dict[str, Any],
    duration: float,
    video: bool,
    audio: bool,
    container: str,
) -> None:
    """Each kind of good media gives its duration, tracks and container with either parser."""
    url = media.url(f"{parser}-{name}", **params)
    info = probe_urls([url], config=quick(parser=parser))[url]
    assert info.problem is None, info.error
    assert info.duration == pytest.approx(duration, abs=0.05)
    assert (info.has_video, info.has_audio, info.container, info.parser) == (video, audio, container, parser)
    if video:
        assert (info.video_codec, info.width, info.height, info.fps) == ("h264", 640, 360, 30.0)
    if audio and container in ("mp4", "mov", "m4a"):
        assert (info.audio_codec, info.sample_rate) == ("aac", 48000)


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(("name", "params", "problem", "said"), BAD)
def test_bad_media_gets_a_coded_problem(
    media: MediaHost, parser: str, name: str, params: dict[str, Any], problem: str, said: str
) -> None:
    """Pages, missing files, loops, cut files and unlisted containers each get their problem and a reason."""
    url = media.url(f"{parser}-{name}", **params)
    info = probe_urls([url], config=quick(parser=parser))[url]
    assert info.problem == problem
    assert said in (info.error or ""), info.error


def test_size_comes_from_content_range_not_a_lying_head(media: MediaHost) -> None:
    """A HEAD that claims 10 GB does not make the file 10 GB: the 206's Content-Range decides."""
    url = media.url("lying.mp4", length="10G")
    info = probe_urls([url], config=quick())[url]
    assert info.size == int(httpx.head(url.replace("length=10G", "")).headers["content-length"])


@pytest.mark.parametrize("parser", PARSERS)
def test_server_ignoring_range_is_read_up_to_the_budget_only(media: MediaHost, parser: str) -> None:
    """A 50 MB file with its index at the end, from a server that ignores Range: duration unknown, budget kept."""
    config = quick(parser=parser, byte_budget=512 << 10)
    url = media.url(f"{parser}-norange.mp4", norange=1, size="50M", moov="end")
    info = probe_urls([url], config=config)[url]
    assert info.problem is None
    assert info.duration is None
    assert info.range_supported is False
    assert "ignores Range" in (info.error or "")
    assert info.bytes_read <= config.byte_budget


def test_server_ignoring_range_still_gives_a_faststart_duration(media: MediaHost) -> None:
    """With the index first, the start of the whole-body answer is enough: it is not read to the end."""
    url = media.url("norange-faststart.mp4", norange=1, duration=20)
    info = probe_urls([url], config=quick(parser="av"))[url]
    assert info.duration == pytest.approx(20, abs=0.05)
    assert info.bytes_read < 256_000 < info.size  # type: ignore[operator]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"PK\x03\x04" + bytes(200), id="zip"),
        pytest.param(b"%PDF-1.7\n" + bytes(200), id="pdf"),
        pytest.param(bytes(range(256)) * 64, id="binary-junk"),
    ],
)
def test_non_media_bytes_named_mp4_are_not_media(media: MediaHost, data: bytes) -> None:
    """Bytes that are no media file, served as video/mp4, are media-not-media with both parsers."""
    name = media.put(data, "video/mp4")
    url = media.url(name)
    for parser in ("av", "tinytag"):
        info = probe_urls([url], config=quick(parser=parser))[url]
        assert info.problem == "media-not-media", (parser, info.error)


def test_url_with_credentials_is_refused_without_echoing_them(sandbox: Sandbox, media: MediaHost) -> None:
    """user:password@ URLs are never fetched, and the password appears in no message."""
    url = media.url("secret.mp4").replace("://", "://alice:hunter2@")
    info = probe_urls([url], config=quick())[url]
    assert info.problem == "media-unreachable"
    assert "credentials" in (info.error or "")
    assert "hunter2" not in (info.error or "")
    assert media.count(path="/_media/secret.mp4") == 0


def test_ipv6_literal_host() -> None:
    """A sandbox on [::1] is probed like any host."""
    box = Sandbox()
    with serve(box, host="::1") as base:
        assert base.startswith("http://[::1]:")
        url = box.media.url("v6.mp4", duration=5)
        info = probe_urls([url], config=quick())[url]
    assert info.problem is None
    assert info.duration == pytest.approx(5, abs=0.05)


@pytest.mark.parametrize(
    ("params", "said"),
    [
        pytest.param({"hang": 1}, "no answer", id="never-answers"),
        pytest.param({"stall": 1000}, "stopped sending", id="stalls-mid-body"),
        pytest.param({"delay": 30}, "no answer", id="answers-too-late"),
    ],
)
def test_hanging_hosts_are_bounded(media: MediaHost, params: dict[str, Any], said: str) -> None:
    """Hosts that never answer, or stop mid-body, end as media-unreachable within the time budget."""
    url = media.url("hang.mp4", **params)
    info = probe_urls([url], config=quick(time_budget=0.8, read_timeout=0.3, retries=1))[url]
    assert info.problem == "media-unreachable"
    assert said in (info.error or ""), info.error


def test_flaky_host_is_retried_honouring_retry_after(media: MediaHost) -> None:
    """503 + Retry-After twice, then success: two waits of the server's length, capped by max_retry_after."""
    sleeps = Sleeps()
    url = media.url("flaky.mp4", flaky=2, retry_after=3)
    info = probe_urls([url], config=quick(sleep=sleeps, max_retry_after=10))[url]
    assert info.problem is None
    assert sleeps == [3.0, 3.0]
    capped = Sleeps()
    url = media.url("flaky-capped.mp4", flaky=2, retry_after=90)
    info = probe_urls([url], config=quick(sleep=capped, max_retry_after=1.5))[url]
    assert info.problem is None
    assert capped == [1.5, 1.5]


def test_a_retry_after_past_the_time_budget_is_not_waited_for(media: MediaHost) -> None:
    """A Retry-After longer than the time left gives up at once instead of sleeping."""
    sleeps = Sleeps()
    url = media.url("flaky-long.mp4", flaky=5, retry_after=60)
    info = probe_urls([url], config=quick(sleep=sleeps, max_retry_after=60, time_budget=5))[url]
    assert info.problem == "media-unreachable"
    assert "time budget" in (info.error or "")
    assert sleeps == []


def test_per_host_cap_is_respected(media: MediaHost) -> None:
    """Never more than per_host requests in flight on one host, while two hosts are probed side by side."""
    urls = [media.url(f"cap-{i}.mp4", delay=0.05) for i in range(12)]
    urls += [media.url(f"cap-{i}.mp4", delay=0.05, host="localhost") for i in range(12)]
    media.reset()
    infos = probe_urls(urls, config=quick(concurrency=8, per_host=3))
    assert all(info.ok for info in infos.values())
    port = httpx.URL(urls[0]).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert 1 < media.max_in_flight(host) <= 3


def test_the_api_key_never_reaches_a_media_host(media: MediaHost) -> None:
    """Media hosts see no x-api-key, and a client that would send one is refused before any request."""
    url = media.url("nokey.mp4")
    probe_urls([url, media.url("nokey.wav", redirect=1)], config=quick())
    assert media.key_leaks == []
    with (
        httpx.Client(headers={"x-api-key": "sk-live"}) as keyed,
        pytest.raises(ConfigurationError, match="x-api-key"),
    ):
        probe_urls([url], http=keyed, config=quick())


def test_duplicates_are_probed_once_with_their_kinds_merged(media: MediaHost) -> None:
    """A URL used as video by one row and as audio by another is one probe, kind video+audio."""
    url = media.url("shared.mp4")
    infos = probe_urls([(url, "audio"), (url, "video"), url], config=quick())
    assert list(infos) == [url]
    assert infos[url].kind == "video+audio"
    assert media.count(path="/_media/shared.mp4") == infos[url].requests


def test_a_first_probe_needs_no_head_unless_asked(media: MediaHost) -> None:
    """Without a cached result the first Range read tells everything: no HEAD; head_first=True sends one."""
    url = media.url("nohead-first.wav", duration=4)
    info = probe_urls([url], config=quick())[url]
    seen = [(r.method, r.range) for r in media.requests if r.path == "/_media/nohead-first.wav"]
    assert seen[0] == ("GET", "bytes=0-65535")
    assert {method for method, _ in seen} == {"GET"}
    assert info.requests == len(seen)
    url = media.url("head-first.wav", duration=4)
    info = probe_urls([url], config=quick(head_first=True))[url]
    methods = [r.method for r in media.requests if r.path == "/_media/head-first.wav"]
    assert methods[:2] == ["HEAD", "GET"]
    assert info.requests == len(methods)


def test_progress_is_reported_after_every_url(media: MediaHost) -> None:
    """on_progress gets (done, total, cached, bytes): from (0, n, 0, 0) up to n done, bytes summed."""
    calls: list[tuple[int, int, int, int]] = []
    urls = [media.url(f"progress-{i}.wav", duration=3) for i in range(5)]
    infos = probe_urls(urls, config=quick(), on_progress=lambda *args: calls.append(args))
    assert calls[0] == (0, 5, 0, 0)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert calls[-1][:3] == (5, 5, 0)
    assert calls[-1][3] == sum(info.bytes_read for info in infos.values())


@pytest.mark.parametrize("parser", PARSERS)
def test_median_bytes_read_stays_under_256_kb_whatever_the_size(media: MediaHost, parser: str) -> None:
    """Across a campaign-like mix of sizes and layouts, the median file costs at most 256 KB of reads."""
    shapes: list[dict[str, Any]] = [
        {"duration": 28, "size": "18M", "moov": "end"},
        {"duration": 28, "size": "18M"},
        {"duration": 20, "size": "60M", "moov": "end"},
        {"duration": 1800, "size": "5G", "moov": "end"},
        {"duration": 15, "size": "3M"},
        {"duration": 29, "tracks": "v", "size": "25M", "moov": "end"},
    ]
    urls = [media.url(f"median-{parser}-{i}.mp4", **shape) for i, shape in enumerate(shapes)]
    urls += [media.url(f"median-{parser}.wav", duration=25), media.url(f"median-{parser}.mp3", duration=25)]
    infos = probe_urls(urls, config=quick(parser=parser))
    assert all(info.ok and info.duration for info in infos.values())
    assert statistics.median(info.bytes_read for info in infos.values()) <= 256_000


def _encoded_clip() -> bytes:
    """One second of real H.264 and AAC, encoded by PyAV into memory."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, dtype=np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for i in range(16):
            samples = np.zeros((1, 1024), dtype=np.float32)
            sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 16000, i * 1024
            for packet in audio.encode(sound):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize("parser", PARSERS)
def test_a_clip_encoded_by_ffmpeg_is_read(media: MediaHost, parser: str) -> None:
    """A real encoder's MP4 (not the sandbox's synthesis) gives its tracks and about one second."""
    pytest.importorskip("numpy")
    url = media.url(media.put(_encoded_clip(), "video/mp4"))
    info = probe_urls([url], config=quick(parser=parser))[url]
    assert info.problem is None
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert (info.has_video, info.has_audio, info.video_codec, info.audio_codec) == (True, True, "h264", "aac")
    assert (info.width, info.height) == (64, 48)


def _encoded_webm() -> bytes:
    """Half a second of VP8 video, encoded by PyAV into a WebM in memory."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="webm") as container:
        video = container.add_stream("libvpx", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, dtype=np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    return out.getvalue()


def test_auto_reads_webm_with_pyav_and_the_fallback_says_what_it_lacks(media: MediaHost) -> None:
    """auto sends WebM to PyAV (tinytag cannot read it); tinytag alone reports an unknown duration and why."""
    pytest.importorskip("numpy")
    url = media.url(media.put(_encoded_webm(), "video/webm"))
    auto = probe_urls([url], config=quick())[url]
    assert (auto.problem, auto.parser, auto.container, auto.video_codec) == (None, "av", "webm", "vp8")
    assert auto.duration == pytest.approx(0.5, abs=0.11)
    alone = probe_urls([url], config=quick(parser="tinytag"))[url]
    assert alone.problem is None
    assert alone.duration is None
    assert "pip install 'sync-batchkit[media]'" in (alone.error or "")


def test_auto_reads_mp4_with_tinytag(media: MediaHost) -> None:
    """For the containers tinytag reads fully, auto uses it: the same facts for less work."""
    url = media.url("auto.mp4", duration=6)
    info = probe_urls([url], config=quick())[url]
    assert (info.parser, info.video_codec, info.audio_codec, info.fps) == ("tinytag", "h264", "aac", 30.0)


_MAGIC = st.sampled_from(
    [
        b"",
        b"\x00\x00\x00\x18ftypisom",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"ID3\x04",
        b"\xff\xfb\x94\xc4",
        b"\x1aE\xdf\xa3",
        b"OggS",
        b"fLaC",
        b"<html>",
    ]
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=_MAGIC, body=st.binary(max_size=3000))
def test_probe_never_raises_on_arbitrary_bytes(media: MediaHost, head: bytes, body: bytes) -> None:
    """Whatever bytes a host serves, the probe returns a MediaInfo (both parsers), never an exception."""
    url = media.url(media.put(head + body, "video/mp4"))
    for parser in ("av", "tinytag"):
        info = probe_urls([url], config=quick(parser=parser))[url]
        assert isinstance(info, MediaInfo)
        assert info.problem in (None, "media-not-media", "media-unreadable", "media-unsupported")
        assert info.bytes_read <= len(head + body)


def test_config_values_are_checked() -> None:
    """A ProbeConfig that cannot work says which field and why."""
    with pytest.raises(ConfigurationError, match="per_host"):
        ProbeConfig(per_host=0)
    with pytest.raises(ConfigurationError, match="time_budget"):
        ProbeConfig(time_budget=float("nan"))
