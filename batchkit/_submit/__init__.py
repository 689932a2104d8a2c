"""Submission: shards to the Batch API (or generations one by one) through a crash-safe journal.

``journal`` (SQLite: intents, batch ids, statuses, candidates; with ``generations`` and ``cells``),
``submit`` (journaled creates, dry runs, status and waiting), ``reconcile`` (identity by content: which batch
is a shard's after a lost create), ``lock`` (one process per directory), ``binding`` (a directory bound to one
API and to its own journal), ``registry`` (the batch ids every journal on this machine recorded), ``recover``
(a lost journal rebuilt from the server), ``inspect`` (what a batch holds) and ``realtime``
(``POST /v2/generate`` one request at a time, journaled too).

Imports: ``_api``, ``_shard`` (the build directory), and the foundations.
"""
