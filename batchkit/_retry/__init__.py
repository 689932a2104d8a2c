"""Retry: the units that failed, went missing or were rejected, as a new linked build directory.

``retry`` (select by outcome, new ids ``X.r1``, new shards, ``--realtime`` or ``--hold``).

Imports: ``_results`` and every stage below it.
"""
