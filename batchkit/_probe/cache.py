"""The persistent probe cache (SQLite) and the ``media.parquet`` table a build directory keeps.

:class:`ProbeCache` remembers what a probe learned about a URL together with the validators its server sent
(ETag, Last-Modified, Content-Length). A later probe first asks the server for its headers (HEAD) and reuses
the remembered result when the validators still match: tomorrow's campaign re-probes nothing unchanged.
Entries are keyed by the URL without its signature parameters (:func:`~batchkit._probe.signed.unsigned`), so
a re-signed link to the same object is a hit. Only definite answers are kept (media read, or bytes that are
not media); failures to reach a host are always tried again. The file lives in ``$BATCHKIT_CACHE_DIR``, else
the platform's user cache directory (``~/.cache/batchkit`` on Linux), as ``probe.sqlite3``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import orjson
import polars as pl

from .._errors import InputError
from .media import MediaInfo
from .signed import unsigned

__all__ = ["CACHE_DIR_ENV", "MEDIA_COLUMNS", "ProbeCache", "default_cache_dir", "write_media_parquet"]

CACHE_DIR_ENV: Final = "BATCHKIT_CACHE_DIR"
_FORMAT: Final = 1  # bump when MediaInfo or the parsers change what a cached entry means
_CACHEABLE: Final = frozenset({None, "media-not-media", "media-unsupported", "media-unreadable"})


def default_cache_dir() -> Path:
    """``$BATCHKIT_CACHE_DIR``, else the user cache directory (platformdirs), else ``~/.cache/batchkit``."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".cache" / "batchkit"
    return Path(platformdirs.user_cache_dir("batchkit", appauthor=False))


def validators_match(
    cached: MediaInfo, etag: str | None, last_modified: str | None, size: int | None
) -> bool:
    """True when the server's validators show the object unchanged since ``cached`` was probed.

    At least one of ETag and Last-Modified must be known on both sides (a length alone proves nothing);
    every validator known on both sides must be equal.
    """
    pairs: list[tuple[object, object]] = [(cached.etag, etag), (cached.last_modified, last_modified)]
    if not any(a is not None and b is not None for a, b in pairs):
        return False
    pairs.append((cached.size, size))
    return all(a == b for a, b in pairs if a is not None and b is not None)


class ProbeCache:
    """Probe results by URL and validators, in SQLite; safe to share between threads and processes.

    >>> with ProbeCache(tmp_path / "probe.sqlite3") as cache:  # doctest: +SKIP
    ...     cache.put(info); cache.get(info.url)
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "probe.sqlite3"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS probes (key TEXT PRIMARY KEY, format INTEGER NOT NULL, "
                "stored_at REAL NOT NULL, info BLOB NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            msg = (
                f"{self.path}: cannot open the probe cache ({exc}); set {CACHE_DIR_ENV} to a writable "
                "directory, or probe without a cache"
            )
            raise InputError(msg, path=self.path) from None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ProbeCache {str(self.path)!r}>"

    def get(self, url: str) -> MediaInfo | None:
        """The cached result for ``url`` (or for the same URL signed differently), else None."""
        with self._lock:
            row = self._db.execute(
                "SELECT info FROM probes WHERE key = ? AND format = ?", (unsigned(url), _FORMAT)
            ).fetchone()
        if row is None:
            return None
        try:
            info = MediaInfo.from_dict(orjson.loads(row[0]))
        except (orjson.JSONDecodeError, TypeError):
            return None
        return info.evolve(url=url)

    def put(self, info: MediaInfo) -> bool:
        """Remember ``info`` when it is a definite answer with a validator; returns whether it was stored."""
        if info.problem not in _CACHEABLE or (info.etag is None and info.last_modified is None):
            return False
        data = orjson.dumps(info.evolve(from_cache=False).to_dict())
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO probes (key, format, stored_at, info) VALUES (?, ?, ?, ?)",
                (unsigned(info.url), _FORMAT, time.time(), data),
            )
        return True

    def forget(self, url: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM probes WHERE key = ?", (unsigned(url),))

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._db.execute("DELETE FROM probes")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM probes").fetchone()[0])

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


#: Columns of ``media.parquet``, in order, with their polars types.
MEDIA_COLUMNS: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "url": pl.String,
    "kind": pl.String,
    "status": pl.String,
    "http_status": pl.Int32,
    "content_type": pl.String,
    "bytes_read": pl.Int64,
    "requests": pl.Int32,
    "duration": pl.Float64,
    "has_video": pl.Boolean,
    "has_audio": pl.Boolean,
    "video_codec": pl.String,
    "audio_codec": pl.String,
    "size": pl.Int64,
    "width": pl.Int32,
    "height": pl.Int32,
    "fps": pl.Float64,
    "sample_rate": pl.Int32,
    "container": pl.String,
    "parser": pl.String,
    "from_cache": pl.Boolean,
    "error": pl.String,
}


def write_media_parquet(infos: Iterable[MediaInfo], path: str | os.PathLike[str]) -> Path:
    """Write one row per probed URL to ``path`` (``status`` is ``ok`` or the problem's code), atomically.

    The table is written to a temporary file beside ``path``, flushed to disk and renamed over it, so
    ``path`` is always either the old table or the whole new one.
    """
    rows = [
        {
            **{name: getattr(info, name) for name in MEDIA_COLUMNS if name not in ("status", "url")},
            "url": _without_credentials(info.url),
            "status": info.problem or "ok",
        }
        for info in infos
    ]
    frame = (
        pl.DataFrame(rows, schema=MEDIA_COLUMNS, orient="row") if rows else pl.DataFrame(schema=MEDIA_COLUMNS)
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            frame.select(list(MEDIA_COLUMNS)).write_parquet(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


def _without_credentials(url: str) -> str:
    """A URL that carried ``user:password@`` keeps its place in the table without them."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{head}://***@{authority.rsplit('@', 1)[1]}{slash}{tail}"
