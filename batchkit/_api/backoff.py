"""When to retry a call to the Batch API, how long to wait first, and how often to poll a running batch.

Two rule sets, because a batch create is not idempotent (Sync's ``Idempotency-Key`` does not cover it):

- **idempotent** calls (GETs, downloads, a generate with an idempotency key) retry on connection errors,
  timeouts, 408, 409, 429 (but not ``concurrency_limit_reached``) and 5xx;
- a **create** retries only when the request certainly did not reach the server (``sent=False``: connect
  errors, connect and pool timeouts) or was refused with a rate-limit 429. A 5xx, a read timeout or a reset
  after the upload may have started a billed batch: those raise at once so the journal can reconcile, and
  ``concurrency_limit_reached`` raises :class:`~batchkit.ConcurrencyLimitError` so the caller waits for a
  running batch instead.

Waits grow exponentially with proportional jitter, and a server's ``Retry-After`` wins (capped). The loop is
a small explicit one rather than ``stamina``: stamina cannot take an injected ``sleep`` (its tenacity core
binds ``time.sleep``) and its test mode zeroes every wait globally, while batchkit's tests and users need to
see and control each requested wait per client.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from .._errors import (
    APIConnectionError,
    APIStatusError,
    ConcurrencyLimitError,
    ConfigurationError,
    RateLimitError,
)

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "NO_RETRY",
    "PollPolicy",
    "RetryPolicy",
    "RetryRule",
    "call_with_retries",
    "is_retryable",
    "parse_retry_after",
]

log = logging.getLogger("batchkit")

T = TypeVar("T")

#: ``idempotent``: safe to resend; ``create``: resend only what certainly did not reach the server.
RetryRule = Literal["idempotent", "create"]

_RETRYABLE_STATUS = frozenset({408, 409, 429})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigurationError(message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try a call and how long to wait between tries.

    The wait before retry *n* (1-based) is ``min(maximum, initial * multiplier ** (n - 1))``, shortened by a
    random share of up to ``jitter`` (0.25: between 75 % and 100 % of it), so that many clients do not retry
    in step. A ``Retry-After`` from the server replaces it, capped at ``max_retry_after``.

    >>> RetryPolicy(jitter=0).backoff(3)
    2.0
    """

    max_attempts: int = 5
    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.25
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        _check(
            self.max_attempts >= 1, f"RetryPolicy.max_attempts must be at least 1, not {self.max_attempts}"
        )
        for name in ("initial", "maximum", "max_retry_after"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0, f"RetryPolicy.{name} must be ≥ 0 s, not {value}")
        _check(self.multiplier >= 1, f"RetryPolicy.multiplier must be at least 1, not {self.multiplier}")
        _check(0 <= self.jitter <= 1, f"RetryPolicy.jitter must be between 0 and 1, not {self.jitter}")

    def backoff(self, retry: int, *, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), jitter included."""
        try:
            base = min(self.maximum, self.initial * self.multiplier ** (retry - 1))
        except OverflowError:
            base = self.maximum
        return float(base * (1 - self.jitter * rand()))

    def delay(
        self, retry: int, retry_after: float | None, *, rand: Callable[[], float] = random.random
    ) -> float:
        """The server's ``Retry-After`` (capped at ``max_retry_after``) when given, else :meth:`backoff`."""
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), self.max_retry_after))
        return self.backoff(retry, rand=rand)


#: Five attempts, 0.5 s doubling up to 30 s, ``Retry-After`` honoured up to 120 s.
DEFAULT_RETRY = RetryPolicy()
#: One attempt: every failure raises at once.
NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """How often to ask for a running batch's status: ``initial`` seconds, times ``factor``, up to ``maximum``.

    >>> from itertools import islice
    >>> list(islice(PollPolicy(initial=5, factor=1.5, maximum=10).delays(), 4))
    [5.0, 7.5, 10.0, 10.0]
    """

    initial: float = 5.0
    factor: float = 1.5
    maximum: float = 60.0

    def __post_init__(self) -> None:
        _check(
            math.isfinite(self.initial) and self.initial >= 0,
            f"PollPolicy.initial must be ≥ 0 s, not {self.initial}",
        )
        _check(self.factor >= 1, f"PollPolicy.factor must be at least 1, not {self.factor}")
        _check(
            self.maximum >= self.initial,
            f"PollPolicy.maximum ({self.maximum}) must be at least initial ({self.initial})",
        )

    def delays(self) -> Iterator[float]:
        """The waits between polls, forever."""
        delay = float(self.initial)
        while True:
            yield float(min(delay, self.maximum))
            delay = min(delay * self.factor, self.maximum)


#: 5 s, then ×1.5 per poll, up to 60 s.
DEFAULT_POLL = PollPolicy()


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds the server asks to wait: ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``.

    None when absent or unreadable; never negative. ``headers`` must be case-insensitive (``httpx.Headers``).

    >>> parse_retry_after({"retry-after": "7"})
    7.0
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def is_retryable(exc: BaseException, rule: RetryRule) -> bool:
    """Whether ``exc`` may be retried under ``rule`` (see the module docstring)."""
    if isinstance(exc, ConcurrencyLimitError):
        return False  # wait for a running batch to finish: the caller's decision, not a retry
    if rule == "create":
        if isinstance(exc, APIConnectionError):
            return not exc.sent
        return isinstance(exc, RateLimitError)
    if isinstance(exc, APIConnectionError):
        return True
    if isinstance(exc, APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500
    return False


def _cause(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return str(status) if status is not None else type(exc).__name__


def call_with_retries(
    func: Callable[[], T],
    *,
    policy: RetryPolicy,
    rule: RetryRule,
    sleep: Callable[[float], None],
    what: str,
    rand: Callable[[], float] = random.random,
) -> T:
    """Call ``func`` until it returns, retrying what ``rule`` allows up to ``policy.max_attempts`` times.

    ``what`` names the call in the DEBUG log lines (``"GET /v2/batch/b_1"``); it must never hold secrets.
    Every wait goes through ``sleep``. The last error is raised unchanged.
    """
    attempt = 1
    while True:
        try:
            return func()
        except (APIConnectionError, APIStatusError) as exc:
            if not is_retryable(exc, rule):
                log.debug("%s: %s on attempt %d, not retryable (%s rule)", what, _cause(exc), attempt, rule)
                raise
            if attempt >= policy.max_attempts:
                log.debug(
                    "%s: %s on attempt %d, giving up after %d attempts", what, _cause(exc), attempt, attempt
                )
                raise
            retry_after = exc.retry_after if isinstance(exc, APIStatusError) else None
            delay = policy.delay(attempt, retry_after, rand=rand)
            log.debug(
                "%s: %s on attempt %d, retrying in %.2f s%s",
                what,
                _cause(exc),
                attempt,
                delay,
                f" (Retry-After {retry_after:g} s)" if retry_after is not None else "",
            )
            sleep(delay)
            attempt += 1
