"""Build: the offline half of the pipeline in one step, from source rows to a build directory.

``build`` (source → mapping → canonical lines + provenance → validated → sharded), ``columnar`` (the polars
expressions that make every row's line), ``held`` (requests a ``retry --hold`` kept for the next build) and
``summary`` (what a build did, in numbers: invalid units by code, shards, held requests included).
The pre-flight passes over a build's lines: ``passes`` (reuse, then the probe, as the options ask),
``reuse`` (requests that completed before are left out), ``preflight`` (the media pass: findings at source
rows, ``media.parquet``, ``lengths.parquet``), ``probe`` (probing a source or a build directory without
building), ``estimate`` (what a directory costs, and the budget check before a submit).

Imports: every stage before it (``_sources``, ``_mapping``, ``_validate``, ``_probe``, ``_shard``, ``_api`` for
the estimate API's client, and the foundations).
"""
