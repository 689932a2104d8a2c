"""How many seconds one request bills, from its payload and what the probe measured: :func:`billable_seconds`.

Sync bills the output's frames, and the output lasts as :func:`~batchkit._probe.checks.output_seconds` says for
the request's ``sync_mode``: the audio's length (``bounce``, ``loop``, ``remap``), the shorter input
(``cut_off``, and no mode) or the longer one (``silence``). A text-to-speech input lasts its script's estimated
spoken length (:func:`~batchkit._probe.checks.tts_seconds`, in the unit's language). A request with
``segments`` is taken to last its video (the segments place audio inside it). Anything not measured (an input
given by asset id, a URL that was not probed or could not be timed, a request with several audio inputs and no
segments) makes the length unknown: None, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .checks import output_seconds, tts_seconds
from .media import MediaInfo

__all__ = ["billable_seconds", "durations"]


def durations(infos: Mapping[str, MediaInfo]) -> dict[str, float]:
    """URL → duration of every probed URL that serves readable media whose length is known."""
    return {url: info.duration for url, info in infos.items() if info.ok and info.duration is not None}


def billable_seconds(
    payload: Mapping[str, Any], lengths: Mapping[str, float], language: str | None = None
) -> float | None:
    """The seconds of output ``payload`` (a generate request's wire dict) is billed for, or None when unknown.

    ``lengths`` maps media URLs to their durations (:func:`durations` of a probe's results).

    >>> billable_seconds({"input": [{"type": "video", "url": "v"}, {"type": "audio", "url": "a"}],
    ...                   "options": {"sync_mode": "loop"}}, {"v": 4.0, "a": 8.5})
    8.5
    """
    items = payload.get("input")
    if not isinstance(items, list):
        return None
    video: float | None = None
    audios: list[float | None] = []
    seen_video = False
    for item in items:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "video" and not seen_video:
            seen_video = True
            url = item.get("url")
            video = lengths.get(url) if isinstance(url, str) else None
        elif kind == "audio":
            url = item.get("url")
            audios.append(lengths.get(url) if isinstance(url, str) else None)
        elif kind == "text":
            provider = item.get("provider")
            script = provider.get("script") if isinstance(provider, Mapping) else None
            audios.append(
                tts_seconds(script, language) if isinstance(script, str) and script.strip() else None
            )
    if payload.get("segments"):
        return video
    if len(audios) != 1:
        return None
    options = payload.get("options")
    mode = options.get("sync_mode") if isinstance(options, Mapping) else None
    return output_seconds(video, audios[0], mode if isinstance(mode, str) else None)
