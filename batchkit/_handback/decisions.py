"""Reviewers' decisions: the CSV the review page downloads, read back for ``batchkit retry --from-review``.

The page writes one line per request of the build, in the page's order, under this header::

    request_id,decision,note,outcome,<each variables...>,build
    v001_de,approved,,completed,de,5d0c4f1e2a7b9c30
    v001_fr,rejected,"lips drift at 0:02, redo",completed,fr,5d0c4f1e2a7b9c30
    v002_de,undecided,,failed,de,5d0c4f1e2a7b9c30

``decision`` is ``approved``, ``rejected`` or ``undecided``; ``note`` is the reviewer's free text; ``outcome``
is the outcome the page showed (so a reader can tell a rejected ``completed`` video from a rejected failure);
the ``[each]`` variables (``lang`` ...) help whoever opens the file in a spreadsheet; ``build`` is the page's
build id, the same on every line, so decisions are never applied to another build. The file is UTF-8 with a
byte-order mark (so Excel opens it as UTF-8), lines end with ``\\n``, and a cell a spreadsheet would run as a
formula (``=``, ``+``, ``-``, ``@``, tab, CR first; plain numbers aside) starts with an apostrophe, as in
batchkit's other CSV exports.

:func:`read_decisions` reads that file strictly but kindly. Only ``request_id`` and ``decision`` are required;
other columns are ignored, in any order; header names are matched without regard to case or spaces. It
takes what a spreadsheet makes of the file: a BOM (UTF-8 or UTF-16), CRLF line endings, ``;`` or tab
delimiters (Excel in many locales; an Excel ``sep=;`` first line is honoured), Windows-1252 instead of UTF-8
(a ``decisions-encoding`` warning), blank lines and trailing empty cells, the formula apostrophe, spaces
around values, and the decisions written ``Approve``, ``REJECTED`` or left empty (undecided).

Everything else is an :class:`~batchkit.InputError` whose one-line message names the file, the line and the
fix (and how many more lines have problems): a decision that is none of those, a line without a request_id, a
line with more cells than the header, bad quoting, two lines for one request_id that disagree, lines from two
builds, or, when the caller says what to expect, another build's file or request_ids the build does not have.
The same request_id twice with the same decision is a ``duplicate-decision`` warning; the later line is kept.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from .._errors import InputError
from .._report import Finding

__all__ = ["DECISIONS", "DECISION_CODES", "Decision", "Decisions", "read_decisions"]

Verdict = Literal["approved", "rejected", "undecided"]

#: The decisions a reviewer makes, as the page writes them.
DECISIONS: Final[tuple[Verdict, ...]] = ("approved", "rejected", "undecided")

#: Finding codes of the warnings :func:`read_decisions` reports.
DECISION_CODES: Final = {
    "decisions-encoding": "the decisions file is not UTF-8 and was read as Windows-1252 (warning)",
    "duplicate-decision": "a request_id has several lines with the same decision; the last is kept (warning)",
}

_SPELLINGS: Final[dict[str, Verdict]] = {
    "approved": "approved",
    "approve": "approved",
    "rejected": "rejected",
    "reject": "rejected",
    "undecided": "undecided",
    "": "undecided",
}
_DELIMITERS: Final = (",", ";", "\t")
_FORMULA: Final = re.compile(r"'(?=[=+\-@\t\r])")
_MAX_SHOWN: Final = 5


@dataclass(frozen=True, slots=True)
class Decision:
    """One reviewer's decision on one request: where it was read (``line``, 1-based physical line)."""

    request_id: str
    decision: Verdict
    note: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Decisions:
    """Every request_id's decision in a decisions file, in file order, with the warnings of reading it."""

    path: Path
    by_id: dict[str, Decision]
    build: str | None = None
    findings: tuple[Finding, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self) -> Iterator[Decision]:
        return iter(self.by_id.values())

    def ids(self, decision: Verdict) -> tuple[str, ...]:
        """The request_ids with that decision, in file order."""
        return tuple(rid for rid, d in self.by_id.items() if d.decision == decision)

    @property
    def rejected(self) -> tuple[str, ...]:
        """The request_ids a reviewer rejected: what ``batchkit retry DIR --from-review`` makes again."""
        return self.ids("rejected")

    @property
    def approved(self) -> tuple[str, ...]:
        return self.ids("approved")

    @property
    def undecided(self) -> tuple[str, ...]:
        return self.ids("undecided")


def read_decisions(
    path: str | os.PathLike[str],
    *,
    build: str | None = None,
    request_ids: Collection[str] | None = None,
) -> Decisions:
    """Read a decisions CSV (see the module docstring for what is accepted and what is refused).

    ``build``, when given, must be the file's build id (a file without a ``build`` column passes).
    ``request_ids``, when given, are the build's request_ids: a line naming another one is refused.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        msg = f"cannot read the decisions file {source}: {exc.strerror or exc}"
        raise InputError(msg, path=source) from exc
    reader = _Reader(source)
    text = reader.decode(raw)
    return reader.parse(text, build=build, request_ids=request_ids)


def decisions_of(directory: str | os.PathLike[str], path: str | os.PathLike[str]) -> Decisions:
    """The decisions file ``path`` read as one of ``directory``'s own review page: its build id and every
    request_id must be the directory's (what ``batchkit retry DIR --from-review FILE`` reads)."""
    from .._results.results import collect_results
    from .review import build_id_of

    ids = (
        collect_results(Path(directory), download=False, follow=False)
        .frame.get_column("request_id")
        .to_list()
    )
    return read_decisions(path, build=build_id_of(ids), request_ids=[i for i in ids if i is not None])


class _Reader:
    """One read of one file: problems are gathered, then the first is raised with a count of the rest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[tuple[int, str]] = []
        self.findings: list[Finding] = []

    def fail(self, line: int, message: str) -> InputError:
        return InputError(f"{self.path}:{line}: {message}", path=self.path, line=line)

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def warn(self, code: str, line: int | None, message: str, request_id: str | None = None) -> None:
        finding = Finding(
            code=code,
            severity="warning",
            file=str(self.path),
            line=line,
            request_id=request_id,
            message=message,
        )
        self.findings.append(finding)

    def decode(self, raw: bytes) -> str:
        if not raw.strip(b"\xef\xbb\xbf\xff\xfe \t\r\n"):
            msg = "the file is empty: download the decisions from the review page again"
            raise self.fail(1, msg)
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            try:
                return raw.decode("utf-16")
            except UnicodeDecodeError as exc:
                msg = f"it starts with a UTF-16 byte-order mark but is not UTF-16 ({exc.reason}); save it as CSV UTF-8"
                raise self.fail(1, msg) from exc
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            try:
                text = raw.decode("cp1252")
            except UnicodeDecodeError:
                msg = (
                    f"bytes that are neither UTF-8 nor Windows-1252 at byte {exc.start}; save it as CSV UTF-8"
                )
                raise self.fail(line, msg) from exc
            self.warn(
                "decisions-encoding",
                line,
                f"not UTF-8 (first at line {line}); read as Windows-1252. Save it as 'CSV UTF-8' to be sure "
                "notes and request_ids with accents come back as written",
            )
            return text

    def parse(self, text: str, *, build: str | None, request_ids: Collection[str] | None) -> Decisions:
        offset, delimiter, text = self._excel_sep(text)
        rows = csv.reader(
            io.StringIO(text, newline=""), delimiter=delimiter or self._sniff(text), strict=True
        )
        try:
            header = next(rows)
        except (StopIteration, csv.Error) as exc:
            msg = f"no readable header line ({exc}); the first line must be request_id,decision,note"
            raise self.fail(1 + offset, msg) from exc
        columns = self._columns(header, 1 + offset)
        kept: dict[str, Decision] = {}
        builds: dict[str, int] = {}
        last = rows.line_num
        try:
            for cells in rows:
                line, last = last + 1 + offset, rows.line_num
                if not any(cell.strip() for cell in cells):
                    continue  # a blank line, or a spreadsheet's row of empty cells
                decision = self._row(cells, columns, len(header), line)
                if decision is not None:
                    self._keep(kept, decision)
                value = _cell(cells, columns["build"]) if "build" in columns else ""
                if value:
                    builds.setdefault(value, line)
        except csv.Error as exc:
            self.problem(
                last + 1 + offset,
                f"the CSV cannot be read from here on ({exc}); every quoted cell needs its closing quote",
            )
        found = self._build(builds, build)
        if request_ids is not None:
            self._known(kept, request_ids)
        if self.problems:
            self.problems.sort()
            line, message = self.problems[0]
            more = self.problems[1:]
            if more:
                lines = ", ".join(str(n) for n, _ in more[:_MAX_SHOWN]) + (
                    ", ..." if len(more) > _MAX_SHOWN else ""
                )
                message += f" ({len(more)} more problem(s), on lines {lines})"
            raise self.fail(line, message)
        return Decisions(path=self.path, by_id=kept, build=found, findings=tuple(self.findings))

    def _excel_sep(self, text: str) -> tuple[int, str | None, str]:
        """Excel's optional ``sep=;`` first line: (lines skipped, the delimiter it names, the rest)."""
        first, newline, rest = text.partition("\n")
        match = re.fullmatch(r"\s*sep=(.)\s*", first.rstrip("\r"))
        if match is None:
            return 0, None, text
        return 1, match.group(1), rest if newline else ""

    def _sniff(self, text: str) -> str:
        """The delimiter whose reading of the first line has both required columns (``,`` when none does)."""
        first = text.split("\n", 1)[0]
        for delimiter in _DELIMITERS:
            names = {_name(c) for c in next(csv.reader([first], delimiter=delimiter), [])}
            if {"request_id", "decision"} <= names:
                return delimiter
        return ","

    def _columns(self, header: list[str], line: int) -> dict[str, int]:
        columns: dict[str, int] = {}
        for index, cell in enumerate(header):
            name = _name(cell)
            if name in ("request_id", "decision", "note", "build") and name in columns:
                msg = (
                    f"the header names {name!r} twice (columns {columns[name] + 1} and {index + 1}); keep one"
                )
                raise self.fail(line, msg)
            columns.setdefault(name, index)
        lacking = [name for name in ("request_id", "decision") if name not in columns]
        if lacking:
            shown = ", ".join(repr(c) for c in header[:8]) or "nothing"
            msg = (
                f"the header has no {' and no '.join(lacking)} column (it has {shown}); the first line must be "
                "request_id,decision,note: download the decisions from the review page again"
            )
            raise self.fail(line, msg)
        return columns

    def _row(self, cells: list[str], columns: dict[str, int], width: int, line: int) -> Decision | None:
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            self.problem(
                line,
                f"{len(cells)} cells but the header has {width}; a note with a comma or a {';'!r} must be quoted "
                '("like, this")',
            )
            return None
        request_id = _cell(cells, columns["request_id"])
        spelled = _cell(cells, columns["decision"])
        if not request_id:
            if spelled:
                self.problem(
                    line, f"decision {spelled!r} but no request_id; fill in the request_id or delete the line"
                )
            return None
        decision = _SPELLINGS.get(spelled.casefold())
        if decision is None:
            self.problem(
                line,
                f"unknown decision {spelled!r} for request_id {request_id!r}; write approved, rejected or "
                "undecided (or leave it empty)",
            )
            return None
        note = _cell(cells, columns["note"]) if "note" in columns else ""
        return Decision(request_id=request_id, decision=decision, note=note, line=line)

    def _keep(self, kept: dict[str, Decision], decision: Decision) -> None:
        earlier = kept.get(decision.request_id)
        if earlier is None:
            kept[decision.request_id] = decision
        elif earlier.decision == decision.decision:
            kept[decision.request_id] = decision
            self.warn(
                "duplicate-decision",
                decision.line,
                f"request_id {decision.request_id!r} is also on line {earlier.line}, with the same decision; "
                f"line {decision.line} is kept",
                decision.request_id,
            )
        else:
            self.problem(
                decision.line,
                f"request_id {decision.request_id!r} is {decision.decision} here but {earlier.decision} on line "
                f"{earlier.line}; keep one of the two lines",
            )

    def _build(self, builds: dict[str, int], expected: str | None) -> str | None:
        if len(builds) > 1:
            (first, at), (other, line) = sorted(builds.items(), key=lambda item: item[1])[:2]
            self.problem(
                line,
                f"lines from two review pages: build {other!r} here, build {first!r} from line {at}; "
                "download one page's decisions, or review again in one page",
            )
        found = next(iter(builds), None)
        if expected is not None and found is not None and found != expected:
            self.problem(
                builds[found],
                f"these decisions are from another build ({found!r}; this one is {expected!r}); "
                "download the decisions from this build's review page",
            )
        return found

    def _known(self, kept: dict[str, Decision], request_ids: Collection[str]) -> None:
        known = request_ids if isinstance(request_ids, set | frozenset | dict) else set(request_ids)
        for decision in kept.values():
            if decision.request_id not in known:
                hint = (
                    " (a spreadsheet may have turned it into a number: keep the column as text)"
                    if re.fullmatch(r"[0-9.,eE+-]+", decision.request_id)
                    else ""
                )
                self.problem(
                    decision.line,
                    f"request_id {decision.request_id!r} is not a request of this build{hint}; "
                    "fix it or delete the line",
                )


def _name(cell: str) -> str:
    return cell.strip().lstrip("\ufeff").strip().casefold().replace(" ", "_")


def _cell(cells: list[str], index: int) -> str:
    """The cell's text, outer spaces and a formula-guard apostrophe removed (an absent cell is empty)."""
    value = cells[index].strip() if index < len(cells) else ""
    return value[1:] if _FORMULA.match(value) else value
