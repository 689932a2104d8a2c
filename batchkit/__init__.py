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
    _probe/                         media probed with Range reads, the cost estimated
    _shard/                         balanced shards and the build directory's layout
    _build/                         source → lines → validated → sharded: the offline half
    _submit/                        shards → batches through a crash-safe journal
    _results/                       every unit back with one outcome, joined to its row
    _handback/                      the videos fetched, the sheet in its own layout, a review page
    _retry/                         what failed becomes the next batch
    sandbox/                        a local emulator of the API
    _run.py                         the whole pipeline in one call
    cli/                            the thin command line

The public API is what ``__all__`` lists; every module whose name starts with ``_`` is private.
Names are imported on first use, so ``import batchkit`` (and every CLI command) loads only what it needs:
validating a file never imports polars or httpx.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

# The public API, each name once: type checkers read these imports, and at run time the same lines say where
# each name lives, so it is imported only when first used (``X as X`` marks it as re-exported).
if TYPE_CHECKING:
    from ._api.backoff import NO_RETRY as NO_RETRY, PollPolicy as PollPolicy, RetryPolicy as RetryPolicy
    from ._api.client import Batches as Batches, Client as Client, Generations as Generations
    from ._api.webhooks import (
        SIGNATURE_HEADER as SIGNATURE_HEADER,
        SIGNATURE_HEADERS as SIGNATURE_HEADERS,
        parse_batch_webhook as parse_batch_webhook,
        parse_generation_webhook as parse_generation_webhook,
        sign_payload as sign_payload,
        verify_signature as verify_signature,
    )
    from ._build.build import build as build
    from ._build.estimate import check_budget as check_budget, estimate_directory as estimate_directory
    from ._build.options import BuildOptions as BuildOptions
    from ._build.probe import (
        ProbeResult as ProbeResult,
        probe_directory as probe_directory,
        probe_source as probe_source,
    )
    from ._build.reuse import Reusable as Reusable
    from ._errors import (
        AmbiguousSubmissionError as AmbiguousSubmissionError,
        APIConnectionError as APIConnectionError,
        APIError as APIError,
        APIStatusError as APIStatusError,
        APITimeoutError as APITimeoutError,
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        BatchkitError as BatchkitError,
        ConcurrencyLimitError as ConcurrencyLimitError,
        ConfigurationError as ConfigurationError,
        DirectoryLockedError as DirectoryLockedError,
        InputError as InputError,
        JournalError as JournalError,
        NotFoundError as NotFoundError,
        PaymentRequiredError as PaymentRequiredError,
        RateLimitError as RateLimitError,
        ResultsError as ResultsError,
        ServerError as ServerError,
        WaitTimeoutError as WaitTimeoutError,
        WebhookVerificationError as WebhookVerificationError,
    )
    from ._handback.decisions import Decisions as Decisions, read_decisions as read_decisions
    from ._handback.deliver import DeliverOptions as DeliverOptions, fetch_directory as fetch_directory
    from ._handback.fetch import FetchOptions as FetchOptions, FetchResult as FetchResult
    from ._handback.fill import fill_results as fill_results
    from ._handback.pages import ReviewOptions as ReviewOptions, review_directory as review_directory
    from ._handback.wide import wide_results as wide_results
    from ._mapping.mapping import Mapping as Mapping, load_mapping as load_mapping
    from ._probe.budget import Budget as Budget, BudgetError as BudgetError
    from ._probe.cache import ProbeCache as ProbeCache, write_media_parquet as write_media_parquet
    from ._probe.checks import (
        PROBE_CODES as PROBE_CODES,
        MediaProblem as MediaProblem,
        output_seconds as output_seconds,
        payload_media_problems as payload_media_problems,
        tts_seconds as tts_seconds,
    )
    from ._probe.config import ProbeConfig as ProbeConfig
    from ._probe.media import MediaInfo as MediaInfo
    from ._probe.options import ProbeOptions as ProbeOptions
    from ._probe.pricing import (
        ApiPrices as ApiPrices,
        Estimate as Estimate,
        EstimateItem as EstimateItem,
        PriceBook as PriceBook,
        Subtotal as Subtotal,
        TablePrices as TablePrices,
        estimate as estimate,
    )
    from ._probe.probe import probe_urls as probe_urls
    from ._report import (
        CODES as CODES,
        Finding as Finding,
        Report as Report,
        Stats as Stats,
        ValidationFailed as ValidationFailed,
    )
    from ._results.realtime import realtime_results as realtime_results
    from ._results.results import OUTCOMES as OUTCOMES, Results as Results, collect_results as collect_results
    from ._results.reuse import find_reusable as find_reusable
    from ._retry.retry import (
        RetryOptions as RetryOptions,
        RetryResult as RetryResult,
        retry_failed as retry_failed,
    )
    from ._run import RunOptions as RunOptions, RunResult as RunResult, run as run
    from ._shard.builddir import (
        BuildCounts as BuildCounts,
        Manifest as Manifest,
        ShardInfo as ShardInfo,
        SourceInfo as SourceInfo,
        load_manifest as load_manifest,
        verify_shards as verify_shards,
    )
    from ._shard.plan import plan_shards as plan_shards
    from ._shard.reshard import shard_file as shard_file
    from ._shard.write import BuildResult as BuildResult
    from ._sources.source import Source as Source, read_source as read_source
    from ._submit.inspect import BatchInspection as BatchInspection, inspect_batch as inspect_batch
    from ._submit.journal import GenerationRecord as GenerationRecord, ShardRecord as ShardRecord
    from ._submit.realtime import (
        RealtimeEvent as RealtimeEvent,
        RealtimeResult as RealtimeResult,
        send_realtime as send_realtime,
    )
    from ._submit.reconcile import ReconcilePolicy as ReconcilePolicy
    from ._submit.recover import RecoverResult as RecoverResult, recover as recover
    from ._submit.submit import (
        DryRunVerdict as DryRunVerdict,
        SubmitEvent as SubmitEvent,
        SubmitResult as SubmitResult,
        resolve as resolve,
        status as status,
        submit as submit,
        wait as wait,
    )
    from ._validate.policy import Policy as Policy, load_policy as load_policy
    from ._validate.validate import (
        validate_file as validate_file,
        validate_files as validate_files,
        validate_lines as validate_lines,
    )
    from ._wire.limits import DEFAULT_LIMITS as DEFAULT_LIMITS, KNOWN_MODELS as KNOWN_MODELS, Limits as Limits
    from ._wire.models import (
        ActiveSpeakerDetection as ActiveSpeakerDetection,
        AudioInput as AudioInput,
        BatchLine as BatchLine,
        DialogueEdit as DialogueEdit,
        DubParams as DubParams,
        ElevenLabsProvider as ElevenLabsProvider,
        GeneratePayload as GeneratePayload,
        GenerationOptions as GenerationOptions,
        ImageInput as ImageInput,
        Segment as Segment,
        SegmentAudioInput as SegmentAudioInput,
        TextInput as TextInput,
        VideoInput as VideoInput,
    )
    from ._wire.responses import (
        Batch as Batch,
        BatchMetrics as BatchMetrics,
        BatchWebhook as BatchWebhook,
        DryRunResult as DryRunResult,
        Generation as Generation,
        GenerationWebhook as GenerationWebhook,
        OutputLine as OutputLine,
    )
    from ._wire.schemas import json_schema as json_schema, write_schemas as write_schemas


def _public_names() -> dict[str, str]:
    """Public name → private module, read from the ``TYPE_CHECKING`` imports above."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"
    )
    return {
        alias.name: str(node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


_WHERE = _public_names()
__all__ = sorted([*_WHERE, "__version__"], key=str.casefold)


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
