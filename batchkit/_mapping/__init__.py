"""Mapping: how a source row becomes a generate request.

``mapping`` (:class:`Mapping`, a TOML file or the same as a Python object, checked against the wire
contract), ``templates`` (``{column}`` templates, fallbacks, and the per-unit plan a mapping compiles to) and
``select`` (which rows and units become requests: ``[where]``, ``[each] optional``).

Imports: ``_errors``, ``_wire``.
"""
