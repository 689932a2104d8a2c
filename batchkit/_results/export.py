"""Writing a result table: CSV, Parquet, Excel or JSON Lines, chosen by the file's suffix.

CSV and Excel exports neutralise spreadsheet formula injection: a text cell (or a column name) that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, whether it came from the server or from the
source, is written with a leading apostrophe, so a spreadsheet shows it as text instead of running it.
Plain numbers such as ``-5`` or ``+1.5`` are left alone. Parquet and JSON Lines keep every value exactly.

Files are written to a temporary name beside the target and renamed into place, so an interrupted export
never leaves a half-written file under the real name (and never replaces a good one with a broken one).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Final

import polars as pl

from .._errors import InputError, install_hint

__all__ = ["EXCEL_MAX_ROWS", "EXPORT_FORMATS", "check_export_path", "export_frame", "neutralise_formulas"]

EXPORT_FORMATS: Final = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".xlsx": "xlsx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: Rows an Excel sheet holds below its header row.
EXCEL_MAX_ROWS: Final = 1_048_575
_TRIGGERS: Final = r"^[=+\-@\t\r]"
_NUMBER: Final = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def _is_formula(text: str) -> bool:
    return re.match(_TRIGGERS, text) is not None and re.match(_NUMBER, text) is None


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix ``'`` to every text cell, and every column name, that a spreadsheet would take for a formula."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    safe = frame.with_columns(
        pl.when(pl.col(c).str.contains(_TRIGGERS) & ~pl.col(c).str.contains(_NUMBER))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )
    renames = {name: f"'{name}" for name in frame.columns if _is_formula(name)}
    return safe.rename(renames) if renames else safe


def check_export_path(path: str | Path) -> str:
    """The export format of ``path`` (its suffix), checked before any work: a known suffix, not a directory,
    and for ``.xlsx`` the Excel extra installed. Raises :class:`InputError` saying how to fix it."""
    target = Path(path)
    kind = EXPORT_FORMATS.get(target.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(EXPORT_FORMATS))
        msg = f"cannot tell the format of {target.name!r} from its suffix: name it with one of {known}"
        raise InputError(msg, path=target)
    if target.is_dir():
        msg = f"{target} is a directory; give a file name such as {target / 'results.csv'}"
        raise InputError(msg, path=target)
    if kind == "xlsx":
        import importlib.util

        if importlib.util.find_spec("xlsxwriter") is None:
            msg = (
                f"writing {target.name} needs xlsxwriter: {install_hint('excel')} (or write .csv or .parquet)"
            )
            raise InputError(msg, path=target)
    return kind


def export_frame(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to ``path`` in the format its suffix names (atomically); return the path."""
    target = Path(path)
    kind = check_export_path(target)
    if kind == "xlsx" and frame.height > EXCEL_MAX_ROWS:
        msg = (
            f"{frame.height:,} rows do not fit in an Excel sheet ({EXCEL_MAX_ROWS:,} at most); "
            "write .parquet or .csv instead"
        )
        raise InputError(msg, path=target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create {target.parent}: {exc.strerror or exc}"
        raise InputError(msg, path=target) from exc
    temp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        if kind == "csv":
            neutralise_formulas(frame).write_csv(temp, check_extension=False)
        elif kind == "parquet":
            frame.write_parquet(temp)
        elif kind == "jsonl":
            frame.write_ndjson(temp)
        else:
            _write_xlsx(neutralise_formulas(frame), temp)
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        msg = f"cannot write {target}: {exc.strerror or exc}"
        raise InputError(msg, path=target) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def _write_xlsx(frame: pl.DataFrame, path: Path) -> None:
    try:
        import xlsxwriter
    except ImportError as exc:
        msg = f"writing .xlsx needs xlsxwriter: {install_hint('excel')}"
        raise InputError(msg) from exc
    # Besides the apostrophes, tell xlsxwriter never to turn a string into a formula or a link.
    options = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    with xlsxwriter.Workbook(str(path), options) as workbook:
        frame.write_excel(workbook, worksheet="results", autofit=frame.height <= 10_000)
