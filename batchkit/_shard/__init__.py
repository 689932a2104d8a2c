"""Shards and the build directory: balanced shard files and the one owner of a directory's layout.

``plan`` (balanced record counts under the limits), ``spill`` (lines and provenance on disk while a build
runs), ``builddir`` (the build directory: file names, ``manifest.json``, ``requests.parquet``, verification)
and ``write`` (shards from a spill, and re-sharding an existing JSONL).

Imports: ``_errors``, ``_files``, ``_wire``, ``_report``, ``_validate``.
"""
