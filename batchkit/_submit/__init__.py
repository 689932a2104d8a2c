"""Submission: shards to the Batch API (or generations one by one) through a crash-safe journal.

``journal`` (SQLite: intents, batch ids, statuses), ``submit`` (journaled creates, reconciliation, dry runs,
status and waiting) and ``realtime`` (``POST /v2/generate`` one request at a time, journaled too).

Imports: ``_api``, ``_shard`` (the build directory), and the foundations.
"""
