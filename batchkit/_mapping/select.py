"""Which rows and units become requests: the ``[where]`` row filter and ``[each]`` values that may be blank.

``[where]`` keeps the rows whose column values are in a list (``consent = ["yes", "true"]``): values are
compared as trimmed text, ignoring letter case, so ``Yes`` and ``TRUE`` match; TOML numbers and booleans
stand for their text (``true``, ``1``). Several columns must all match. A row left out is not dropped: each
of its units is reported with the outcome ``filtered``.

``[each]`` may say ``optional = true`` (every loop variable) or ``optional = ["lang"]`` (those variables):
when a required value of a unit is empty only because of a column read through such a variable (the
``audio_de`` of ``audio = "{audio_{lang}}"``), that unit is ``skipped`` instead of ``invalid``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RowFilter", "normalise", "split_each"]


def normalise(value: Any) -> str:
    """How ``[where]`` compares a value: its text, trimmed and in lower case (``True`` → ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower()


@dataclass(frozen=True, slots=True)
class RowFilter:
    """``[where]``: column → the values (normalised) a row may have there to be kept."""

    allowed: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def of(cls, where: Mapping[str, list[Any]]) -> RowFilter:
        return cls(
            tuple((column, tuple(dict.fromkeys(map(normalise, values)))) for column, values in where.items())
        )

    def __bool__(self) -> bool:
        return bool(self.allowed)

    @property
    def columns(self) -> list[str]:
        return [column for column, _ in self.allowed]

    def describe(self) -> str:
        """``consent in (yes, true)``, for messages."""
        return " and ".join(f"{column} in ({', '.join(values)})" for column, values in self.allowed)


def split_each(each: Any) -> tuple[Any, bool | list[str]]:
    """``[each]`` as written → its loop variables, and what ``optional`` says (False when absent)."""
    if not isinstance(each, dict) or "optional" not in each:
        return each, False
    rest = {name: values for name, values in each.items() if name != "optional"}
    return rest, each["optional"]


def check_optional(optional: bool | list[str], variables: list[str]) -> frozenset[str]:
    """The loop variables ``optional`` names; a clear error for a name that is not one."""
    if optional is False:
        return frozenset()
    if not variables:
        msg = '[each] optional needs loop variables to apply to; add one, such as lang = ["de", "fr"]'
        raise ValueError(msg)
    if optional is True:
        return frozenset(variables)
    unknown = [name for name in optional if name not in variables]
    if unknown:
        msg = f"[each] optional names {unknown[0]!r}, which is not a loop variable ({', '.join(variables)})"
        raise ValueError(msg)
    return frozenset(optional)


def check_where(where: Mapping[str, list[Any]]) -> None:
    for column, values in where.items():
        if not values:
            msg = f"[where] {column} is empty; list the values a row may have there to be kept"
            raise ValueError(msg)
