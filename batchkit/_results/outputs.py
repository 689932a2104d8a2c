"""A batch's output.jsonl: where it is kept, fetching it once, and reading it leniently (``sync-api.md`` §4.4–4.6).

Each finished batch's results are kept as ``DIR/results/<batch_id>.output.jsonl``. :func:`download_results`
fetches the missing ones (through :meth:`batchkit.Client.batches.download`, which tries without the API key
first and never sends it to another host); a file exists there only once complete, so it is never fetched
again. A refused or vanished link (an expired signature) is asked for afresh once.

Sync documents each line as ``{"request_id", "endpoint", "payload", "status", "error", "response",
"updated_at"}`` with ``response`` a Generation, but promises neither the order of the lines nor the exact
shape, so the reader requires only ``request_id`` (``requestId`` and a number are accepted too) and reads:

* the status from the line's ``status``, or else from ``response.status`` (upper-cased);
* ``error`` as a string, a ``{code, message}`` object, a list of messages, or null;
* the error code from ``error.code`` (or ``errorCode`` / ``error_code`` inside it), else the line's
  ``error_code`` / ``errorCode``, else the response's;
* the output URL (``outputUrl``, ``outputMediaUrl`` or ``output_url``), the duration (a number, or a number in
  a string) and the generation id from ``response``.

Unknown keys are never a problem (they are skipped). Nothing in a file is fatal: an unreadable line is an
``invalid-result-line`` finding (``truncated-output`` when the file ends mid-line, ``empty-output`` for a file
without lines), a field of an unexpected type is an ``invalid-result-field`` warning and the rest of the line
is kept. Every finding names the file and the line.

Most files are decoded in one native pass by ``msgspec`` into just the fields batchkit needs; a file with
anything unexpected is read again line by line through the tolerant path, which reaches the same values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson

from .._api.client import Client, given_or_default
from .._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    InputError,
    PaymentRequiredError,
    ResultsError,
)
from .._files import describe_oserror, open_input
from .._report import Finding
from .._shard.builddir import output_file
from .._submit.binding import open_journal
from .._submit.journal import Journal, ShardRecord
from .._submit.lock import try_directory_lock
from .._submit.reconcile import Reconciler
from .._submit.submit import reconciler, refresh
from .._wire.checks import MAX_REQUEST_ID_LENGTH
from .._wire.crossfield import show

__all__ = [
    "COLUMNS",
    "MAX_OUTPUT_BYTES",
    "OutputUnreadable",
    "ResultLine",
    "download_outputs",
    "download_results",
    "normalise_line",
    "output_path",
    "read_output",
]

log = logging.getLogger("batchkit")

_BOM: Final = b"\xef\xbb\xbf"


class _Response(msgspec.Struct):
    id: str | None = None
    status: str | None = None
    outputUrl: str | None = None
    outputMediaUrl: str | None = None
    output_url: str | None = None
    outputDuration: float | None = None
    output_duration: float | None = None
    error: str | None = None
    error_code: str | None = None
    errorCode: str | None = None


class _Error(msgspec.Struct):
    code: str | None = None
    errorCode: str | None = None
    error_code: str | None = None
    message: str | None = None


class _Line(msgspec.Struct):
    request_id: str
    status: str | None = None
    error: str | _Error | None = None
    error_code: str | None = None
    errorCode: str | None = None
    response: _Response | None = None


_decoder = msgspec.json.Decoder(_Line)


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


#: The columns :func:`read_output` returns, in order.
COLUMNS: Final[tuple[str, ...]] = (
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
    """Every readable line of an output.jsonl as columns (:data:`COLUMNS`), and the findings of the rest.

    The columns hold one entry per readable line, in file order; ``result_line`` is the 1-based line number.
    Raises nothing for bad content; a file that cannot be read (not a regular file, permissions, larger than
    :data:`MAX_OUTPUT_BYTES`) raises :class:`OutputUnreadable`.
    """
    data = _read(Path(path))
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if data.strip():
        try:  # the common case: every line well-formed, decoded in one native pass
            decoded = _decoder.decode_lines(data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            decoded = None
        # msgspec skips blank lines and accepts two objects on one line: then line numbers would be off
        if decoded is not None and len(decoded) == data.count(b"\n") + (not data.endswith(b"\n")):
            columns = _fast_columns(decoded)
            if (
                "" not in columns["request_id"]
                and max(map(len, columns["request_id"])) <= MAX_REQUEST_ID_LENGTH
            ):
                return columns, _status_findings(str(path), columns)
    lines, findings = _read_lines(str(path), data)
    columns = _columns(lines)
    findings.extend(_status_findings(str(path), columns))
    findings.sort(key=lambda f: f.line or 0)
    return columns, findings


#: The largest output.jsonl read (a batch's results are a few MB; more is not a batch's output).
MAX_OUTPUT_BYTES: Final = 1 << 30


class OutputUnreadable(ResultsError):
    """An output file that cannot be read at all; its message says why."""


def _read(path: Path) -> bytes:
    try:
        with open_input(path, what="output file") as handle:
            data = handle.read(MAX_OUTPUT_BYTES + 1)
    except InputError as exc:
        raise OutputUnreadable(str(exc).split("; ")[0]) from None
    except OSError as exc:
        msg = f"cannot read {path}: {describe_oserror(exc)}"
        raise OutputUnreadable(msg) from None
    if len(data) > MAX_OUTPUT_BYTES:
        msg = f"{path} is larger than {MAX_OUTPUT_BYTES:,} bytes, more than any batch's results"
        raise OutputUnreadable(msg)
    return data


# -- downloading ---------------------------------------------------------------------------------------------


def output_path(directory: Path, shard: ShardRecord) -> Path | None:
    """Where a submitted shard's results live once downloaded (None until its batch has finished)."""
    if shard.state != "submitted" or shard.batch_id is None or not shard.terminal:
        return None
    return directory / output_file(shard.batch_id)


def download_results(directory: str | Path, *, client: Client | None = None) -> list[Path]:
    """Fetch the output.jsonl of every finished batch into ``DIR/results/``; return the files fetched now.

    Statuses are refreshed first. A file appears only once complete (the client writes a temporary file and
    renames it), so one already on disk is never fetched again. Every batch is tried; if some could not be
    fetched, :class:`ResultsError` names them afterwards (the others are on disk).
    """
    folder = Path(directory)
    with (
        given_or_default(client) as api,
        try_directory_lock(folder, "batchkit results") as held,
        open_journal(folder, client=api) as journal,
    ):
        checker = reconciler(folder, journal, api, None) if held else None
        fetched, failures = download_outputs(folder, journal, api, checker)
    if failures:
        details = "; ".join(f"{file}: {why}" for file, why in failures.items())
        msg = f"could not download the results of {len(failures)} batch(es) ({details}); run it again later"
        raise ResultsError(msg)
    return fetched


def download_outputs(
    folder: Path, journal: Journal, api: Client, ctx: Reconciler | None = None
) -> tuple[list[Path], dict[str, str]]:
    """Refresh the journal's statuses, then fetch every finished batch's missing output file.

    With ``ctx`` (the directory's lock is held) adopted batches are checked by content and uncertain shards
    looked for again first. Returns the files fetched now and, per shard file, why its results could not be
    fetched.
    """
    fetched: list[Path] = []
    failures: dict[str, str] = {}
    for shard in refresh(journal, api, ctx):
        dest = output_path(folder, shard)
        if dest is None or not shard.output_url or dest.exists() or shard.provisional:
            continue  # (a provisional batch's output is fetched by its check by content, in refresh)
        log.info("downloading the results of %s (%s)", shard.file, shard.batch_id)
        try:
            fetched.append(_fetch(journal, api, shard, dest))
        except (AuthenticationError, PaymentRequiredError):
            raise  # the same for every batch: stop and say so
        except (APIError, ResultsError) as exc:
            log.warning("could not download the results of %s (%s): %s", shard.file, shard.batch_id, exc)
            failures[shard.file] = str(exc)
    return fetched, failures


def _fetch(journal: Journal, api: Client, shard: ShardRecord, dest: Path) -> Path:
    """Download once; if the link was refused or is gone (an expired signature), ask for a fresh one."""
    assert shard.output_url is not None
    assert shard.batch_id is not None
    try:
        return api.batches.download(shard.output_url, dest)
    except (APIStatusError, APIConnectionError) as exc:
        if isinstance(exc, APIStatusError) and exc.status_code not in (403, 404, 410):
            raise  # (a link that cannot be reached at all may be stale too: a sandbox restarted elsewhere)
        batch = api.batches.get(shard.batch_id)
        journal.record_status(
            shard.file, status=batch.status, metrics=batch.metrics.model_dump(), output_url=batch.output_url
        )
        if not batch.output_url:
            raise
        log.info("the results link of %s failed (%s); asking again", shard.batch_id, exc)
        return api.batches.download(batch.output_url, dest)


# -- the fast path: msgspec structs straight into columns ------------------------------------------------------


def _fast_columns(lines: list[_Line]) -> dict[str, list[Any]]:
    ids: list[str] = []
    statuses: list[str | None] = []
    codes: list[str | None] = []
    messages: list[str | None] = []
    urls: list[str | None] = []
    durations: list[float | None] = []
    generations: list[str | None] = []
    for line in lines:
        response = line.response
        error = line.error
        status = line.status
        code = None
        message = None
        if error is not None:
            if isinstance(error, str):
                message = error or None
            else:
                code = error.code or error.errorCode or error.error_code
                message = error.message or None
        code = code or line.error_code or line.errorCode
        if response is None:
            urls.append(None)
            durations.append(None)
            generations.append(None)
        else:
            status = status or response.status
            code = code or response.error_code or response.errorCode
            message = message or response.error or None
            urls.append(response.outputUrl or response.outputMediaUrl or response.output_url or None)
            duration = response.outputDuration
            durations.append(duration if duration is not None else response.output_duration)
            generations.append(response.id or None)
        ids.append(line.request_id)
        statuses.append(status.upper() if status else None)
        codes.append(code or None)
        messages.append(message)
    return {
        "request_id": ids,
        "result_status": statuses,
        "error_code": codes,
        "error_message": messages,
        "output_url": urls,
        "output_duration": durations,
        "generation_id": generations,
        "result_line": list(range(1, len(ids) + 1)),
    }


# -- the tolerant path: one line at a time, any shape --------------------------------------------------------


def _read_lines(file: str, data: bytes) -> tuple[list[ResultLine], list[Finding]]:
    lines: list[ResultLine] = []
    findings: list[Finding] = []
    if not data.strip():
        findings.append(
            Finding(
                code="empty-output",
                severity="error",
                file=file,
                message=(
                    "the output file has no result lines; every request of its batch counts as missing. "
                    "If the batch really finished, delete the file and download it again"
                ),
            )
        )
        return lines, findings
    chunks = data.split(b"\n")
    ends_mid_line = not data.endswith(b"\n")
    last = len(chunks)
    for lineno, raw in enumerate(chunks, 1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if lineno == last and ends_mid_line:
                code = "truncated-output"
                why = (
                    "the file ends in the middle of this line (an interrupted download?); delete the file "
                    "and download it again"
                )
            else:
                code = "invalid-result-line"
                why = f"the line is not valid JSON ({exc}); it is ignored"
            findings.append(Finding(code=code, severity="error", file=file, line=lineno, message=why))
            continue
        result, problems = normalise_line(obj, lineno)
        findings.extend(p.model_copy(update={"file": file}) for p in problems)
        if result is not None:
            lines.append(result)
    return lines, findings


def normalise_line(obj: Any, lineno: int = 1) -> tuple[ResultLine | None, list[Finding]]:
    """One decoded output line → what batchkit keeps of it, and findings (without a file) for what it cannot.

    Returns ``(None, [invalid-result-line])`` when the line has no usable ``request_id``.
    """
    findings: list[Finding] = []
    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "null"
        findings.append(_line_finding(lineno, f"the line is a JSON {kind}, not an object; it is ignored"))
        return None, findings
    raw_id = obj.get("request_id", obj.get("requestId"))
    request_id = raw_id if isinstance(raw_id, str) else _number_text(raw_id)
    if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
        why = "has no request_id" if raw_id is None else f"has an unusable request_id ({_show(raw_id)})"
        findings.append(_line_finding(lineno, f"the line {why}, so it cannot be matched; it is ignored"))
        return None, findings

    def text(value: Any, where: str) -> str | None:
        found, ok = _text(value)
        if not ok:
            findings.append(_field_finding(lineno, request_id, where, value))
        return found

    status = text(obj.get("status"), "status")
    code = message = None
    error = obj.get("error")
    if isinstance(error, dict):
        code = _first(text(error.get(k), f"error/{k}") for k in ("code", "errorCode", "error_code"))
        message = text(error.get("message"), "error/message")
    else:
        message = text(error, "error")
    code = code or _first(text(obj.get(k), k) for k in ("error_code", "errorCode"))
    url = duration = generation_id = None
    response = obj.get("response")
    if isinstance(response, dict):
        status = status or text(response.get("status"), "response/status")
        code = code or _first(text(response.get(k), f"response/{k}") for k in ("error_code", "errorCode"))
        message = message or text(response.get("error"), "response/error")
        for key in ("outputUrl", "outputMediaUrl", "output_url"):
            value = response.get(key)
            if isinstance(value, str) and value:
                url = url or value
            elif value is not None and value != "":
                findings.append(_field_finding(lineno, request_id, f"response/{key}", value))
        for key in ("outputDuration", "output_duration"):
            value = response.get(key)
            seconds = _seconds(value)
            if seconds is None and value is not None:
                findings.append(_field_finding(lineno, request_id, f"response/{key}", value))
            duration = duration if duration is not None else seconds
        generation_id = text(response.get("id"), "response/id")
    elif response is not None:
        findings.append(_field_finding(lineno, request_id, "response", response))
    result = ResultLine(
        request_id=request_id,
        status=status.upper() if status else None,
        error_code=code or None,
        error_message=message or None,
        output_url=url,
        output_duration=duration,
        generation_id=generation_id or None,
        line=lineno,
    )
    return result, findings


_TEXT_DEPTH: Final = 8  # how deep a message-like value is searched for text


def _text(value: Any, depth: int = 0) -> tuple[str | None, bool]:
    """A readable string from a message-like value, and whether the value was readable at all (a value
    nested deeper than a few levels is not)."""
    if value is None:
        return None, True
    if isinstance(value, str):
        return value or None, True
    number = _number_text(value)
    if number is not None:
        return number, True
    if depth >= _TEXT_DEPTH:
        return None, False
    if isinstance(value, list):
        parts = [_text(v, depth + 1) for v in value[:100]]
        if all(ok for _, ok in parts) and len(value) <= 100:
            return "; ".join(p for p, _ in parts if p) or None, True
        return None, False
    if isinstance(value, dict):
        for key in ("message", "code", "errorCode", "error_code"):
            found, ok = _text(value.get(key), depth + 1)
            if found and ok:
                return found, True
        return None, not value
    return None, False


def _number_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(value)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _first(values: Any) -> str | None:
    for value in values:
        if value:
            return str(value)
    return None


def _show(value: Any) -> str:
    try:
        shown = orjson.dumps(value).decode() if not isinstance(value, dict | list) else show(value, 60)
    except orjson.JSONEncodeError:
        shown = show(value, 60)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _line_finding(lineno: int, message: str) -> Finding:
    return Finding(code="invalid-result-line", severity="error", line=lineno, message=message)


def _field_finding(lineno: int, request_id: str, where: str, value: Any) -> Finding:
    return Finding(
        code="invalid-result-field",
        severity="warning",
        line=lineno,
        request_id=request_id,
        pointer=f"/{where}",
        message=f"{where} has a value batchkit cannot read ({_show(value)}); it is ignored, the rest of the line is used",
    )


def _status_findings(file: str, columns: dict[str, list[Any]]) -> list[Finding]:
    """A warning for each kept line that does not say how its request ended, or completed without a video."""
    findings: list[Finding] = []
    statuses, urls = columns["result_status"], columns["output_url"]
    if None not in statuses and None not in urls:
        return findings
    for i, status in enumerate(statuses):
        if status is None and all(
            columns[c][i] is None for c in ("output_url", "error_code", "error_message")
        ):
            why = (
                "the line has no status (neither status nor response.status), no output URL and no error; "
                "its request counts as failed (result-without-status)"
            )
        elif status == "COMPLETED" and urls[i] is None:
            why = "the line says COMPLETED but gives no output URL; its request counts as completed without a video"
        else:
            continue
        findings.append(
            Finding(
                code="invalid-result-field",
                severity="warning",
                file=file,
                line=columns["result_line"][i],
                request_id=columns["request_id"][i],
                pointer="/status" if status is None else "/response/outputUrl",
                message=why,
            )
        )
    return findings


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
