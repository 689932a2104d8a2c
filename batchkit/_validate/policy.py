"""A user's own JSON Schema applied to every batch line (``batchkit validate --schema POLICY.json``).

Teams encode house rules this way, for example "model must be lipsync-2-pro" or "every outputFileName starts
with the campaign code". Each violation is a finding with code ``policy``. The schema's ``$schema`` picks the
draft (2020-12 when absent); ``format`` is asserted where jsonschema can check it; ``$ref`` resolves within
the schema only (nothing is fetched).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .._errors import InputError
from .._files import read_input
from .._wire.crossfield import pointer, show

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["Policy", "load_policy"]


class Policy:
    """A compiled JSON Schema that every line must also satisfy.

    Raises :class:`InputError` when ``schema`` is not a valid JSON Schema of a known draft.
    """

    def __init__(self, schema: Mapping[str, Any] | bool, *, name: str = "policy") -> None:
        # jsonschema is imported here, not at module level: most runs have no policy, and it is slow to import.
        from jsonschema import exceptions, validators

        document: dict[str, Any] | bool = schema if isinstance(schema, bool) else dict(schema)
        cls: type[Validator] | None = validators.Draft202012Validator
        if isinstance(document, dict) and "$schema" in document:
            cls = validators.validator_for(document, default=None)  # type: ignore[arg-type]
            if cls is None:
                msg = (
                    f"{name}: unknown $schema {document['$schema']!r}; "
                    "use https://json-schema.org/draft/2020-12/schema or leave $schema out"
                )
                raise InputError(msg, path=name)
        assert cls is not None
        try:
            cls.check_schema(document)  # type: ignore[arg-type]
        except RecursionError:
            msg = f"{name} is nested too deeply to use as a JSON Schema; flatten it"
            raise InputError(msg, path=name) from None
        except exceptions.SchemaError as exc:
            where = pointer(*exc.absolute_path) or "/"
            msg = f"{name} is not a valid JSON Schema (at {where}): {exc.message}"
            raise InputError(msg, path=name) from exc
        self.name = name
        self._validator = cls(document, format_checker=cls.FORMAT_CHECKER)

    def problems(self, instance: Any) -> Iterator[tuple[str, str]]:
        """``(pointer, message)`` for each violation, in a stable order.

        Raises :class:`InputError` when the schema has a ``$ref`` that cannot be resolved.
        """
        from referencing.exceptions import Unresolvable

        try:
            errors = sorted(
                self._validator.iter_errors(instance), key=lambda e: (list(map(str, e.path)), e.message)
            )
        except RecursionError:
            yield "", f"{self.name}: the line is nested too deeply to check against the schema"
            return
        except Unresolvable as exc:
            msg = f"{self.name}: cannot resolve a $ref ({exc}); only references within the schema work"
            raise InputError(msg, path=self.name) from exc
        for error in errors:
            message = error.message if len(error.message) <= 300 else error.message[:299] + "…"
            shown = show(error.instance)
            if isinstance(error.instance, str | int | float | bool | None) and shown not in message:
                message += f", got {shown}"
            yield pointer(*error.absolute_path), f"{self.name}: {message}"

    def __repr__(self) -> str:
        return f"Policy(name={self.name!r})"


def load_policy(source: str | Path | Mapping[str, Any]) -> Policy:
    """A :class:`Policy` from a JSON Schema file or an in-memory schema."""
    if isinstance(source, Mapping):
        return Policy(source)
    path = Path(source)
    if not os.path.lexists(path):
        msg = f"cannot read schema {path}: no such file"
        raise InputError(msg, path=path)
    try:
        schema = orjson.loads(read_input(path, what="schema"))
    except orjson.JSONDecodeError as exc:
        msg = f"schema {path} is not valid JSON: {exc}"
        raise InputError(msg, path=path) from exc
    if not isinstance(schema, dict | bool):
        msg = f"schema {path} must be a JSON object (or true/false)"
        raise InputError(msg, path=path)
    return Policy(schema, name=path.name)
