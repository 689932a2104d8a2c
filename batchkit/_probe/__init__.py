"""Pre-flight: probe media URLs cheaply, check them against a request, and estimate what a campaign costs.

This package owns the media probe (HTTP Range reads through a seekable file, content sniffing, container and
track parsing with PyAV or tinytag), the persistent probe cache and ``media.parquet``, the coded media
problems of one request payload (:data:`PROBE_CODES`), and the cost estimate with its price books; also how
a build probes (:class:`ProbeOptions`), how many seconds a request bills (:func:`billable_seconds`), and the
budget a submission is judged against (:class:`Budget`, :class:`BudgetError`). The passes over a build's
lines, the directory-level estimate and the budget check live with the build (``batchkit._build.preflight``,
``batchkit._build.estimate``), which may read a build directory.

It sits just above the wire: it may import only ``batchkit._errors``, ``batchkit._report``, the wire limits
(``batchkit._wire.limits``), ``batchkit._version`` and httpx, plus its optional parsers (``av``, ``tinytag``,
``puremagic``), polars and platformdirs. The API client reaches :class:`ApiPrices` as an argument, never as
an import.
"""

from __future__ import annotations

from .budget import Budget, BudgetError, format_usd
from .cache import ProbeCache, default_cache_dir, write_media_parquet
from .checks import PROBE_CODES, MediaProblem, output_seconds, payload_media_problems, tts_seconds
from .config import ProbeConfig
from .lengths import billable_seconds
from .media import MediaInfo
from .options import ProbeOptions
from .pricing import ApiPrices, Estimate, EstimateItem, PriceBook, Subtotal, TablePrices, estimate
from .probe import probe_urls
from .signed import url_expires_at

__all__ = [
    "PROBE_CODES",
    "ApiPrices",
    "Budget",
    "BudgetError",
    "Estimate",
    "EstimateItem",
    "MediaInfo",
    "MediaProblem",
    "PriceBook",
    "ProbeCache",
    "ProbeConfig",
    "ProbeOptions",
    "Subtotal",
    "TablePrices",
    "billable_seconds",
    "default_cache_dir",
    "estimate",
    "format_usd",
    "output_seconds",
    "payload_media_problems",
    "probe_urls",
    "tts_seconds",
    "url_expires_at",
    "write_media_parquet",
]
