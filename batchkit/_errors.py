"""One exception tree for everything batchkit raises.

::

    BatchkitError
    ├── InputError                 a path, source, mapping or option cannot be used (.path .line .row .column)
    ├── ValidationFailed           findings of severity error (.report); defined in _report
    ├── BudgetError                over budget, of unknown cost or not confirmed, before anything was sent
    │                              (.reason .estimate); defined in _probe.budget
    ├── JournalError               the submission journal cannot go on safely (.shard)
    │   ├── AmbiguousSubmissionError   a create may have reached the server and no single batch matches it
    │   └── DirectoryLockedError       another process holds the directory (.pid .host .since)
    ├── ResultsError               results cannot be joined (changed shards, edited manifest)
    ├── ConfigurationError         no API key, a refused base URL
    ├── WebhookVerificationError   a webhook is not a genuine, fresh, well-formed Sync notification (.reason)
    ├── WaitTimeoutError           batches still running when a wait's deadline passed (.batch_id .status)
    └── APIError                   talking to the Batch API went wrong (.method .url)
        ├── APIConnectionError     no answer (.sent: whether the request may have reached the server)
        │   └── APITimeoutError
        └── APIStatusError         a non-2xx answer (.status_code .error_code .message .body .retry_after)
            ├── BadRequestError          400
            ├── AuthenticationError      401
            ├── PaymentRequiredError     402
            ├── NotFoundError            404
            ├── RateLimitError           429
            │   └── ConcurrencyLimitError    429 concurrency_limit_reached: wait for a running batch
            └── ServerError              5xx

The CLI maps ``ValidationFailed`` to exit code 1 and every other ``BatchkitError`` to exit code 2.
No exception ever carries the API key: messages name hosts and paths, never headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "DISTRIBUTION",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousSubmissionError",
    "AuthenticationError",
    "BadRequestError",
    "BatchkitError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "DirectoryLockedError",
    "InputError",
    "JournalError",
    "NotFoundError",
    "PaymentRequiredError",
    "RateLimitError",
    "ResultsError",
    "ServerError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "install_hint",
]


#: The name batchkit is installed by (``pip install sync-batchkit``); ``batchkit`` on PyPI is another project.
DISTRIBUTION = "sync-batchkit"


def install_hint(extra: str) -> str:
    """How to install an optional extra, for messages: ``pip install 'sync-batchkit[excel]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class BatchkitError(Exception):
    """The root of every error batchkit raises on purpose."""


class InputError(BatchkitError):
    """A path, source, mapping or option cannot be used as given."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = str(path) if path is not None else None
        self.line = line
        self.row = row
        self.column = column


class JournalError(BatchkitError):
    """The submission journal cannot go on without risking a double or lost submission."""

    def __init__(self, message: str, *, shard: str | None = None) -> None:
        super().__init__(message)
        self.shard = shard


class AmbiguousSubmissionError(JournalError):
    """A create may have reached the server, and no single listed batch can be matched to it."""


class DirectoryLockedError(JournalError):
    """Another process holds the build directory's lock (one submitter per directory): ``pid``, ``host``,
    ``since`` name it, as far as it wrote them."""

    def __init__(
        self, message: str, *, pid: int | None = None, host: str | None = None, since: str | None = None
    ) -> None:
        super().__init__(message)
        self.pid = pid
        self.host = host
        self.since = since


class ResultsError(BatchkitError):
    """Results cannot be joined back to the source rows."""


class ConfigurationError(BatchkitError):
    """Missing API key, refused base URL, or another setting that stops every call."""


class WebhookVerificationError(BatchkitError):
    """A webhook request is not a genuine, fresh, well-formed Sync notification: answer it with HTTP 400.

    ``reason`` is one stable code: ``malformed-header``, ``expired`` (timestamp outside the tolerance window:
    a replay or a skewed clock), ``mismatch`` (no signature matches the body and secret) or ``invalid-body``
    (not JSON, or not the notification's shape).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class WaitTimeoutError(BatchkitError):
    """Batches were still running when a wait's deadline passed. Waiting again later is safe.

    A single-batch wait (``client.batches.wait``) sets ``batch_id``, its last ``status`` and the last ``batch``.
    """

    def __init__(
        self, message: str, *, batch_id: str | None = None, status: str | None = None, batch: Any = None
    ) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.status = status
        self.batch = batch


class APIError(BatchkitError):
    """Talking to the Batch API went wrong."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class APIConnectionError(APIError):
    """No HTTP answer arrived. ``sent`` says whether the request may have reached the server."""

    def __init__(self, message: str, *, method: str = "", url: str = "", sent: bool = True) -> None:
        super().__init__(message, method=method, url=url)
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class APIStatusError(APIError):
    """The server answered with a non-2xx status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_code: str | None = None,
        server_message: str = "",
        body: Any = None,
        retry_after: float | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.status_code = status_code
        self.error_code = error_code
        self.server_message = server_message
        self.body = body
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400: the server refused the request as invalid."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class PaymentRequiredError(APIStatusError):
    """402: insufficient credits, or a plan without Batch API access (Scale and Enterprise only)."""


class NotFoundError(APIStatusError):
    """404: no such batch or generation."""


class RateLimitError(APIStatusError):
    """429: too many requests; wait and retry."""


class ConcurrencyLimitError(RateLimitError):
    """429 ``concurrency_limit_reached``: too many batches running; wait for one to finish."""


class ServerError(APIStatusError):
    """5xx: the server failed; retry with backoff."""
