"""The dry-run validator: batch JSONL in, a :class:`Report` with every finding out.

Files are streamed line by line, so memory does not grow with file size (only with the number of distinct
``request_id``s, which the duplicate check must remember). A bad line never stops the rest: every line gets
all of its findings, then the file gets its own (record count, byte size).

Most lines are clean; they are cleared by the ``msgspec`` gate of ``_fastpath`` at close to the speed of
parsing. Every other line is examined by ``_rules``, which says exactly what is wrong and where.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from ._checks import request_id_problem
from ._errors import InputError
from ._fastpath import fast_request_id
from ._limits import DEFAULT_LIMITS, Limits
from ._policy import Policy, load_policy
from ._report import Finding, Report, Severity
from ._rules import line_problems

__all__ = ["expand_paths", "validate_file", "validate_files", "validate_lines"]

log = logging.getLogger("batchkit")

_BOM = b"\xef\xbb\xbf"

LineInput = bytes | str | Mapping[str, Any] | BaseModel


def validate_lines(
    lines: Iterable[LineInput],
    *,
    file: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    schema: Policy | str | Path | Mapping[str, Any] | None = None,
    file_checks: bool = True,
) -> Report:
    """Validate batch lines given in memory: bytes or str (one JSON line each), dicts, or models.

    ``file`` names them in findings; ``file_checks=False`` skips the whole-file checks (record count, bytes),
    for checking lines one at a time.
    """
    validator = _Validator(limits, _policy(schema))
    validator.run(file, (_as_bytes(line) for line in lines), file_checks=file_checks)
    return validator.report


def validate_file(
    path: str | Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    schema: Policy | str | Path | Mapping[str, Any] | None = None,
) -> Report:
    """Validate one batch JSONL file as Sync would receive it."""
    return validate_files([path], limits=limits, schema=schema)


def validate_files(
    paths: Iterable[str | Path],
    *,
    limits: Limits = DEFAULT_LIMITS,
    schema: Policy | str | Path | Mapping[str, Any] | None = None,
) -> Report:
    """Validate a set of files (directories stand for their ``*.jsonl``) as one submission.

    Besides each file's own findings, a ``request_id`` used in two files of the set is reported too.
    Raises :class:`InputError` for a missing path or a directory without ``.jsonl`` files.
    """
    validator = _Validator(limits, _policy(schema))
    for path in expand_paths(paths):
        try:
            with path.open("rb") as handle:
                validator.run(str(path), handle)
        except OSError as exc:
            msg = f"cannot read {path}: {exc.strerror or exc}"
            raise InputError(msg, path=path) from exc
    return validator.report


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories as their ``*.jsonl`` in name order; a clear error for what does not exist."""
    out: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.jsonl") if p.is_file())
            if not found:
                msg = f"{path} has no .jsonl files; give batch files or a directory that holds them"
                raise InputError(msg, path=path)
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            msg = f"no such file or directory: {path}"
            raise InputError(msg, path=path)
    return out


def _policy(schema: Policy | str | Path | Mapping[str, Any] | None) -> Policy | None:
    if schema is None or isinstance(schema, Policy):
        return schema
    return load_policy(schema)


def _as_bytes(line: LineInput) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode("utf-8", "surrogatepass")
    if isinstance(line, BaseModel):
        return orjson.dumps(line.model_dump(mode="json", by_alias=True, exclude_none=True))
    return orjson.dumps(line)


class _Validator:
    """One validation run: the report, and the request_ids seen so far across all of its files."""

    def __init__(self, limits: Limits, policy: Policy | None) -> None:
        self.limits = limits
        self.policy = policy
        self.report = Report(limits=limits)
        self.seen: dict[str, tuple[str | None, int]] = {}
        self._models = frozenset(limits.known_models)

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
        self.report.add(
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

    def run(self, file: str | None, lines: Iterable[bytes], *, file_checks: bool = True) -> None:
        """Validate one file's lines (each with or without its line ending)."""
        stats = self.report.stats
        limits = self.limits
        max_bytes = limits.max_bytes
        endpoint = limits.endpoint
        models = self._models
        seen = self.seen
        policy = self.policy
        size = records = valid = lineno = crlf = 0
        first_crlf = 0
        for lineno, raw in enumerate(lines, 1):
            size += len(raw)
            if raw[-1:] == b"\n":
                raw = raw[:-1]
                if raw[-1:] == b"\r":
                    raw = raw[:-1]
                    crlf += 1
                    first_crlf = first_crlf or lineno
            if lineno == 1 and raw[:3] == _BOM:
                self._add(
                    "utf8-bom",
                    "the file starts with a UTF-8 byte-order mark, which JSON parsers refuse; save without BOM",
                    file,
                    1,
                )
                raw = raw[3:]
            if not raw.strip():
                self._add("blank-line", "blank line; remove it (every line must be one record)", file, lineno)
                continue
            records += 1
            if len(raw) > max_bytes:
                self._add(
                    "line-too-large",
                    f"line is {len(raw):,} bytes, over the {max_bytes:,}-byte file limit on its own; "
                    "shorten it (scripts, URLs) or raise the limit",
                    file,
                    lineno,
                )
                continue
            request_id = fast_request_id(raw, endpoint, models)
            if request_id is not None and policy is None:
                clean = True
            else:
                clean, request_id = self._examine(raw, file, lineno, policy)
            if request_id is not None:
                first = seen.setdefault(request_id, (file, lineno))
                if first != (file, lineno):
                    where = f"line {first[1]}" if first[0] == file else f"{first[0]} line {first[1]}"
                    self._add(
                        "duplicate-request-id",
                        f"request_id {request_id!r} is already used at {where}; request_ids must be unique",
                        file,
                        lineno,
                        request_id=request_id,
                        pointer="/request_id",
                    )
                    clean = False
            valid += clean
        stats.files += 1
        stats.lines += lineno
        stats.records += records
        stats.valid_records += valid
        stats.bytes += size
        if crlf:
            self._add(
                "crlf-line-endings",
                f"{crlf} line(s) end with CR LF (first: line {first_crlf}); Sync documents LF line endings",
                file,
                first_crlf,
                severity="warning",
            )
        if file_checks:
            self._file_findings(file, records, size)

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

    def _examine(
        self, raw: bytes, file: str | None, lineno: int, policy: Policy | None
    ) -> tuple[bool, str | None]:
        """The slow path: report everything wrong with one line.

        Returns whether no finding is an error, and the line's request_id when it is a usable one.
        """
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._add(
                "not-utf8",
                f"byte {exc.start + 1} of the line (0x{raw[exc.start]:02x}) is not UTF-8; save the file as UTF-8",
                file,
                lineno,
            )
            return False, None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            nul = raw.find(b"\x00")
            detail = f"a NUL byte at column {nul + 1}" if nul >= 0 else str(exc)
            self._add("invalid-json", f"not valid JSON: {detail}", file, lineno)
            return False, None
        request_id = obj.get("request_id") if isinstance(obj, dict) else None
        if not isinstance(request_id, str) or request_id_problem(request_id) is not None:
            request_id = None
        clean = True
        for problem in line_problems(obj, self.limits):
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
        if policy is not None:
            for where, message in policy.problems(obj):
                clean = False
                self._add("policy", message, file, lineno, request_id=request_id, pointer=where)
        return clean, request_id
