"""A user's own JSON Schema applied to every batch line (``batchkit validate --schema POLICY.json``).

Teams encode house rules this way, for example "model must be lipsync-2-pro" or "every outputFileName starts
with the campaign code". Each violation is a finding with code ``policy``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from jsonschema import exceptions as schema_exceptions
from jsonschema import validators

from ._errors import InputError
from ._rules import pointer

__all__ = ["Policy", "load_policy"]


class Policy:
    """A compiled JSON Schema that every line must also satisfy."""

    def __init__(self, schema: Mapping[str, Any], *, name: str = "policy") -> None:
        cls = validators.validator_for(schema)
        try:
            cls.check_schema(dict(schema))
        except schema_exceptions.SchemaError as exc:
            where = pointer(*exc.absolute_path) or "/"
            msg = f"{name} is not a valid JSON Schema (at {where}): {exc.message}"
            raise InputError(msg, path=name) from exc
        self.name = name
        self._validator = cls(dict(schema))

    def problems(self, instance: Any) -> Iterator[tuple[str, str]]:
        """``(pointer, message)`` for each violation, in a stable order."""
        errors = sorted(
            self._validator.iter_errors(instance), key=lambda e: (list(map(str, e.path)), e.message)
        )
        for error in errors:
            yield pointer(*error.absolute_path), f"{self.name}: {error.message}"

    def __repr__(self) -> str:
        return f"Policy(name={self.name!r})"


def load_policy(source: str | Path | Mapping[str, Any]) -> Policy:
    """A :class:`Policy` from a JSON Schema file or an in-memory schema."""
    if isinstance(source, Mapping):
        return Policy(source)
    path = Path(source)
    try:
        schema = orjson.loads(path.read_bytes())
    except OSError as exc:
        msg = f"cannot read schema {path}: {exc.strerror or exc}"
        raise InputError(msg, path=path) from exc
    except orjson.JSONDecodeError as exc:
        msg = f"schema {path} is not valid JSON: {exc}"
        raise InputError(msg, path=path) from exc
    if not isinstance(schema, dict | bool):
        msg = f"schema {path} must be a JSON object"
        raise InputError(msg, path=path)
    return Policy(schema, name=path.name)  # type: ignore[arg-type]
