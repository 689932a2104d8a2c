"""Templates and the plan a mapping compiles to: how one unit's wire line is made from a row.

A template is a string over the row's columns: ``{name}`` reads column ``name``, ``{name|text}`` reads it and
puts ``text`` in its place when the cell is empty (a fallback; ``{name|}`` is an empty one), ``{{`` and ``}}``
are literal braces, anything else is literal text (:func:`parse_template`). A fallback cannot hold braces; a
column name holding ``|`` is written ``\\|``. The loop variables of ``[each]`` are substituted first
(:func:`substitute`), so ``"{audio_{lang}}"`` reads column ``audio_de`` for ``lang = "de"``. Numbers and
booleans are parsed from a template's text per row (:func:`parse_typed`).

:meth:`batchkit._mapping.mapping.Mapping.compile` makes one :class:`UnitPlan` per unit (one per ``[each]``
position): a tree of the wire line whose leaves are constants (:class:`Const`) or templates (:class:`Leaf`).
The build turns that tree into polars expressions that make the canonical JSON line of every row at once
(``batchkit._build.columnar.frame_exprs``); :meth:`UnitPlan.resolve` makes one row's line in Python, for the rows
those expressions flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .._errors import InputError
from .._wire.crossfield import Problem
from .._wire.limits import Limits
from .._wire.rules import line_problems

__all__ = [
    "Column",
    "Const",
    "Kind",
    "Leaf",
    "Resolved",
    "UnitPlan",
    "compile_leaf",
    "parse_template",
    "parse_typed",
    "substitute",
    "walk_leaves",
]

Kind = Literal["rid", "url", "name", "text", "number", "int", "bool"]

_TOKENS: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_EACH_TOKENS: Final = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FALLBACK: Final = re.compile(r"(?<!\\)\|")
_TRUE: Final = frozenset({"true", "yes", "1", "y", "on"})
_FALSE: Final = frozenset({"false", "no", "0", "n", "off"})
#: What stands in for a template while the mapping's constant parts are checked.
_PROBE: Final[dict[str, Any]] = {
    "rid": "probe",
    "url": "https://probe.invalid/x",
    "name": "probe",
    "text": "probe",
    "number": 0.5,
    "int": 1,
    "bool": True,
}


@dataclass(frozen=True, slots=True)
class Column:
    """A reference to a source column inside a template, with the text an empty cell takes (if any)."""

    name: str
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class Const:
    """A constant of the wire line (a literal of the mapping, or a fixed key such as ``endpoint``)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Leaf:
    """A per-row value of the wire line: a template, the JSON pointer it fills, and how it is checked."""

    pointer: str
    field: str
    parts: tuple[str | Column, ...]
    kind: Kind
    required: bool
    #: columns this unit reads through an optional ``[each]`` variable (``audio_de`` for ``{audio_{lang}}``)
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.name for p in self.parts if isinstance(p, Column)))

    @property
    def has_fallback(self) -> bool:
        return any(isinstance(p, Column) and p.fallback is not None for p in self.parts)

    def render(self, row: dict[str, Any]) -> str | None:
        """The template's text for one row; None when a column it reads is empty (and has no fallback),
        or when the text is empty or blank."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, Column):
                value = row.get(part.name)
                if value is None or not value.strip():
                    if part.fallback is None:
                        return None
                    value = part.fallback
                out.append(value)
            else:
                out.append(part)
        text = "".join(out)
        return text if text.strip() else None

    def blank_columns(self, row: dict[str, Any]) -> list[str]:
        """The columns that leave this template empty in ``row``: empty ones without a fallback, else (all
        fallbacks being empty too) every empty one."""
        empty = [p for p in self.parts if isinstance(p, Column) and not (row.get(p.name) or "").strip()]
        names = [p.name for p in empty if p.fallback is None] or [p.name for p in empty]
        return list(dict.fromkeys(names))


def parse_template(text: str, *, where: str = "template") -> tuple[str | Column, ...]:
    """``"{a}_x"`` → ``(Column("a"), "_x")``, ``"Hi {name|there}"`` → ``("Hi ", Column("name", "there"))``.

    Raises :class:`InputError` for unbalanced or empty braces.
    """
    parts: list[str | Column] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKENS.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif token in ("{", "}"):
            msg = (
                f"{where}: unbalanced {token!r} at position {match.start() + 1} of {text!r}; "
                "write {{ or }} for a literal brace"
            )
            raise InputError(msg)
        else:
            name, fallback = _split_fallback(match.group(1))
            if not name:
                msg = f"{where}: empty {{}} in {text!r}; put a column name between the braces"
                raise InputError(msg)
            if "".join(literal):
                parts.append("".join(literal))
            literal = []
            parts.append(Column(name, fallback))
    literal.append(text[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    return tuple(parts)


def _split_fallback(token: str) -> tuple[str, str | None]:
    """``name|fallback`` → ``(name, fallback)``; the first ``|`` not written ``\\|`` splits."""
    match = _FALLBACK.search(token)
    if match is None:
        return token.replace("\\|", "|"), None
    return token[: match.start()].replace("\\|", "|"), token[match.end() :]


def substitute(text: str, values: dict[str, str]) -> str:
    """Loop variables first: ``{audio_{lang}}`` → ``{audio_de}``."""
    if not values:
        return text

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name is not None and name in values else match.group(0)

    return _EACH_TOKENS.sub(replace, text)


def compile_leaf(
    pointer: str,
    name: str,
    value: Any,
    kind: Kind,
    unit: dict[str, str],
    *,
    required: bool,
    optional: frozenset[str] = frozenset(),
) -> Leaf | Const:
    """One value of the mapping for one unit: a :class:`Leaf` when it reads a column, else a :class:`Const`.

    ``name`` is the mapping key (for messages); ``optional`` the ``[each]`` variables that may be blank (the
    leaf records the columns it reads through them). Raises :class:`InputError` when a constant number or
    boolean does not parse.
    """
    if not isinstance(value, str):
        # numbers the wire types as floats are floats, as the models dump them (1 → 1.0)
        return Const(float(value) if kind == "number" and not isinstance(value, bool) else value)
    parts = parse_template(substitute(value, unit), where=name)
    if any(isinstance(p, Column) for p in parts):
        chosen = _columns_through(value, unit, optional) if optional else ()
        return Leaf(pointer, name, parts, kind, required, chosen)
    text = "".join(p for p in parts if isinstance(p, str))
    if kind in ("number", "int", "bool"):
        parsed, problem = parse_typed(text, kind)
        if problem is not None:
            msg = f"mapping: {name} = {value!r} {problem}"
            raise InputError(msg)
        return Const(parsed)
    return Const(text)


def _columns_through(text: str, unit: dict[str, str], optional: frozenset[str]) -> tuple[str, ...]:
    """The columns ``text`` reads through one of the ``optional`` loop variables, for this unit's values."""
    marks = {name: f"\x00{name}\x00" for name in optional if name in unit}
    marked = parse_template(substitute(substitute(text, marks), unit), where="template")
    found: list[str] = []
    for part in marked:
        if isinstance(part, Column) and "\x00" in part.name:
            for name, mark in marks.items():
                part = Column(part.name.replace(mark, unit[name]))
            found.append(part.name)
    return tuple(dict.fromkeys(found))


def parse_typed(text: str, kind: str) -> tuple[Any, str | None]:
    """A cell's text as the number, integer or boolean a field needs: ``(value, None)`` or ``(None, why)``."""
    raw = text.strip()
    if kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True, None
        if low in _FALSE:
            return False, None
        return None, f"is not a boolean ({raw!r}; use true or false)"
    try:
        number = float(raw)
    except ValueError:
        return None, f"is not a number ({raw!r})"
    if number != number or number in (float("inf"), float("-inf")):
        return None, f"is not a finite number ({raw!r})"
    if kind == "int":
        if not number.is_integer():
            return None, f"is not a whole number ({raw!r})"
        return int(number), None
    return number, None


def walk_leaves(node: Any) -> Iterator[Leaf]:
    """Every :class:`Leaf` of a wire tree, in order."""
    if isinstance(node, Leaf):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from walk_leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_leaves(value)


# -- compiled units ------------------------------------------------------------------------------------------


@dataclass
class UnitPlan:
    """One request per row: the wire tree for one ``[each]`` position, and how to build it columnar."""

    index: int
    values: dict[str, str]
    tree: dict[str, Any]
    leaves: list[Leaf]
    #: (code, pointer) of warnings the constants cause on every line: reported once, not per row
    constant_warnings: list[Problem] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(c for leaf in self.leaves for c in leaf.columns))

    @property
    def request_id(self) -> Leaf | Const:
        node = self.tree["request_id"]
        assert isinstance(node, Leaf | Const)
        return node

    @property
    def columnar(self) -> bool:
        """True when every per-row value is text, so polars can build the line; else rows go through Python."""
        if any(leaf.kind in ("number", "int", "bool") for leaf in self.leaves):
            return False
        # segment refIds resolve against the input's refId: both constant, or the Python checks decide
        return "segments" not in self.tree["payload"] or all(
            not leaf.pointer.endswith("/refId") for leaf in self.leaves
        )

    def leaf_for(self, pointer: str) -> Leaf | None:
        """The leaf that fills ``pointer`` or one of its parents."""
        best: Leaf | None = None
        for leaf in self.leaves:
            if (pointer == leaf.pointer or pointer.startswith(leaf.pointer + "/")) and (
                best is None or len(leaf.pointer) > len(best.pointer)
            ):
                best = leaf
        return best

    def check_constants(self, limits: Limits) -> None:
        """Check what every line shares (the constants) once, with stand-ins for the templates."""
        obj = self.resolve({}, probe=True).obj
        for problem in line_problems(obj, limits):
            if self.leaf_for(problem.pointer) is not None or self._near_template(problem.pointer):
                continue
            if problem.severity == "error":
                where = f" (at {problem.pointer})" if problem.pointer else ""
                msg = f"mapping: {problem.message}{where}; every request would be refused"
                raise InputError(msg)
            self.constant_warnings.append(problem)

    def _near_template(self, pointer: str) -> bool:
        """A segment rule compares values; a stand-in for one of them makes the comparison meaningless."""
        if not pointer.startswith("/payload/segments/"):
            return False
        parent = pointer.rsplit("/", 1)[0]
        return any(leaf.pointer.startswith(parent + "/") for leaf in self.leaves)

    def resolve(self, row: dict[str, Any], *, probe: bool = False) -> Resolved:
        """The wire object for one row, with what was empty or unparsable (stand-ins put in their place)."""
        resolved = Resolved(obj=None)
        resolved.obj = self._resolve(self.tree, row, resolved, probe)
        return resolved

    def _resolve(self, node: Any, row: dict[str, Any], out: Resolved, probe: bool) -> Any:
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Leaf):
            text = None if probe else node.render(row)
            if probe:
                out.stand_ins.append(node.pointer)
                return _PROBE[node.kind]
            if text is None:
                if node.required:
                    out.empty.append(node)
                    out.stand_ins.append(node.pointer)
                    return _PROBE[node.kind]
                return _OMIT
            if node.kind in ("number", "int", "bool"):
                value, problem = parse_typed(text, node.kind)
                if problem is not None:
                    out.unparsable.append((node, problem))
                    out.stand_ins.append(node.pointer)
                    return _PROBE[node.kind]
                return value
            return text
        if isinstance(node, dict):
            result = {}
            for key, child in node.items():
                value = self._resolve(child, row, out, probe)
                if value is not _OMIT:
                    result[key] = value
            return result
        if isinstance(node, list):
            return [self._resolve(child, row, out, probe) for child in node]
        return node


@dataclass
class Resolved:
    """One row resolved by :meth:`UnitPlan.resolve`."""

    obj: Any
    empty: list[Leaf] = field(default_factory=list)
    unparsable: list[tuple[Leaf, str]] = field(default_factory=list)
    stand_ins: list[str] = field(default_factory=list)


_OMIT: Final = object()
