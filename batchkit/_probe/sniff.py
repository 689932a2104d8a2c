"""What the first bytes of a URL are: media (and which container), a page (HTML, JSON, text), or nothing.

The Content-Type a server sends decides nothing here: share links serve HTML as ``video/mp4`` and buckets
serve MP4 as ``text/plain`` or ``application/octet-stream``. :func:`sniff` looks at the bytes. The containers
Sync takes are recognised first by their signatures (a few bytes each: the ISO base media family by its
``ftyp`` box and major brand, EBML by its DocType, RIFF WAVE and AVI, ID3 and MPEG audio frames, Ogg, FLAC,
ASF, ADTS). Everything else goes to ``puremagic`` (MIT, pure Python), which knows hundreds of file types,
HTML among them, but scans its whole table on every call (about 5 ms); plain checks tell JSON and text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["Sniff", "sniff"]

log = logging.getLogger("batchkit")

Kind = Literal["media", "page", "other", "empty", "unknown"]

#: puremagic extensions → the container name batchkit reports.
_CONTAINERS: Final = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".f4v": "mp4",
    ".mov": "mov",
    ".qt": "mov",
    ".m4a": "m4a",
    ".f4a": "m4a",
    ".3gp": "3gp",
    ".3g2": "3gp",
    ".webm": "webm",
    ".mkv": "matroska",
    ".avi": "avi",
    ".wav": "wav",
    ".mp3": "mp3",
    ".mpga": "mp3",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".ogv": "ogg",
    ".opus": "ogg",
    ".flac": "flac",
    ".aac": "aac",
    ".wma": "asf",
    ".wmv": "asf",
    ".asf": "asf",
    ".flv": "flv",
    ".ts": "mpegts",
    ".mpg": "mpeg",
    ".mpeg": "mpeg",
    ".aif": "aiff",
    ".aiff": "aiff",
    ".caf": "caf",
    ".amr": "amr",
    ".gif": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".png": "image",
    ".webp": "image",
}
_PAGES: Final = {
    ".html": "HTML",
    ".htm": "HTML",
    ".xml": "XML",
    ".json": "JSON",
    ".txt": "text",
    ".svg": "SVG",
}
_BRANDS: Final = {b"qt  ": "mov", b"M4A ": "m4a", b"M4B ": "m4a", b"M4P ": "m4a", b"M4V ": "mp4"}


@dataclass(frozen=True, slots=True)
class Sniff:
    """The verdict on a file's first bytes.

    ``kind`` is ``media`` (``container`` names it), ``page`` (``description`` says which: HTML, JSON,
    text...), ``other`` (a known file type that is not media: a PDF, a ZIP archive), ``empty`` (no bytes at
    all) or ``unknown`` (binary that no signature matches: parsers may still read it).
    """

    kind: Kind
    container: str | None = None
    description: str = ""


def _iso_container(head: bytes) -> str | None:
    if head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand.startswith(b"3g"):
        return "3gp"
    return _BRANDS.get(brand, "mp4")


_ASF_GUID: Final = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def _signature(head: bytes) -> str | None:
    """The container of the media Sync takes, from its first bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI "):
        return "wav" if head[8:12] == b"WAVE" else "avi"
    if head[:3] == b"ID3" or (len(head) >= 4 and head[0] == 0xFF and head[1] & 0xE6 in (0xE2, 0xE4, 0xE6)):
        return "mp3"  # MPEG audio frame sync with layer III, II or I
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"  # ADTS
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:16] == _ASF_GUID:
        return "asf"
    return None


def _ebml_container(head: bytes) -> str | None:
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    return "webm" if b"webm" in head[:64] else "matroska"


def _text_kind(head: bytes) -> str | None:
    """``JSON``, ``HTML`` or ``text`` when the bytes read as UTF-8 text (a page), else None."""
    sample = head[:4096]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut at the sample's end
            return None
        text = sample[: exc.start].decode("utf-8")
    if not text:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\r\n\t")
    if printable < 0.95 * len(text):
        return None
    stripped = text.lstrip("\ufeff \r\n\t").lower()
    if stripped.startswith(("{", "[")):
        return "JSON"
    if (
        stripped.startswith(("<!doctype html", "<html", "<head", "<body", "<!--"))
        or "<html" in stripped[:1024]
    ):
        return "HTML"
    if stripped.startswith("<"):
        return "XML"
    return "text"


def sniff(head: bytes) -> Sniff:
    """Classify a file by its first bytes (64 KiB are plenty; a few hundred usually suffice)."""
    if not head:
        return Sniff("empty", description="no bytes at all")
    container = _iso_container(head) or _ebml_container(head) or _signature(head)
    if container is not None:
        return Sniff("media", container, container.upper())
    matches = _puremagic(head)
    for extension, mime, name in matches:
        if extension in _CONTAINERS:
            return Sniff("media", _CONTAINERS[extension], name or mime)
        if extension in _PAGES:
            return Sniff("page", description=_PAGES[extension])
        if mime.startswith(("video/", "audio/")):
            return Sniff("media", None, name or mime)
        if mime.startswith("text/"):
            return Sniff("page", description=mime)
    text = _text_kind(head)
    if text is not None:
        return Sniff("page", description=text)
    if matches:
        extension, mime, name = matches[0]
        return Sniff("other", description=name or mime or extension)
    return Sniff("unknown", description="bytes no media signature matches")


def _puremagic(head: bytes) -> list[tuple[str, str, str]]:
    """``(extension, mime, name)`` guesses from puremagic, most confident first; none without puremagic."""
    try:
        import puremagic
    except ImportError:  # pragma: no cover - puremagic is a dependency; keep working without it
        log.debug("probe: puremagic is not installed; sniffing by signatures batchkit knows")
        return []
    try:
        found = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return []
    if not found:
        return []
    top = max(m.confidence for m in found)
    return [
        (m.extension.lower(), (m.mime_type or "").lower(), m.name or "")
        for m in found
        if m.confidence >= top - 0.1
    ]
