"""Sources: tabular files and frames read as text, in chunks, every row keeping its position.

``source`` (:class:`Source`, :func:`read_source`: CSV/TSV, Parquet, Excel, NDJSON, polars/pandas/pyarrow),
``csv`` (header, delimiter, record blocks), ``ndjson`` (lines within a budget, values as text), ``excel``
(which sheet, which cells hold formulas) and ``encoding`` (non-UTF-8 files, CR-only line endings).

Imports: ``_errors``, ``_files``, ``_wire``, ``_report``, ``_validate`` (its block reader).
"""
