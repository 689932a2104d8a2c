"""Build: the offline half of the pipeline in one step, from source rows to a build directory.

``build`` (source → mapping → canonical lines + provenance → validated → sharded), ``columnar`` (the polars
expressions that make every row's line), ``held`` (requests a ``retry --hold`` kept for the next build) and
``summary`` (what a build did, in numbers: invalid units by code, shards, held requests included).

Imports: every stage before it (``_sources``, ``_mapping``, ``_validate``, ``_shard``, and the foundations).
"""
