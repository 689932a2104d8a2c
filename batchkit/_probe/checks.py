"""Coded media problems of one generate request, from probe results: :func:`payload_media_problems`.

The codes are a public contract (:data:`PROBE_CODES`, with severities in :data:`PROBE_SEVERITY`). Each
:class:`MediaProblem` says what is wrong with the measured numbers and how to fix it, and points into the
batch line (``/payload/input/1/url``); :meth:`MediaProblem.to_finding` places it at a source row.

``sync_mode`` semantics follow Sync's "Sync Mode" guide (2026): when audio is longer than video, ``bounce``
plays the video forward and back and ``loop`` restarts it until the audio ends, ``cut_off`` clips the audio
to the video, ``silence`` keeps the audio's length, ``remap`` slows the video down; when video is longer,
``bounce``, ``loop`` and ``cut_off`` trim the video to the audio, ``silence`` pads the audio with silence
and ``remap`` speeds the video up. Output lasts the audio's length, except ``cut_off`` (the shorter input)
and ``silence`` (the longer). A request without ``sync_mode`` is judged as ``cut_off``: Sync does not state
its default, and ``cut_off`` is the mode its examples use.

Spoken length of a TTS script is estimated from :data:`SPEECH_RATES`, characters per second of natural
speech by language (spaces and punctuation included; ``<break time="…"/>`` tags add their pause). English at
~150 words a minute is ~15 characters a second; Chinese ~5 and Japanese ~8 characters a second, Korean ~7
syllable blocks. It is a rough, typical pace, which is why ``tts-may-be-too-long`` is a warning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from .._report import CODES, Finding
from .._wire.limits import Limits
from .fetch import redact
from .media import MediaInfo
from .signed import url_expires_at

__all__ = [
    "DEFAULT_SPEECH_RATE",
    "PROBE_CODES",
    "PROBE_SEVERITY",
    "SPEECH_RATES",
    "MediaProblem",
    "output_seconds",
    "payload_media_problems",
    "tts_seconds",
]

Severity = Literal["error", "warning"]

#: Every code the media checks emit, with what it means (listed with every other code in ``batchkit.CODES``,
#: where they are defined). Codes never change meaning once published.
PROBE_CODES: Final[dict[str, str]] = {
    code: CODES[code]
    for code in (
        "media-unreachable", "media-not-media", "media-unsupported", "media-unreadable", "media-too-long",
        "media-no-video-track", "media-no-audio-track", "segment-beyond-media", "media-duration-unknown",
        "media-duration-mismatch", "media-url-expires", "tts-may-be-too-long",
    )
}  # fmt: skip

#: The severity of each code.
PROBE_SEVERITY: Final[dict[str, Severity]] = {
    code: "warning" if "(warning)" in meaning else "error" for code, meaning in PROBE_CODES.items()
}

#: Characters per second of natural text-to-speech, by ISO 639-1 language code (see the module docstring).
SPEECH_RATES: Final[dict[str, float]] = {
    "en": 15.0, "es": 15.5, "fr": 15.0, "de": 14.5, "it": 15.0, "pt": 15.0, "nl": 14.5, "sv": 14.0,
    "da": 14.0, "no": 14.0, "nb": 14.0, "fi": 13.0, "pl": 14.0, "cs": 14.0, "sk": 14.0, "ro": 14.5,
    "hu": 13.5, "tr": 14.0, "ru": 14.0, "uk": 14.0, "bg": 14.0, "el": 14.0, "hr": 14.0, "ar": 12.0,
    "he": 12.5, "fa": 12.5, "hi": 13.0, "bn": 13.0, "ta": 12.0, "id": 15.0, "ms": 15.0, "fil": 15.0,
    "vi": 13.0, "th": 12.0, "ja": 8.0, "zh": 5.0, "ko": 7.0,
}  # fmt: skip
#: The pace used for a language the table does not have.
DEFAULT_SPEECH_RATE: Final = 14.0

DEFAULT_TURNAROUND: Final = timedelta(hours=24)
DEFAULT_SYNC_MODE: Final = "cut_off"
_SEGMENT_SLACK: Final = 0.05  # seconds: container durations round; a segment ending within this is fine
_BREAK: Final = re.compile(
    r"<break\s+time\s*=\s*[\"']?\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*[\"']?\s*/?>", re.IGNORECASE
)
_TAG: Final = re.compile(r"<[^>]{0,200}>")


@dataclass(frozen=True, slots=True)
class MediaProblem:
    """One coded problem of a request's media, located by a JSON pointer into its batch line."""

    code: str
    severity: Severity
    message: str
    pointer: str

    def to_finding(self, **location: Any) -> Finding:
        """A :class:`~batchkit.Finding` at ``location`` (``source=``, ``row=``, ``request_id=``, ...)."""
        return Finding(
            code=self.code, severity=self.severity, message=self.message, pointer=self.pointer, **location
        )


def _problem(code: str, message: str, pointer: str) -> MediaProblem:
    return MediaProblem(code, PROBE_SEVERITY[code], message, pointer)


def output_seconds(video: float | None, audio: float | None, sync_mode: str | None = None) -> float | None:
    """How long the output lasts (what Sync bills) for these input lengths under ``sync_mode``.

    ``cut_off`` (and no mode): the shorter input; ``silence``: the longer; ``bounce``, ``loop``, ``remap``
    and modes Sync may add later: the audio's length. None when a length it depends on is unknown (never a
    guess from the other input).

    >>> output_seconds(4.0, 8.64, "loop"), output_seconds(10.0, 1.74, "cut_off"), output_seconds(None, 3.0)
    (8.64, 1.74, None)
    """
    mode = sync_mode or DEFAULT_SYNC_MODE
    if mode in ("cut_off", "silence"):
        if video is None or audio is None:
            return None
        return min(video, audio) if mode == "cut_off" else max(video, audio)
    return audio


def _language(language: str | None) -> tuple[str | None, float]:
    if not language:
        return None, DEFAULT_SPEECH_RATE
    code = re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]
    return code, SPEECH_RATES.get(code, DEFAULT_SPEECH_RATE)


def tts_seconds(script: str, language: str | None = None) -> float:
    """The estimated spoken length of ``script`` in ``language`` (``en``, ``pt-BR``...), in seconds.

    >>> round(tts_seconds("Hello there, thanks for joining us today!", "en"), 1)
    2.7
    """
    pauses = sum(
        float(n) / (1000 if (unit or "s").lower() == "ms" else 1) for n, unit in _BREAK.findall(script)
    )
    text = " ".join(_TAG.sub(" ", script).split())
    return len(text) / _language(language)[1] + pauses


def _input_name(index: int, kind: str) -> str:
    return f"input {index} ({kind})"


def _where(url: str) -> str:
    return redact(url)


def payload_media_problems(
    payload: Mapping[str, Any],
    infos: Mapping[str, MediaInfo],
    limits: Limits,
    *,
    language: str | None = None,
    now: datetime | None = None,
    turnaround: timedelta = DEFAULT_TURNAROUND,
    mismatch_tolerance: float = 0.5,
) -> list[MediaProblem]:
    """Every media problem of one generate ``payload`` (its wire dict), given the probe's ``infos`` by URL.

    Inputs whose URL was not probed are checked only for signed-URL expiry. ``language`` (an ``[each]`` value
    such as ``es`` or ``pt-BR``) sets the speech pace for TTS scripts; ``now`` (UTC, default the current time)
    and ``turnaround`` decide which signed URLs expire too early; ``mismatch_tolerance`` is how many seconds
    audio and video may differ before ``media-duration-mismatch``.
    """
    moment = now or datetime.now(UTC)
    problems: list[MediaProblem] = []
    items = payload.get("input")
    if not isinstance(items, list):
        return problems
    durations: dict[int, float] = {}
    video_index: int | None = None
    audio_indexes: list[int] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        pointer = f"/payload/input/{index}"
        if kind == "text":
            problems.extend(_tts(item, index, limits, language))
            continue
        url = item.get("url")
        if kind not in ("video", "audio") or not isinstance(url, str):
            continue
        if kind == "video" and video_index is None:
            video_index = index
        elif kind == "audio":
            audio_indexes.append(index)
        problems.extend(_expiry(url, index, kind, moment, turnaround))
        info = infos.get(url)
        if info is None:
            continue
        found = _media(info, index, kind, limits, f"{pointer}/url")
        problems.extend(found)
        if info.ok and info.duration is not None:
            durations[index] = info.duration
    problems.extend(_segments(payload, items, durations, video_index))
    if video_index is not None and len(audio_indexes) == 1 and not payload.get("segments"):
        audio_index = audio_indexes[0]
        if video_index in durations and audio_index in durations:
            options = payload.get("options")
            mode = options.get("sync_mode") if isinstance(options, Mapping) else None
            mismatch = _mismatch(
                durations[video_index], durations[audio_index], mode if isinstance(mode, str) else None,
                mismatch_tolerance, audio_index,
            )  # fmt: skip
            if mismatch is not None:
                problems.append(mismatch)
    return problems


def _media(info: MediaInfo, index: int, kind: str, limits: Limits, pointer: str) -> list[MediaProblem]:
    name, where = _input_name(index, kind), _where(info.url)
    error = (info.error or "").removeprefix(f"{where}: ")
    if info.problem == "media-unreachable":
        status = (
            f"HTTP {info.http_status}: " if info.http_status and str(info.http_status) not in error else ""
        )
        message = (
            f"{name} {where} is unreachable ({status}{error or 'no answer'}). Sync fetches it the same way: make "
            "sure the link opens without signing in, from outside your network, then build again"
        )
        return [_problem("media-unreachable", message, pointer)]
    if info.problem == "media-not-media":
        message = f"{name} {where} is not media: {error or 'no media in it'}"
        return [_problem("media-not-media", message, pointer)]
    if info.problem == "media-unsupported":
        message = (
            f"{name} {where}: {error or 'its container is not one Sync lists'}. Convert it to MP4 (H.264) "
            + ("" if kind == "video" else "or WAV/MP3 ")
            + "before sending"
        )
        return [_problem("media-unsupported", message, pointer)]
    if info.problem is not None:
        message = f"{name} {where} cannot be read: {error or 'damaged file'}. Export or upload it again"
        return [
            _problem(
                "media-unreadable" if info.problem == "media-unreadable" else info.problem, message, pointer
            )
        ]
    found: list[MediaProblem] = []
    container = (info.container or "file").upper()
    if kind == "video" and info.has_video is False:
        audio = f", audio {info.audio_codec}" if info.audio_codec else ""
        message = (
            f"{name} {where} has no video track (a {container} with only sound{audio}): give a video file here, "
            "or move this URL to an audio input"
        )
        found.append(_problem("media-no-video-track", message, pointer))
    if kind == "audio" and info.has_audio is False:
        message = (
            f"{name} {where} has no audio track (a {container} without sound): give an audio file, or a video "
            "with its soundtrack"
        )
        found.append(_problem("media-no-audio-track", message, pointer))
    if info.duration is None:
        why = f" ({error})" if error else ""
        message = (
            f"{name} {where}: its duration could not be read{why}, so it may be over the "
            f"{limits.max_input_seconds:g} s limit; check it yourself, or probe again"
        )
        found.append(_problem("media-duration-unknown", message, pointer))
    elif info.duration > limits.max_input_seconds:
        message = (
            f"{name} {where} lasts {info.duration:.2f} s, over the {limits.max_input_seconds:g} s that Sync's "
            f"Batch API accepts: trim it to {limits.max_input_seconds:g} s or less"
        )
        found.append(_problem("media-too-long", message, pointer))
    return found


def _expiry(url: str, index: int, kind: str, now: datetime, turnaround: timedelta) -> list[MediaProblem]:
    expires = url_expires_at(url)
    if expires is None or expires >= now + turnaround:
        return []
    left = (expires - now).total_seconds() / 3600
    when = expires.strftime("%Y-%m-%d %H:%M UTC")
    already = "has already expired" if left <= 0 else f"expires in {left:.1f} h"
    hours = turnaround.total_seconds() / 3600
    message = (
        f"{_input_name(index, kind)} {_where(url)}: the signed URL {already} ({when}), before a batch's "
        f"{hours:g}-hour turnaround ends, so Sync may fetch it too late: sign it for at least {hours + 24:g} h "
        "(S3 and GCS allow up to 7 days)"
    )
    return [_problem("media-url-expires", message, f"/payload/input/{index}/url")]


def _tts(item: Mapping[str, Any], index: int, limits: Limits, language: str | None) -> list[MediaProblem]:
    provider = item.get("provider")
    script = provider.get("script") if isinstance(provider, Mapping) else None
    if not isinstance(script, str) or not script.strip():
        return []
    seconds = tts_seconds(script, language)
    if seconds <= limits.max_input_seconds:
        return []
    code, rate = _language(language)
    pace = f"~{rate:g} characters/s" + (
        f" in {language}"
        if code in SPEECH_RATES
        else f" (a default pace{f'; no rate for {language!r}' if language else ''})"
    )
    keep = math.floor(limits.max_input_seconds * rate)
    message = (
        f"{_input_name(index, 'text')}: a script of {len(script):,} characters speaks for about {seconds:.0f} s at "
        f"{pace}, over the {limits.max_input_seconds:g} s limit: shorten it to about {keep:,} characters, or "
        "split it across requests"
    )
    return [_problem("tts-may-be-too-long", message, f"/payload/input/{index}/provider/script")]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _segments(
    payload: Mapping[str, Any], items: list[Any], durations: Mapping[int, float], video_index: int | None
) -> list[MediaProblem]:
    segments = payload.get("segments")
    if not isinstance(segments, list):
        return []
    by_ref = {
        item.get("refId"): i
        for i, item in enumerate(items)
        if isinstance(item, Mapping) and item.get("type") == "audio" and isinstance(item.get("refId"), str)
    }
    found: list[MediaProblem] = []
    video = durations.get(video_index) if video_index is not None else None
    for k, segment in enumerate(segments):
        if not isinstance(segment, Mapping):
            continue
        end = _number(segment.get("endTime"))
        if video is not None and end is not None and end > video + _SEGMENT_SLACK:
            message = (
                f"segment {k} ends at {end:g} s, but the video lasts {video:.2f} s: end it by {video:.2f} s, "
                "or use a longer video"
            )
            found.append(_problem("segment-beyond-media", message, f"/payload/segments/{k}/endTime"))
        audio_input = segment.get("audioInput")
        if not isinstance(audio_input, Mapping):
            continue
        ref_index = by_ref.get(audio_input.get("refId"))
        audio = durations.get(ref_index) if ref_index is not None else None
        audio_end = _number(audio_input.get("endTime"))
        if audio is not None and audio_end is not None and audio_end > audio + _SEGMENT_SLACK:
            message = (
                f"segment {k} takes audio {audio_input.get('refId')!r} up to {audio_end:g} s, but that audio "
                f"lasts {audio:.2f} s: end the audio crop by {audio:.2f} s"
            )
            found.append(
                _problem("segment-beyond-media", message, f"/payload/segments/{k}/audioInput/endTime")
            )
    return found


def _mismatch(
    video: float, audio: float, mode: str | None, tolerance: float, audio_index: int
) -> MediaProblem | None:
    gap = abs(audio - video)
    if gap <= tolerance:
        return None
    chosen = mode or DEFAULT_SYNC_MODE
    shown = f"sync_mode {chosen}" if mode else f"no sync_mode (taken as {DEFAULT_SYNC_MODE})"
    if audio > video:
        effects = {
            "bounce": f"the video plays forward and back until the audio ends ({audio:.2f} s)",
            "loop": f"the video restarts and loops until the audio ends ({audio:.2f} s)",
            "cut_off": f"the last {gap:.2f} s of audio are cut: the output lasts {video:.2f} s",
            "silence": f"the output keeps the audio's {audio:.2f} s",
            "remap": f"the video is slowed to {video / audio:.0%} speed to last {audio:.2f} s",
        }
    else:
        effects = {
            "bounce": f"the video is trimmed to the audio's {audio:.2f} s (its last {gap:.2f} s dropped)",
            "loop": f"the video is trimmed to the audio's {audio:.2f} s (its last {gap:.2f} s dropped)",
            "cut_off": f"the video is trimmed to the audio's {audio:.2f} s (its last {gap:.2f} s dropped)",
            "silence": f"the audio is padded with {gap:.2f} s of silence to the video's {video:.2f} s",
            "remap": f"the video is sped up to {video / audio:.0%} speed to last {audio:.2f} s",
        }
    effect = effects.get(chosen, f"Sync decides by sync_mode {chosen!r}, which batchkit does not know")
    longer = "audio" if audio > video else "video"
    message = (
        f"the {longer} is {gap:.2f} s longer (video {video:.2f} s, audio {audio:.2f} s); with {shown}, {effect}. "
        "Make the lengths match, or set the sync_mode that does what you want (bounce, loop, cut_off, silence, remap)"
    )
    return _problem("media-duration-mismatch", message, f"/payload/input/{audio_index}/url")
