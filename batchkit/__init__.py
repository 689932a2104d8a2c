"""batchkit: turn tabular data into Sync Labs lipsync Batch API files and back.

The package is laid out by stage, bottom layer first; a module imports only its own layer and earlier ones
(``tests/test_layers.py`` checks it, late imports included)::

    _errors.py  _files.py           the exception tree; durable file steps
    _wire/                          the wire contract: limits, models, rules, responses, schemas
    _report.py                      findings, Report, CODES
    _api/                           the HTTP client, error mapping, backoff, webhooks
    _validate/                      lines or files → Report
    _sources/                       tables read as text, every row keeping its position
    _mapping/                       a mapping of templates over columns → generate payloads
    _shard/                         balanced shards and the build directory's layout
    _build/                         source → lines → validated → sharded: the offline half
    _submit/                        shards → batches through a crash-safe journal
    _results/                       every unit back with one outcome, joined to its row
    _retry/                         what failed becomes the next batch
    sandbox/                        a local emulator of the API
    _run.py                         the whole pipeline in one call
    cli/                            the thin command line

The public API is what ``__all__`` lists; every module whose name starts with ``_`` is private.
Names are imported on first use, so ``import batchkit`` (and every CLI command) loads only what it needs:
validating a file never imports polars or httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._api.backoff import (
        DEFAULT_POLL,
        DEFAULT_RETRY,
        NO_RETRY,
        PollPolicy,
        RetryPolicy,
    )
    from ._api.client import (
        DEFAULT_BASE_URL,
        Batches,
        Client,
        Generations,
    )
    from ._api.webhooks import (
        SIGNATURE_HEADER,
        parse_batch_webhook,
        parse_generation_webhook,
        sign_payload,
        verify_signature,
    )
    from ._build.build import build
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
        WaitTimeoutError,
        WebhookVerificationError,
    )
    from ._mapping.mapping import Mapping, load_mapping
    from ._report import (
        CODES,
        Finding,
        Report,
        Stats,
        ValidationFailed,
    )
    from ._results.realtime import realtime_results
    from ._results.results import (
        OUTCOMES,
        Results,
        collect_results,
        download_results,
    )
    from ._retry.retry import RetryResult, retry_failed
    from ._run import RunResult, run, run_pipeline
    from ._shard.builddir import (
        BuildCounts,
        Manifest,
        ShardInfo,
        SourceInfo,
        load_manifest,
        verify_shards,
    )
    from ._shard.plan import plan_shards
    from ._shard.reshard import shard_file
    from ._shard.write import BuildResult
    from ._sources.source import Source, read_source
    from ._submit.journal import GenerationRecord, ShardRecord
    from ._submit.realtime import RealtimeEvent, RealtimeResult, send_realtime
    from ._submit.submit import (
        DryRunVerdict,
        SubmitEvent,
        SubmitResult,
        resolve,
        status,
        submit,
        wait,
    )
    from ._validate.policy import Policy, load_policy
    from ._validate.validate import validate_file, validate_files, validate_lines
    from ._wire.limits import DEFAULT_LIMITS, KNOWN_MODELS, Limits
    from ._wire.models import (
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
    from ._wire.responses import (
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
    from ._wire.schemas import json_schema, write_schemas

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
        "WaitTimeoutError",
        "WebhookVerificationError",
    ),
    "_wire.limits": (
        "DEFAULT_LIMITS",
        "KNOWN_MODELS",
        "Limits",
    ),
    "_wire.models": (
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
        "ValidationFailed",
    ),
    "_validate.validate": (
        "validate_file",
        "validate_files",
        "validate_lines",
    ),
    "_validate.policy": (
        "Policy",
        "load_policy",
    ),
    "_wire.schemas": (
        "json_schema",
        "write_schemas",
    ),
    "_wire.responses": (
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
    "_sources.source": (
        "Source",
        "read_source",
    ),
    "_mapping.mapping": (
        "Mapping",
        "load_mapping",
    ),
    "_build.build": ("build",),
    "_shard.plan": ("plan_shards",),
    "_shard.write": ("BuildResult",),
    "_shard.reshard": ("shard_file",),
    "_shard.builddir": (
        "BuildCounts",
        "Manifest",
        "ShardInfo",
        "SourceInfo",
        "load_manifest",
        "verify_shards",
    ),
    "_api.client": (
        "DEFAULT_BASE_URL",
        "Batches",
        "Client",
        "Generations",
    ),
    "_api.backoff": (
        "DEFAULT_POLL",
        "DEFAULT_RETRY",
        "NO_RETRY",
        "PollPolicy",
        "RetryPolicy",
    ),
    "_submit.journal": ("GenerationRecord", "ShardRecord"),
    "_submit.submit": (
        "DryRunVerdict",
        "SubmitEvent",
        "SubmitResult",
        "resolve",
        "status",
        "submit",
        "wait",
    ),
    "_results.results": (
        "OUTCOMES",
        "Results",
        "collect_results",
        "download_results",
    ),
    "_results.realtime": ("realtime_results",),
    "_submit.realtime": ("RealtimeEvent", "RealtimeResult", "send_realtime"),
    "_retry.retry": ("RetryResult", "retry_failed"),
    "_run": (
        "RunResult",
        "run",
        "run_pipeline",
    ),
    "_api.webhooks": (
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
