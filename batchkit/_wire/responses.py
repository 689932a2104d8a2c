"""What batchkit reads: Batch objects, generations, output.jsonl lines and webhook payloads.

These models are lenient (``sync-api.md`` §4, §7): unknown keys are kept, both ``created_at``/``createdAt``,
``error_code``/``errorCode`` and snake or camel metric keys are accepted, and statuses are open strings
(the constants below name the documented ones). Python attribute names are snake_case throughout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)

__all__ = [
    "BATCH_STATUSES",
    "BATCH_TERMINAL",
    "GENERATION_STATUSES",
    "GENERATION_TERMINAL",
    "Batch",
    "BatchMetrics",
    "BatchWebhook",
    "DryRunResult",
    "Generation",
    "GenerationWebhook",
    "OutputError",
    "OutputLine",
]

BATCH_STATUSES: Final = ("PENDING", "JOBS_CREATED", "PROCESSING", "COMPLETED", "FAILED")
BATCH_TERMINAL: Final = frozenset({"COMPLETED", "FAILED"})
GENERATION_STATUSES: Final = (
    "PENDING",
    "PROCESSING",
    "COMPLETED",
    "FAILED",
    "REJECTED",
    "CANCELED",
    "TIMED_OUT",
)
GENERATION_TERMINAL: Final = frozenset({"COMPLETED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT"})


class _Lenient(BaseModel):
    model_config = ConfigDict(
        extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        """A null means "not given": without this, ``{"error_code": null, "errorCode": "x"}`` would lose "x",
        because an alias choice takes the first key present."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


def _text(value: Any) -> Any:
    """A readable string from what servers put in message fields: text, a list of texts, ``{message}``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(str(_text(v)) for v in value)
    if isinstance(value, dict):
        return _text(value.get("message") or value.get("code") or value.get("error_code") or None)
    return str(value)


def _or_default(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Keep what parses; a value that does not parse reads as unknown (None) instead of failing the object."""
    try:
        return handler(value)
    except ValidationError:
        return None


def _number_as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _count(value: Any) -> Any:
    return 0 if value is None else value


#: Free text: a string, a list of strings (joined with "; "), or an object's ``message``.
Text = Annotated[str | None, BeforeValidator(_text)]
#: A timestamp, or None when absent or unparseable.
When = Annotated[datetime | None, WrapValidator(_or_default)]
#: A number of seconds, or None when absent or unparseable.
Seconds = Annotated[float | None, WrapValidator(_or_default)]
#: A count; null reads as 0.
Count = Annotated[int, BeforeValidator(_count)]


class BatchMetrics(_Lenient):
    """Progress counts of a batch (snake_case on the wire; camelCase in the webhook example)."""

    total_generations: Count = Field(
        default=0, validation_alias=AliasChoices("total_generations", "totalGenerations")
    )
    success_count: Count = Field(default=0, validation_alias=AliasChoices("success_count", "successCount"))
    failed_count: Count = Field(default=0, validation_alias=AliasChoices("failed_count", "failedCount"))
    pending_count: Count = Field(default=0, validation_alias=AliasChoices("pending_count", "pendingCount"))

    @property
    def done(self) -> int:
        """Generations that reached an end, successful or not."""
        return self.success_count + self.failed_count


class Batch(_Lenient):
    """A batch as ``GET /v2/batch/{id}`` returns it."""

    id: str
    status: str
    created_at: When = Field(default=None, validation_alias=AliasChoices("created_at", "createdAt"))
    metrics: BatchMetrics = Field(default_factory=BatchMetrics)
    webhook_url: str | None = Field(default=None, validation_alias=AliasChoices("webhookUrl", "webhook_url"))
    output_url: str | None = Field(default=None, validation_alias=AliasChoices("outputUrl", "output_url"))

    @property
    def is_terminal(self) -> bool:
        return self.status in BATCH_TERMINAL


class BatchWebhook(Batch):
    """The batch notification POSTed to ``webhook_url``: a Batch, in either casing."""


class DryRunResult(_Lenient):
    """The answer to a dry run that passed: ``{"status": "VALIDATED"}``."""

    status: str = "VALIDATED"


_TEXT_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string"}, {"type": "array"}, {"type": "object"}, {"type": "null"}],
    "description": "a message: text, a list of texts, or an object with a message",
}
_ERROR_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"code": _TEXT_SCHEMA, "message": _TEXT_SCHEMA},
        },
        {"type": "string"},
        {"type": "array"},
        {"type": "null"},
    ],
    "description": "why the request failed: {code, message}, a message, or null",
}


class Generation(_Lenient):
    """A generation as ``GET /v2/generate/{id}`` returns it, and the ``response`` of an output line."""

    id: str | None = None
    status: str | None = None
    model: str | None = None
    created_at: When = Field(default=None, validation_alias=AliasChoices("createdAt", "created_at"))
    input: list[Any] | None = None
    options: dict[str, Any] | None = None
    segments: list[Any] | None = None
    output_url: str | None = Field(
        default=None, validation_alias=AliasChoices("outputUrl", "output_url", "outputMediaUrl")
    )
    output_duration: Seconds = Field(
        default=None, validation_alias=AliasChoices("outputDuration", "output_duration")
    )
    segment_output_url: str | None = Field(
        default=None, validation_alias=AliasChoices("segmentOutputUrl", "segment_output_url")
    )
    webhook_url: str | None = Field(default=None, validation_alias=AliasChoices("webhookUrl", "webhook_url"))
    error: Annotated[Text, WithJsonSchema(_TEXT_SCHEMA)] = None
    error_code: Text = Field(default=None, validation_alias=AliasChoices("error_code", "errorCode"))


class GenerationWebhook(Generation):
    """The generation notification POSTed to a payload's ``webhookUrl``."""


class OutputError(_Lenient):
    """A line's ``error``, normalised from a string, ``{code, message}`` or null."""

    code: Text = None
    message: Text = None


class OutputLine(_Lenient):
    """One line of a batch's output.jsonl. Only ``request_id`` is required."""

    request_id: Annotated[str, BeforeValidator(_number_as_text)]
    endpoint: str | None = None
    payload: dict[str, Any] | None = None
    status: Text = None
    error: Annotated[OutputError | None, WithJsonSchema(_ERROR_SCHEMA)] = None
    error_code: Text = Field(default=None, validation_alias=AliasChoices("error_code", "errorCode"))
    response: Generation | None = None
    updated_at: When = Field(default=None, validation_alias=AliasChoices("updated_at", "updatedAt"))

    @field_validator("error", mode="before")
    @classmethod
    def _normalise_error(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, dict):
            code = value.get("code", value.get("errorCode", value.get("error_code")))
            return {**value, "code": code}
        return {"message": value}

    @property
    def effective_status(self) -> str | None:
        """The line's ``status``, or else the embedded generation's."""
        if self.status:
            return self.status.upper()
        if self.response is not None and self.response.status:
            return self.response.status.upper()
        return None

    @property
    def effective_error_code(self) -> str | None:
        if self.error is not None and self.error.code:
            return self.error.code
        if self.error_code:
            return self.error_code
        return self.response.error_code if self.response is not None else None

    @property
    def effective_error_message(self) -> str | None:
        if self.error is not None and self.error.message:
            return self.error.message
        return self.response.error if self.response is not None else None
