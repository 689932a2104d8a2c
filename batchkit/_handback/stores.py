"""Where fetched videos go: a local folder, or any fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``memory://``).

A :class:`Store` hands out a :class:`Writer` per file. Nothing ever appears half-written under a real name:

* **local** (a path, or a ``file://`` URL; no fsspec needed): the bytes go to ``.{name}.{8 hex}.part`` beside
  the target, which is renamed over the target (``os.replace``) once complete; with ``fsync=True`` it is
  fsync'd first, and the touched folders when the fetch ends. Temporary files a killed fetch left are removed
  before the same name is fetched again.
* **object stores** (``s3://``, ``gs://``, ``az://`` … through fsspec, the optional ``fetch`` extra): the bytes
  stream to the target key itself, in parts of :data:`UPLOAD_BLOCK` bytes (memory stays bounded), and a store
  shows an object only once its upload completes; a failed upload is discarded (s3fs aborts the multipart
  upload), so no object appears. The size the store reports is then checked. A killed fetch can leave an
  incomplete multipart upload, which is invisible and which a bucket lifecycle rule removes.
* **other fsspec file systems** (``memory://``, ``sftp://`` …): the bytes go to a temporary file beside the
  target, which is then moved into place and its size checked; stale temporary files are removed as local
  ones are.

Destination problems that stop everything (a destination that is a file, cannot be created or written, a
missing bucket, no credentials) raise :class:`~batchkit._errors.InputError` from :meth:`Store.prepare`, before
any video is requested. Problems with one file raise :class:`StoreError`, which the fetch turns into a
``fetch-destination`` finding; ``fatal`` marks the ones that will stop every later file as well (a full
disk, a read-only file system), so the fetch stops starting new downloads.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import stat
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, Protocol

from .._errors import ConfigurationError, InputError, install_hint
from .._files import sync_dir

__all__ = [
    "UPLOAD_BLOCK",
    "FsspecStore",
    "LocalStore",
    "Store",
    "StoreError",
    "Writer",
    "open_destination",
]

log = logging.getLogger("batchkit")

#: Bytes s3fs (and other buffered fsspec writers) hold before uploading a part (S3's minimum is 5 MiB).
UPLOAD_BLOCK: Final = 8 * 1024 * 1024
_FATAL: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_TEMP: Final = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.part")
_HASH_CHUNK: Final = 1 << 20
_MISSING_EXTRA: Final = (
    "fetching to {url} needs fsspec and the file system for {scheme}:// (the optional 'fetch' extra has s3fs): "
    + install_hint("fetch")
)


class StoreError(Exception):
    """One file could not be written at the destination (``fatal``: no later file will be either)."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def _os_problem(exc: OSError, where: str) -> StoreError:
    """A one-line reason and fix for an OS error while writing ``where``."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space (or fetch to another destination), then run fetch again"
        return StoreError(f"{where}: the disk is full ({reason}); {fix}", fatal=True)
    if code == errno.EROFS:
        return StoreError(
            f"{where}: the file system is read-only; fetch to a writable destination", fatal=True
        )
    if code in (errno.EACCES, errno.EPERM):
        return StoreError(f"{where}: permission denied; make the folder writable, or fetch elsewhere")
    if code == errno.EISDIR:
        return StoreError(f"{where} is a folder; move it away, or choose another name template")
    if code in (errno.ENOTDIR, errno.EEXIST):
        return StoreError(f"{where}: a file stands where a folder of the name should be; move it away")
    if code == errno.ENAMETOOLONG:
        return StoreError(f"{where}: the path is too long for this file system; use a shorter name template")
    return StoreError(f"{where}: cannot write ({reason})")


class Writer(Protocol):
    """One file being written: ``write`` chunks, then ``commit`` (publish it) or ``abort`` (leave no trace)."""

    def write(self, chunk: bytes) -> None: ...

    def commit(self, size: int) -> None:
        """Publish the file under its real name; ``size`` is what was written, checked once more."""
        ...

    def abort(self) -> None:
        """Remove every trace of the file; never raises."""
        ...


class Store(Protocol):
    """A destination for fetched files, addressed by safe relative names (``de/intro.mp4``)."""

    @property
    def url(self) -> str:
        """The destination as the user gave it, for messages."""
        ...

    def target(self, name: str) -> str:
        """The full path or URL of ``name`` (what the ledger records as ``destination``)."""
        ...

    def prepare(self) -> None:
        """Make sure files can be written here; :class:`InputError` saying how to fix it otherwise."""
        ...

    def sizes(self, names: Sequence[str]) -> dict[str, int]:
        """The size of each of ``names`` that exists as a file (one listing on object stores)."""
        ...

    def sha256(self, name: str) -> str:
        """The sha256 of the file ``name`` (reads it whole, in chunks)."""
        ...

    def writer(self, name: str) -> Writer: ...

    def finish(self) -> None:
        """Make every rename durable (fsync of the touched folders); called once, when the fetch ends."""
        ...


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.part"


# --------------------------------------------------------------------------------------------- local


class LocalStore:
    """A folder on this machine (created when missing)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root).expanduser().absolute()
        self.fsync = fsync
        self._touched: set[Path] = set()
        self._stale: dict[Path, dict[str, list[str]]] = {}  # folder → target name → leftover temp files
        self._made: set[Path] = set()  # folders known to exist
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"<LocalStore {self.root}>"

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*name.split("/"))

    def target(self, name: str) -> str:
        return str(self._path(name))

    def prepare(self) -> None:
        root = self.root
        if root.exists() and not root.is_dir():
            msg = f"the destination {root} is a file, not a folder: give a folder (created when missing) or a URL"
            raise InputError(msg, path=root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the destination folder {root} ({exc.strerror or exc}); choose another destination"
            raise InputError(msg, path=root) from None
        probe = root / f".batchkit-probe-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"\0")
            finally:
                os.close(fd)
        except OSError as exc:
            problem = _os_problem(exc, str(root))
            msg = f"cannot write in the destination: {problem}"
            raise InputError(msg, path=root) from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def sizes(self, names: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for name in names:
            try:
                info = os.stat(self._path(name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[name] = info.st_size
        return found

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        with open(self._path(name), "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def writer(self, name: str) -> Writer:
        target = self._path(name)
        where = str(target)
        try:
            if target.parent not in self._made:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(target.parent)
            self._sweep(target)
            temp = target.with_name(_temp_name(target.name))
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as exc:
            raise _os_problem(exc, where) from None
        return _LocalWriter(self, target, temp, os.fdopen(fd, "wb"))

    def _committed(self, folder: Path) -> None:
        with self._lock:
            self._touched.add(folder)

    def finish(self) -> None:
        if not self.fsync:
            return
        with self._lock:
            folders, self._touched = self._touched, set()
        for folder in folders:
            sync_dir(folder)

    def _sweep(self, target: Path) -> None:
        """Remove the temporary files an interrupted fetch of ``target`` left beside it (each folder is
        listed once per fetch, so a folder of many files costs one listing, not one per file)."""
        folder = target.parent
        with self._lock:
            stale = self._stale.get(folder)
            if stale is None:
                stale = self._stale[folder] = _leftovers(folder)
            names = stale.pop(target.name, [])
        for name in names:
            log.debug("removing %s, left by an interrupted fetch", folder / name)
            with contextlib.suppress(OSError):
                os.unlink(folder / name)


def _leftovers(folder: Path) -> dict[str, list[str]]:
    """The temporary files in ``folder``, by the name of the file they were to become."""
    found: dict[str, list[str]] = {}
    try:
        entries = os.scandir(folder)
    except OSError:
        return found
    with entries:
        for entry in entries:
            match = _TEMP.fullmatch(entry.name)
            if match:
                found.setdefault(match["name"], []).append(entry.name)
    return found


class _LocalWriter:
    def __init__(self, store: LocalStore, target: Path, temp: Path, fh: IO[bytes]) -> None:
        self._store = store
        self._target = target
        self._temp = temp
        self._fh: IO[bytes] | None = fh

    def write(self, chunk: bytes) -> None:
        assert self._fh is not None
        try:
            self._fh.write(chunk)
        except OSError as exc:
            raise _os_problem(exc, str(self._target)) from None

    def commit(self, size: int) -> None:
        fh, self._fh = self._fh, None
        assert fh is not None
        try:
            try:
                fh.flush()
                written = fh.tell()
                if self._store.fsync:
                    os.fsync(fh.fileno())
            finally:
                fh.close()
            if written != size:
                msg = f"{self._target}: {written:,} bytes on disk, {size:,} expected; run fetch again"
                raise StoreError(msg)
            os.replace(self._temp, self._target)
        except OSError as exc:
            self.abort()
            raise _os_problem(exc, str(self._target)) from None
        except BaseException:
            self.abort()
            raise
        self._store._committed(self._target.parent)

    def abort(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        with contextlib.suppress(OSError):
            self._temp.unlink()


# --------------------------------------------------------------------------------------------- fsspec


class FsspecStore:
    """A folder or bucket prefix behind any fsspec URL; ``storage_options`` go to the file system."""

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        scheme = url.split("://", 1)[0]
        try:
            import fsspec.core

            fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except ImportError as exc:
            msg = _MISSING_EXTRA.format(url=url, scheme=scheme) + f" ({exc})"
            raise ConfigurationError(msg) from None
        except (ValueError, TypeError) as exc:
            msg = f"cannot use {url} as a destination: {exc}"
            raise InputError(msg) from None
        self._url = url
        self.fs: Any = fs
        self.root: str = str(root).rstrip("/")

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"<FsspecStore {self._url}>"

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def target(self, name: str) -> str:
        return str(self.fs.unstrip_protocol(self._path(name)))

    def _bucketed(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return bool(set(protocols) & {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})

    def prepare(self) -> None:
        fs, where = self.fs, self._url
        try:
            if fs.isfile(self.root):
                msg = f"the destination {where} is a file, not a folder or prefix: give a folder or a prefix"
                raise InputError(msg)
            if not self._bucketed():  # a bucket is never created behind the user's back
                fs.makedirs(self.root, exist_ok=True)
            probe = self._path(f".batchkit-probe-{secrets.token_hex(4)}")
            fs.pipe_file(probe, b"\0")
            fs.rm_file(probe)
        except InputError:
            raise
        except (
            Exception
        ) as exc:  # each file system raises its own kinds (PermissionError, FileNotFoundError…)
            msg = (
                f"cannot write in the destination {where} ({type(exc).__name__}: {str(exc)[:200]}); check that "
                "it exists, that the credentials may write there, and the storage options (endpoint, region)"
            )
            raise InputError(msg) from None

    def _listing(self) -> dict[str, dict[str, Any]]:
        try:
            found: dict[str, dict[str, Any]] = self.fs.find(self.root, detail=True, withdirs=False)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            msg = f"cannot list the destination {self._url} ({type(exc).__name__}: {str(exc)[:200]})"
            raise InputError(msg) from None
        prefix = f"{self.root}/" if self.root else ""
        return {path.removeprefix(prefix): info for path, info in found.items()}

    def sizes(self, names: Sequence[str]) -> dict[str, int]:
        listing = self._listing()
        wanted = set(names)
        stale = [path for path in listing if _stale_temp(path, wanted)]
        for path in stale:
            log.debug("removing %s, left by an interrupted fetch", path)
            with contextlib.suppress(Exception):
                self.fs.rm_file(self._path(path))
        return {
            name: int(info["size"])
            for name, info in listing.items()
            if name in wanted and info.get("type", "file") == "file" and info.get("size") is not None
        }

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self._path(name), "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def writer(self, name: str) -> Writer:
        target = self._path(name)
        folder, _, file = target.rpartition("/")
        bucketed = self._bucketed()
        # An object store shows an object only once its upload completes, and a discarded upload leaves none:
        # write the target itself. Elsewhere, write a temporary file and move it into place.
        temp = target if bucketed else (f"{folder}/{_temp_name(file)}" if folder else _temp_name(file))
        try:
            if not bucketed and folder:
                self.fs.makedirs(folder, exist_ok=True)
            fh = self.fs.open(temp, "wb", block_size=UPLOAD_BLOCK)
        except Exception as exc:
            raise _fs_problem(exc, self.target(name)) from None
        return _FsspecWriter(self, target, temp, fh)

    def finish(self) -> None:
        return None


def _stale_temp(path: str, names: set[str]) -> bool:
    folder, _, file = path.rpartition("/")
    match = _TEMP.fullmatch(file)
    return match is not None and (f"{folder}/{match['name']}" if folder else match["name"]) in names


def _fs_problem(exc: BaseException, where: str) -> StoreError:
    if isinstance(exc, OSError) and exc.errno is not None:
        return _os_problem(exc, where)
    return StoreError(f"{where}: cannot write ({type(exc).__name__}: {str(exc)[:200]})")


class _FsspecWriter:
    def __init__(self, store: FsspecStore, target: str, temp: str, fh: Any) -> None:
        self._store = store
        self._target = target
        self._temp = temp
        self._fh: Any = fh

    def _where(self) -> str:
        return str(self._store.fs.unstrip_protocol(self._target))

    def write(self, chunk: bytes) -> None:
        try:
            self._fh.write(chunk)
        except Exception as exc:
            raise _fs_problem(exc, self._where()) from None

    def commit(self, size: int) -> None:
        fs = self._store.fs
        try:
            fh, self._fh = self._fh, None
            fh.close()
            if self._temp != self._target:
                fs.mv(self._temp, self._target)
            fs.invalidate_cache(self._target)
            stored = int(fs.info(self._target)["size"])
        except Exception as exc:
            self.abort()
            raise _fs_problem(exc, self._where()) from None
        if stored != size:
            with contextlib.suppress(Exception):
                fs.rm_file(self._target)
            msg = f"{self._where()}: the store holds {stored:,} bytes after the upload, {size:,} were sent; run fetch again"
            raise StoreError(msg)

    def abort(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(Exception):
                fh.discard()  # s3fs aborts a multipart upload
            with contextlib.suppress(Exception):
                fh.closed = True  # never let a garbage-collected file upload what it holds
        if self._temp != self._target:
            with contextlib.suppress(Exception):
                if self._store.fs.exists(self._temp):
                    self._store.fs.rm_file(self._temp)


# --------------------------------------------------------------------------------------------- choosing


def open_destination(
    dest: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None, fsync: bool = False
) -> Store:
    """The store for ``dest``: a local folder for a path or a ``file://`` URL, else an fsspec file system.

    ``storage_options`` (e.g. ``{"client_kwargs": {"endpoint_url": ...}}`` for s3fs) are passed to fsspec.
    ``fsync=True`` fsyncs each local file before its rename (durable across a power loss, and slower).
    """
    if isinstance(dest, os.PathLike):
        return LocalStore(dest, fsync=fsync)
    text = str(dest)
    if "://" not in text:
        return LocalStore(text, fsync=fsync)
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("file", "local"):
        parsed = urllib.parse.urlsplit(text)
        if parsed.netloc not in ("", "localhost"):
            msg = f"{text}: a file:// URL names a folder on this machine (file:///path/to/folder)"
            raise InputError(msg)
        return LocalStore(urllib.parse.unquote(parsed.path), fsync=fsync)
    return FsspecStore(text, storage_options=storage_options)
