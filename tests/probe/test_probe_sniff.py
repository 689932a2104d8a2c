"""Sniffing first bytes: media and its container, pages, other files, nothing; the Content-Type plays no part."""

from __future__ import annotations

import pytest

from batchkit._probe.sniff import Sniff, sniff
from batchkit.sandbox._media_files import (
    ClipSpec,
    html_page,
    json_page,
    mp3_file,
    mp4_file,
    text_page,
    wav_file,
)

EBML_WEBM = (
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm"
)
EBML_MKV = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x88matroska"


@pytest.mark.parametrize(
    ("head", "kind", "container"),
    [
        pytest.param(mp4_file(ClipSpec()).read(0, 4096), "media", "mp4", id="mp4"),
        pytest.param(mp4_file(ClipSpec(brand=b"qt  ")).read(0, 4096), "media", "mov", id="mov"),
        pytest.param(mp4_file(ClipSpec(tracks="a", brand=b"M4A ")).read(0, 4096), "media", "m4a", id="m4a"),
        pytest.param(mp4_file(ClipSpec(brand=b"3gp4")).read(0, 4096), "media", "3gp", id="3gp"),
        pytest.param(wav_file(1).read(0, 4096), "media", "wav", id="wav"),
        pytest.param(mp3_file(1).read(0, 4096), "media", "mp3", id="mp3"),
        pytest.param(EBML_WEBM + bytes(64), "media", "webm", id="webm"),
        pytest.param(EBML_MKV + bytes(64), "media", "matroska", id="matroska"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(64), "media", "image", id="png"),
        pytest.param(html_page().read(), "page", None, id="html"),
        pytest.param(json_page().read(), "page", None, id="json"),
        pytest.param(text_page().read(), "page", None, id="text"),
        pytest.param(b"\xef\xbb\xbf  <!doctype HTML><title>x</title>", "page", None, id="html-with-bom"),
        pytest.param(b"%PDF-1.7\n" + bytes(100), "other", None, id="pdf"),
        pytest.param(b"", "empty", None, id="empty"),
        pytest.param(bytes(range(256)) * 4, "unknown", None, id="junk"),
    ],
)
def test_first_bytes_decide(head: bytes, kind: str, container: str | None) -> None:
    """Each kind of first bytes is classified, with the container named for media."""
    found = sniff(head)
    assert (found.kind, found.container) == (kind, container)


def test_pages_are_named() -> None:
    """A page's description says what it is, for the finding's message."""
    assert sniff(html_page().read()) == Sniff("page", None, "HTML")
    assert sniff(json_page().read()).description == "JSON"
    assert sniff(b"hello, this link has expired\n").description == "text"


def test_text_cut_in_the_middle_of_a_character_is_still_text() -> None:
    """A sample that ends inside a UTF-8 sequence is text, not binary."""
    assert sniff("Zugriff verweigert: Größe ".encode()[:-1]).kind == "page"
