"""The limits profile every check and the sharder read.

Sync's limits changed over time (1000 records once, 500 now; no minimum once, 20 now), so they are data, not
constants: a :class:`Limits` value travels with every check, and a build directory's manifest records the one
it was built with.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_LIMITS", "KNOWN_MODELS", "Limits"]

#: Models Sync documents today (sync-api.md §3.2). Any other model is a warning, never an error.
KNOWN_MODELS: tuple[str, ...] = ("lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta", "react-1", "sync-3")


class Limits(BaseModel):
    """What a batch file must satisfy. Defaults are Sync's documented limits as of 2026.

    >>> Limits(max_records=1000).max_records
    1000
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_records: int = Field(default=20, ge=1, description="fewest records a batch file may hold")
    max_records: int = Field(default=500, ge=1, description="most records a batch file may hold")
    max_bytes: int = Field(default=5_000_000, ge=64, description="largest batch file, in bytes")
    max_input_seconds: float = Field(default=30, gt=0, description="longest input media Sync accepts")
    endpoint: str = Field(default="/v2/generate", description="the only endpoint a batch line may name")
    known_models: tuple[str, ...] = Field(default=KNOWN_MODELS, description="models that raise no warning")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_records > self.max_records:
            msg = f"min_records ({self.min_records}) is larger than max_records ({self.max_records})"
            raise ValueError(msg)
        return self

    def describe(self) -> str:
        """One line for messages: ``20–500 records, ≤ 5,000,000 bytes``."""
        return f"{self.min_records}–{self.max_records} records, ≤ {self.max_bytes:,} bytes"

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


DEFAULT_LIMITS = Limits()
