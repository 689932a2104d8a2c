"""Workbooks: which sheet a source means, and which of its cells hold formulas.

A workbook's sheets are read by calamine (``fastexcel``), every value as text. Without ``--sheet`` the sheet
read is the one the workbook opens on (its active tab) when that one is visible, else the first visible sheet:
never a hidden one, which is often a lookup table or an old copy. ``--sheet`` may name any sheet.

calamine gives a formula cell's cached value (``="VID"&"041"`` saved by a program that does not compute
formulas reads as ``0``, or as empty). For ``.xlsx``/``.xlsm`` files :func:`formula_cells` reads the sheet's
XML once more, streaming, to find the cells that hold a formula, so the build can report them
(``formula-in-cell``) instead of sending their cached values. Other workbook formats (``.xls``, ``.xlsb``,
``.ods``) are read as their cached values.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final
from xml.etree import ElementTree

__all__ = ["choose_sheet", "formula_cells", "workbook_sheets"]

_XLSX: Final = frozenset({".xlsx", ".xlsm"})
_SMALL_PART: Final = 16 << 20  # workbook.xml and its relationships: larger ones are not trusted
_CELL: Final = re.compile(r"^([A-Z]{1,3})([0-9]{1,7})$")
_REL: Final = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def workbook_sheets(path: Path) -> tuple[list[tuple[str, str, str]], int | None]:
    """For an ``.xlsx``/``.xlsm``: every sheet as ``(name, state, part)`` in workbook order (state
    ``visible``, ``hidden`` or ``veryHidden``; part the sheet's XML in the archive), and the active tab's
    index. ``([], None)`` when the file is not such a workbook or cannot be read this way."""
    if path.suffix.lower() not in _XLSX:
        return [], None
    try:
        with zipfile.ZipFile(path) as archive:
            book = _small(archive, "xl/workbook.xml")
            rels = _small(archive, "xl/_rels/workbook.xml.rels")
            if book is None or rels is None:
                return [], None
            targets = {
                rel.get("Id", ""): rel.get("Target", "")
                for rel in ElementTree.fromstring(rels)
                if _local(rel.tag) == "Relationship"
            }
            root = ElementTree.fromstring(book)
    except (OSError, zipfile.BadZipFile, ElementTree.ParseError, KeyError, ValueError):
        return [], None
    sheets: list[tuple[str, str, str]] = []
    active: int | None = None
    for element in root.iter():
        name = _local(element.tag)
        if name == "workbookView" and active is None:
            tab = element.get("activeTab", "0")
            active = int(tab) if tab.isdigit() else 0
        elif name == "sheet":
            target = targets.get(element.get(_REL, ""), "")
            part = target.lstrip("/") if target.startswith("/") else posixpath.normpath(f"xl/{target}")
            sheets.append((element.get("name", ""), element.get("state", "visible"), part))
    return sheets, active


def choose_sheet(path: Path, names: list[str], visible: dict[str, bool]) -> str:
    """The sheet a workbook means when none is named: its active tab if visible, else its first visible
    sheet, else its first sheet. ``visible`` says, for sheets whose visibility is known, whether they are."""
    sheets, active = workbook_sheets(path)
    if sheets and [name for name, _, _ in sheets] == names:
        shown = [state == "visible" for _, state, _ in sheets]
        if active is not None and 0 <= active < len(names) and shown[active]:
            return names[active]
        return next((n for n, s in zip(names, shown, strict=True) if s), names[0])
    return next((n for n in names if visible.get(n, True)), names[0])


def formula_cells(path: Path, sheet: str) -> dict[tuple[int, int], str] | None:
    """Every formula cell of ``sheet``, by ``(data row, column index)`` in the table calamine reads (the
    header is the first non-empty row, data row 1 the one after it; column 0 the first non-empty column),
    with its formula (``="VID"&"041"``). None when this cannot be read (not an ``.xlsx``/``.xlsm``)."""
    sheets, _ = workbook_sheets(path)
    part = next((p for name, _, p in sheets if name == sheet), None)
    if part is None:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            if not _mentions_formulas(archive, part):
                return {}
            with archive.open(part) as stream:
                return _scan(stream)
    except (OSError, zipfile.BadZipFile, ElementTree.ParseError, KeyError, ValueError):
        return None


def _small(archive: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    return archive.read(info) if info.file_size <= _SMALL_PART else None


def _mentions_formulas(archive: zipfile.ZipFile, part: str) -> bool:
    """A cheap first look: does the sheet's XML hold an ``<f>`` element at all?"""
    tail = b""
    with archive.open(part) as stream:
        while block := stream.read(1 << 20):
            text = tail + block
            if b"<f>" in text or b"<f " in text or b":f>" in text or b":f " in text:
                return True
            tail = block[-8:]
    return False


def _scan(stream: IO[bytes]) -> dict[tuple[int, int], str]:
    """The formula cells of a sheet's XML, placed relative to the first row and column that hold data."""
    found: dict[tuple[int, int], str] = {}
    shared: dict[str, str] = {}
    top = left = None
    for row, column, formula, has_value in _cells(stream, shared):
        if has_value or formula is not None:
            top = row if top is None else min(top, row)
            left = column if left is None else min(left, column)
        if formula is not None:
            found[(row, column)] = formula
    if top is None or left is None:
        return {}
    return {(row - top, column - left): formula for (row, column), formula in found.items() if row > top}


def _cells(stream: IO[bytes], shared: dict[str, str]) -> Iterator[tuple[int, int, str | None, bool]]:
    """``(row, column, formula or None, whether it has a value)`` of every cell, streaming (elements are
    cleared as soon as they are read)."""
    for _, element in ElementTree.iterparse(stream, events=("end",)):
        if _local(element.tag) != "c":
            continue
        place = _CELL.match(element.get("r", ""))
        formula: str | None = None
        has_value = False
        for child in element:
            name = _local(child.tag)
            if name == "f":
                formula = _formula(child, shared)
            elif name in ("v", "is") and (child.text or len(child)):
                has_value = True
        element.clear()
        if place is not None:
            yield int(place.group(2)), _column(place.group(1)), formula, has_value


def _formula(element: Any, shared: dict[str, str]) -> str:
    text = element.text or ""
    index = element.get("si")
    if index is not None:
        if text:
            shared[index] = text
        text = text or shared.get(index, "")
    return "=" + text if text else "= (a shared formula)"


def _column(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number
