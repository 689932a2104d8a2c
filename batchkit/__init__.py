"""batchkit: turn tabular data into Sync Labs lipsync Batch API files and back.

The pipeline, one stage per module: sources → mapping → build → validate → shard → submit → results.
The public API is what ``__all__`` lists; every module whose name starts with ``_`` is private.

Names are imported on first use, so ``import batchkit`` (and every CLI command) loads only what it needs:
validating a file never imports polars or httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._build import build
    from ._client import (
        DEFAULT_BASE_URL,
        Batches,
        Client,
        Generations,
    )
    from ._errors import (
        AmbiguousSubmissionError,
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        BatchkitError,
        ConcurrencyLimitError,
        ConfigurationError,
        InputError,
        JournalError,
        NotFoundError,
        PaymentRequiredError,
        RateLimitError,
        ResultsError,
        ServerError,
        ValidationFailed,
        WaitTimeoutError,
        WebhookVerificationError,
    )
    from ._journal import GenerationRecord, ShardRecord
    from ._limits import DEFAULT_LIMITS, KNOWN_MODELS, Limits
    from ._manifest import (
        BuildCounts,
        Manifest,
        ShardInfo,
        SourceInfo,
        load_manifest,
        verify_shards,
    )
    from ._mapping import Mapping, load_mapping
    from ._models import (
        ActiveSpeakerDetection,
        AudioInput,
        BatchLine,
        ElevenLabsProvider,
        GeneratePayload,
        GenerationOptions,
        Segment,
        SegmentAudioInput,
        TextInput,
        VideoInput,
    )
    from ._plan import plan_shards
    from ._policy import Policy, load_policy
    from ._realtime import RealtimeEvent, RealtimeResult, realtime_results, send_realtime
    from ._report import (
        CODES,
        Finding,
        Report,
        Stats,
    )
    from ._responses import (
        BATCH_STATUSES,
        BATCH_TERMINAL,
        GENERATION_STATUSES,
        GENERATION_TERMINAL,
        Batch,
        BatchMetrics,
        BatchWebhook,
        DryRunResult,
        Generation,
        GenerationWebhook,
        OutputError,
        OutputLine,
    )
    from ._results import (
        OUTCOMES,
        Results,
        collect_results,
        download_results,
    )
    from ._retry import (
        DEFAULT_POLL,
        DEFAULT_RETRY,
        NO_RETRY,
        PollPolicy,
        RetryPolicy,
    )
    from ._retry_failed import RetryResult, retry_failed
    from ._run import RunResult, run, run_pipeline
    from ._schemas import json_schema, write_schemas
    from ._shard import BuildResult, shard_file
    from ._sources import Source, read_source
    from ._submit import (
        DryRunVerdict,
        SubmitEvent,
        SubmitResult,
        resolve,
        status,
        submit,
        wait,
    )
    from ._validate import validate_file, validate_files, validate_lines
    from ._webhooks import (
        SIGNATURE_HEADER,
        parse_batch_webhook,
        parse_generation_webhook,
        sign_payload,
        verify_signature,
    )

#: Private module → the public names it defines.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "_errors": (
        "AmbiguousSubmissionError",
        "APIConnectionError",
        "APIError",
        "APIStatusError",
        "APITimeoutError",
        "AuthenticationError",
        "BadRequestError",
        "BatchkitError",
        "ConcurrencyLimitError",
        "ConfigurationError",
        "InputError",
        "JournalError",
        "NotFoundError",
        "PaymentRequiredError",
        "RateLimitError",
        "ResultsError",
        "ServerError",
        "ValidationFailed",
        "WaitTimeoutError",
        "WebhookVerificationError",
    ),
    "_limits": (
        "DEFAULT_LIMITS",
        "KNOWN_MODELS",
        "Limits",
    ),
    "_models": (
        "ActiveSpeakerDetection",
        "AudioInput",
        "BatchLine",
        "ElevenLabsProvider",
        "GeneratePayload",
        "GenerationOptions",
        "Segment",
        "SegmentAudioInput",
        "TextInput",
        "VideoInput",
    ),
    "_report": (
        "CODES",
        "Finding",
        "Report",
        "Stats",
    ),
    "_validate": (
        "validate_file",
        "validate_files",
        "validate_lines",
    ),
    "_policy": (
        "Policy",
        "load_policy",
    ),
    "_schemas": (
        "json_schema",
        "write_schemas",
    ),
    "_responses": (
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
    ),
    "_sources": (
        "Source",
        "read_source",
    ),
    "_mapping": (
        "Mapping",
        "load_mapping",
    ),
    "_build": ("build",),
    "_plan": ("plan_shards",),
    "_shard": (
        "BuildResult",
        "shard_file",
    ),
    "_manifest": (
        "BuildCounts",
        "Manifest",
        "ShardInfo",
        "SourceInfo",
        "load_manifest",
        "verify_shards",
    ),
    "_client": (
        "DEFAULT_BASE_URL",
        "Batches",
        "Client",
        "Generations",
    ),
    "_retry": (
        "DEFAULT_POLL",
        "DEFAULT_RETRY",
        "NO_RETRY",
        "PollPolicy",
        "RetryPolicy",
    ),
    "_journal": ("GenerationRecord", "ShardRecord"),
    "_submit": (
        "DryRunVerdict",
        "SubmitEvent",
        "SubmitResult",
        "resolve",
        "status",
        "submit",
        "wait",
    ),
    "_results": (
        "OUTCOMES",
        "Results",
        "collect_results",
        "download_results",
    ),
    "_realtime": ("RealtimeEvent", "RealtimeResult", "realtime_results", "send_realtime"),
    "_retry_failed": ("RetryResult", "retry_failed"),
    "_run": (
        "RunResult",
        "run",
        "run_pipeline",
    ),
    "_webhooks": (
        "SIGNATURE_HEADER",
        "parse_batch_webhook",
        "parse_generation_webhook",
        "sign_payload",
        "verify_signature",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "BATCH_STATUSES",
    "BATCH_TERMINAL",
    "CODES",
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "GENERATION_STATUSES",
    "GENERATION_TERMINAL",
    "KNOWN_MODELS",
    "NO_RETRY",
    "OUTCOMES",
    "SIGNATURE_HEADER",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "ActiveSpeakerDetection",
    "AmbiguousSubmissionError",
    "AudioInput",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchLine",
    "BatchMetrics",
    "BatchWebhook",
    "Batches",
    "BatchkitError",
    "BuildCounts",
    "BuildResult",
    "Client",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "DryRunResult",
    "DryRunVerdict",
    "ElevenLabsProvider",
    "Finding",
    "GeneratePayload",
    "Generation",
    "GenerationOptions",
    "GenerationRecord",
    "GenerationWebhook",
    "Generations",
    "InputError",
    "JournalError",
    "Limits",
    "Manifest",
    "Mapping",
    "NotFoundError",
    "OutputError",
    "OutputLine",
    "PaymentRequiredError",
    "Policy",
    "PollPolicy",
    "RateLimitError",
    "RealtimeEvent",
    "RealtimeResult",
    "Report",
    "Results",
    "ResultsError",
    "RetryPolicy",
    "RetryResult",
    "RunResult",
    "Segment",
    "SegmentAudioInput",
    "ServerError",
    "ShardInfo",
    "ShardRecord",
    "Source",
    "SourceInfo",
    "Stats",
    "SubmitEvent",
    "SubmitResult",
    "TextInput",
    "ValidationFailed",
    "VideoInput",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "__version__",
    "build",
    "collect_results",
    "download_results",
    "json_schema",
    "load_manifest",
    "load_mapping",
    "load_policy",
    "parse_batch_webhook",
    "parse_generation_webhook",
    "plan_shards",
    "read_source",
    "realtime_results",
    "resolve",
    "retry_failed",
    "run",
    "run_pipeline",
    "send_realtime",
    "shard_file",
    "sign_payload",
    "status",
    "submit",
    "validate_file",
    "validate_files",
    "validate_lines",
    "verify_shards",
    "verify_signature",
    "wait",
    "write_schemas",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'batchkit' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
