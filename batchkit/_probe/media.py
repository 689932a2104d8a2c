"""Read a media file's container, duration, tracks and codecs through a :class:`RangeFile`: :class:`MediaInfo`.

Parsers: **tinytag** (pure Python) and **PyAV** (``av``, the optional ``media`` extra). With the default
``ProbeConfig.parser="auto"``, the containers tinytag reads fully (MP4, MOV, M4A, 3GP, WAV, MP3, FLAC, Ogg)
go to tinytag, and everything else (WebM, Matroska, AVI, ASF, unnamed bytes), or a file tinytag cannot time,
to PyAV when it is installed. For those containers both give the same facts, and tinytag reads only the
index where PyAV also decodes one frame per stream to learn its pixel or sample format: about 5 ms of CPU per
MP4 clip (more for 1080p) against well under 1 ms, and a request more per file. ``parser="av"`` or
``"tinytag"`` forces one parser. PyAV is given the Range-backed file object, never the URL (its own HTTP
reader asks for open-ended ranges and reads megabytes), and told to look no further than the index
(``probesize=32``, ``analyzeduration=0``) and to decode in the calling thread. tinytag reads duration,
sample rate and audio codec; it does not report video tracks, so for the MP4 family a walk over the ``moov``
index's boxes (box headers, ``hdlr`` handler types, the first ``stsd`` entry, ``tkhd`` sizes, ``mdhd`` and
``stts`` for the frame rate; nothing else is parsed) says which tracks there are. Either way the file's
top-level structure is checked against its length, which finds a file cut short (an ``mdat`` or a RIFF
``data`` chunk that claims more bytes than the file has) that parsers would happily read.

**What Sync takes** (Sync's "Media Formats Support" page, docs of 2026): video in MP4, QuickTime (.mov, .qt),
WebM or AVI; audio in WAV, MP3, Ogg, FLAC, ALAC, MP4 audio, and with "limited support" WMA, M4A, M3A and AAC.
So :data:`SUPPORTED_CONTAINERS` holds ``mp4 mov webm avi wav mp3 ogg flac m4a aac asf``; anything else that is
still media (3GP, Matroska other than WebM, FLV, MPEG-TS, AIFF, CAF, AMR, an image...) is
``media-unsupported``. Codecs are reported but never refused: Sync re-encodes every input to H.264 and
documents no codec list (it only notes that 10-bit HDR is normalised to 8-bit).
"""

from __future__ import annotations

import importlib.util
import logging
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, BinaryIO, Final, cast

from .._errors import install_hint
from .config import Parser
from .rangefile import ByteBudgetExceeded, RangeFile
from .sniff import Sniff

__all__ = ["SUPPORTED_CONTAINERS", "MediaInfo", "Parsed", "have_av", "read_media"]

log = logging.getLogger("batchkit")

#: Containers Sync documents (see the module docstring); the names are :func:`sniff`'s.
SUPPORTED_CONTAINERS: Final = frozenset(
    {"mp4", "mov", "webm", "avi", "wav", "mp3", "ogg", "flac", "m4a", "aac", "asf"}
)

#: MP4 sample entries and tinytag's codec strings → the codec names PyAV (ffmpeg) reports.
_CODECS: Final = {
    "avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc", "mp4v": "mpeg4", "vp08": "vp8",
    "vp09": "vp9", "av01": "av1", "apch": "prores", "apcn": "prores", "apcs": "prores", "apco": "prores",
    "ap4h": "prores", "jpeg": "mjpeg", "mp4a.40.2": "aac", "mp4a.40.5": "aac", "mp4a.40.29": "aac",
    "mp4a.40": "aac", "mp4a.67": "aac", "mp4a.6b": "mp3", "mp4a.69": "mp3", "alac": "alac", "1": "pcm",
    "3": "pcm_float", "opus": "opus", "flac": "flac", "ac-3": "ac3", "ec-3": "eac3",
}  # fmt: skip


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    return _CODECS.get(name.lower(), _CODECS.get(name.lower().rsplit(".", 1)[0], name))


#: PyAV (ffmpeg) format names → batchkit's container names, for files the sniffer could not name.
_AV_FORMATS: Final = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "matroska,webm": "matroska",
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "flac": "flac",
    "aac": "aac",
    "asf": "asf",
    "avi": "avi",
    "flv": "flv",
    "mpegts": "mpegts",
    "mpeg": "mpeg",
    "aiff": "aiff",
    "caf": "caf",
    "amr": "amr",
}
#: Look no further than the index (one packet a stream), and decode in this thread: a decoder's own threads
#: cost more to start than the one frame it decodes.
_AV_OPTIONS: Final = {"probesize": "32", "analyzeduration": "0", "threads": "1"}
#: Containers whose duration, tracks and codecs tinytag (with the MP4 box walk) reads as fully as PyAV.
_TINYTAG_READS: Final = frozenset({"mp4", "mov", "m4a", "3gp", "wav", "mp3", "flac", "ogg"})
_ISO_FAMILY: Final = frozenset({"mp4", "mov", "m4a", "3gp"})
_CONTAINER_BOXES: Final = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl"})


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What the probe learned about one URL. ``problem`` is None when the URL serves media that could be read.

    ``problem`` is one of ``media-unreachable`` (no usable answer: ``error`` says which), ``media-not-media``
    (a page, text, nothing, or bytes no parser reads), ``media-unsupported`` (a container Sync does not list)
    or ``media-unreadable`` (media, but damaged or cut short). Track and duration problems depend on how a
    request uses the URL and are judged by :func:`~batchkit._probe.payload_media_problems`. ``None`` in a
    field means "not learned", never "absent": ``has_video=False`` is a file read to have no video track.
    """

    url: str
    kind: str = ""
    problem: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    size: int | None = None
    bytes_read: int = 0
    requests: int = 0
    duration: float | None = None
    has_video: bool | None = None
    has_audio: bool | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    container: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    range_supported: bool | None = None
    parser: str | None = None
    error: str | None = None
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        """True when the URL serves media that could be read (its duration may still be unknown)."""
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MediaInfo:
        """The inverse of :meth:`to_dict`; unknown keys (from a newer batchkit) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def evolve(self, **changes: Any) -> MediaInfo:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a parser read; ``problem``/``error`` say why it could not."""

    parser: str | None = None
    container: str | None = None
    duration: float | None = None
    has_video: bool | None = None
    has_audio: bool | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    problem: str | None = None
    error: str | None = None


def have_av() -> bool:
    """True when PyAV can be imported (the ``media`` extra)."""
    return importlib.util.find_spec("av") is not None


def read_media(file: RangeFile, sniffed: Sniff, *, parser: Parser = "auto") -> Parsed:
    """Parse ``file`` (already sniffed as media or unknown) with the chosen parser, then check its structure."""
    if parser == "av" or (parser == "auto" and sniffed.container not in _TINYTAG_READS and have_av()):
        parsed = _with_av(file, sniffed)
    else:
        parsed = _with_tinytag(file, sniffed)
        if parser == "auto" and parsed.duration is None and file.failure is None and have_av():
            second = _with_av(file, sniffed)  # what tinytag could not read, PyAV may
            if second.duration is not None or (second.problem is None and parsed.problem is not None):
                parsed = second
    failure = file.failure
    if failure is not None and parsed.duration is None and parsed.problem in (None, "media-unreadable"):
        if isinstance(failure, ByteBudgetExceeded):
            return replace(parsed, problem=None, error=str(failure))
        return replace(parsed, problem="media-unreachable", error=str(failure))
    if parsed.problem in (None, "media-unreadable") and parsed.container in _ISO_FAMILY | {"wav"}:
        cut = _truncation(file, parsed.container)
        if cut is not None:
            return replace(parsed, problem="media-unreadable", error=cut)
    if (
        parsed.problem is None
        and parsed.container is not None
        and parsed.container not in SUPPORTED_CONTAINERS
    ):
        what = "an image" if parsed.container == "image" else f"{parsed.container.upper()}"
        return replace(parsed, problem="media-unsupported", error=f"{what} is not a container Sync lists")
    return parsed


# --------------------------------------------------------------------------------------------- PyAV


def _with_av(file: RangeFile, sniffed: Sniff) -> Parsed:
    import av

    file.seek(0)
    try:
        with av.open(file, mode="r", options=_AV_OPTIONS) as container:
            return _from_av(container, sniffed)
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        cause = file.failure
        if cause is not None:
            return Parsed("av", sniffed.container, error=str(cause))
        if sniffed.kind == "unknown":
            return Parsed("av", problem="media-not-media", error="bytes that no media parser recognises")
        reason = getattr(exc, "strerror", None) or str(exc)
        return Parsed(
            "av", sniffed.container, problem="media-unreadable", error=f"PyAV cannot read it ({reason})"
        )


def _from_av(container: Any, sniffed: Sniff) -> Parsed:
    import av.stream

    still = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image
    # Cover art in an MP3 or M4A is a "video" stream of one picture: not a video track.
    video = next((s for s in container.streams.video if not (s.disposition & still)), None)
    audio = next(iter(container.streams.audio), None)
    duration = container.duration / 1_000_000 if container.duration and container.duration > 0 else None
    if duration is None:
        spans = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
        duration = max(spans) if spans else None
    name = container.format.name
    kind = (
        sniffed.container
        or _AV_FORMATS.get(name)
        or ("image" if "image" in name or "_pipe" in name else name)
    )
    fps = None
    width = height = sample_rate = None
    if video is not None:
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate else None
        width = video.codec_context.width or None
        height = video.codec_context.height or None
    if audio is not None:
        sample_rate = audio.codec_context.sample_rate or None
    return Parsed(
        parser="av",
        container=kind,
        duration=duration,
        has_video=video is not None,
        has_audio=audio is not None,
        video_codec=_codec_name(video),
        audio_codec=_codec_name(audio),
        width=width,
        height=height,
        fps=fps,
        sample_rate=sample_rate,
        error=None,
    )


def _codec_name(stream: Any) -> str | None:
    if stream is None:
        return None
    codec = stream.codec_context.codec
    return str(codec.canonical_name or codec.name) if codec is not None else None


# --------------------------------------------------------------------------------------------- tinytag


def _with_tinytag(file: RangeFile, sniffed: Sniff) -> Parsed:
    from tinytag import TinyTag, TinyTagException

    file.seek(0)
    container = sniffed.container
    if container in SUPPORTED_CONTAINERS and container not in _TINYTAG_READS:
        what = container.upper() if container else "this container"
        return Parsed(
            "tinytag",
            container,
            error=f"tinytag cannot read {what}; {install_hint('media')} (PyAV) reads its duration and tracks",
        )
    try:
        tag = TinyTag.get(
            file_obj=cast(BinaryIO, file), filename="media.mp3" if container == "mp3" else None, tags=False
        )
    except TinyTagException as exc:
        if file.failure is not None:
            return Parsed("tinytag", container, error=str(file.failure))
        if sniffed.kind == "unknown":
            return Parsed("tinytag", problem="media-not-media", error="bytes that no media parser recognises")
        if container is not None and container not in SUPPORTED_CONTAINERS:
            return Parsed("tinytag", container)  # unsupported either way; read_media says so
        message = str(exc.__cause__ or exc) or type(exc).__name__
        return Parsed(
            "tinytag", container, problem="media-unreadable", error=f"tinytag cannot read it ({message})"
        )
    audio_codec = None
    mime = tag.mime_type or ""
    if 'codecs="' in mime:
        audio_codec = mime.split('codecs="', 1)[1].rstrip('"')
    elif container == "mp3":
        audio_codec = "mp3"
    parsed = Parsed(
        parser="tinytag",
        container=container,
        duration=float(tag.duration) if tag.duration else None,
        has_audio=True if tag.samplerate or tag.channels else None,
        audio_codec=_codec(audio_codec),
        sample_rate=int(tag.samplerate) if tag.samplerate else None,
        error=str(file.failure) if file.failure is not None and not tag.duration else None,
    )
    if container in ("wav", "mp3", "flac", "ogg", "aac"):
        return replace(parsed, has_video=False, has_audio=True)
    if container in _ISO_FAMILY:
        return _mp4_tracks(file, parsed)
    return parsed


def _boxes(file: RangeFile, start: int, end: int, limit: int = 16) -> list[tuple[bytes, int, int, int]]:
    """``(type, offset, header length, total length)`` of the first ``limit`` top-level boxes; stops at damage.

    The limit keeps a fragmented MP4 (hundreds of ``moof``/``mdat`` pairs) from costing a read per fragment.
    """
    found: list[tuple[bytes, int, int, int]] = []
    at = start
    while at + 8 <= end and len(found) < limit:
        file.seek(at)
        head = file.read(16)
        if len(head) < 8:
            break
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1 and len(head) == 16:
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:
            size = end - at
        if size < header:
            break
        found.append((kind, at, header, size))
        at += size
    return found


def _mp4_tracks(file: RangeFile, parsed: Parsed) -> Parsed:
    """Tracks of an MP4-family file from its ``moov`` index (tinytag reports only the audio)."""
    size = file.size or 0
    moov = next((b for b in _boxes(file, 0, size) if b[0] == b"moov"), None)
    if moov is None:
        return parsed
    if moov[3] > file.config.byte_budget:
        return replace(parsed, error=f"the MP4 index is {moov[3]:,} bytes, more than the byte budget")
    file.seek(moov[1])
    data = file.read(moov[3])
    handlers: list[tuple[bytes, bytes, int, int, float | None]] = []
    for kind, offset, header, length in _inner(data, 0, len(data)):
        if kind == b"moov":
            for t_kind, t_off, t_head, t_len in _inner(data, offset + header, offset + length):
                if t_kind == b"trak":
                    handlers.append(_trak(data, t_off + t_head, t_off + t_len))
    video = [h for h in handlers if h[0] == b"vide"]
    audio = [h for h in handlers if h[0] == b"soun"]
    first_video = video[0] if video else None
    return replace(
        parsed,
        has_video=bool(video),
        has_audio=bool(audio) or parsed.has_audio is True,
        video_codec=_codec(first_video[1].decode("latin-1").strip()) if first_video else None,
        width=first_video[2] or None if first_video else None,
        height=first_video[3] or None if first_video else None,
        fps=first_video[4] if first_video else None,
    )


def _inner(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    found, at = [], start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1 and at + 16 <= end:
            size, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            break
        found.append((kind, at, header, size))
        at += size
    return found


def _trak(data: bytes, start: int, end: int) -> tuple[bytes, bytes, int, int, float | None]:
    """``(handler type, first sample entry type, width, height, frames per second)`` of one ``trak``."""
    handler, entry, width, height, fps = b"", b"", 0, 0, None
    scale = duration = 0
    samples = 0
    stack = [(start, end)]
    while stack:
        lo, hi = stack.pop()
        for kind, offset, header, length in _inner(data, lo, hi):
            body = offset + header
            if kind in _CONTAINER_BOXES:
                stack.append((body, offset + length))
            elif kind == b"tkhd" and length >= header + 84:
                tail = offset + length - 8
                width, height = (v >> 16 for v in struct.unpack_from(">II", data, tail))
            elif kind == b"hdlr" and length >= header + 12:
                handler = data[body + 8 : body + 12]
            elif kind == b"mdhd" and length >= header + 24:
                if data[body] == 1 and length >= header + 36:
                    scale, duration = struct.unpack_from(">IQ", data, body + 20)
                else:
                    scale, duration = struct.unpack_from(">II", data, body + 12)
            elif kind == b"stsd" and length >= header + 16:
                entry = data[body + 12 : body + 16]
            elif kind == b"stts" and length >= header + 8:
                count = struct.unpack_from(">I", data, body + 4)[0]
                for i in range(min(count, (length - header - 8) // 8)):
                    samples += struct.unpack_from(">I", data, body + 8 + 8 * i)[0]
    if handler == b"vide" and scale and duration and samples:
        fps = round(samples / (duration / scale), 3)
    return handler, entry, width, height, fps


# --------------------------------------------------------------------------------------------- structure


def _truncation(file: RangeFile, container: str) -> str | None:
    """Why the file looks cut short (its structure claims more bytes than it has), or None."""
    size = file.size
    if not size or file.failure is not None:
        return None
    try:
        if container == "wav":
            file.seek(0)
            head = file.read(12)
            if len(head) == 12 and head[:4] == b"RIFF":
                claimed = struct.unpack("<I", head[4:8])[0] + 8
                if claimed > size and claimed != 0xFFFFFFFF + 8:
                    return f"the file is cut short: its RIFF header claims {claimed:,} bytes, the file has {size:,}"
            return None
        for kind, offset, _header, length in _boxes(file, 0, size):
            if offset + length > size:
                name = kind.decode("latin-1", "replace")
                return (
                    f"the file is cut short: its '{name}' box claims bytes up to {offset + length:,}, "
                    f"the file has {size:,}"
                )
    except (OSError, ValueError, struct.error) as exc:
        log.debug("probe: structure check of %s skipped (%s)", file.url, exc)
    return None
