"""Validation: batch JSONL lines or files in, a :class:`~batchkit.Report` with every finding out.

``validate`` (the validator, file checks, cross-file duplicate ids), ``reading`` (which files, read as blocks
of whole lines within a byte budget), ``fastpath`` (a native gate that clears lines with nothing to report)
and ``policy`` (a user's own JSON Schema, ``--schema``).

Imports: ``_errors``, ``_files``, ``_wire``, ``_report``.
"""
