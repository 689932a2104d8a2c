"""Posters: a real frame of a real video, as a small JPEG; None (and a log line) for anything else."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

av = pytest.importorskip("av", reason="posters need PyAV: pip install 'sync-batchkit[media]'")

from review_samples import GREEN, make_mp4  # noqa: E402

from batchkit._handback.poster import poster_jpeg  # noqa: E402


def _decode(jpeg: bytes) -> tuple[int, int, tuple[float, float, float]]:
    """Width, height and mean RGB colour of a JPEG, decoded by FFmpeg."""
    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0))
        pixels = frame.to_ndarray(format="rgb24")
    red, green, blue = (float(pixels[..., c].mean()) for c in range(3))
    return frame.width, frame.height, (red, green, blue)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s, 64×48 H.264 MP4 whose first frame is black and whose other 24 are green."""
    return make_mp4(tmp_path_factory.mktemp("poster") / "clip.mp4")


class _RangeLike(io.RawIOBase):
    """A seekable binary file that is not a BytesIO (as a Range-backed reader is), counting what it reads."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        self.read_bytes += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def test_poster_is_a_small_jpeg_of_the_frame_at_ten_percent(video: Path) -> None:
    """The poster is a JPEG of the requested width, of a green frame (10% in), not the black first frame."""
    jpeg = poster_jpeg(video, max_width=32)
    assert jpeg is not None
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert jpeg.endswith(b"\xff\xd9")
    width, height, (red, green, blue) = _decode(jpeg)
    assert (width, height) == (32, 24)
    assert abs(green - GREEN[1]) < 30, (red, green, blue)
    assert max(red, blue) < 110, (red, green, blue)


def test_the_first_frame_when_asked_for(video: Path) -> None:
    """at=0 takes the very first frame (black here), so ``at`` really picks the moment."""
    jpeg = poster_jpeg(video, max_width=32, at=0.0)
    assert jpeg is not None
    assert max(_decode(jpeg)[2]) < 40


def test_small_videos_are_not_upscaled_and_sizes_stay_even(video: Path) -> None:
    """A max_width over the video's width keeps its size; an odd max_width is rounded down to even."""
    jpeg = poster_jpeg(video, max_width=4000)
    assert jpeg is not None
    assert _decode(jpeg)[:2] == (64, 48)
    odd = poster_jpeg(video, max_width=33)
    assert odd is not None
    assert _decode(odd)[:2] == (32, 24)


def test_file_objects_give_the_same_poster_and_stay_open(video: Path) -> None:
    """A BytesIO and a Range-like reader give the path's poster, and the caller's file is left open."""
    expected = poster_jpeg(video)
    data = video.read_bytes()
    buffer = io.BytesIO(data)
    assert poster_jpeg(buffer) == expected
    assert not buffer.closed
    reader = _RangeLike(data)
    assert poster_jpeg(reader) == expected
    assert not reader.closed
    assert 0 < reader.read_bytes <= 2 * len(data)


def test_a_smaller_quality_number_makes_a_larger_file(tmp_path: Path) -> None:
    """``quality`` is FFmpeg's JPEG scale: 2 is finer (and larger) than 20."""
    clip = make_mp4(tmp_path / "big.mp4", width=320, height=180, rest=(200, 120, 40), detailed=True)
    fine, coarse = poster_jpeg(clip, quality=2), poster_jpeg(clip, quality=20)
    assert fine is not None
    assert coarse is not None
    assert len(fine) > len(coarse)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"this is not a video\n" * 50, id="text"),
        pytest.param(bytes(range(256)) * 40, id="noise"),
    ],
)
def test_files_that_are_not_video_give_none_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    """Empty, text or random bytes: None, never an exception, and the reason logged with the file name."""
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="batchkit"):
        assert poster_jpeg(path) is None
    assert any("no poster for" in r.message and "broken.mp4" in r.message for r in caplog.records)


def test_a_truncated_video_gives_none(video: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Half an MP4 (its index cut off) is not readable: None."""
    with caplog.at_level(logging.WARNING, logger="batchkit"):
        assert poster_jpeg(io.BytesIO(video.read_bytes()[: video.stat().st_size // 2])) is None
    assert caplog.records


def test_missing_paths_and_folders_give_none(tmp_path: Path) -> None:
    """A path that does not exist, or a folder, is no video."""
    assert poster_jpeg(tmp_path / "nowhere.mp4") is None
    assert poster_jpeg(tmp_path) is None


def test_audio_only_media_gives_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A valid media file without a video stream (a WAV) has no poster, and says so."""
    import numpy as np

    path = tmp_path / "voice.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with caplog.at_level(logging.WARNING, logger="batchkit"):
        assert poster_jpeg(path) is None
    assert any("no video stream" in r.message for r in caplog.records)


def test_the_byte_budget_stops_reading(video: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Past ``max_bytes`` the read stops: None, and the reader never went far past the budget."""
    reader = _RangeLike(video.read_bytes())
    with caplog.at_level(logging.WARNING, logger="batchkit"):
        assert poster_jpeg(reader, max_bytes=500) is None
    assert reader.read_bytes <= 501
    assert any("byte budget" in r.message for r in caplog.records)


def test_without_pyav_there_is_no_poster(
    video: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When PyAV is not installed: None, and the log names the extra to install."""
    monkeypatch.setitem(sys.modules, "av", None)
    with caplog.at_level(logging.WARNING, logger="batchkit"):
        assert poster_jpeg(video) is None
    assert any("batchkit[media]" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "options",
    [{"max_width": 1}, {"at": 1.0}, {"at": -0.1}, {"quality": 1}, {"max_bytes": 0}, {"timeout": 0}],
    ids=str,
)
def test_impossible_options_are_a_programming_error(video: Path, options: dict[str, float]) -> None:
    """Options no poster can satisfy raise ValueError at once (bad media never does)."""
    with pytest.raises(ValueError, match="poster_jpeg"):
        poster_jpeg(video, **options)  # type: ignore[arg-type]
