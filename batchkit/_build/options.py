"""How a source becomes a build directory: the options ``build`` takes, and ``run`` and the CLI share.

They travel together (a ``run`` builds exactly as ``build`` would), so they are one typed value instead of a
dozen keyword arguments on every function that builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._probe.options import ProbeOptions
from .._sources.source import DEFAULT_CHUNK_ROWS
from .._wire.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from .reuse import Reusable

__all__ = ["BuildOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    """Options of a build. Every field has the default ``batchkit build`` has.

    ``name`` is the shard file stem (default: the source file's stem, else ``batch``); ``limits`` the
    profile every line and shard must satisfy; ``skip_invalid`` writes the valid rows and reports the rest
    (by default any invalid row fails the build and only ``report.json`` is written). ``sheet``, ``format``,
    ``delimiter`` and ``encoding`` say how to read the source (each detected when None); ``chunk_rows`` is
    how many rows are read at a time. ``include_held`` adds the requests ``batchkit retry --hold`` kept in
    those directories; ``force`` rebuilds a directory that was already submitted. ``probe``
    (:class:`batchkit.ProbeOptions`) probes every media URL first and makes a row whose media fails invalid
    (``build --probe``); ``reuse`` (:func:`batchkit.find_reusable`) leaves out the requests that already
    completed in earlier directories (``build --reuse DIR``).

    >>> BuildOptions(skip_invalid=True, include_held="out/held").include_held
    ('out/held',)
    """

    name: str | None = None
    limits: Limits = DEFAULT_LIMITS
    skip_invalid: bool = False
    sheet: str | None = None
    format: str | None = None
    delimiter: str | None = None
    encoding: str | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    include_held: Sequence[str | Path] = ()
    force: bool = False
    probe: ProbeOptions | None = None
    reuse: Reusable | None = None

    def __post_init__(self) -> None:
        if isinstance(self.include_held, str | Path):  # one directory given bare: a common slip
            object.__setattr__(self, "include_held", (self.include_held,))
        else:
            object.__setattr__(self, "include_held", tuple(self.include_held))
        if self.chunk_rows < 1:
            msg = f"chunk_rows must be at least 1, not {self.chunk_rows}"
            raise ValueError(msg)

    def read_options(self) -> dict[str, str | None]:
        """The keyword arguments of :func:`batchkit.read_source` these options imply."""
        return {
            "sheet": self.sheet,
            "format": self.format,
            "delimiter": self.delimiter,
            "encoding": self.encoding,
        }
