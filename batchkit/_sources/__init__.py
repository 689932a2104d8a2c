"""Sources: tabular files and frames read as text, in chunks, every row keeping its position.

``source`` (:class:`Source`, :func:`read_source`: CSV/TSV, Parquet, Excel, NDJSON, polars/pandas/pyarrow),
``csv`` (header, delimiter, record blocks), ``encoding`` (non-UTF-8 files) and ``frames`` (a pandas index as
columns, typed snapshots).

Imports: ``_errors``, ``_report``.
"""
