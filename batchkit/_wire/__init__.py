"""The wire contract, the bottom layer: what Sync accepts and answers, as data and models.

``limits`` (the :class:`Limits` profile), ``checks`` (value predicates and documented vocabularies),
``models`` (strict request models with Sync's exact wire names), ``crossfield`` (the cross-field rules on
wire dicts), ``rules`` (every rule of one batch line, as coded problems), ``responses`` (lenient models of
what the API returns) and ``schemas`` (the JSON Schemas generated from the models).

Imports: nothing of batchkit but :mod:`batchkit._errors`.
"""
