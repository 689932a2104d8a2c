"""JSON Schemas of the wire contract, generated from the models.

``batchkit schema --out schemas/`` writes them; the copies checked in under ``schemas/`` are compared with
these by the test suite, so the two never drift. At run time nothing reads ``schemas/``: the schemas are
built from the models on demand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import BaseModel

from .._errors import InputError
from .._files import writing
from .models import BatchLine, GeneratePayload
from .responses import Batch, OutputLine

__all__ = ["SCHEMA_MODELS", "json_schema", "schema_bytes", "write_schemas"]

#: File stem → model, for every schema batchkit publishes.
SCHEMA_MODELS: Final[dict[str, type[BaseModel]]] = {
    "batch-line": BatchLine,
    "generate-payload": GeneratePayload,
    "output-line": OutputLine,
    "batch": Batch,
}
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema published as ``schemas/<name>.schema.json``."""
    model = SCHEMA_MODELS[name]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": _DIALECT, "$id": f"https://batchkit.dev/schemas/{name}.schema.json", **schema}


def write_schemas(out: str | Path) -> list[Path]:
    """Write every schema to ``out/<name>.schema.json`` (created if needed); return the paths written.

    Each file is written under a temporary name and renamed into place. Raises :class:`InputError` when
    ``out`` is not a directory or cannot be written.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        msg = f"{folder} exists and is not a directory; give --out a directory to write the schemas into"
        raise InputError(msg, path=folder)
    written = []
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for name in SCHEMA_MODELS:
            path = folder / f"{name}.schema.json"
            temp = path.with_name(f".{path.name}.tmp")
            try:
                temp.write_bytes(schema_bytes(name))
                os.replace(temp, path)
            finally:
                temp.unlink(missing_ok=True)
            written.append(path)
    return written


def schema_bytes(name: str) -> bytes:
    """The exact bytes of a schema file: two-space indent, keys in model order, trailing newline."""
    return orjson.dumps(json_schema(name), option=orjson.OPT_INDENT_2) + b"\n"
