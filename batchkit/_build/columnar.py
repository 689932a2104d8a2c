"""Columnar lines: polars expressions that make a unit's canonical JSON line for every row of a chunk.

:func:`frame_exprs` turns a :class:`~batchkit._mapping.templates.UnitPlan` into expressions that render every
template, check every value with patterns at least as strict as the validator's checks, and write the line
as JSON text, all at once over a chunk. A row the patterns do not clear is flagged, and the build
(:mod:`batchkit._build.build`) makes its line in Python with the validator's own rules instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import polars as pl

from .._mapping.select import RowFilter
from .._mapping.templates import Column, Const, Leaf, UnitPlan
from .._wire.checks import EMOTIONS, IMAGE_MODEL, MAX_REQUEST_ID_LENGTH, MODEL_MODES, SYNC_MODES
from .._wire.limits import Limits

__all__ = ["FrameExprs", "blank_column", "filter_exprs", "frame_exprs"]

#: Patterns that clear a value without a closer look. Each is at least as strict as the check in
#: ``_checks`` it stands for, ASCII only, and refuses the two characters JSON escapes (``"`` and ``\``),
#: so a cleared value is copied into the line as is; anything else goes through the Python checks.
_SAFE: Final = r"\x21\x23-\x5b\x5d-\x7e"  # printable ASCII without space, " and \
_RID_RE: Final = rf"^[{_SAFE}](?:[ {_SAFE}]{{0,{MAX_REQUEST_ID_LENGTH - 2}}}[{_SAFE}])?$"
_URL_RE: Final = rf"^[Hh][Tt][Tt][Pp][Ss]?://[{_SAFE}&&[^/?#]][{_SAFE}]*$"
_NAME_RE: Final = r"^[A-Za-z0-9_-]{1,255}$"
_ESCAPED_RE: Final = r'["\\\x00-\x1f]'  # what JSON would have to escape in free text


def blank_column(name: str) -> str:
    """Name of the helper column that is true where column ``name`` is empty (null or whitespace)."""
    return f"\x00blank:{name}"


@dataclass(frozen=True)
class FrameExprs:
    """The expressions of one unit over a chunk (see :func:`frame_exprs`)."""

    values: list[pl.Expr]
    line: pl.Expr
    request_id: pl.Expr
    flag: pl.Expr


def frame_exprs(unit: UnitPlan, limits: Limits) -> FrameExprs:
    """Expressions that build a unit's lines over a chunk (with :func:`blank_column` helpers).

    Evaluate :attr:`FrameExprs.values` first (``with_columns``), then ``line``, ``request_id`` and
    ``flag`` over the result. ``line`` is the canonical JSON line, meaningful only where ``flag`` is
    false; ``flag`` marks the rows that need the Python checks (anything the patterns do not clear, and
    every row when the unit is not ``columnar``). Rows longer than the byte limit are flagged by the
    caller, from ``line``.
    """
    staged: list[pl.Expr] = []
    values: dict[str, pl.Expr] = {}
    blanks: dict[str, pl.Expr] = {}
    for i, leaf in enumerate(unit.leaves):
        columns = leaf.columns
        if len(leaf.parts) == 1 and not leaf.has_fallback:
            values[leaf.pointer] = pl.col(columns[0])
        else:
            name = f"\x00value:{unit.index}:{i}"
            staged.append(_concat(leaf.parts).alias(name))
            values[leaf.pointer] = pl.col(name)
        blanks[leaf.pointer] = _blank(leaf, values[leaf.pointer])
    flags: list[pl.Expr] = [pl.col(column).str.starts_with("=") for column in unit.columns]
    for leaf in unit.leaves:
        value = values[leaf.pointer]
        if leaf.required:
            flags.append(blanks[leaf.pointer])
        flags.append(_check_expr(leaf, value, limits))
    options = unit.tree["payload"].get("options", {})
    model = values.get("/payload/model")
    if model is not None and ("model_mode" in options or "prompt" in options):
        flags.append(model != "react-1")
    if model is not None and unit.tree["payload"]["input"][0].get("type") == Const("image"):
        flags.append(model != IMAGE_MODEL)  # image inputs are sync-3 only
    flag = pl.any_horizontal(f.fill_null(False) for f in flags) if unit.columnar else pl.lit(True)
    rid_node = unit.request_id
    rid = values["/request_id"] if isinstance(rid_node, Leaf) else pl.lit(rid_node.value, dtype=pl.String)
    return FrameExprs(values=staged, line=_json_expr(unit.tree, values, blanks), request_id=rid, flag=flag)


def _lit(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String)


def _concat(parts: Sequence[str | Column | pl.Expr]) -> pl.Expr:
    exprs = [_column(p) if isinstance(p, Column) else _lit(p) if isinstance(p, str) else p for p in parts]
    return exprs[0] if len(exprs) == 1 else pl.concat_str(exprs)


def _column(part: Column) -> pl.Expr:
    """A column's value in a template: its cell, or its fallback where the cell is empty."""
    if part.fallback is None:
        return pl.col(part.name)
    return pl.when(pl.col(blank_column(part.name))).then(_lit(part.fallback)).otherwise(pl.col(part.name))


def _blank(leaf: Leaf, value: pl.Expr) -> pl.Expr:
    """True where the leaf is empty: a column it reads without a fallback is empty, or (with fallbacks) its
    text is empty or blank, as :meth:`Leaf.render` says."""
    plain = [c.name for c in leaf.parts if isinstance(c, Column) and c.fallback is None]
    if not leaf.has_fallback:
        return pl.any_horizontal(pl.col(blank_column(c)) for c in plain)
    blank = value.is_null() | ~value.str.contains(r"\S")
    return pl.any_horizontal(blank, *(pl.col(blank_column(c)) for c in plain))


def _check_expr(leaf: Leaf, value: pl.Expr, limits: Limits) -> pl.Expr:
    """True where the value needs a closer look (null where the value is null)."""
    if leaf.kind == "rid":
        return ~value.str.contains(_RID_RE)
    if leaf.kind == "url":
        return ~value.str.contains(_URL_RE)
    if leaf.kind == "name":
        return ~value.str.contains(_NAME_RE)
    check = value.str.contains(_ESCAPED_RE)
    allowed = {
        "/payload/model": limits.known_models,
        "/payload/options/sync_mode": SYNC_MODES,
        "/payload/options/model_mode": MODEL_MODES,
        "/payload/options/prompt": EMOTIONS,
    }.get(leaf.pointer)
    if allowed is not None:
        check = check | ~value.is_in(list(allowed))
    return check


def _json_expr(tree: dict[str, Any], values: dict[str, pl.Expr], blanks: dict[str, pl.Expr]) -> pl.Expr:
    pieces: list[str | pl.Expr] = []
    _pieces(tree, values, blanks, pieces)
    merged: list[str | pl.Expr] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    return _concat(merged)


def _pieces(
    node: Any, values: dict[str, pl.Expr], blanks: dict[str, pl.Expr], out: list[str | pl.Expr]
) -> None:
    """Append the JSON text of ``node``: constant strings, or expressions for per-row values.

    Per-row values are copied in without escaping: rows whose values would need escaping are flagged.
    """
    if isinstance(node, Const):
        out.append(orjson.dumps(node.value).decode())
    elif isinstance(node, Leaf):
        out.extend(['"', values[node.pointer], '"'])
    elif isinstance(node, list):
        out.append("[")
        for i, child in enumerate(node):
            if i:
                out.append(",")
            _pieces(child, values, blanks, out)
        out.append("]")
    elif isinstance(node, dict):
        members = list(node.items())
        optional = [isinstance(v, Leaf) and not v.required for _, v in members]
        # a member that may be left out carries its own leading comma; when the first member may be left
        # out, every member does, and the first comma is dropped from the whole object
        target = [] if optional and optional[0] else out
        out.append("{")
        for i, ((key, child), maybe) in enumerate(zip(members, optional, strict=True)):
            head = ("," if i or target is not out else "") + orjson.dumps(key).decode() + ":"
            if maybe:
                assert isinstance(child, Leaf)
                member = _concat([head, '"', values[child.pointer], '"'])
                target.append(pl.when(blanks[child.pointer]).then(_lit("")).otherwise(member))
            else:
                target.append(head)
                _pieces(child, values, blanks, target)
        if target is not out:
            out.append(_concat(target).str.strip_prefix(","))
        out.append("}")
    else:
        out.append(orjson.dumps(node).decode())


def filter_exprs(row_filter: RowFilter) -> tuple[pl.Expr, pl.Expr]:
    """``[where]`` over a chunk: true where a row is left out, and why (null where it is kept).

    Cells are compared as trimmed, lower-case text (:func:`batchkit._mapping.select.normalise`); an empty
    cell matches nothing but an empty listed value.
    """
    left_out = pl.lit(False)
    why = pl.lit(None, dtype=pl.String)
    for column, values in reversed(row_filter.allowed):  # the first failing column gives the reason
        cell = pl.col(column).fill_null("").str.strip_chars()
        miss = ~cell.str.to_lowercase().is_in(list(values))
        shown = pl.when(cell == "").then(_lit("empty")).otherwise(pl.concat_str(_lit("'"), cell, _lit("'")))
        listed = ", ".join(values) or "''"
        reason = pl.concat_str(
            _lit(f"left out by [where]: column {column} is "), shown, _lit(f", not one of {listed}")
        )
        left_out = left_out | miss
        why = pl.when(miss).then(reason).otherwise(why)
    return left_out, why
