"""Pre-flight: probe media URLs cheaply, check them against a request, and estimate what a campaign costs.

This package owns the media probe (HTTP Range reads through a seekable file, content sniffing, container and
track parsing with PyAV or tinytag), the persistent probe cache and ``media.parquet``, the coded media
problems of one request payload (:data:`PROBE_CODES`), and the cost estimate with its price books.

It sits just above the wire: it may import only ``batchkit._errors``, ``batchkit._report``, the wire limits
(``batchkit._wire.limits``), ``batchkit._version`` and httpx, plus its optional parsers (``av``, ``tinytag``,
``puremagic``), polars and platformdirs. The API client reaches :class:`ApiPrices` as an argument, never as
an import.
"""

from __future__ import annotations

from .cache import ProbeCache, default_cache_dir, write_media_parquet
from .checks import PROBE_CODES, MediaProblem, output_seconds, payload_media_problems, tts_seconds
from .config import ProbeConfig
from .media import MediaInfo
from .pricing import ApiPrices, Estimate, EstimateItem, PriceBook, Subtotal, TablePrices, estimate
from .probe import probe_urls
from .signed import url_expires_at

__all__ = [
    "PROBE_CODES",
    "ApiPrices",
    "Estimate",
    "EstimateItem",
    "MediaInfo",
    "MediaProblem",
    "PriceBook",
    "ProbeCache",
    "ProbeConfig",
    "Subtotal",
    "TablePrices",
    "default_cache_dir",
    "estimate",
    "output_seconds",
    "payload_media_problems",
    "probe_urls",
    "tts_seconds",
    "url_expires_at",
    "write_media_parquet",
]
