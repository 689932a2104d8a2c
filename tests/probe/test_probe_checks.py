"""payload_media_problems: every code, its severity, its pointer, its numbers; and the end-to-end path."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batchkit import DEFAULT_LIMITS, Limits
from batchkit._probe import (
    PROBE_CODES,
    MediaInfo,
    MediaProblem,
    output_seconds,
    payload_media_problems,
    probe_urls,
    tts_seconds,
    url_expires_at,
)
from batchkit._probe.checks import PROBE_SEVERITY
from batchkit._report import CODES
from batchkit.sandbox._media import MediaHost

from .conftest import quick

V, A = "https://cdn.example.com/v.mp4", "https://cdn.example.com/a.wav"
NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def video(duration: float | None = 10.0, **changes: Any) -> MediaInfo:
    """A probed MP4 with video and audio."""
    fields = {
        "has_video": True,
        "has_audio": True,
        "container": "mp4",
        "video_codec": "h264",
        "audio_codec": "aac",
    }
    return MediaInfo(V, "video", duration=duration, **{**fields, **changes})


def audio(duration: float | None = 10.0, **changes: Any) -> MediaInfo:
    """A probed WAV."""
    return MediaInfo(
        A,
        "audio",
        duration=duration,
        **{"has_video": False, "has_audio": True, "container": "wav", **changes},
    )


def payload(*, options: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A generate payload with the video V and the audio A."""
    body: dict[str, Any] = {
        "model": "lipsync-2",
        "input": [{"type": "video", "url": V}, {"type": "audio", "url": A}],
    }
    if options is not None:
        body["options"] = options
    return {**body, **extra}


def problems(
    body: dict[str, Any], *infos: MediaInfo, limits: Limits = DEFAULT_LIMITS, **kwargs: Any
) -> list[MediaProblem]:
    return payload_media_problems(body, {i.url: i for i in infos}, limits, now=NOW, **kwargs)


def codes(found: list[MediaProblem]) -> list[str]:
    return [p.code for p in found]


def test_codes_are_documented_with_severities_and_listed_with_the_report_codes() -> None:
    """Every code has a meaning and a severity; warnings say so; each is one of batchkit.CODES, same meaning."""
    assert set(PROBE_CODES) == set(PROBE_SEVERITY)
    warnings = {
        "media-duration-unknown",
        "media-duration-mismatch",
        "media-url-expires",
        "tts-may-be-too-long",
    }
    assert {c for c, s in PROBE_SEVERITY.items() if s == "warning"} == warnings
    assert all(CODES[code] == meaning for code, meaning in PROBE_CODES.items())


def test_good_media_has_no_problem() -> None:
    """Matching lengths under the limit, with the right tracks: nothing to say."""
    assert problems(payload(), video(12.0), audio(12.2)) == []


@pytest.mark.parametrize(
    ("info", "code", "said"),
    [
        pytest.param(
            MediaInfo(V, problem="media-unreachable", http_status=404, error="HTTP 404 Not Found"),
            "media-unreachable",
            "404",
            id="unreachable",
        ),
        pytest.param(
            MediaInfo(V, problem="media-not-media", error="the URL serves an HTML page"),
            "media-not-media",
            "HTML page",
            id="not-media",
        ),
        pytest.param(
            MediaInfo(
                V, problem="media-unsupported", container="3gp", error="3GP is not a container Sync lists"
            ),
            "media-unsupported",
            "3GP",
            id="unsupported",
        ),
        pytest.param(
            MediaInfo(V, problem="media-unreadable", error="the file is cut short"),
            "media-unreadable",
            "cut short",
            id="unreadable",
        ),
        pytest.param(video(31.5), "media-too-long", "31.50 s, over the 30 s", id="too-long"),
        pytest.param(
            video(None, error="the byte budget ran out"),
            "media-duration-unknown",
            "could not be read",
            id="duration-unknown",
        ),
        pytest.param(
            MediaInfo(V, duration=10.0, has_video=False, has_audio=True, container="m4a", audio_codec="aac"),
            "media-no-video-track",
            "no video track",
            id="no-video-track",
        ),
    ],
)
def test_each_video_problem_is_coded_and_located(info: MediaInfo, code: str, said: str) -> None:
    """Per-URL problems of the video input land at /payload/input/0/url with their code and severity."""
    found = [p for p in problems(payload(), info, audio()) if p.pointer == "/payload/input/0/url"]
    assert codes(found) == [code]
    assert found[0].severity == PROBE_SEVERITY[code]
    assert said in found[0].message


def test_audio_without_an_audio_track() -> None:
    """A silent video given as the audio input is media-no-audio-track at the audio's pointer."""
    silent = MediaInfo(A, duration=10.0, has_video=True, has_audio=False, container="mp4")
    found = problems(payload(), video(), silent)
    assert [(p.code, p.pointer) for p in found] == [("media-no-audio-track", "/payload/input/1/url")]


def test_unknown_tracks_are_not_reported_as_missing() -> None:
    """has_video None means "not learned": no track problem is invented."""
    assert problems(payload(), video(has_video=None), audio(has_audio=None)) == []


def test_the_limit_comes_from_the_profile() -> None:
    """A 45 s clip passes a 60 s profile and fails the default one."""
    assert problems(payload(), video(45.0), audio(45.0), limits=Limits(max_input_seconds=60)) == []
    assert codes(problems(payload(), video(45.0), audio(45.0))) == ["media-too-long", "media-too-long"]


@pytest.mark.parametrize(
    ("mode", "v", "a", "said"),
    [
        pytest.param(
            "bounce",
            4.0,
            8.64,
            "plays forward and back until the audio ends (8.64 s)",
            id="bounce-longer-audio",
        ),
        pytest.param("loop", 4.0, 8.64, "restarts and loops", id="loop-longer-audio"),
        pytest.param(
            "cut_off",
            4.0,
            8.64,
            "the last 4.64 s of audio are cut: the output lasts 4.00 s",
            id="cut-off-longer-audio",
        ),
        pytest.param(None, 4.0, 8.64, "no sync_mode (taken as cut_off)", id="default-longer-audio"),
        pytest.param("silence", 10.0, 1.74, "padded with 8.26 s of silence", id="silence-longer-video"),
        pytest.param("remap", 10.0, 5.0, "sped up to 200% speed", id="remap-longer-video"),
        pytest.param("remap", 5.0, 10.0, "slowed to 50% speed", id="remap-longer-audio"),
        pytest.param("loop", 10.0, 1.74, "trimmed to the audio's 1.74 s", id="loop-longer-video"),
        pytest.param("zigzag", 10.0, 5.0, "'zigzag', which batchkit does not know", id="unknown-mode"),
    ],
)
def test_duration_mismatch_says_what_the_sync_mode_will_do(
    mode: str | None, v: float, a: float, said: str
) -> None:
    """Lengths apart by more than the tolerance: a warning that says what this sync_mode does to them."""
    found = problems(payload(options={"sync_mode": mode} if mode else None), video(v), audio(a))
    assert codes(found) == ["media-duration-mismatch"]
    assert found[0].severity == "warning"
    assert said in found[0].message
    assert found[0].pointer == "/payload/input/1/url"


def test_small_mismatches_and_segmented_requests_are_not_flagged() -> None:
    """Within the tolerance, or with segments (which place audio themselves), lengths need not match."""
    assert problems(payload(), video(10.0), audio(10.4)) == []
    segments = [{"startTime": 0, "endTime": 5, "audioInput": {"refId": "a"}}]
    body = payload(segments=segments)
    body["input"][1]["refId"] = "a"
    assert problems(body, video(10.0), audio(5.0)) == []


def test_segments_past_the_end_of_their_media() -> None:
    """A segment ending after the video, or an audio crop past its audio, is segment-beyond-media."""
    body = payload(
        segments=[
            {"startTime": 0, "endTime": 4, "audioInput": {"refId": "a", "startTime": 0, "endTime": 4}},
            {"startTime": 4, "endTime": 12, "audioInput": {"refId": "a", "startTime": 4, "endTime": 9}},
        ]
    )
    body["input"][1]["refId"] = "a"
    found = problems(body, video(10.0), audio(8.0))
    assert [(p.code, p.pointer) for p in found] == [
        ("segment-beyond-media", "/payload/segments/1/endTime"),
        ("segment-beyond-media", "/payload/segments/1/audioInput/endTime"),
    ]
    assert "ends at 12 s, but the video lasts 10.00 s" in found[0].message


def _policy(epoch: int) -> str:
    raw = json.dumps({"Statement": [{"Condition": {"DateLessThan": {"AWS:EpochTime": epoch}}}]}).encode()
    return base64.b64encode(raw).decode().replace("+", "-").replace("=", "_").replace("/", "~")


SOON = int((NOW + timedelta(hours=3)).timestamp())
LATER = int((NOW + timedelta(days=3)).timestamp())


@pytest.mark.parametrize(
    ("query", "expires"),
    [
        pytest.param(
            "X-Amz-Date=20260115T093000Z&X-Amz-Expires=3600&X-Amz-Signature=s",
            NOW + timedelta(minutes=30),
            id="s3-sigv4",
        ),
        pytest.param(
            f"AWSAccessKeyId=AK&Expires={SOON}&Signature=s", NOW + timedelta(hours=3), id="s3-sigv2"
        ),
        pytest.param(
            "X-Goog-Date=20260115T100000Z&X-Goog-Expires=7200&X-Goog-Signature=s",
            NOW + timedelta(hours=2),
            id="gcs-v4",
        ),
        pytest.param(f"GoogleAccessId=g&Expires={SOON}&Signature=s", NOW + timedelta(hours=3), id="gcs-v2"),
        pytest.param(
            "sv=2022-11-02&se=2026-01-15T18%3A00%3A00Z&sr=b&sp=r&sig=s",
            NOW + timedelta(hours=8),
            id="azure-sas",
        ),
        pytest.param(
            f"Expires={SOON}&Signature=s&Key-Pair-Id=K", NOW + timedelta(hours=3), id="cloudfront-canned"
        ),
        pytest.param(
            f"Policy={_policy(SOON)}&Signature=s&Key-Pair-Id=K",
            NOW + timedelta(hours=3),
            id="cloudfront-policy",
        ),
    ],
)
def test_signed_urls_that_expire_before_the_turnaround(query: str, expires: datetime) -> None:
    """Each signing scheme's expiry is read; expiring within 24 h is a media-url-expires warning."""
    url = f"{V}?{query}"
    assert url_expires_at(url) == expires
    body = payload()
    body["input"][0]["url"] = url
    found = problems(body, audio())
    assert codes(found) == ["media-url-expires"]
    assert found[0].pointer == "/payload/input/0/url"
    assert expires.strftime("%Y-%m-%d %H:%M UTC") in found[0].message


def test_long_lived_expired_and_unsigned_urls() -> None:
    """Three days left is fine, already expired says so, and an unsigned URL has no expiry."""
    body = payload()
    body["input"][0]["url"] = f"{V}?Expires={LATER}&Signature=s&Key-Pair-Id=K"
    assert problems(body, audio()) == []
    body["input"][0]["url"] = "https://b.s3.amazonaws.com/v.mp4?X-Amz-Date=20260110T000000Z&X-Amz-Expires=60"
    assert "has already expired" in problems(body, audio())[0].message
    assert url_expires_at(V) is None
    assert url_expires_at(f"{V}?Expires=soon") is None


def tts(script: str) -> dict[str, Any]:
    return {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": V},
            {"type": "text", "provider": {"voiceId": "v", "script": script}},
        ],
    }


def test_tts_scripts_that_may_speak_too_long() -> None:
    """The spoken length is estimated per language; over the limit is a warning at the script."""
    english = "word " * 100  # 500 characters: about 33 s at 15 characters a second
    found = problems(tts(english), video(), language="en-US")
    assert codes(found) == ["tts-may-be-too-long"]
    assert found[0].pointer == "/payload/input/1/provider/script"
    assert "about 33 s at ~15 characters/s in en-US" in found[0].message
    assert "450 characters" in found[0].message
    assert problems(tts("word " * 60), video(), language="en") == []
    chinese = "你好" * 80  # 160 characters at 5 a second: 32 s
    assert codes(problems(tts(chinese), video(), language="zh-Hans")) == ["tts-may-be-too-long"]
    assert "a default pace; no rate for 'xx'" in problems(tts(english), video(), language="xx")[0].message


def test_tts_estimate_counts_breaks_and_ignores_tags() -> None:
    """<break time="…"/> adds its pause; other tags and runs of spaces do not count."""
    assert tts_seconds("Hi!   <emphasis>there</emphasis>", "en") == pytest.approx(len("Hi! there") / 15)
    assert tts_seconds('one <break time="1.5s"/> two <break time="500ms"/>', "en") == pytest.approx(
        len("one two") / 15 + 2.0
    )


def test_output_seconds_follows_sync_mode() -> None:
    """Billed output length: audio's for bounce/loop/remap, shorter for cut_off, longer for silence; unknown
    when a length it depends on is unknown."""
    assert [output_seconds(4.0, 8.0, m) for m in ("bounce", "loop", "remap", "cut_off", "silence", None)] == [
        8.0, 8.0, 8.0, 4.0, 8.0, 4.0,
    ]  # fmt: skip
    assert output_seconds(None, 8.0, "loop") == 8.0
    assert output_seconds(4.0, None, "loop") is None
    assert output_seconds(None, 8.0) is None
    assert output_seconds(4.0, None, "silence") is None


def test_a_problem_becomes_a_finding_at_a_source_row() -> None:
    """to_finding keeps code, severity, message and pointer and takes the row's location."""
    problem = problems(payload(), video(40.0), audio(10.0))[0]
    finding = problem.to_finding(source="campaign.csv", row=7, request_id="cust-7")
    assert (finding.code, finding.severity, finding.pointer, finding.row) == (
        "media-too-long",
        "error",
        "/payload/input/0/url",
        7,
    )
    assert str(finding).startswith(
        "campaign.csv row 7: error media-too-long [cust-7] at /payload/input/0/url"
    )


def test_end_to_end_probe_then_check(media: MediaHost) -> None:
    """Probing the sandbox's media and checking payloads finds each row's problem at the right input."""
    long_clip, short_voice = media.url("e2e-long.mp4", duration=31), media.url("e2e-voice.wav", duration=6)
    share, gone = media.url("e2e-share.mp4", **{"as": "html"}), media.url("e2e-gone.wav", status=404)
    rows: list[dict[str, Any]] = [
        {
            "model": "lipsync-2",
            "input": [{"type": "video", "url": long_clip}, {"type": "audio", "url": short_voice}],
        },
        {"model": "lipsync-2", "input": [{"type": "video", "url": share}, {"type": "audio", "url": gone}]},
    ]
    urls = [(item["url"], item["type"]) for row in rows for item in row["input"]]
    infos = probe_urls(urls, config=quick())
    first = payload_media_problems(rows[0], infos, DEFAULT_LIMITS, now=NOW)
    second = payload_media_problems(rows[1], infos, DEFAULT_LIMITS, now=NOW)
    assert codes(first) == ["media-too-long", "media-duration-mismatch"]
    assert [(p.code, p.pointer) for p in second] == [
        ("media-not-media", "/payload/input/0/url"),
        ("media-unreachable", "/payload/input/1/url"),
    ]
