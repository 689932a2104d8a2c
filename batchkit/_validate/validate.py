"""The dry-run validator: batch JSONL in, a :class:`Report` with every finding out.

Files are streamed a chunk of lines at a time, so memory does not grow with file size or the number of files
(only with the number of distinct ``request_id``s, which the duplicate check must remember). A bad line never
stops the rest: every line gets all of its findings, then the file gets its own (record count, byte size).

Most lines are clean; they are cleared by the ``msgspec`` gate of ``_fastpath`` at close to the speed of
parsing. Every other line is examined by ``_rules``, which says exactly what is wrong and where.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice, repeat
from pathlib import Path
from typing import Any, cast

import orjson
from pydantic import BaseModel

from .._errors import InputError
from .._report import Finding, Report, Severity
from .._wire.checks import request_id_problem
from .._wire.limits import DEFAULT_LIMITS, Limits
from .._wire.rules import line_problems
from .fastpath import fast_request_ids
from .policy import Policy, load_policy

__all__ = ["expand_paths", "validate_file", "validate_files", "validate_lines"]

log = logging.getLogger("batchkit")

_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_CHUNK_LINES = 1024
_CHUNK_BYTES = 1 << 19  # a chunk read from a file: whole lines up to about this many bytes
_LINE_BITS = 32  # a remembered request_id's place: file index << _LINE_BITS | line number

LineInput = bytes | str | Mapping[str, Any] | BaseModel
SchemaInput = Policy | str | Path | Mapping[str, Any] | None


def validate_lines(
    lines: Iterable[LineInput],
    *,
    file: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    schema: SchemaInput = None,
    file_checks: bool = True,
) -> Report:
    """Validate batch lines given in memory: bytes or str (one JSON line each), dicts, or models.

    ``file`` names them in findings; ``file_checks=False`` skips the whole-file checks (record count, bytes),
    for checking lines one at a time.
    """
    validator = _Validator(limits, _policy(schema))
    validator.run(file, (_as_bytes(line) for line in lines), file_checks=file_checks)
    return validator.report


def validate_file(path: str | Path, *, limits: Limits = DEFAULT_LIMITS, schema: SchemaInput = None) -> Report:
    """Validate one batch JSONL file as Sync would receive it."""
    return validate_files([path], limits=limits, schema=schema)


def validate_files(
    paths: Iterable[str | Path], *, limits: Limits = DEFAULT_LIMITS, schema: SchemaInput = None
) -> Report:
    """Validate a set of files (directories stand for their ``*.jsonl``) as one submission.

    Besides each file's own findings, a ``request_id`` used in two files of the set is reported too.
    Raises :class:`InputError` for a missing path or a directory without ``.jsonl`` files.
    """
    validator = _Validator(limits, _policy(schema))
    for path in expand_paths(paths):
        log.debug("validating %s", path)
        try:
            with path.open("rb") as handle:
                validator.run(str(path), handle)
        except OSError as exc:
            msg = f"cannot read {path}: {exc.strerror or exc}"
            raise InputError(msg, path=path) from exc
    return validator.report


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories as their ``*.jsonl`` in name order; a clear error for what does not exist.

    A file named twice (directly, or also through its directory) is validated once.
    """
    out: dict[Path, Path] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.jsonl") if p.is_file())
            if not found:
                msg = f"{path} has no .jsonl files; give batch files or a directory that holds them"
                raise InputError(msg, path=path)
            for file in found:
                out.setdefault(file.resolve(), file)
        elif path.exists():
            out.setdefault(path.resolve(), path)
        else:
            msg = f"no such file or directory: {path}"
            raise InputError(msg, path=path)
    return list(out.values())


def _policy(schema: SchemaInput) -> Policy | None:
    if schema is None or isinstance(schema, Policy):
        return schema
    return load_policy(schema)


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
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        return _Unencodable(str(exc).encode())


def _chunks(lines: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Lines a chunk at a time; a binary file is read with ``readlines`` (in C) up to a byte budget."""
    if isinstance(lines, io.BufferedIOBase):
        while chunk := lines.readlines(_CHUNK_BYTES):
            yield chunk
        return
    it = iter(lines)
    while chunk := list(islice(it, _CHUNK_LINES)):
        yield chunk


class _Validator:
    """One validation run: the report, and the request_ids seen so far across all of its files."""

    def __init__(self, limits: Limits, policy: Policy | None) -> None:
        self.limits = limits
        self.policy = policy
        self.report = Report(limits=limits)
        self.files: list[str | None] = []
        self.seen: dict[str, int] = {}  # request_id → file index << _LINE_BITS | line
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
        limits = self.limits
        max_bytes = limits.max_bytes
        endpoint = limits.endpoint
        models = self._models
        seen = self.seen
        policy = self.policy
        base = len(self.files) << _LINE_BITS
        self.files.append(file)
        size = records = valid = lineno = crlf = first_crlf = 0
        utf16 = False
        for chunk in _chunks(lines):
            if utf16:  # nothing of the file can be read: count its lines and bytes only
                lineno += len(chunk)
                size += sum(map(len, chunk))
                continue
            ids = fast_request_ids(chunk, endpoint, models)
            if policy is None and None not in ids and max(map(len, chunk)) <= max_bytes:
                # Every line of the chunk is clean but perhaps for its line ending and its request_id's
                # uniqueness: settle those for the whole chunk at once when no id repeats.
                clean_ids = cast("list[str]", ids)
                places = range(base + lineno + 1, base + lineno + 1 + len(chunk))
                if len(set(clean_ids)) == len(clean_ids) and seen.keys().isdisjoint(clean_ids):
                    seen.update(zip(clean_ids, places, strict=True))
                    if any(map(bytes.endswith, chunk, repeat(b"\r\n"))):
                        for i, raw in enumerate(chunk, lineno + 1):
                            if raw.endswith(b"\r\n"):
                                crlf += 1
                                first_crlf = first_crlf or i
                    lineno += len(chunk)
                    size += sum(map(len, chunk))
                    records += len(chunk)
                    valid += len(chunk)
                    continue
            for raw, request_id in zip(chunk, ids, strict=True):
                lineno += 1
                length = len(raw)
                size += length
                if utf16:
                    continue
                if request_id is not None and length <= max_bytes:
                    # The gate cleared the line: all that is left is its line ending and its request_id's
                    # uniqueness (and the user's policy).
                    records += 1
                    if raw.endswith(b"\r\n"):
                        crlf += 1
                        first_crlf = first_crlf or lineno
                    clean = policy is None or self._policy_findings(
                        policy, orjson.loads(raw), file, lineno, request_id
                    )
                    first = seen.get(request_id)
                    if first is None:
                        seen[request_id] = base | lineno
                        valid += clean
                    else:
                        self._duplicate(request_id, first, file, lineno)
                    continue
                if isinstance(raw, _Unencodable):
                    records += 1
                    self._add("invalid-json", f"cannot be written as JSON: {raw.decode()}", file, lineno)
                    continue
                if raw[-1:] == b"\n":
                    raw = raw[:-1]
                    if raw[-1:] == b"\r":
                        raw = raw[:-1]
                        crlf += 1
                        first_crlf = first_crlf or lineno
                if lineno == 1 and raw.startswith(_UTF16_BOMS):
                    self._add(
                        "not-utf8",
                        "the file is UTF-16 (it starts with a UTF-16 byte-order mark), so no line can be read; "
                        "save it as UTF-8",
                        file,
                        1,
                    )
                    utf16 = True
                    continue
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
                    self._add(
                        "blank-line", "blank line; remove it (every line must be one record)", file, lineno
                    )
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
                clean, request_id = self._examine(raw, file, lineno)
                if request_id is not None:
                    first = seen.get(request_id)
                    if first is None:
                        seen[request_id] = base | lineno
                    else:
                        self._duplicate(request_id, first, file, lineno)
                        clean = False
                valid += clean
        stats = self.report.stats
        stats.files += 1
        stats.lines += lineno
        stats.records += records
        stats.valid_records += valid
        stats.bytes += size
        if crlf:
            self._add(
                "crlf-line-endings",
                f"{crlf} line(s) end with CR LF (first: line {first_crlf}); Sync documents LF line endings, "
                "so save the file with LF (Unix) line endings to be safe",
                file,
                first_crlf,
                severity="warning",
            )
        if file_checks and not utf16:
            self._file_findings(file, records, size)

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
