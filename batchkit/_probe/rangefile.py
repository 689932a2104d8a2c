"""A seekable, read-only file over one URL whose reads become HTTP Range requests, within hard budgets.

:class:`RangeFile` reads in aligned blocks (64 KiB by default), keeps the last few in a small cache, and
fetches a run of missing blocks with one ``Range: bytes=a-b`` request. What the server says is checked,
never trusted:

* the size comes from ``Content-Range`` (``bytes a-b/total``) as soon as one is seen; a HEAD's
  ``Content-Length`` is only a first guess, and a ``416`` (``bytes */total``) ends the file where it says;
* a server that ignores Range (``200`` with the whole body) is read from the start, as far as needed and
  never past the byte budget; the open stream is kept for later reads further on, and nothing read is evicted;
* a 206 is read no further than the range asked for, whatever ``Content-Length`` it claims, and a body that
  ends early is a short read;
* every byte and every request counts; past ``byte_budget`` bytes :class:`ByteBudgetExceeded` is raised, past
  the time budget :class:`~batchkit._probe.config.TimeBudgetExceeded`.

With ``eof_on_failure=True`` a read that would need bytes it cannot get answers end-of-file instead of raising,
and the first such failure is kept in :attr:`RangeFile.failure`; bytes already fetched can still be read.
Parsers that call back into Python from C (PyAV) then stop cleanly with whatever they had read, and nothing is
printed. After a failure no further request is sent.
"""

from __future__ import annotations

import io
import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Final

import httpx

from .config import Deadline, ProbeConfig, TimeBudgetExceeded
from .fetch import FetchError, open_response, redact, release

__all__ = ["ByteBudgetExceeded", "RangeFile"]

_CONTENT_RANGE: Final = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


class ByteBudgetExceeded(Exception):
    """Reading on would pass the URL's byte budget (internal: the probe reports the duration as unknown)."""


class RangeFile(io.RawIOBase):
    """``url`` as a seekable binary file; every read is served from cached blocks or Range requests.

    ``size`` is a first guess of the length (a HEAD's Content-Length) or ``None``; ``deadline`` bounds the
    time of every request (a fresh one of ``config.time_budget`` seconds by default).
    """

    def __init__(
        self,
        url: str | httpx.URL,
        client: httpx.Client,
        *,
        config: ProbeConfig | None = None,
        deadline: Deadline | None = None,
        size: int | None = None,
        eof_on_failure: bool = False,
    ) -> None:
        super().__init__()
        self.config = config or ProbeConfig()
        if "x-api-key" in client.headers:
            msg = "refusing to read media through an httpx.Client that sends x-api-key"
            raise ValueError(msg)
        self.url = httpx.URL(str(url))
        self._client = client
        self._deadline = deadline or Deadline(self.config.time_budget, self.config.clock)
        self._size_guess = size
        self._size: int | None = None
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._linear: httpx.Response | None = None
        self._linear_iter: Iterator[bytes] | None = None
        self._linear_data = bytearray()
        self._eof_on_failure = eof_on_failure
        #: Body bytes received and requests sent, all reads together.
        self.bytes_read = 0
        self.requests = 0
        #: False once the server answered a Range request with 200; None until a GET was answered.
        self.range_supported: bool | None = None
        #: Status and headers of the first GET answered.
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        #: The first failure when ``eof_on_failure`` is set.
        self.failure: Exception | None = None

    # -- io.RawIOBase ----------------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            size = self.size
            if size is None:
                msg = f"{redact(self.url)}: the length is unknown, so it cannot seek from the end"
                raise OSError(msg)
            target = size + offset
        else:
            msg = f"invalid whence {whence}"
            raise ValueError(msg)
        if target < 0:
            msg = f"negative seek position {target}"
            raise OSError(msg)
        self._pos = target
        return target

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._read(self._pos, len(buffer))
        except (ByteBudgetExceeded, TimeBudgetExceeded, FetchError) as exc:
            if not self._eof_on_failure:
                raise
            self.failure = self.failure or exc
            return 0
        n = len(data)
        memoryview(buffer)[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if self._linear is not None:
            self._linear.close()
            self._linear = None
        super().close()

    # -- size ------------------------------------------------------------------------------------------

    @property
    def size(self) -> int | None:
        """The file's length: from Content-Range once seen, else the first guess; may fetch the first block."""
        if self._size is None and self.status is None:
            try:
                self._fetch(0, 1)
            except (ByteBudgetExceeded, TimeBudgetExceeded, FetchError) as exc:
                if not self._eof_on_failure:
                    raise
                self.failure = self.failure or exc
        if self._size is None and self._size_guess is None and self._linear is not None:
            self._drain()
        return self._size if self._size is not None else self._size_guess

    # -- reading ---------------------------------------------------------------------------------------

    def _ranges_ignored(self) -> bool:
        return self.range_supported is False

    def _read(self, pos: int, want: int) -> bytes:
        bs = self.config.block_size
        known = self._size if self._size is not None else None
        if want <= 0 or (known is not None and pos >= known):
            return b""
        if self._ranges_ignored():
            self._read_linear(pos + want)
            return bytes(self._linear_data[pos : pos + want])
        end = pos + want if known is None else min(pos + want, known)
        first, last = pos // bs, (end - 1) // bs
        missing = [b for b in range(first, last + 1) if b not in self._blocks]
        if missing:
            self._fetch(missing[0], missing[-1] + 1)
            if self._ranges_ignored():
                return bytes(self._linear_data[pos : pos + want])
        out = bytearray()
        for index in range(first, last + 1):
            block = self._blocks.get(index)
            if block is None:
                break
            self._blocks.move_to_end(index)
            lo = max(pos, index * bs) - index * bs
            hi = min(end, (index + 1) * bs) - index * bs
            out += block[lo:hi]
            if len(block) < bs:  # a short block is the end of the file
                break
        self._evict()
        return bytes(out)

    def _fetch(self, first: int, stop: int) -> None:
        """Get blocks ``[first, stop)`` (fewer when the budget allows only the first)."""
        if self.failure is not None:
            raise self.failure
        bs, budget = self.config.block_size, self.config.byte_budget
        left = budget - self.bytes_read
        if left < bs and not (self._size is not None and self._size - first * bs <= left):
            msg = (
                f"{redact(self.url)}: reading on at byte {first * bs:,} would pass the byte budget of "
                f"{budget:,} bytes"
            )
            raise ByteBudgetExceeded(msg)
        stop = min(stop, first + max(1, left // bs))
        start, end = first * bs, stop * bs
        response = open_response(
            self._client,
            "GET",
            self.url,
            config=self.config,
            deadline=self._deadline,
            headers={"range": f"bytes={start}-{end - 1}"},
        )
        self.requests += 1
        keep = False
        try:
            if self.status is None:
                self.status, self.headers = response.status_code, response.headers
            if response.status_code == 206:
                self.range_supported = True
                self._read_partial(response, start, end)
            elif response.status_code == 416:
                self._size = self._total(response.headers.get("content-range"), default=start)
            elif response.status_code == 200:
                self.range_supported = False
                self._linear, self._linear_iter = response, response.iter_raw(bs)
                keep = True
                length = response.headers.get("content-length", "")
                self._size_guess = int(length) if length.isdigit() else None
                self._read_linear(end)
            else:
                status = response.status_code
                msg = f"{redact(self.url)}: HTTP {status} {response.reason_phrase}".rstrip()
                raise FetchError(msg, status=status)
        except httpx.TransportError as exc:
            raise self._broken(exc) from None
        finally:
            if not keep:
                release(response)

    def _broken(self, exc: httpx.TransportError) -> Exception:
        where = redact(self.url)
        if isinstance(exc, httpx.TimeoutException):
            if self._deadline.remaining() <= 0:
                return TimeBudgetExceeded(
                    f"GET {where}: not read within the probe's time budget of {self._deadline.budget:g} s"
                )
            return FetchError(
                f"{where}: the server stopped sending (nothing for {self.config.read_timeout:g} s)"
            )
        return FetchError(f"{where}: the server broke off the answer ({exc})")

    @staticmethod
    def _total(header: str | None, *, default: int | None) -> int | None:
        match = _CONTENT_RANGE.match(header or "")
        if match and match.group(3) != "*":
            return int(match.group(3))
        return default

    def _read_partial(self, response: httpx.Response, start: int, end: int) -> None:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match and match.group(3) != "*":
            self._size = int(match.group(3))
        if match and match.group(1) is not None and int(match.group(1)) != start:
            msg = f"{redact(self.url)}: asked for bytes from {start:,}, the server sent bytes from {match.group(1)}"
            raise FetchError(msg)
        data, received = bytearray(), 0
        for chunk in response.iter_raw(self.config.block_size):
            self._deadline.check(f"GET {redact(self.url)}")
            data += chunk[: end - start - len(data)]
            received += len(chunk)
            self.bytes_read += len(chunk)
            if received > end - start:  # more than asked for: stop here (the connection is dropped)
                break
        if len(data) < end - start and self._size is None:
            self._size = start + len(data)
        self._store(start, bytes(data))

    def _read_linear(self, upto: int) -> None:
        """Read the whole-body stream on until byte ``upto`` (or its end, or the byte budget)."""
        budget, data = self.config.byte_budget, self._linear_data
        while self._linear is not None and self._linear_iter is not None and len(data) < upto:
            if self.failure is not None:
                raise self.failure
            if self.bytes_read >= budget:
                msg = (
                    f"{redact(self.url)}: the server ignores Range requests and the data needed lies past "
                    f"the byte budget of {budget:,} bytes"
                )
                raise ByteBudgetExceeded(msg)
            self._deadline.check(f"GET {redact(self.url)}")
            try:
                chunk = next(self._linear_iter)
            except StopIteration:
                self._size = len(data)
                self._linear.close()
                self._linear = None
                return
            except httpx.TransportError as exc:
                self._linear.close()
                self._linear = None
                raise self._broken(exc) from None
            chunk = chunk[: budget - self.bytes_read]
            self.bytes_read += len(chunk)
            data += chunk

    def _drain(self) -> None:
        try:
            self._read_linear(1 << 62)
        except (ByteBudgetExceeded, TimeBudgetExceeded) as exc:
            if not self._eof_on_failure:
                raise
            self.failure = self.failure or exc

    def _store(self, start: int, data: bytes) -> None:
        """Cut ``data``, which begins at the block-aligned ``start``, into cached blocks."""
        bs = self.config.block_size
        for at in range(0, len(data), bs):
            index = (start + at) // bs
            self._blocks[index] = data[at : at + bs]
            self._blocks.move_to_end(index)

    def _evict(self) -> None:
        while len(self._blocks) > self.config.cache_blocks:
            self._blocks.popitem(last=False)
