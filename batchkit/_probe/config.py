"""How a probe behaves: :class:`ProbeConfig` (concurrency, timeouts, budgets, retries) and its deadline clock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .._errors import ConfigurationError
from .._version import __version__

__all__ = ["Deadline", "Parser", "ProbeConfig", "TimeBudgetExceeded"]

#: Which parser reads containers: PyAV when importable (``auto``), or one of them by force.
Parser = Literal["auto", "av", "tinytag"]


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """Limits and politeness of a probe. Every probe of one URL is bounded by ``byte_budget`` and ``time_budget``.

    * ``concurrency`` URLs are probed at once, at most ``per_host`` of them on one host (``host:port`` of the
      URL as given; a redirect's target counts against the host it came from).
    * Each request waits ``connect_timeout`` to connect and ``read_timeout`` between bytes, never past the
      URL's ``time_budget`` (seconds from its first request).
    * A connect error, a timeout, 408, 425, 429 or a 5xx is retried ``retries`` times, after
      ``backoff × 2^n`` seconds (at most ``backoff_max``) or the server's ``Retry-After`` (at most
      ``max_retry_after``); a wait that would pass the time budget is not made.
    * ``byte_budget`` caps the body bytes read per URL (a server that ignores Range is read this far and no
      further); ``block_size`` is the unit of each Range read and ``cache_blocks`` how many are kept.
    * ``head_first`` sends a HEAD before the first Range read even when no cached result needs revalidating
      (by default a HEAD is sent only to revalidate: the first Range read tells the rest).

    >>> ProbeConfig(concurrency=4).per_host
    6
    """

    concurrency: int = 16
    per_host: int = 6
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    time_budget: float = 30.0
    byte_budget: int = 2 << 20
    block_size: int = 64 << 10
    cache_blocks: int = 16
    retries: int = 2
    backoff: float = 0.25
    backoff_max: float = 4.0
    max_retry_after: float = 10.0
    max_redirects: int = 5
    head_first: bool = False
    parser: Parser = "auto"
    user_agent: str = f"batchkit/{__version__} (media probe)"
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("concurrency", "per_host", "byte_budget", "block_size", "cache_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                msg = f"ProbeConfig.{name} must be a positive integer, not {value!r}"
                raise ConfigurationError(msg)
        for name in ("connect_timeout", "read_timeout", "time_budget"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                msg = f"ProbeConfig.{name} must be a positive number of seconds, not {value!r}"
                raise ConfigurationError(msg)
        for name in ("backoff", "backoff_max", "max_retry_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                msg = f"ProbeConfig.{name} must be ≥ 0 seconds, not {value!r}"
                raise ConfigurationError(msg)
        for name in ("retries", "max_redirects"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                msg = f"ProbeConfig.{name} must be an integer ≥ 0, not {value!r}"
                raise ConfigurationError(msg)
        if self.parser not in ("auto", "av", "tinytag"):
            msg = f"ProbeConfig.parser must be 'auto', 'av' or 'tinytag', not {self.parser!r}"
            raise ConfigurationError(msg)


class TimeBudgetExceeded(Exception):
    """A URL's probe ran out of its time budget (internal: the probe reports it as ``media-unreachable``)."""


@dataclass(slots=True)
class Deadline:
    """Seconds left of one URL's time budget, on the config's clock."""

    budget: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return self.budget - self.elapsed()

    def check(self, what: str) -> float:
        """The seconds left; raises :class:`TimeBudgetExceeded` naming ``what`` when none are."""
        left = self.remaining()
        if left <= 0:
            msg = f"{what}: no answer within the probe's time budget of {self.budget:g} s"
            raise TimeBudgetExceeded(msg)
        return left
