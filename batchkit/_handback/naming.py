"""File names for fetched videos: a template over a row's columns and ``[each]`` variables, made safe.

A name template is text with ``{column}`` fields; ``{{`` and ``}}`` are literal braces (the mapping's
grammar). It is tokenized by the standard library's :meth:`string.Formatter.parse`, and the text between a
field's braces is taken whole as a column name (``{time:start}`` reads the column ``time:start``; nothing is
formatted). ``[each]`` variables are plain values beside the columns (``{lang}``); they win over a column
of the same name. Unlike the mapping, a field cannot nest another (``{title_{lang}}``).

Without a template a request is named after its ``outputFileName``, else its request_id. ``.mp4`` (what Sync
produces) ends every name; a template that already ends with ``.mp4`` does not get it twice.

A ``/`` written *in the template* makes folders (``{lang}/{video_id}``); a ``/`` or ``\\`` that comes from a
*value* never does: values cannot make folders or leave the destination. Every part of a name is made safe
for Windows, macOS and Linux file systems and object stores:

* Unicode NFC; characters no file system takes (``< > : " / \\ | ? *``, control, format, surrogate and
  unassigned code points, line and paragraph separators) become ``_``; other spaces become `` ``;
* no leading or trailing spaces, no trailing dots; leading dots become ``_`` (no hidden files, no ``..``);
* a Windows device name (``CON``, ``NUL``, ``COM1`` …, with any extension) gets ``_`` after its stem;
* at most :data:`MAX_NAME_BYTES` bytes of UTF-8 per part, extension kept: a longer part is cut and ends with
  ``~`` and 8 hex digits of the sha256 of what was cut, so distinct long names stay distinct;
* an empty file name becomes the request_id, an empty folder ``_``; a folder never ends in ``.mp4``, so a
  folder and a file can never take the same path.

Names are compared as case-insensitive file systems compare them (NFKC, case folded). Two requests whose
names compare equal are refused (:class:`~batchkit._errors.InputError`, before anything is fetched), since a
template that gives fourteen languages one name is a mistake to fix, not to paper over; with
``on_collision="number"`` the later ones are saved as ``name~2.mp4``, ``name~3.mp4`` … (in request order, so
the same requests get the same names on every run), each with a ``fetch-name-collision`` warning.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from .._errors import InputError
from .._report import Finding

__all__ = [
    "EXTENSION",
    "MAX_NAME_BYTES",
    "NameRequest",
    "NameTemplate",
    "Naming",
    "assign_names",
    "check_name",
    "name_key",
    "safe_part",
]

#: What Sync's output videos are, and what every fetched file's name ends with.
EXTENSION: Final = ".mp4"
#: The most bytes (UTF-8) of one part of a name: 255 is the common file system limit, and the temporary
#: name a download uses beside its target (``.{name}.{8 hex}.part``) must fit too.
MAX_NAME_BYTES: Final = 200

OnCollision = Literal["error", "number"]

_REFUSED: Final = frozenset('<>:"/\\|?*')
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
_RESERVED: Final = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³]|CONIN\$|CONOUT\$)", re.IGNORECASE)
_HASH_SUFFIX: Final = 9  # "~" and 8 hex digits
_NESTED: Final = "write {title}_{lang}, not {title_{lang}}"


# --------------------------------------------------------------------------------------------- parts


def _clean(text: str) -> str:
    """Characters made safe, ends trimmed; may return ""."""
    out: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if char in _REFUSED or category in _REFUSED_CATEGORIES:
            out.append("_")
        elif category == "Zs":
            out.append(" ")
        else:
            out.append(char)
    cleaned = "".join(out).strip(" ").rstrip(". ")
    stripped = cleaned.lstrip(".")
    return "_" * (len(cleaned) - len(stripped)) + stripped


def _unreserve(stem: str) -> str:
    head, dot, tail = stem.partition(".")
    if _RESERVED.fullmatch(head.rstrip(" ")):
        return f"{head}_{dot}{tail}"
    return stem


def _fit(stem: str, suffix: str, *, digest_of: str | None = None) -> str:
    """``stem + suffix`` in at most MAX_NAME_BYTES bytes; a cut stem ends with ``~`` + 8 hex digits."""
    if len((stem + suffix).encode()) <= MAX_NAME_BYTES:
        return stem + suffix
    digest = hashlib.sha256((digest_of or stem).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    room = MAX_NAME_BYTES - len(suffix.encode()) - _HASH_SUFFIX
    cut = stem.encode()[:room].decode("utf-8", "ignore").rstrip(". ")
    return f"{cut}~{digest}{suffix}"


def safe_part(text: str, *, extension: str | None = None) -> str:
    """One part of a path made safe (see the module docstring); ``""`` when nothing usable is left.

    With ``extension`` the part is a file name: an extension already there (in any case) is not doubled,
    and it survives any cut.

    >>> safe_part("Intro: take 2/3?", extension=".mp4")
    'Intro_ take 2_3_.mp4'
    >>> safe_part("CON", extension=".mp4"), safe_part("../etc")
    ('CON_.mp4', '___etc')
    """
    if extension is not None and text.casefold().endswith(extension.casefold()):
        text = text[: -len(extension)]
    stem = _clean(text)
    if not stem:
        return ""
    stem = _unreserve(stem)
    if extension is None:
        if stem.casefold().endswith(EXTENSION):
            stem += "_"  # a folder never looks like a video file
        return _fit(stem, "")
    return _fit(stem, extension)


def _part_problem(part: str) -> str | None:
    if not part:
        return "an empty part (// or a leading or trailing /)"
    if part in (".", ".."):
        return f"{part!r} (a path may not step out of the destination)"
    if unicodedata.normalize("NFC", part) != part:
        return f"{part!r} is not in Unicode NFC"
    bad = sorted({c for c in part if c in _REFUSED or unicodedata.category(c) in _REFUSED_CATEGORIES})
    if bad:
        return f"{part!r} holds characters a file system refuses ({', '.join(repr(c) for c in bad)})"
    if part != part.strip(" ") or part.endswith(".") or part.startswith("."):
        return f"{part!r} starts or ends with a space or a dot"
    if _unreserve(part) != part:
        return f"{part!r} is a Windows device name"
    if len(part.encode()) > MAX_NAME_BYTES:
        return f"{part[:40]!r}… is over {MAX_NAME_BYTES} bytes"
    return None


def check_name(name: str) -> str | None:
    """What makes ``name`` unusable as a relative destination path (parts joined by ``/``), or None."""
    if not isinstance(name, str) or not name:
        return "the name is empty"
    if "\\" in name:
        return f"{name!r} holds a backslash: parts of a name are separated by /"
    for part in name.split("/"):
        problem = _part_problem(part)
        if problem is not None:
            return f"{name!r}: {problem}"
    return None


def name_key(name: str) -> str:
    """How case-insensitive file systems (NTFS, APFS, HFS+) compare names: NFKC, case folded."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


# --------------------------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class _Field:
    name: str


@dataclass(frozen=True, slots=True)
class NameTemplate:
    """A parsed name template: folders (from ``/`` in the template text), each a sequence of literals and fields.

    >>> NameTemplate.parse("{lang}/{video_id}_final").fields
    ('lang', 'video_id')
    """

    text: str
    parts: tuple[tuple[str | _Field, ...], ...]

    @classmethod
    def parse(cls, text: str) -> NameTemplate:
        """Parse ``text``; :class:`InputError` says what is wrong with it and how to write it instead."""
        where = f"name template {text!r}"
        if not isinstance(text, str) or not text.strip():
            msg = "the name template is empty: give one such as '{video_id}_{lang}', or none for the default"
            raise InputError(msg)
        try:
            tokens = list(string.Formatter().parse(text))
        except ValueError as exc:
            if "'{' in field name" in str(exc):
                msg = (
                    f"{where}: a field cannot hold another field; [each] variables are values here: {_NESTED}"
                )
            else:
                msg = f"{where}: {exc}; write {{{{ or }}}} for a literal brace and {{column}} for a column"
            raise InputError(msg) from None
        parts: list[list[str | _Field]] = [[]]
        for literal, field_name, spec, conversion in tokens:
            if "\\" in literal:
                msg = f"{where}: a backslash is not a folder separator here; write / between folders"
                raise InputError(msg)
            for i, piece in enumerate(literal.split("/")):
                if i:
                    parts.append([])
                if piece:
                    parts[-1].append(piece)
            if field_name is None:
                continue
            name = field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            if "{" in name or "}" in name:
                msg = f"{where}: a field cannot hold another field ({{{name}}}); [each] variables are values here: {_NESTED}"
                raise InputError(msg)
            if not name.strip():
                msg = f"{where}: empty {{}}; put a column name between the braces"
                raise InputError(msg)
            parts[-1].append(_Field(name))
        for index, folder in enumerate(parts):
            if not folder:
                msg = (
                    f"{where}: "
                    + (
                        "a name cannot start at the root (/...)"
                        if index == 0
                        else "an empty folder (// or a trailing /)"
                    )
                    + "; names are relative to the destination, e.g. {lang}/{video_id}"
                )
                raise InputError(msg)
            if all(isinstance(p, str) for p in folder) and "".join(map(str, folder)) in (".", ".."):
                msg = f"{where}: '.' and '..' folders could leave the destination; name the folders instead"
                raise InputError(msg)
        return cls(text, tuple(tuple(folder) for folder in parts))

    @property
    def fields(self) -> tuple[str, ...]:
        """Every column or variable the template reads, in order, once."""
        names = (p.name for folder in self.parts for p in folder if isinstance(p, _Field))
        return tuple(dict.fromkeys(names))

    def render(self, values: Mapping[str, object]) -> list[str]:
        """The template's raw text for one request, one string per folder level (not yet made safe).

        ``None`` reads as empty text; a field missing from ``values`` raises :class:`KeyError`.
        """
        return [
            "".join(p if isinstance(p, str) else _text(values[p.name]) for p in folder)
            for folder in self.parts
        ]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------------------------- assigning


@dataclass(frozen=True, slots=True)
class NameRequest:
    """What a request's file name is made from: its id, its ``outputFileName``, its row and ``[each]`` values."""

    request_id: str
    output_file_name: str | None = None
    values: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Naming:
    """Names in request order (safe, relative, ``/``-separated, unique), and warnings about renumbered ones."""

    names: tuple[str, ...]
    findings: tuple[Finding, ...] = ()


def _fallback(request_id: str) -> str:
    name = safe_part(request_id, extension=EXTENSION)
    if name:
        return name
    return (
        f"request-{hashlib.sha256(request_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}{EXTENSION}"
    )


def _name_for(request: NameRequest, template: NameTemplate | None) -> str:
    if template is None:
        base = (request.output_file_name or "").strip() or request.request_id
        return safe_part(base, extension=EXTENSION) or _fallback(request.request_id)
    raw = template.render(request.values)
    folders = [safe_part(text) or "_" for text in raw[:-1]]
    file = safe_part(raw[-1], extension=EXTENSION) or _fallback(request.request_id)
    return "/".join([*folders, file])


def _numbered(name: str, n: int) -> str:
    folder, _, file = name.rpartition("/")
    stem = file[: -len(EXTENSION)] if file.endswith(EXTENSION) else file
    renamed = _fit(stem, f"~{n}{EXTENSION}")
    return f"{folder}/{renamed}" if folder else renamed


def _check_fields(
    template: NameTemplate, columns: Collection[str] | None, requests: list[NameRequest]
) -> None:
    if columns is not None:
        missing = [name for name in template.fields if name not in columns]
        if missing:
            shown = ", ".join(sorted(columns)[:20]) + (" …" if len(columns) > 20 else "")
            msg = (
                f"name template {template.text!r} reads {', '.join(repr(m) for m in missing)}, which is neither "
                f"a source column nor an [each] variable; known: {shown}"
            )
            raise InputError(msg, column=missing[0])
        return
    for request in requests:
        absent = [name for name in template.fields if name not in request.values]
        if absent:
            msg = (
                f"name template {template.text!r} reads {absent[0]!r}, which request {request.request_id!r} "
                "has no value for: use a source column or an [each] variable"
            )
            raise InputError(msg, column=absent[0])


def assign_names(
    requests: Iterable[NameRequest],
    template: str | NameTemplate | None = None,
    *,
    columns: Collection[str] | None = None,
    on_collision: OnCollision = "error",
) -> Naming:
    """A safe, unique relative file name for every request, in order (see the module docstring).

    ``columns`` are the names a template may read (the source's columns and the ``[each]`` variables); a
    template that reads another raises :class:`InputError` before any name is made. Without ``columns`` each
    request's ``values`` must hold every field.
    """
    items = list(requests)
    parsed = NameTemplate.parse(template) if isinstance(template, str) else template
    if parsed is not None:
        _check_fields(parsed, columns, items)
    names: list[str] = []
    findings: list[Finding] = []
    owner: dict[str, str] = {}
    clashes: list[tuple[str, str, str]] = []
    for request in items:
        name = _name_for(request, parsed)
        key = name_key(name)
        if key in owner:
            first = owner[key]
            if on_collision == "error":
                clashes.append((name, first, request.request_id))
                names.append(name)
                continue
            n = 2
            while name_key(candidate := _numbered(name, n)) in owner:
                n += 1
            message = (
                f"{name!r} is already the name of request {first!r}; saved as {candidate!r}. "
                "Add a column or [each] variable that tells them apart to the name template"
            )
            findings.append(
                Finding(
                    code="fetch-name-collision",
                    severity="warning",
                    message=message,
                    request_id=request.request_id,
                )
            )
            name, key = candidate, name_key(candidate)
        owner[key] = request.request_id
        names.append(name)
    if clashes:
        shown = "; ".join(f"{name!r} for {a!r} and {b!r}" for name, a, b in clashes[:3])
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        how = (
            f"name template {parsed.text!r}"
            if parsed is not None
            else "the default names (outputFileName, else request_id)"
        )
        msg = (
            f"{how} give{'s' if parsed is not None else ''} {len(clashes)} request(s) a name another request already has "
            f"(compared as case-insensitive file systems do): {shown}{more}. Add a column or [each] variable that "
            "tells them apart, e.g. '{video_id}_{lang}', or number the later ones (on_collision='number')"
        )
        raise InputError(msg)
    return Naming(tuple(names), tuple(findings))
