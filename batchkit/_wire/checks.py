"""Value checks shared by the models, the validator and the builder.

Each is a plain predicate over one value, so the pydantic models, the fast validation path and the builder
apply exactly the same rule. The JSON Schema patterns beside them say the same in schema form.
"""

from __future__ import annotations

import re

__all__ = [
    "EMOTIONS",
    "IMAGE_MODEL",
    "MAX_REQUEST_ID_LENGTH",
    "MODEL_MODES",
    "OUTPUT_FILE_NAME_PATTERN",
    "REQUEST_ID_PATTERN",
    "SYNC_MODES",
    "URL_PATTERN",
    "is_http_url",
    "is_output_file_name",
    "request_id_problem",
]

#: The documented values of the open enumerations of ``options`` (sync-api.md §3.4). Others are warnings.
SYNC_MODES = ("bounce", "loop", "cut_off", "silence", "remap")
MODEL_MODES = ("lips", "face", "head")
EMOTIONS = ("happy", "sad", "angry", "disgusted", "surprised", "neutral")
#: The one model that takes image inputs: "Image inputs are sync-3 only." (sync.so/docs generate-api).
IMAGE_MODEL = "sync-3"

#: JSON Schema form of :func:`is_http_url`. The function is a little stricter: it also refuses invisible
#: characters (zero-width spaces, other format characters) that a pattern cannot name portably.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#\x00-\x1f\x7f][^\s\x00-\x1f\x7f]*$"
OUTPUT_FILE_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,255}$"
#: JSON Schema form of :func:`request_id_problem`: no control characters, no whitespace at either end. The
#: function is a little stricter: it also refuses invisible and non-ASCII space characters anywhere.
REQUEST_ID_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
MAX_REQUEST_ID_LENGTH = 256

_OUTPUT_FILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


def is_http_url(value: str) -> bool:
    """True for an absolute ``http``/``https`` URL with a host and no whitespace or invisible characters."""
    head = value[:8].lower()
    if head == "https://":
        start = 8
    elif head[:7] == "http://":
        start = 7
    else:
        return False
    return len(value) > start and value[start] not in "/?#" and " " not in value and value.isprintable()


def is_output_file_name(value: str) -> bool:
    """True when Sync accepts ``value`` as ``outputFileName``: 1–255 of ``A-Z a-z 0-9 _ -``."""
    return _OUTPUT_FILE_NAME.fullmatch(value) is not None


def request_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a ``request_id``, or None when it can."""
    if not value:
        return "is empty"
    if len(value) > MAX_REQUEST_ID_LENGTH:
        return f"is {len(value)} characters long (at most {MAX_REQUEST_ID_LENGTH})"
    if not value.isprintable():
        return "contains control or invisible characters"
    if value.strip() != value:
        return "has leading or trailing whitespace"
    return None
