"""Writing a result table: CSV, Parquet, Excel or JSON Lines, chosen by the file's suffix.

CSV and Excel exports neutralise spreadsheet formula injection: a text cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return (from the server or from the source) is written with a leading
apostrophe, so a spreadsheet shows it as text instead of running it. Plain numbers such as ``-5`` or
``+1.5`` are left alone. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Final

import polars as pl

from ._errors import InputError

__all__ = ["EXPORT_FORMATS", "export_frame", "neutralise_formulas"]

EXPORT_FORMATS: Final = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".xlsx": "xlsx",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_TRIGGERS: Final = r"^[=+\-@\t\r]"
_NUMBER: Final = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix ``'`` to every text cell a spreadsheet would take for a formula."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_TRIGGERS) & ~pl.col(c).str.contains(_NUMBER))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )


def export_frame(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to ``path`` in the format its suffix names; return the path."""
    target = Path(path)
    kind = EXPORT_FORMATS.get(target.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(EXPORT_FORMATS))
        msg = f"cannot tell the format of {target.name}: use one of {known}"
        raise InputError(msg, path=target)
    if target.is_dir():
        msg = f"{target} is a directory; give a file name such as results.csv"
        raise InputError(msg, path=target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        if kind == "csv":
            neutralise_formulas(frame).write_csv(temp)
        elif kind == "parquet":
            frame.write_parquet(temp)
        elif kind == "jsonl":
            frame.write_ndjson(temp)
        else:
            _write_xlsx(neutralise_formulas(frame), temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def _write_xlsx(frame: pl.DataFrame, path: str) -> None:
    try:
        import xlsxwriter
    except ImportError as exc:
        msg = "writing .xlsx needs the excel extra: pip install 'batchkit[excel]'"
        raise InputError(msg) from exc
    # Besides the apostrophes, tell xlsxwriter never to turn a string into a formula or a URL.
    options = {"strings_to_formulas": False, "strings_to_urls": False}
    with xlsxwriter.Workbook(path, options) as workbook:
        frame.write_excel(workbook, worksheet="results", autofit=True)
