"""How a build, ``batchkit probe`` or ``run --probe`` probes its media: :class:`ProbeOptions`.

They travel with :class:`batchkit.BuildOptions` (its ``probe`` field) so that ``run`` probes exactly as
``build`` would; :class:`~batchkit._probe.config.ProbeConfig` inside says how politely and within which bounds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from .._errors import InputError
from .cache import ProbeCache
from .checks import DEFAULT_TURNAROUND
from .config import ProbeConfig
from .probe import ProgressCallback

__all__ = ["LANGUAGE_VARIABLES", "ProbeOptions"]

#: ``[each]`` variables taken as the language of a text-to-speech script, in this order of preference.
LANGUAGE_VARIABLES = ("lang", "language", "locale")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeOptions:
    """What a probe of a build's media does. Every field has the default ``build --probe`` has.

    * ``config``: concurrency, timeouts, byte and time budgets, retries (:class:`batchkit.ProbeConfig`).
    * ``cache``: ``True`` keeps results in the default probe cache (``$BATCHKIT_CACHE_DIR``, else the user
      cache directory), a path uses that SQLite file, a :class:`batchkit.ProbeCache` is used as it is, and
      ``False`` keeps nothing. ``refresh`` probes every URL again (and stores the new results).
    * ``language``: the ``[each]`` variable whose value is a TTS script's language (``es``, ``pt-BR``); by
      default the one named ``lang``, ``language`` or ``locale``, else the only variable there is.
    * ``now`` (UTC) and ``turnaround`` decide which signed URLs expire too early; ``mismatch_tolerance`` is
      how many seconds audio and video may differ before ``media-duration-mismatch``.
    * ``on_progress(done, total, cached, bytes_read)`` is called after every URL (from the calling thread).

    >>> ProbeOptions(refresh=True).cache
    True
    """

    config: ProbeConfig = field(default_factory=ProbeConfig)
    cache: ProbeCache | str | os.PathLike[str] | bool = True
    refresh: bool = False
    language: str | None = None
    now: datetime | None = None
    turnaround: timedelta = DEFAULT_TURNAROUND
    mismatch_tolerance: float = 0.5
    on_progress: ProgressCallback | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mismatch_tolerance) and self.mismatch_tolerance >= 0):
            msg = f"mismatch_tolerance must be ≥ 0 seconds, not {self.mismatch_tolerance}"
            raise InputError(msg)
        if self.turnaround.total_seconds() < 0:
            msg = f"turnaround must not be negative, not {self.turnaround}"
            raise InputError(msg)

    def language_of(self, values: dict[str, str | None]) -> str | None:
        """The TTS language among one unit's ``[each]`` values (see ``language``), or None."""
        if self.language is not None:
            return values.get(self.language)
        for name in LANGUAGE_VARIABLES:
            if name in values:
                return values[name]
        return next(iter(values.values())) if len(values) == 1 else None

    @contextmanager
    def open_cache(self) -> Iterator[ProbeCache | None]:
        """The probe cache these options ask for, closed afterwards when it was opened here."""
        if self.cache is False:
            yield None
            return
        if isinstance(self.cache, ProbeCache):
            yield self.cache
            return
        cache = ProbeCache(None if self.cache is True else Path(self.cache))
        try:
            yield cache
        finally:
            cache.close()
