"""Sheets whose media live on a test's sandbox: the README's ``fixtures/preflight*.csv``, and two more that hide
the problems a URL-audio mapping cannot (a long TTS script, a segment past its video's end)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from batchkit import ProbeOptions

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
README_HOST = "http://127.0.0.1:8787"

#: Each row of fixtures/preflight.csv that hides a problem: row → (code, column).
HIDDEN: dict[int, list[tuple[str, str]]] = {
    3: [("media-too-long", "audio_url"), ("media-duration-mismatch", "audio_url")],
    4: [("media-unreachable", "audio_url")],
    5: [("media-not-media", "audio_url")],
    6: [("media-unsupported", "audio_url")],
    7: [("media-unreadable", "audio_url")],
    8: [("media-no-audio-track", "audio_url")],
    9: [("media-no-video-track", "video_url")],
    10: [("media-duration-mismatch", "audio_url")],
    11: [("media-duration-unknown", "video_url")],
    12: [("media-url-expires", "audio_url")],
}
#: The rows of fixtures/preflight.csv whose media fail (errors): they are invalid with --probe.
FAILING = {3, 4, 5, 6, 7, 8, 9}


def sheet(tmp_path: Path, base_url: str, name: str = "preflight.csv") -> Path:
    """``fixtures/<name>`` with its media on ``base_url`` (the sandbox of the test)."""
    path = tmp_path / name
    path.write_text((FIXTURES / name).read_text().replace(README_HOST, base_url.rstrip("/")))
    return path


def quick_probe(tmp_path: Path, **changes: Any) -> ProbeOptions:
    """Probe options for tests: a cache of the test's own, short timeouts and no waiting between retries."""
    from .conftest import quick

    settings: dict[str, Any] = {"config": quick(), "cache": tmp_path / "probe-cache.sqlite3"}
    settings.update(changes)
    return ProbeOptions(**settings)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]
