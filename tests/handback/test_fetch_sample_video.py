"""The sandbox's sample video is a real, small MP4 (checked with PyAV), and every fetch code is documented."""

from __future__ import annotations

import re
from pathlib import Path

import av

from batchkit._handback.download import looks_like_video
from batchkit._handback.fetch import FETCH_CODES
from batchkit._report import CODES
from batchkit.sandbox._outputs import sample_bytes, sample_path

PACKAGE = Path(__file__).resolve().parents[2] / "batchkit" / "_handback"


def test_the_sample_is_a_small_real_mp4_with_moov_first() -> None:
    """Two seconds of H.264 video and AAC audio, under 64 KB, the moov box before the media (Range-friendly)."""
    data = sample_bytes()
    assert len(data) < 64 * 1024
    assert looks_like_video(data[:16])
    assert data.index(b"moov") < data.index(b"mdat")
    with av.open(str(sample_path())) as container:
        kinds = sorted((s.type, s.codec_context.name) for s in container.streams)
        assert kinds == [("audio", "aac"), ("video", "h264")]
        assert container.duration is not None
        assert 1.5 <= container.duration / 1_000_000 <= 2.5
        frames = list(container.decode(video=0))
    assert len(frames) == 24
    assert (frames[0].width, frames[0].height) == (160, 90)


def test_every_fetch_code_emitted_is_documented_and_new() -> None:
    """Each ``fetch-…`` code in the package's source is in FETCH_CODES, and none clashes with _report.CODES."""
    emitted = set()
    for path in PACKAGE.glob("*.py"):
        emitted |= set(re.findall(r'"(fetch-[a-z-]+)"', path.read_text()))
    assert emitted == set(FETCH_CODES)
    assert not set(FETCH_CODES) & set(CODES)
    assert all(meaning and not meaning.endswith(".") for meaning in FETCH_CODES.values())
