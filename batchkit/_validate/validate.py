"""The dry-run validator: batch JSONL in, a :class:`Report` with every finding out.

Files are read a block (about a megabyte) at a time, so memory does not grow with file size or the number of
files (only with the number of distinct ``request_id``\\ s, which the duplicate check must remember, and with
the report's retained findings, which are bounded). A line longer than the file limit is measured, never held
whole. A bad line never stops the rest: every line gets all of its findings, then the file gets its own
(record count, byte size). Only regular files are read: a FIFO or a device is refused up front (see
:func:`batchkit._files.open_input`), so the validator never waits on a pipe or reads an endless stream.

Most lines are clean; a whole block of them is cleared by the ``msgspec`` gate of ``_fastpath`` at about the
speed of parsing. Every other line is examined by ``_rules``, which says exactly what is wrong and where.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice, repeat
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson
from pydantic import BaseModel

from .._errors import InputError
from .._files import describe_oserror, open_input
from .._report import Finding, Report, Severity, Stats
from .._wire.checks import request_id_problem
from .._wire.crossfield import Problem
from .._wire.limits import DEFAULT_LIMITS, Limits
from .fastpath import gate
from .policy import Policy, load_policy
from .reading import TooLong, blocks, expand_paths, split_lines

__all__ = ["check_lines", "expand_paths", "validate_file", "validate_files", "validate_lines"]

log = logging.getLogger("batchkit")

_BOM = b"\xef\xbb\xbf"
#: Starts of files no line of which can be read: (magic bytes, what the file is).
_UNREADABLE = (
    (b"\xff\xfe", "UTF-16 (it starts with a UTF-16 byte-order mark)", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 (it starts with a UTF-16 byte-order mark)", "save it as UTF-8"),
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip)"),
    (b"PK\x03\x04", "a ZIP archive (a workbook?)", "export the batch lines as JSON Lines"),
)
_CHUNK_LINES = 1024
_LINE_BITS = 32  # a remembered request_id's place: file index << _LINE_BITS | line number

LineInput = bytes | str | Mapping[str, Any] | BaseModel
SchemaInput = Policy | str | Path | Mapping[str, Any] | None
Emit = Callable[[Finding], None]


def validate_lines(
    lines: Iterable[LineInput],
    *,
    file: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    schema: SchemaInput = None,
    file_checks: bool = True,
    report_file: str | Path | None = None,
) -> Report:
    """Validate batch lines given in memory: bytes or str (one JSON line each), dicts, or models.

    ``file`` names them in findings; ``file_checks=False`` skips the whole-file checks (record count, bytes),
    for checking lines one at a time. ``report_file`` also writes every finding there as JSON Lines.
    """
    report = _report(limits, report_file)
    with _completing(report):
        validator = _Validator(limits, _policy(schema), report.add)
        validator.lines(file, (_as_bytes(line) for line in lines), file_checks=file_checks)
        validator.stats_into(report.stats)
    return report


def validate_file(
    path: str | Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    schema: SchemaInput = None,
    report_file: str | Path | None = None,
) -> Report:
    """Validate one batch JSONL file as Sync would receive it."""
    return validate_files([path], limits=limits, schema=schema, report_file=report_file)


def validate_files(
    paths: Iterable[str | Path],
    *,
    limits: Limits = DEFAULT_LIMITS,
    schema: SchemaInput = None,
    report_file: str | Path | None = None,
) -> Report:
    """Validate a set of files (directories stand for their ``*.jsonl``) as one submission.

    Besides each file's own findings, a ``request_id`` used in two files of the set is reported too. The
    report keeps the first findings of each code (see :class:`Report`); ``report_file`` also writes every
    finding there as JSON Lines (complete when this returns, never half-written). Raises
    :class:`InputError` for a missing path, a directory without ``.jsonl`` files, or a path that is not a
    regular file (a FIFO, a device).
    """
    policy = _policy(schema)
    files = expand_paths(paths)
    if report_file is not None and os.path.realpath(report_file) in {os.path.realpath(f) for f in files}:
        msg = f"--report {report_file} is one of the files to validate; write the findings somewhere else"
        raise InputError(msg, path=report_file)
    report = _report(limits, report_file)
    with _completing(report):
        validator = _Validator(limits, policy, report.add)
        for path in files:
            log.debug("validating %s", path)
            with open_input(path) as handle:
                try:
                    validator.file(str(path), handle)
                except OSError as exc:
                    msg = f"cannot read {path}: {describe_oserror(exc)}"
                    raise InputError(msg, path=path) from None
        validator.stats_into(report.stats)
    return report


def check_lines(
    lines: Iterable[LineInput] | BinaryIO,
    *,
    emit: Emit,
    file: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    file_checks: bool = False,
) -> Stats:
    """Validate lines (in memory, or a binary file read block by block), handing every finding to ``emit``
    as it is found, in line order; return the counts. For callers that place findings themselves (``shard``,
    held and retried lines), so nothing is kept in memory."""
    validator = _Validator(limits, None, emit)
    if isinstance(lines, io.BufferedIOBase | io.RawIOBase):
        validator.file(file, cast("BinaryIO", lines), file_checks=file_checks)
    else:
        validator.lines(file, (_as_bytes(line) for line in lines), file_checks=file_checks)
    stats = Stats()
    validator.stats_into(stats)
    return stats


def _policy(schema: SchemaInput) -> Policy | None:
    if schema is None or isinstance(schema, Policy):
        return schema
    return load_policy(schema)


def _report(limits: Limits, report_file: str | Path | None) -> Report:
    report = Report(limits=limits)
    if report_file is not None:
        report.stream_to(report_file)
    return report


class _completing:
    """Complete the report's findings file on success; drop it on failure."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.report.close()
        else:
            self.report.discard()


class _Unencodable(bytes):
    """An in-memory line that cannot be serialized as JSON; its bytes are the reason."""


def _as_bytes(line: LineInput) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode("utf-8", "surrogatepass")
    try:
        if isinstance(line, BaseModel):
            return orjson.dumps(line.model_dump(mode="json", by_alias=True, exclude_none=True))
        if isinstance(line, Mapping) and not isinstance(line, dict):
            line = dict(line)
        return orjson.dumps(line)  # any other JSON value is reported as what it is (not-an-object)
    except (TypeError, ValueError, RecursionError) as exc:  # orjson.JSONEncodeError is a TypeError
        return _Unencodable(str(exc).encode())


class _Seen:
    """The request_ids seen so far and where each was first seen (file index << _LINE_BITS | line).

    While no id repeats, the ids are kept in a set, with the places of whole runs of lines (a run's first place
    and its ids), which is several times faster than a dict of a million ids; the first repeat turns the runs
    into a dict of places, once, and from then on every id goes there.
    """

    def __init__(self) -> None:
        self._set: set[str] = set()
        self._runs: list[tuple[int, list[str]]] = []
        self._places: dict[str, int] | None = None

    def add_all(self, ids: list[str], first: int) -> bool:
        """Remember ids seen at places ``first``, ``first + 1``, ... unless one repeats (then False)."""
        places = self._places
        if places is None:
            seen = self._set
            before = len(seen)
            seen.update(ids)
            if len(seen) == before + len(ids):
                self._runs.append((first, ids))
                return True
            # Some id repeats: from here on, places (built from the earlier runs only, so these ids are
            # forgotten again, and their lines judged one by one).
            self._places = self._materialize()
            return False
        if len(set(ids)) != len(ids) or not places.keys().isdisjoint(ids):
            return False
        places.update(zip(ids, range(first, first + len(ids)), strict=True))
        return True

    def add(self, request_id: str, place: int) -> int | None:
        """Remember one id; if it was seen before, the place where, else None."""
        if self._places is None:
            if request_id not in self._set:
                self._set.add(request_id)
                self._runs.append((place, [request_id]))
                return None
            self._places = self._materialize()
        first = self._places.get(request_id)
        if first is None:
            self._places[request_id] = place
        return first

    def _materialize(self) -> dict[str, int]:
        places: dict[str, int] = {}
        for first, ids in self._runs:
            for offset, request_id in enumerate(ids):
                places.setdefault(request_id, first + offset)
        self._set, self._runs = set(), []
        return places


@dataclass
class _File:
    """The running counts of one file."""

    name: str | None
    base: int  # file index << _LINE_BITS
    lineno: int = 0
    size: int = 0
    records: int = 0
    valid: int = 0
    crlf: int = 0
    first_crlf: int = 0
    unreadable: bool = False  # UTF-16, compressed...: only lines and bytes are counted

    def crlf_at(self, lineno: int) -> None:
        self.crlf += 1
        self.first_crlf = self.first_crlf or lineno


class _Validator:
    """One validation run: the findings go to ``emit``; the request_ids seen so far across all its files."""

    def __init__(self, limits: Limits, policy: Policy | None, emit: Emit) -> None:
        self.limits = limits
        self.policy = policy
        self.emit = emit
        self.totals = Stats()
        self.files: list[str | None] = []
        self.ids = _Seen()
        self.gate = gate(limits.endpoint, tuple(limits.known_models))

    def stats_into(self, stats: Stats) -> None:
        for name in ("files", "lines", "records", "valid_records", "bytes"):
            setattr(stats, name, getattr(stats, name) + getattr(self.totals, name))

    def _add(
        self,
        code: str,
        message: str,
        file: str | None,
        line: int | None,
        *,
        severity: Severity = "error",
        request_id: str | None = None,
        pointer: str | None = None,
    ) -> None:
        self.emit(
            Finding(
                code=code,
                severity=severity,
                message=message,
                file=file,
                line=line,
                request_id=request_id,
                pointer=pointer or None,
            )
        )

    def _open(self, name: str | None) -> _File:
        state = _File(name, len(self.files) << _LINE_BITS)
        self.files.append(name)
        return state

    # -- whole inputs ----------------------------------------------------------------------------------------

    def file(self, name: str | None, handle: BinaryIO, *, file_checks: bool = True) -> None:
        """Validate a binary file read block by block."""
        state = self._open(name)
        for item in blocks(handle, self.limits.max_bytes + 2):
            if isinstance(item, TooLong):
                self._too_long(state, item.length)
            elif state.unreadable or (state.lineno == 0 and self._unreadable_start(state, item)):
                state.lineno += item.count(b"\n") + (not item.endswith(b"\n"))
                state.size += len(item)
            else:
                self._block(state, item)
        self._finish(state, file_checks)

    def lines(self, name: str | None, lines: Iterable[bytes], *, file_checks: bool = True) -> None:
        """Validate lines given one by one (each with or without its line ending)."""
        state = self._open(name)
        it = iter(lines)
        while chunk := list(islice(it, _CHUNK_LINES)):
            if state.unreadable:
                state.lineno += len(chunk)
                state.size += sum(map(len, chunk))
            else:
                self._chunk(state, chunk)
        self._finish(state, file_checks)

    def _unreadable_start(self, state: _File, block: bytes) -> bool:
        for magic, what, fix in _UNREADABLE:
            if block.startswith(magic):
                self._add("not-utf8", f"the file is {what}, so no line can be read; {fix}", state.name, 1)
                state.unreadable = True
                return True
        return False

    def _finish(self, state: _File, file_checks: bool) -> None:
        totals = self.totals
        totals.files += 1
        totals.lines += state.lineno
        totals.records += state.records
        totals.valid_records += state.valid
        totals.bytes += state.size
        if state.crlf:
            self._add(
                "crlf-line-endings",
                f"{state.crlf} line(s) end with CR LF (first: line {state.first_crlf}); Sync documents LF line "
                "endings, so save the file with LF (Unix) line endings to be safe",
                state.name,
                state.first_crlf,
                severity="warning",
            )
        if file_checks and not state.unreadable:
            self._file_findings(state.name, state.records, state.size)

    # -- many lines at once ----------------------------------------------------------------------------------

    def _block(self, state: _File, block: bytes) -> None:
        """A block of whole lines: cleared at once by the gate when every line is clean, else line by line."""
        max_bytes = self.limits.max_bytes
        if (
            self.policy is None
            and block[:3] != _BOM
            and (len(block) <= max_bytes or max(map(len, block.split(b"\n"))) <= max_bytes)
        ):
            cleared = self.gate.block(block)
            if cleared is not None and self._remember_all(state, cleared[0]):
                count = len(cleared[0])
                if not cleared[1] and (crlf := block.count(b"\r\n")):
                    state.crlf += crlf
                    first = block.count(b"\n", 0, block.find(b"\r\n")) + 1
                    state.first_crlf = state.first_crlf or state.lineno + first
                state.lineno += count
                state.size += len(block)
                state.records += count
                state.valid += count
                return
        lines = split_lines(block)
        for start in range(0, len(lines), _CHUNK_LINES):
            self._chunk(state, lines[start : start + _CHUNK_LINES])

    def _remember_all(self, state: _File, ids: list[str]) -> bool:
        """Remember the request_ids of the lines after ``state.lineno`` when none repeats; False if one does."""
        return self.ids.add_all(ids, state.base + state.lineno + 1)

    def _chunk(self, state: _File, chunk: list[bytes]) -> None:
        """Up to a chunk of lines: the gate judges each, then only the ones it did not clear are examined."""
        ids = self.gate.lines(chunk)
        if (
            self.policy is None
            and None not in ids
            and max(map(len, chunk)) <= self.limits.max_bytes
            and self._remember_all(state, cast("list[str]", ids))
        ):
            if any(map(bytes.endswith, chunk, repeat(b"\r\n"))):
                for i, raw in enumerate(chunk, state.lineno + 1):
                    if raw.endswith(b"\r\n"):
                        state.crlf_at(i)
            state.lineno += len(chunk)
            state.size += sum(map(len, chunk))
            state.records += len(chunk)
            state.valid += len(chunk)
            return
        for raw, request_id in zip(chunk, ids, strict=True):
            if state.unreadable:
                state.lineno += 1
                state.size += len(raw)
            elif request_id is not None and len(raw) <= self.limits.max_bytes:
                self._cleared(state, raw, request_id)
            else:
                self._line(state, raw)

    # -- one line --------------------------------------------------------------------------------------------

    def _cleared(self, state: _File, raw: bytes, request_id: str) -> None:
        """A line the gate cleared: all that is left is its line ending, its request_id's uniqueness and the
        user's policy."""
        state.lineno += 1
        state.size += len(raw)
        state.records += 1
        if raw.endswith(b"\r\n"):
            state.crlf_at(state.lineno)
        clean = self.policy is None or self._policy_findings(
            self.policy, orjson.loads(raw), state.name, state.lineno, request_id
        )
        if self._remember(state, request_id):
            state.valid += clean

    def _remember(self, state: _File, request_id: str) -> bool:
        """Remember a line's request_id; report it and return False when it was used before."""
        first = self.ids.add(request_id, state.base | state.lineno)
        if first is None:
            return True
        self._duplicate(request_id, first, state.name, state.lineno)
        return False

    def _too_long(self, state: _File, length: int) -> None:
        state.lineno += 1
        state.size += length
        state.records += 1
        size = length - 1  # without its newline (a last line without one is a byte longer still)
        self._add(
            "line-too-large",
            f"line is at least {size:,} bytes, over the {self.limits.max_bytes:,}-byte file limit on its own; "
            "shorten it (scripts, URLs) or raise the limit",
            state.name,
            state.lineno,
        )

    def _line(self, state: _File, raw: bytes) -> None:
        """A line the gate did not clear: find everything wrong with it."""
        state.lineno += 1
        lineno = state.lineno
        state.size += len(raw)
        file = state.name
        if isinstance(raw, _Unencodable):
            state.records += 1
            self._add("invalid-json", f"cannot be written as JSON: {raw.decode()}", file, lineno)
            return
        if raw[-1:] == b"\n":
            raw = raw[:-1]
            if raw[-1:] == b"\r":
                raw = raw[:-1]
                state.crlf_at(lineno)
        if lineno == 1 and self._unreadable_start(state, raw):
            return
        if lineno == 1 and raw[:3] == _BOM:
            self._add(
                "utf8-bom",
                "the file starts with a UTF-8 byte-order mark, which JSON parsers refuse; "
                "save it as UTF-8 without BOM",
                file,
                1,
            )
            raw = raw[3:]
        if not raw.strip():
            self._add("blank-line", "blank line; remove it (every line must be one record)", file, lineno)
            return
        state.records += 1
        if len(raw) > self.limits.max_bytes:
            self._add(
                "line-too-large",
                f"line is {len(raw):,} bytes, over the {self.limits.max_bytes:,}-byte file limit on its own; "
                "shorten it (scripts, URLs) or raise the limit",
                file,
                lineno,
            )
            return
        clean, request_id = self._examine(raw, file, lineno)
        if request_id is not None and not self._remember(state, request_id):
            clean = False
        state.valid += clean

    def _duplicate(self, request_id: str, first: int, file: str | None, lineno: int) -> None:
        first_file = self.files[first >> _LINE_BITS]
        first_line = first & ((1 << _LINE_BITS) - 1)
        where = f"line {first_line}" if first_file == file else f"{first_file} line {first_line}"
        self._add(
            "duplicate-request-id",
            f"request_id {request_id!r} is already used at {where}; request_ids must be unique",
            file,
            lineno,
            request_id=request_id,
            pointer="/request_id",
        )

    def _file_findings(self, file: str | None, records: int, size: int) -> None:
        limits = self.limits
        if records == 0:
            self._add("empty-file", "the file holds no records; a batch needs at least one", file, None)
        elif records < limits.min_records:
            self._add(
                "too-few-records",
                f"{records} record(s); a batch needs at least {limits.min_records} "
                f"({limits.min_records - records} more): merge files or send these one by one",
                file,
                None,
            )
        elif records > limits.max_records:
            self._add(
                "too-many-records",
                f"{records} records; a batch holds at most {limits.max_records}: split it with `batchkit shard`",
                file,
                None,
            )
        if size > limits.max_bytes:
            self._add(
                "file-too-large",
                f"{size:,} bytes; a batch file holds at most {limits.max_bytes:,}: split it with `batchkit shard`",
                file,
                None,
            )

    def _examine(self, raw: bytes, file: str | None, lineno: int) -> tuple[bool, str | None]:
        """The slow path: report everything wrong with one line (without its line ending).

        Returns whether no finding is an error, and the line's request_id when it is a usable one.
        """
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"byte {exc.start + 1} of the line (0x{raw[exc.start]:02x}) is not UTF-8; save the file as UTF-8"
            self._add("not-utf8", message, file, lineno)
            return False, None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._add("invalid-json", f"not valid JSON: {_json_error(raw, exc)}", file, lineno)
            return False, None
        request_id = obj.get("request_id") if isinstance(obj, dict) else None
        if not isinstance(request_id, str) or request_id_problem(request_id) is not None:
            request_id = None
        clean = True
        for problem in _problems(raw, obj, self.limits):
            clean = clean and problem.severity != "error"
            self._add(
                problem.code,
                problem.message,
                file,
                lineno,
                severity=problem.severity,
                request_id=request_id,
                pointer=problem.pointer,
            )
        if self.policy is not None:
            clean = self._policy_findings(self.policy, obj, file, lineno, request_id) and clean
        return clean, request_id

    def _policy_findings(
        self, policy: Policy, obj: Any, file: str | None, lineno: int, request_id: str | None
    ) -> bool:
        clean = True
        for where, message in policy.problems(obj):
            clean = False
            self._add("policy", message, file, lineno, request_id=request_id, pointer=where)
        return clean


def _problems(raw: bytes, obj: Any, limits: Limits) -> list[Problem]:
    """Every problem of a parsed line: duplicate keys (from its text), then the wire rules (imported on the
    first line that needs them: a clean file never builds the pydantic models)."""
    from .._wire.rules import duplicate_keys, line_problems

    try:
        return duplicate_keys(raw) + line_problems(obj, limits)
    except RecursionError:
        return [Problem("invalid-json", "", "the line is nested too deeply to check; flatten it")]


def _json_error(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Why orjson refused a line, in words."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        return f"a NUL byte at column {nul + 1}"
    if "depth" in str(exc) or "recursion" in str(exc).lower():
        return "it is nested more than 1,024 levels deep (arrays or objects inside each other)"
    return str(exc)
