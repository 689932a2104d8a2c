"""Results: every request unit of a build back, with exactly one outcome, joined to its source row.

``outputs`` (a batch's output.jsonl: download once, read leniently), ``realtime`` (outcomes of a realtime
directory), ``outcomes`` (the rules that give each unit one outcome), ``join`` (the source's own rows beside
them), ``export`` (CSV, Parquet, Excel, JSON Lines, formula-safe) and ``results`` (all of it in one call).
``reuse`` reads what earlier directories completed (for ``build --reuse``), ``reused`` overlays the outcomes
a reusing directory carries.

Imports: ``_submit`` (what the journal knows), ``_build`` (held requests), and the stages below.
"""
