"""A fast gate for the common case: a line with nothing to report.

Decoding into ``msgspec`` structs checks structure in one native pass, several times faster than building the
pydantic models. The gate answers only "certainly clean" (the line's ``request_id``) or "look closer" (None);
every line it does not clear goes through :func:`batchkit._wire.rules.line_problems`, which is the authority and
says exactly what is wrong. The gate is narrower than the rules, never wider:

* Lines with rarer features (segments, active speaker detection, deprecated fields, explicit defaults...)
  always look closer. So do image inputs, ``dubParams`` and ``dialogueEdit`` (their rules change what a
  clean line is: no audio needed, or none allowed, sync-3 only), and the keys Sync documents that batchkit
  does not model (``_wire/unmodelled.py``): the structs below have none of them, and refuse unknown tags and
  fields, so such a line never decodes here. The endpoint and the known models of the limits profile are part of the decoding
  types (:class:`Gate` is built once per profile), so an unknown model looks closer too.
* A whole block of lines (a file read a megabyte at a time) is decoded in one native call
  (:meth:`Gate.block`). It is cleared only when it is certainly one object per line and no object has a
  duplicate key: the decoded structs, encoded again, give back the block byte for byte (the canonical form
  every well-behaved writer produces), or failing that, every line is ``{...}`` and the block holds exactly
  as many ``"`` as the re-encoding (a duplicate key, or an explicit default, always adds some). Otherwise
  its lines are judged one by one (:meth:`Gate.lines`), with the same duplicate test per line.
* Lines of the most common shape (``[video with url, audio with url or text]``, no react-only options) decode
  into a struct that encodes the whole shape, so nothing is left to check in Python; other lines take a
  general struct and a short walk.
* The strings that have rules (URLs, ``outputFileName``, ``request_id``) are checked for the whole chunk at
  once, with a few C-speed passes over the joined strings instead of a Python call per string. That batch
  check accepts plain ASCII only; when any string of a chunk is anything else (a URL with non-ASCII
  characters, an upper-case scheme), the chunk's lines are checked one by one with the exact rules of
  ``_checks``.

``tests/test_fastpath.py`` checks, over the fixture corpus and generated lines and mutations, that the gate
never clears a line the rules would report (soundness), and that it clears every line of the sample batch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from .._wire.checks import MAX_REQUEST_ID_LENGTH, is_http_url, is_output_file_name, request_id_problem

__all__ = ["Gate", "fast_request_id", "fast_request_ids", "gate"]

_NonEmpty = Annotated[str, Meta(min_length=1)]
_Unit = Annotated[float, Meta(ge=0, le=1)]
_RequestId = Annotated[str, Meta(min_length=1, max_length=MAX_REQUEST_ID_LENGTH)]
_OutputFileName = Annotated[str, Meta(min_length=1, max_length=255)]
_SyncMode = Literal["bounce", "loop", "cut_off", "silence", "remap"]

# Every optional field defaults to UNSET, so encoding a decoded struct writes exactly the keys the line had
# (see Gate.block): a null stays a null, an absent key stays absent. Fields are in the order batchkit (and
# the pydantic models) write them, so a canonical line encodes back to itself.


class _Provider(Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
    name: Literal["elevenlabs"] | UnsetType = UNSET  # not nullable: the model refuses a null name
    voiceId: _NonEmpty
    script: _NonEmpty
    stability: _Unit | UnsetType | None = UNSET
    similarityBoost: _Unit | UnsetType | None = UNSET


class _Text(Struct, tag_field="type", tag="text", forbid_unknown_fields=True, gc=False):
    provider: _Provider
    refId: _NonEmpty | UnsetType | None = UNSET


# The general shape.


class _Video(Struct, tag_field="type", tag="video", forbid_unknown_fields=True, gc=False):
    url: str | UnsetType | None = UNSET
    assetId: _NonEmpty | UnsetType | None = UNSET


class _Audio(Struct, tag_field="type", tag="audio", forbid_unknown_fields=True, gc=False):
    url: str | UnsetType | None = UNSET
    assetId: _NonEmpty | UnsetType | None = UNSET
    refId: _NonEmpty | UnsetType | None = UNSET


class _Options(Struct, forbid_unknown_fields=True, gc=False):
    sync_mode: _SyncMode | UnsetType | None = UNSET
    model_mode: Literal["lips", "face", "head"] | UnsetType | None = UNSET
    prompt: Literal["happy", "sad", "angry", "disgusted", "surprised", "neutral"] | UnsetType | None = UNSET
    temperature: _Unit | UnsetType | None = UNSET
    occlusion_detection_enabled: bool | UnsetType | None = UNSET


# The common shape: exactly one video with a url, then one audio with a url or one text-to-speech input
# (so one refId at most), and no option that only react-1 reads.


class _UrlVideo(Struct, forbid_unknown_fields=True, gc=False):
    # Not a tagged struct: msgspec requires a tag only inside a union, and this one stands alone in a tuple,
    # so "type" is an ordinary required field here (an item without it must not pass as a video).
    type: Literal["video"]
    url: str
    assetId: _NonEmpty | UnsetType | None = UNSET


class _UrlAudio(Struct, tag_field="type", tag="audio", forbid_unknown_fields=True, gc=False):
    url: str
    assetId: _NonEmpty | UnsetType | None = UNSET
    refId: _NonEmpty | UnsetType | None = UNSET


class _CommonOptions(Struct, forbid_unknown_fields=True, gc=False):
    sync_mode: _SyncMode | UnsetType | None = UNSET
    temperature: _Unit | UnsetType | None = UNSET
    occlusion_detection_enabled: bool | UnsetType | None = UNSET


_NOT_DECODED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)  # ValidationError is a DecodeError
_ESCAPED_QUOTE = b"\\u0022"  # a quote written as an escape: the quote count below cannot see it
#: Every byte but JSON's punctuation, the quote and LF (so spaces, CR, letters, digits go).
_NOT_MARKS = bytes(b for b in range(256) if b not in b'{}[],:"\n')

# The batch string checks join a chunk's strings with "\n". Deleting the allowed bytes from the joined text
# must leave exactly the separators: then no string holds any other byte, nor a newline of its own.
_URL_BYTES = bytes(range(0x21, 0x7F))  # printable ASCII but space
_ID_BYTES = bytes(range(0x20, 0x7F))  # printable ASCII
_NAME_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#: After a separator, anything but ``http(s)://`` (lower case) and a host character is a URL the batch check
#: refuses (an upper-case scheme is checked by the exact rule instead).
_BAD_URL_START = re.compile(r"\n(?!https?://[^/?#\n])").search


class Gate:
    """The fast gate of one limits profile: its endpoint and known models are part of the decoding types."""

    def __init__(self, endpoint: str, known_models: Sequence[str]) -> None:
        models = tuple(dict.fromkeys(known_models))
        model: Any = Literal.__getitem__(models) if models else Literal["\x00none"]
        options: dict[str, Any] = {"forbid_unknown_fields": True, "gc": False}
        common_payload = msgspec.defstruct(
            "_CommonPayload",
            [
                ("model", model),
                ("input", tuple[_UrlVideo, _UrlAudio | _Text]),
                ("options", _CommonOptions | None | UnsetType, UNSET),
                ("webhookUrl", str | None | UnsetType, UNSET),
                ("outputFileName", _OutputFileName | None | UnsetType, UNSET),
            ],
            **options,
        )
        payload = msgspec.defstruct(
            "_Payload",
            [
                ("model", model),
                ("input", Annotated[list[_Video | _Audio | _Text], Meta(min_length=1)]),
                ("options", _Options | None | UnsetType, UNSET),
                ("webhookUrl", str | None | UnsetType, UNSET),
                ("outputFileName", _OutputFileName | None | UnsetType, UNSET),
            ],
            **options,
        )
        fields: list[Any] = [("request_id", _RequestId), ("endpoint", Literal.__getitem__((endpoint,)))]
        common = msgspec.defstruct("_CommonLine", [*fields, ("payload", common_payload)], **options)
        general = msgspec.defstruct("_Line", [*fields, ("payload", payload)], **options)
        self._common_type: type[Any] = common_payload
        self._decode_common = msgspec.json.Decoder(common).decode
        self._decode_general = msgspec.json.Decoder(general).decode
        self._lines_common = msgspec.json.Decoder(common).decode_lines
        self._lines_general = msgspec.json.Decoder(general).decode_lines
        encoder = msgspec.json.Encoder()
        self._encode = encoder.encode
        self._encode_lines = encoder.encode_lines

    # -- a block of lines ------------------------------------------------------------------------------------

    def block(self, block: bytes) -> tuple[list[str], bool] | None:
        """The request_ids of a block of whole lines when every one is certainly clean, else None; and
        whether the block is canonical (then it has no CR LF line ending).

        ``block`` ends with a newline, except perhaps at the end of a file; ``request_id`` uniqueness and
        CR LF endings are left to the caller.
        """
        decoded: list[Any] | None = None
        for decode in (self._lines_common, self._lines_general):
            try:
                decoded = decode(block)
                break
            except _NOT_DECODED:
                continue
        if decoded is None:
            return None
        encoded = self._encode_lines(decoded)
        canonical = encoded == block or (encoded[:-1] == block and not block.endswith(b"\n"))
        if not canonical and not _one_object_per_line(block, encoded, len(decoded)):
            return None
        ids: list[str] = []
        urls: list[str] = [""]
        names: list[str] = []
        escaped = b"\\" in block
        if not self._collect(decoded, ids, urls, names) or not _all_plain(urls, names, ids, escaped=escaped):
            return None
        return ids, canonical

    def _collect(self, decoded: list[Any], ids: list[str], urls: list[str], names: list[str]) -> bool:
        """Check every decoded line but for its strings; gather the strings. False: some line looks closer.

        A video or webhook URL equal to the previous line's is gathered once (lines of a campaign share
        them), which halves the text the string checks go through.
        """
        add_url = urls.append
        common = self._common_type
        last_video = last_hook = None
        for line in decoded:
            payload = line.payload
            if type(payload) is common:
                video, audio = payload.input
                if video.url != last_video:
                    last_video = video.url
                    add_url(last_video)
                if type(audio) is _UrlAudio:
                    add_url(audio.url)
            elif not _general_input(payload, urls):
                return False
            hook = payload.webhookUrl
            if hook is not UNSET and hook is not None and hook != last_hook:
                last_hook = hook
                add_url(hook)
            name = payload.outputFileName
            if name is not UNSET and name is not None:
                names.append(name)
            ids.append(line.request_id)
        return True

    # -- lines one at a time ---------------------------------------------------------------------------------

    def lines(self, lines: Sequence[bytes]) -> list[str | None]:
        """For each line, its ``request_id`` when the line certainly has no finding at all, else None.

        A line may end with its line ending (JSON whitespace). ``request_id`` uniqueness is not checked here.
        """
        ids, urls, names = self._scan(lines)
        if _all_plain(urls, names, [i for i in ids if i is not None]):
            return ids
        return [None if i is None else self.line(raw) for raw, i in zip(lines, ids, strict=True)]

    def line(self, raw: bytes) -> str | None:
        """One line's ``request_id`` when it certainly has no finding, else None; strings checked exactly."""
        (request_id,), urls, names = self._scan((raw,))
        if (
            request_id is None
            or request_id_problem(request_id) is not None
            or not all(map(is_http_url, urls[1:]))
            or not all(map(is_output_file_name, names))
        ):
            return None
        return request_id

    def _scan(self, lines: Sequence[bytes]) -> tuple[list[str | None], list[str], list[str]]:
        """Decode and check every line but for the string rules; collect the strings those rules apply to.

        Returns each line's request_id (None: look closer), and the URLs (after a leading ``""``) and output file
        names of the lines that have one.
        """
        ids: list[str | None] = []
        urls: list[str] = [""]  # so that "\n".join(urls) puts a separator before every URL
        names: list[str] = []
        common = True  # until a line of the chunk has another shape
        for raw in lines:
            line = self._decode_one(raw, common)
            if line is None:
                ids.append(None)
                continue
            common = common and type(line.payload) is self._common_type
            found: list[str] = []
            named: list[str] = []
            if self._collect([line], [], found, named) and self._no_duplicate_key(raw, line):
                urls.extend(found)
                names.extend(named)
                ids.append(line.request_id)
            else:
                ids.append(None)
        return ids, urls, names

    def _decode_one(self, raw: bytes, common: bool) -> Any:
        decoders = (self._decode_common, self._decode_general) if common else (self._decode_general,)
        for decode in decoders:
            try:
                return decode(raw)
            except _NOT_DECODED:
                continue
        return None

    def _no_duplicate_key(self, raw: bytes, line: Any) -> bool:
        encoded = self._encode(line)
        if encoded == raw.rstrip(b"\r\n"):
            return True
        return _ESCAPED_QUOTE not in raw and raw.count(b'"') == encoded.count(b'"')


def _one_object_per_line(block: bytes, encoded: bytes, count: int) -> bool:
    """Whether a block that decoded into ``count`` objects (``encoded`` again) that is not canonical (another
    key order, spaces, CR LF) is still exactly those objects, one per line, none with a duplicate key.

    Its JSON punctuation, quotes and newlines alone must show every line as {...}, which leaves no room for
    an object across two lines, or for two objects on one (or for a blank line); and its quotes must add up
    to the re-encoding's, which a duplicate key (or an explicit default) would exceed.
    """
    marks = block.translate(None, _NOT_MARKS)
    newlines = marks.count(b"\n")
    lines = newlines + (not marks.endswith(b"\n"))
    return (
        lines == count
        and marks[:1] == b"{"
        and marks.count(b"\n{") == lines - 1
        and marks.count(b"}\n") == newlines
        and marks.endswith((b"\n", b"}"))
        and _ESCAPED_QUOTE not in block
        and marks.count(b'"') == encoded.count(b'"')
    )


@functools.lru_cache(maxsize=16)
def gate(endpoint: str, known_models: tuple[str, ...]) -> Gate:
    """The gate of a limits profile (built once per profile)."""
    return Gate(endpoint, known_models)


def fast_request_ids(lines: Sequence[bytes], endpoint: str, known_models: frozenset[str]) -> list[str | None]:
    """For each line, its ``request_id`` when the line certainly has no finding at all, else None."""
    return gate(endpoint, tuple(sorted(known_models))).lines(lines)


def fast_request_id(raw: bytes, endpoint: str, known_models: frozenset[str]) -> str | None:
    """One line's ``request_id`` when it certainly has no finding, else None; strings checked exactly."""
    return gate(endpoint, tuple(sorted(known_models))).line(raw)


def _present(value: Any) -> bool:
    return value is not UNSET and value is not None


def _general_input(payload: Any, urls: list[str]) -> bool:
    """Whether a payload of the general shape is clean but for its strings; collect its URLs if so."""
    videos = 0
    audios = 0
    refs: set[str] = set()
    found: list[str] = []
    for item in payload.input:
        if isinstance(item, _Text):
            ref = item.refId
        else:
            if _present(item.url):
                found.append(item.url)
            elif not _present(item.assetId):
                return False
            if isinstance(item, _Video):
                videos += 1
                continue
            ref = item.refId
        audios += 1
        if isinstance(ref, str):
            if ref in refs:
                return False
            refs.add(ref)
    options = payload.options
    if (
        videos != 1
        or not audios
        or (
            _present(options)
            and (_present(options.model_mode) or _present(options.prompt))
            and payload.model != "react-1"
        )
    ):
        return False
    urls.extend(found)
    return True


def _all_plain(urls: list[str], names: list[str], request_ids: list[str], *, escaped: bool = True) -> bool:
    """True when every string is plain ASCII and passes its rule (each a subset of the exact rule).

    ``escaped=False`` says the JSON text of the strings holds no escape at all, so none of them holds a
    control character (JSON writes those only as escapes): then ASCII, no space (in URLs) and no DEL is all
    there is to check, without a pass over every byte.
    """
    joined = "\n".join(urls)
    if escaped:
        if len(joined.encode("utf-8", "surrogatepass").translate(None, _URL_BYTES)) != len(urls) - 1:
            return False
    elif not joined.isascii() or " " in joined or "\x7f" in joined:
        return False
    if _BAD_URL_START(joined):
        return False
    if (
        names
        and len("\n".join(names).encode("utf-8", "surrogatepass").translate(None, _NAME_BYTES))
        != len(names) - 1
    ):
        return False
    if not request_ids:
        return True
    joined = "\n".join(request_ids)
    if escaped:
        if len(joined.encode("utf-8", "surrogatepass").translate(None, _ID_BYTES)) != len(request_ids) - 1:
            return False
    elif not joined.isascii() or "\x7f" in joined:
        return False
    return not (joined[:1] == " " or joined[-1:] == " " or "\n " in joined or " \n" in joined)
