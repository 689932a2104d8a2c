"""How a sandbox behaves: outcome rules, injected faults and the frozen :class:`SandboxConfig`.

Everything here is plain pydantic (no web stack), so the configuration can be built, validated and shown
without the ``sandbox`` extra installed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._wire.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "DEMO_RULES",
    "FAULT_KINDS",
    "ROUTES",
    "Fault",
    "FaultKind",
    "Outcome",
    "Rule",
    "SandboxConfig",
]

Outcome = Literal["FAILED", "REJECTED", "MISSING"]
FaultKind = Literal["status", "reset_before_accept", "reset_after_accept", "malformed_json", "slow"]
FAULT_KINDS: Final[tuple[str, ...]] = (
    "status",
    "reset_before_accept",
    "reset_after_accept",
    "malformed_json",
    "slow",
)

#: Every route the sandbox answers, as ``"METHOD /template"``: the keys of request counts and of faults.
ROUTES: Final[tuple[str, ...]] = (
    "POST /v2/batch",
    "GET /v2/batch",
    "GET /v2/batch/{id}",
    "GET /v2/batches/{id}/result",
    "POST /v2/generate",
    "GET /v2/generate/{id}",
    "GET /_signed/results/{name}",
    "POST /v2/generations/estimate",
    "POST /v2/analyze/cost",
)


#: USD per second of input, by model: the sandbox's made-up prices (not Sync's).
SANDBOX_PRICES: Final[Mapping[str, float]] = {
    "lipsync-1.9.0-beta": 0.04,
    "lipsync-2": 0.05,
    "lipsync-2-pro": 0.08,
    "react-1": 0.10,
    "sync-3": 0.12,
}


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class Rule(BaseModel):
    """A deterministic outcome for every request whose input URL (or TTS script) matches ``pattern``.

    ``pattern`` is a regular expression, searched (``re.search``) in each input ``url`` and each text
    input's ``provider.script``; the first rule that matches a request decides it. ``FAILED`` and
    ``REJECTED`` give the output line that status and ``error: {"code": error_code, "message": message}``;
    ``MISSING`` leaves the request out of output.jsonl entirely, as a server that lost a row would.

    >>> Rule(pattern=r"[?&]sandbox=fail\\b", outcome="FAILED", error_code="generation_pipeline_failed").outcome
    'FAILED'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(min_length=1)
    outcome: Outcome
    error_code: str = ""
    message: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            _compiled(value)
        except re.error as exc:
            msg = f"pattern {value!r} is not a valid regular expression: {exc}"
            raise ValueError(msg) from exc
        return value

    @model_validator(mode="after")
    def _needs_code(self) -> Self:
        if self.outcome != "MISSING" and not self.error_code:
            msg = f"a {self.outcome} rule needs an error_code (for example generation_pipeline_failed)"
            raise ValueError(msg)
        return self

    def matches(self, texts: list[str]) -> bool:
        """True when the pattern occurs in any of ``texts``."""
        regex = _compiled(self.pattern)
        return any(regex.search(text) for text in texts)

    @property
    def effective_message(self) -> str:
        return self.message or f"sandbox rule {self.pattern!r} matched this request"


DEMO_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        pattern=r"[?&]sandbox=fail\b",
        outcome="FAILED",
        error_code="generation_pipeline_failed",
        message="The generation pipeline failed (sandbox rule: sandbox=fail in an input URL).",
    ),
    Rule(
        pattern=r"[?&]sandbox=reject\b",
        outcome="REJECTED",
        error_code="generation_media_metadata_missing",
        message="Could not read the media metadata of an input (sandbox rule: sandbox=reject in an input URL).",
    ),
    Rule(
        pattern=r"[?&]sandbox=timeout\b",
        outcome="FAILED",
        error_code="generation_timeout",
        message="The generation timed out (sandbox rule: sandbox=timeout in an input URL).",
    ),
    Rule(
        pattern=r"[?&]sandbox=inaccessible\b",
        outcome="REJECTED",
        error_code="generation_input_video_inaccessible",
        message="An input could not be downloaded (sandbox rule: sandbox=inaccessible in an input URL).",
    ),
    Rule(pattern=r"[?&]sandbox=missing\b", outcome="MISSING"),
)
"""The default rules: add ``?sandbox=fail`` (or ``reject``, ``timeout``, ``inaccessible``, ``missing``) to
any input URL to get that outcome. The error codes are the ones Sync documents (sync-api.md §6.3)."""


class Fault(BaseModel):
    """A scripted misbehaviour for the next matching request(s), injected with ``Sandbox.inject``.

    ``route`` is ``"METHOD /template"`` as in :data:`ROUTES` (``"POST /v2/batch"``,
    ``"GET /v2/batch/{id}"`` ...) or ``"*"`` for every API route. ``times`` is how many matching requests it
    applies to (``None``: every one until ``Sandbox.clear_faults()``). Kinds:

    * ``status``: answer ``status`` (default 503) without reaching the handler; the body is ``body`` as
      text when given, else Sync's JSON error shape (a 429 also gets ``Retry-After``).
    * ``reset_before_accept``: read the request, then drop the connection; nothing is created.
    * ``reset_after_accept``: handle the request (a batch is created), then drop the connection without
      any HTTP response. This is the create a journal must reconcile.
    * ``malformed_json``: handle the request, then answer 200 with a truncated JSON body.
    * ``slow``: sleep ``delay`` seconds, then handle the request normally (it still takes effect even if
      the client has given up by then).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str = "*"
    kind: FaultKind
    status: int = Field(default=503, ge=400, le=599)
    times: int | None = Field(default=1, ge=1)
    delay: float = Field(default=0.0, ge=0)
    body: str | None = None
    error_code: str | None = None
    retry_after: int | None = Field(default=None, ge=0)

    @field_validator("route")
    @classmethod
    def _known_route(cls, value: str) -> str:
        if value != "*" and value not in ROUTES:
            msg = f"unknown route {value!r}; use '*' or one of: {', '.join(ROUTES)}"
            raise ValueError(msg)
        return value

    def applies_to(self, route: str) -> bool:
        return self.route in ("*", route)


class SandboxConfig(BaseModel):
    """Everything that shapes a sandbox's answers. Frozen; derive a changed copy with :meth:`replace`.

    Timing: a batch of ``n`` requests is ``PENDING`` for ``pending_seconds`` after it is created, then
    ``PROCESSING`` while its requests finish one after another, one every ``seconds_per_generation``; it is
    terminal at ``pending_seconds + n × seconds_per_generation`` (defaults: 0.2 + 29 × 0.005 ≈ 0.35 s for
    29 records, 2.7 s for 500). A single generation takes ``pending_seconds + seconds_per_generation``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_keys: tuple[str, ...] | None = Field(
        default=None, description="accepted x-api-key values; None accepts any non-empty key"
    )
    batch_access: bool = Field(default=True, description="False answers 402 to batch creates (lower plans)")
    limits: Limits = Field(default=DEFAULT_LIMITS, description="what an upload must satisfy")
    pending_seconds: float = Field(default=0.2, ge=0, description="PENDING time before processing starts")
    seconds_per_generation: float = Field(
        default=0.005, ge=0, description="time each request of a batch takes, one after another"
    )
    rules: tuple[Rule, ...] = Field(default=DEMO_RULES, description="outcome rules; first match wins")
    rate_limit_share: float = Field(default=0.0, ge=0, le=1, description="share of API requests answered 429")
    server_error_share: float = Field(
        default=0.0, ge=0, le=1, description="share of API requests answered 500, 502 or 503"
    )
    concurrency_limit: int | None = Field(
        default=None,
        ge=1,
        description="most PENDING/PROCESSING batches; more answer 429 concurrency_limit_reached",
    )
    latency: float = Field(
        default=0.0,
        ge=0,
        description=(
            "seconds every API request takes, spent after its body is read: a create the client gives up on "
            "meanwhile is still made, as a real server goes on working"
        ),
    )
    foreign_batches: int = Field(
        default=0,
        ge=0,
        description="each create is preceded by this many batches of the same size made by someone else on the account",
    )
    finished_on_create: bool = Field(
        default=False, description="batches are already COMPLETED/FAILED when the create answers"
    )
    seed: int = Field(default=0, description="seeds fault shares, output order and output details")
    webhook_secret: str = Field(default="whsec_sandbox", min_length=1, description="Sync-Signature key")
    result_requires_key: bool = Field(
        default=True, description="the outputUrl redirect needs x-api-key (the signed URL never does)"
    )
    webhook_timeout: float = Field(default=5.0, gt=0, description="seconds before a delivery is abandoned")
    webhooks_to_loopback_only: bool = Field(
        default=True, description="deliver webhooks only to loopback hosts; others are recorded as skipped"
    )
    prices: dict[str, float] = Field(
        default_factory=lambda: dict(SANDBOX_PRICES),
        description="USD per second of input by model, for the estimate endpoints (sandbox prices, not Sync's)",
    )
    output_url_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="how long a signed outputUrl stays valid on the output host, by the sandbox clock",
    )

    @field_validator("api_keys")
    @classmethod
    def _non_empty_keys(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or any(not key for key in value)):
            msg = "api_keys must be None (accept any key) or a tuple of non-empty keys"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _shares(self) -> Self:
        if self.rate_limit_share + self.server_error_share > 1:
            msg = (
                f"rate_limit_share ({self.rate_limit_share}) + server_error_share ({self.server_error_share}) "
                "is more than 1"
            )
            raise ValueError(msg)
        return self

    def replace(self, **changes: Any) -> SandboxConfig:
        """A validated copy with ``changes`` applied."""
        return SandboxConfig.model_validate({**dict(self), **changes})

    def __repr_args__(self) -> Any:
        # The accepted keys are secrets in spirit even in a sandbox: show how many, never which.
        for name, value in super().__repr_args__():
            if name == "api_keys" and value is not None:
                yield name, f"<{len(value)} key(s)>"
            elif name == "webhook_secret":
                yield name, "<hidden>"
            else:
                yield name, value
