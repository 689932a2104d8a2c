"""Reading a batch's output.jsonl leniently (``sync-api.md`` §4.5–4.6).

Only ``request_id`` is required. The status comes from the line, or else from ``response.status``; ``error``
may be a string, ``{code, message}`` or null; the code may be ``error_code`` or ``errorCode`` on the line, in
``error``, or in the response. A line that cannot be read is a finding with file and line, never a crash.

Most lines are decoded by ``msgspec`` into the few fields batchkit needs; a line with unexpected types takes a
slower, tolerant path through :class:`batchkit.OutputLine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
from pydantic import ValidationError

from ._report import Finding
from ._responses import OutputLine

__all__ = ["COLUMNS", "ResultLine", "read_output"]


class _Response(msgspec.Struct):
    id: str | None = None
    status: str | None = None
    outputUrl: str | None = None
    outputMediaUrl: str | None = None
    outputDuration: float | None = None
    error: str | None = None
    error_code: str | None = None
    errorCode: str | None = None


class _Line(msgspec.Struct):
    request_id: str
    status: str | None = None
    error: str | dict[str, Any] | None = None
    error_code: str | None = None
    errorCode: str | None = None
    response: _Response | None = None


_decoder = msgspec.json.Decoder(_Line)
_decode = _decoder.decode
_decode_lines = _decoder.decode_lines


@dataclass(frozen=True, slots=True)
class ResultLine:
    """What batchkit keeps of one output line."""

    request_id: str
    status: str | None
    error_code: str | None
    error_message: str | None
    output_url: str | None
    output_duration: float | None
    generation_id: str | None
    line: int


def _fast(line: _Line, lineno: int) -> ResultLine:
    response = line.response
    error = line.error
    code = line.error_code or line.errorCode
    message: str | None = None
    if isinstance(error, dict):
        raw = error.get("code", error.get("errorCode", error.get("error_code")))
        code = str(raw) if raw is not None else code
        text = error.get("message")
        message = str(text) if text is not None else None
    elif error:
        message = error
    status = line.status
    if response is not None:
        status = status or response.status
        code = code or response.error_code or response.errorCode
        message = message or response.error
    return ResultLine(
        request_id=line.request_id,
        status=status.upper() if status else None,
        error_code=code,
        error_message=message,
        output_url=(response.outputUrl or response.outputMediaUrl) if response is not None else None,
        output_duration=response.outputDuration if response is not None else None,
        generation_id=response.id if response is not None else None,
        line=lineno,
    )


def _tolerant(obj: dict[str, Any], lineno: int) -> ResultLine:
    parsed = OutputLine.model_validate(obj)
    response = parsed.response
    return ResultLine(
        request_id=parsed.request_id,
        status=parsed.effective_status,
        error_code=parsed.effective_error_code,
        error_message=parsed.effective_error_message,
        output_url=response.output_url if response is not None else None,
        output_duration=response.output_duration if response is not None else None,
        generation_id=response.id if response is not None else None,
        line=lineno,
    )


#: The columns :func:`read_output` returns, in order.
COLUMNS: tuple[str, ...] = (
    "request_id",
    "result_status",
    "error_code",
    "error_message",
    "output_url",
    "output_duration",
    "generation_id",
    "result_line",
)


def read_output(path: str | Path) -> tuple[dict[str, list[Any]], list[Finding]]:
    """Every readable line of an output.jsonl as columns (:data:`COLUMNS`), and a finding per unreadable line."""
    data = Path(path).read_bytes()
    if data.strip() and b"\n\n" not in data and not data.startswith(b"\n"):
        try:  # the common case: every line well-formed, decoded in one native pass
            return _columns([_fast(line, n) for n, line in enumerate(_decode_lines(data), 1)]), []
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
    lines, findings = _read_lines(path, data)
    return _columns(lines), findings


def _columns(lines: list[ResultLine]) -> dict[str, list[Any]]:
    return {
        "request_id": [r.request_id for r in lines],
        "result_status": [r.status for r in lines],
        "error_code": [r.error_code for r in lines],
        "error_message": [r.error_message for r in lines],
        "output_url": [r.output_url for r in lines],
        "output_duration": [r.output_duration for r in lines],
        "generation_id": [r.generation_id for r in lines],
        "result_line": [r.line for r in lines],
    }


def _read_lines(path: str | Path, data: bytes) -> tuple[list[ResultLine], list[Finding]]:
    """Line by line, tolerating anything: unreadable lines become findings."""
    file = str(path)
    lines: list[ResultLine] = []
    findings: list[Finding] = []

    def finding(code: str, lineno: int | None, message: str) -> None:
        findings.append(Finding(code=code, severity="error", message=message, file=file, line=lineno))

    if not data.strip():
        finding(
            "empty-output", None, "the output file is empty; every request of its batch counts as missing"
        )
        return lines, findings
    chunks = data.split(b"\n")
    truncated = not data.endswith(b"\n")
    for lineno, raw in enumerate(chunks, 1):
        if not raw.strip():
            continue
        try:
            lines.append(_fast(_decode(raw), lineno))
            continue
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            last = lineno == len(chunks) and truncated
            code = "truncated-output" if last else "invalid-result-line"
            why = "the file ends mid-line (an interrupted download?)" if last else f"not valid JSON ({exc})"
            finding(code, lineno, f"{why}; this line is ignored")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("request_id"), str) or not obj["request_id"]:
            finding("invalid-result-line", lineno, "the line has no request_id string; it is ignored")
            continue
        # Keep what can be read: drop each unreadable top-level field (saying so), keep the rest.
        while True:
            try:
                lines.append(_tolerant(obj, lineno))
                break
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                key = str(first["loc"][0])
                findings.append(
                    Finding(
                        code="invalid-result-field",
                        severity="warning",
                        message=f"field {'/'.join(map(str, first['loc']))} is unreadable ({first['msg']}); ignored",
                        file=file,
                        line=lineno,
                        request_id=obj["request_id"],
                    )
                )
                obj = {k: v for k, v in obj.items() if k != key}
    return lines, findings
