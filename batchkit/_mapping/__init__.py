"""Mapping: how a source row becomes a generate request.

``mapping`` (:class:`Mapping`, a TOML file or the same as a Python object, checked against the wire
contract) and ``templates`` (``{column}`` templates and the per-unit plan a mapping compiles to).

Imports: ``_errors``, ``_wire``.
"""
