"""Posters: one small JPEG frame of a video, for the review page.

:func:`poster_jpeg` opens a video with PyAV (the optional ``media`` extra: ``pip install 'sync-batchkit[media]'``),
seeks to the keyframe before 10% of its duration, decodes forward to that moment and encodes the frame with
FFmpeg's own ``mjpeg`` encoder, scaled down to ``max_width`` (Pillow is not needed).

The source is a local path or any readable, seekable binary file object (an open file, ``io.BytesIO``, or a
file object backed by HTTP Range reads of an output URL). A ``str`` is always a path: FFmpeg is never given a
URL, so it never opens a connection of its own. Every read goes through a budget: at most ``max_bytes`` are
read and everything ends within ``timeout`` seconds, however large, slow or hostile the file; at most
:data:`MAX_FRAMES` frames are decoded.

Bad media never raises: a file that is missing, empty, truncated, not a video or over its budget gives
``None``, with the reason logged at warning level on the ``batchkit`` logger. The review page shows a
placeholder instead.
"""

from __future__ import annotations

import io
import logging
import os
import time
from fractions import Fraction
from typing import IO, TYPE_CHECKING, Final

from .._errors import install_hint

if TYPE_CHECKING:
    import av.video.frame

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT", "MAX_FRAMES", "poster_jpeg"]

log = logging.getLogger("batchkit")

#: Bytes read from one video at most. An MP4 whose index (``moov``) is at the end costs one seek, not a read
#: of the whole file, so this is enough for files of any size; a Range-backed file stays cheap.
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024
#: Seconds one poster may take at most (opening, seeking, decoding and encoding).
DEFAULT_TIMEOUT: Final = 20.0
#: Frames decoded at most after the seek (a keyframe every 10 s at 30 fps is 300 frames; 120 gets close).
MAX_FRAMES: Final = 120


class _OverBudget(Exception):
    """Raised inside a read to stop FFmpeg: the byte budget or the deadline ran out."""


class _Budgeted:
    """A read-only view of a binary file that stops after ``max_bytes`` read or past ``deadline``.

    It has no ``close``, so PyAV closing its container leaves the caller's file open.
    """

    def __init__(self, inner: IO[bytes], *, max_bytes: int, deadline: float) -> None:
        self._inner = inner
        self._left = max_bytes
        self._deadline = deadline

    def check_time(self) -> None:
        if time.monotonic() > self._deadline:
            msg = "took longer than its time budget"
            raise _OverBudget(msg)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.check_time()
        if size < 0 or size > self._left:
            size = self._left + 1  # one byte past the budget tells "over" from "exactly at"
        data = self._inner.read(size)
        self._left -= len(data)
        if self._left < 0:
            msg = "needs more bytes than its byte budget"
            raise _OverBudget(msg)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.check_time()
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()


def poster_jpeg(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    max_width: int = 320,
    at: float = 0.1,
    quality: int = 5,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes | None:
    """A JPEG of the frame at ``at`` (a fraction of the duration) of ``source``, at most ``max_width`` wide.

    ``quality`` is FFmpeg's JPEG scale, 2 (best, largest) to 31 (worst, smallest); 5 keeps a 320 px poster
    near 5-10 KB. Returns None, and logs why, for anything that is not a readable video within the budget.
    A file object is read from its current position's file (seeked freely) and left open.
    """
    if max_width < 2 or not 0.0 <= at < 1.0 or not 2 <= quality <= 31 or max_bytes < 1 or timeout <= 0:
        msg = (
            f"poster_jpeg: max_width={max_width}, at={at}, quality={quality}, max_bytes={max_bytes}, "
            f"timeout={timeout}: need max_width >= 2, 0 <= at < 1, 2 <= quality <= 31, positive budgets"
        )
        raise ValueError(msg)
    name = _name_of(source)
    try:
        import av
    except ImportError:
        log.warning("no poster for %s: PyAV is not installed (%s)", name, install_hint("media"))
        return None
    deadline = time.monotonic() + timeout
    try:
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as handle:
                return _poster(
                    _Budgeted(handle, max_bytes=max_bytes, deadline=deadline), max_width, at, quality
                )
        return _poster(_Budgeted(source, max_bytes=max_bytes, deadline=deadline), max_width, at, quality)
    except _OverBudget as exc:
        log.warning("no poster for %s: it %s", name, exc)
    except (av.FFmpegError, OSError, ValueError, EOFError, IndexError, ZeroDivisionError) as exc:
        # PyAV raises FFmpegError (InvalidDataError, EOFError...) for bad media and ValueError for odd
        # shapes; OSError covers a missing file and a failing Range read.
        log.warning("no poster for %s: %s", name, getattr(exc, "strerror", None) or exc)
    return None


def _poster(reader: _Budgeted, max_width: int, at: float, quality: int) -> bytes | None:
    import av

    with av.open(reader, mode="r") as container:
        if not container.streams.video:
            msg = "it has no video stream"
            raise ValueError(msg)
        stream = container.streams.video[0]
        target = 0.0
        if stream.duration is not None and stream.time_base is not None:
            target = float(stream.duration * stream.time_base) * at
        elif container.duration is not None:
            target = container.duration / av.time_base * at
        if target > 0 and stream.time_base is not None:
            try:  # to the keyframe at or before the target; a file that cannot seek is decoded from the start
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
            except av.FFmpegError as exc:
                log.debug("poster: cannot seek (%s); decoding from the start", exc)
        best: av.video.frame.VideoFrame | None = None
        for count, frame in enumerate(container.decode(stream)):
            reader.check_time()
            best = frame
            if frame.time is None or frame.time >= target or count + 1 >= MAX_FRAMES:
                break
        if best is None:
            msg = "no frame could be decoded"
            raise ValueError(msg)
        return _encode_jpeg(best, max_width, quality)


def _encode_jpeg(frame: av.video.frame.VideoFrame, max_width: int, quality: int) -> bytes:
    """The frame as a baseline JPEG, scaled to at most ``max_width`` (even sizes, as 4:2:0 needs)."""
    import av

    if frame.width < 2 or frame.height < 2:
        msg = f"a {frame.width}x{frame.height} frame is too small for a poster"
        raise ValueError(msg)
    width = min(max_width, frame.width) // 2 * 2
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    # yuvj420p is full-range 4:2:0, what JPEG files hold; FFmpeg's mjpeg encoder takes it directly.
    picture = frame.reformat(width=width, height=height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": str(quality), "qmax": str(quality)}
    packets = [*encoder.encode(picture), *encoder.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def _name_of(source: str | os.PathLike[str] | IO[bytes]) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return str(getattr(source, "name", None) or type(source).__name__)
