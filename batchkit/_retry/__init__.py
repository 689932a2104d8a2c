"""Retry: the units that failed, went missing or were rejected, as a new linked build directory.

``retry`` (select by outcome, new ids ``X.r1``, new shards, ``--realtime`` or ``--hold``) and ``sample``
(``run --sample``: a stratified handful of a build, as its own directory, the same request ids).

Imports: ``_results`` and every stage below it.
"""
