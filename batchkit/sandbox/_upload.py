"""The checks Sync documents for an uploaded batch file, with refusals that name the lines.

The real service refuses a whole file for: bad encoding, a line that is not one JSON object, a record
without ``request_id``/``endpoint``/``payload``, an endpoint other than the profile's, a duplicate
``request_id``, too few or too many records, too many bytes, or dialogue edit rows made from different
videos ("All dialogue edit rows in a batch must come from the same source video", sync.so/docs
batch-api/create-from-rows). It answers 400 with ``message`` as a list of
strings. These checks are written independently of batchkit's own validator on purpose: the sandbox is a
second opinion, so a validator bug cannot hide itself.

A line that passes these checks but whose payload breaks a generate rule is not refused here; the sandbox
turns it into a ``REJECTED`` output line instead (see ``_state``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from .._wire.limits import Limits

__all__ = ["UploadLine", "UploadRefused", "parse_upload"]

MAX_MESSAGES: Final = 100
_BOM: Final = b"\xef\xbb\xbf"
_REQUIRED: Final = ("request_id", "endpoint", "payload")


@dataclass(frozen=True, slots=True)
class UploadLine:
    """One accepted record: its 1-based line number, raw bytes and parsed object."""

    number: int
    request_id: str
    raw: bytes
    obj: dict[str, Any]


class UploadRefused(Exception):
    """The upload breaks a documented rule; ``messages`` name the lines (400 ``message`` list)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def split_lines(data: bytes) -> list[bytes]:
    """The lines of a JSONL file: split on ``\\n``, a final newline ends the last line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def parse_upload(data: bytes, limits: Limits) -> list[UploadLine]:
    """The records of ``data``, or :class:`UploadRefused` with every problem found (at most 100 listed)."""
    messages: list[str] = []
    if len(data) > limits.max_bytes:
        messages.append(
            f"file is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes "
            "(split it into smaller batches)"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        messages.append(f"line {line}: not valid UTF-8 (byte {exc.start}); save the file as UTF-8")
        raise UploadRefused(messages) from None
    records: list[UploadLine] = []
    first_seen: dict[str, int] = {}
    raw_lines = split_lines(data)
    for number, raw in enumerate(raw_lines, start=1):
        problem = _line_problem(number, raw, limits)
        if isinstance(problem, str):
            messages.append(problem)
            continue
        request_id = problem["request_id"]
        first = first_seen.setdefault(request_id, number)
        if first != number:
            messages.append(
                f"line {number}: duplicate request_id {_quote(request_id)} (first on line {first})"
            )
            continue
        records.append(UploadLine(number, request_id, raw, problem))
    messages.extend(_dialogue_sources(records))
    count = len(raw_lines)
    if count < limits.min_records:
        what = "file is empty" if count == 0 else f"file has {count} record(s)"
        messages.append(f"{what}; a batch needs at least {limits.min_records} records")
    elif count > limits.max_records:
        messages.append(f"file has {count} records; a batch holds at most {limits.max_records} records")
    if messages:
        if len(messages) > MAX_MESSAGES:
            hidden = len(messages) - MAX_MESSAGES
            messages = [*messages[:MAX_MESSAGES], f"… and {hidden} more problem(s)"]
        raise UploadRefused(messages)
    return records


def _dialogue_sources(records: list[UploadLine]) -> list[str]:
    """One message per dialogue edit row whose video is not the one of the first such row."""
    first: tuple[int, str] | None = None
    messages: list[str] = []
    for record in records:
        payload = record.obj["payload"]
        if payload.get("dialogueEdit") is None:
            continue
        video = _video_of(payload)
        if first is None:
            first = (record.number, video)
        elif video != first[1]:
            messages.append(
                f"line {record.number}: dialogue edit rows in a batch must come from the same source video "
                f"(line {first[0]} uses {first[1]}, this one {video}); put them in separate batches"
            )
    return messages


def _video_of(payload: dict[str, Any]) -> str:
    """The video input of a payload, as text (its url or assetId; ``none`` when it has none)."""
    items = payload.get("input")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("type") == "video":
            return _show(item.get("url") or item.get("assetId"))
    return "none"


def _line_problem(number: int, raw: bytes, limits: Limits) -> str | dict[str, Any]:
    """The parsed record, or one message saying why line ``number`` cannot be a record."""
    if number == 1 and raw.startswith(_BOM):
        return "line 1: starts with a byte order mark (BOM); save the file as UTF-8 without BOM"
    if not raw.strip():
        return f"line {number}: empty line; every line must hold one JSON object"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return f"line {number}: is a JSON {_kind(obj)}; every line must be one JSON object"
    missing = [key for key in _REQUIRED if key not in obj]
    if missing:
        return f"line {number}: missing {', '.join(_quote(k) for k in missing)}"
    request_id = obj["request_id"]
    if not isinstance(request_id, str) or not request_id:
        return f"line {number}: request_id must be a non-empty string"
    if obj["endpoint"] != limits.endpoint:
        return f"line {number}: endpoint must be {_quote(limits.endpoint)} (got {_show(obj['endpoint'])})"
    if not isinstance(obj["payload"], dict):
        return f"line {number}: payload must be a JSON object (got a JSON {_kind(obj['payload'])})"
    return obj


def _quote(text: str) -> str:
    return orjson.dumps(text).decode()


def _show(value: Any, limit: int = 60) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
