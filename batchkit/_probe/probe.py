"""Probe many media URLs at once, politely and within bounds: :func:`probe_urls`.

For each distinct URL: when the cache holds a result, a HEAD first, and the cached result when the validators
(ETag, Last-Modified, Content-Length) still match; a HEAD refused with a 4xx other than 404/410 (presigned GET
URLs, some CDNs) falls back to the first Range read's headers. Without a cached result there is no HEAD: the
first Range read answers everything a HEAD would (status, redirects, size in Content-Range, type, validators),
so a HEAD would only add a round trip per URL (``ProbeConfig.head_first`` restores it). Then Range reads as
the parser needs them: the first block is sniffed
(a page or text is ``media-not-media`` whatever its Content-Type), the rest is read through a
:class:`~batchkit._probe.rangefile.RangeFile` (the MP4 index may sit at the end). Every URL's probe is bounded
by the byte and time budgets of :class:`ProbeConfig`, and its failures become :class:`MediaInfo` problems,
never exceptions.

Scheduling: one httpx connection pool, a thread pool of ``concurrency`` workers, and a dispatcher that starts
a URL only while its host (``host:port``) has fewer than ``per_host`` probes running, taking hosts in turn so
that one slow host does not hold every worker.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Final

import httpx

from .._errors import ConfigurationError
from .cache import ProbeCache, validators_match
from .config import Deadline, ProbeConfig, TimeBudgetExceeded
from .fetch import FetchError, check_url, open_response, redact, release
from .media import MediaInfo, read_media
from .rangefile import ByteBudgetExceeded, RangeFile
from .sniff import Sniff, sniff

__all__ = ["ProgressCallback", "probe_urls"]

log = logging.getLogger("batchkit")

#: ``on_progress(done, total, cached, bytes_read)``, called from the calling thread after every URL.
ProgressCallback = Callable[[int, int, int, int], None]

_GONE: Final = frozenset({404, 410})
_KIND_ORDER: Final = {"video": 0, "audio": 1}
_PAGE_WORDS: Final = {
    "HTML": "an HTML page",
    "XML": "an XML document",
    "JSON": "a JSON document",
    "SVG": "an SVG image",
    "text": "plain text",
}


@dataclass(frozen=True, slots=True)
class _Head:
    status: int
    headers: httpx.Headers
    url: httpx.URL

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def size(self) -> int | None:
        length = self.headers.get("content-length", "")
        return int(length) if length.isdigit() else None


def probe_urls(
    urls: Iterable[str | tuple[str, str]],
    *,
    config: ProbeConfig | None = None,
    cache: ProbeCache | None = None,
    http: httpx.Client | None = None,
    on_progress: ProgressCallback | None = None,
    refresh: bool = False,
) -> dict[str, MediaInfo]:
    """Probe every distinct URL of ``urls``; a :class:`MediaInfo` for each, in first-seen order.

    ``urls`` holds URLs, or ``(url, kind)`` pairs where ``kind`` says how requests use it (``video``,
    ``audio``); a URL used both ways is probed once, with kind ``video+audio``. ``cache`` reuses results of
    earlier probes whose validators still match (``refresh=True`` probes everything again, and stores the
    new results). ``http`` is the connection pool to use (it must not send ``x-api-key``; by default one is
    made and closed). Never raises for a URL's sake: every failure is a :class:`MediaInfo` problem.
    """
    config = config or ProbeConfig()
    kinds: dict[str, set[str]] = {}
    for item in urls:
        url, kind = (item, "") if isinstance(item, str) else item
        kinds.setdefault(url, set())
        if kind:
            kinds[url].add(kind)
    client = http or httpx.Client(
        limits=httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency),
        follow_redirects=False,
        verify=_tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
    )
    if "x-api-key" in client.headers:
        msg = (
            "refusing to probe media with an httpx.Client that sends x-api-key: media hosts never get the key"
        )
        raise ConfigurationError(msg)
    try:
        results = _run(kinds, client, config, cache, refresh, on_progress)
    finally:
        if http is None:
            client.close()
    infos = {url: results[url] for url in kinds}
    problems = Counter(info.problem for info in infos.values() if info.problem)
    log.info(
        "probe: %d URL(s), %d from the cache, %d byte(s) read, problems: %s",
        len(infos),
        sum(info.from_cache for info in infos.values()),
        sum(info.bytes_read for info in infos.values()),
        dict(problems) or "none",
    )
    return infos


@functools.lru_cache(maxsize=4)
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle costs a quarter of a second."""
    return httpx.create_ssl_context()


def _host_key(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""
    return f"{parsed.host.lower()}:{parsed.port or {'http': 80, 'https': 443}.get(parsed.scheme, 0)}"


def _run(
    kinds: Mapping[str, set[str]],
    client: httpx.Client,
    config: ProbeConfig,
    cache: ProbeCache | None,
    refresh: bool,
    on_progress: ProgressCallback | None,
) -> dict[str, MediaInfo]:
    queues: dict[str, deque[str]] = {}
    for url in kinds:
        queues.setdefault(_host_key(url), deque()).append(url)
    total, done, cached, read = len(kinds), 0, 0, 0
    results: dict[str, MediaInfo] = {}
    if on_progress is not None:
        on_progress(0, total, 0, 0)
    if not total:
        return results
    running: Counter[str] = Counter()
    pending: dict[Future[MediaInfo], tuple[str, str]] = {}
    with ThreadPoolExecutor(
        max_workers=min(config.concurrency, total), thread_name_prefix="batchkit-probe"
    ) as pool:

        def fill() -> None:
            progress = True
            while progress and len(pending) < config.concurrency:
                progress = False
                for host, queue in queues.items():
                    if queue and running[host] < config.per_host and len(pending) < config.concurrency:
                        url = queue.popleft()
                        kind = "+".join(sorted(kinds[url], key=lambda k: (_KIND_ORDER.get(k, 9), k)))
                        future = pool.submit(_probe_one, url, kind, client, config, cache, refresh)
                        pending[future] = (url, host)
                        running[host] += 1
                        progress = True

        fill()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                url, host = pending.pop(future)
                running[host] -= 1
                info = future.result()  # _probe_one returns for every URL; only a config error raises
                results[url] = info
                done += 1
                cached += info.from_cache
                read += info.bytes_read
            fill()
            if on_progress is not None:
                on_progress(done, total, cached, read)
    return results


def _probe_one(
    url: str, kind: str, client: httpx.Client, config: ProbeConfig, cache: ProbeCache | None, refresh: bool
) -> MediaInfo:
    """Everything about one URL, as a MediaInfo; only a configuration error escapes."""
    try:
        return _probe(url, kind, client, config, cache, refresh)
    except ConfigurationError:
        raise
    except (FetchError, TimeBudgetExceeded) as exc:
        return MediaInfo(
            url, kind, problem="media-unreachable", http_status=getattr(exc, "status", None), error=str(exc)
        )
    except Exception as exc:  # a parser's bug on odd bytes must not stop the other URLs
        log.debug("probe: %s failed unexpectedly", redact(url), exc_info=True)
        return MediaInfo(
            url,
            kind,
            problem="media-unreadable",
            error=f"the probe failed on this file ({type(exc).__name__}: {exc})",
        )


def _head(client: httpx.Client, url: httpx.URL, config: ProbeConfig, deadline: Deadline) -> _Head:
    response = open_response(client, "HEAD", url, config=config, deadline=deadline)
    release(response)
    return _Head(response.status_code, response.headers, response.url)


def _probe(
    url: str, kind: str, client: httpx.Client, config: ProbeConfig, cache: ProbeCache | None, refresh: bool
) -> MediaInfo:
    target = check_url(url)
    deadline = Deadline(config.time_budget, config.clock)
    previous = cache.get(url) if cache is not None and not refresh else None
    head: _Head | None = None
    if previous is not None or config.head_first:
        head = _head(client, target, config, deadline)
        if head.status in _GONE or head.status >= 500 or head.status == 429:
            reason = f"HTTP {head.status} {httpx.codes.get_reason_phrase(head.status)}".rstrip()
            retried = f" after {config.retries} retries" if head.status >= 500 or head.status == 429 else ""
            return MediaInfo(
                url, kind, problem="media-unreachable", http_status=head.status, error=f"{reason}{retried}"
            )
        if previous is not None and head.ok:
            etag, modified = head.headers.get("etag"), head.headers.get("last-modified")
            if validators_match(previous, etag, modified, head.size):
                return previous.evolve(kind=kind or previous.kind, from_cache=True, bytes_read=0, requests=1)
    usable = head is not None and head.ok
    file = RangeFile(
        head.url if head is not None and usable else target,
        client,
        config=config,
        deadline=deadline,
        size=head.size if head is not None and usable else None,
        eof_on_failure=True,
    )
    with file:
        info = _read(url, kind, file, head, config)
        requests = file.requests + (head is not None)
    if previous is not None and validators_match(previous, info.etag, info.last_modified, info.size):
        return previous.evolve(
            kind=kind or previous.kind, from_cache=True, bytes_read=info.bytes_read, requests=requests
        )
    info = info.evolve(requests=requests)
    if cache is not None:
        cache.put(info)
    return info


def _read(url: str, kind: str, file: RangeFile, head: _Head | None, config: ProbeConfig) -> MediaInfo:
    first = file.read(config.block_size)
    fallback = head.headers if head is not None else httpx.Headers()
    headers = file.headers if file.headers is not None else fallback
    base = MediaInfo(
        url,
        kind,
        http_status=file.status if file.status is not None else (head.status if head is not None else None),
        content_type=headers.get("content-type") or fallback.get("content-type"),
        etag=headers.get("etag") or fallback.get("etag"),
        last_modified=headers.get("last-modified") or fallback.get("last-modified"),
    )
    failure = file.failure
    if failure is not None and not first:
        if isinstance(failure, ByteBudgetExceeded):
            return base.evolve(bytes_read=file.bytes_read, error=str(failure))
        status = getattr(failure, "status", None)
        return base.evolve(
            problem="media-unreachable",
            http_status=status or base.http_status,
            error=str(failure),
            bytes_read=file.bytes_read,
        )
    sniffed = sniff(first)
    if sniffed.kind in ("page", "other", "empty"):
        return base.evolve(
            problem="media-not-media",
            size=file.size,
            bytes_read=file.bytes_read,
            error=_not_media(sniffed, base),
        )
    parsed = read_media(file, sniffed, parser=config.parser)
    return base.evolve(
        problem=parsed.problem,
        size=file.size,
        bytes_read=file.bytes_read,
        duration=parsed.duration,
        has_video=parsed.has_video,
        has_audio=parsed.has_audio,
        video_codec=parsed.video_codec,
        audio_codec=parsed.audio_codec,
        width=parsed.width,
        height=parsed.height,
        fps=parsed.fps,
        sample_rate=parsed.sample_rate,
        container=parsed.container,
        range_supported=file.range_supported,
        parser=parsed.parser,
        error=parsed.error,
    )


def _not_media(sniffed: Sniff, base: MediaInfo) -> str:
    claimed = f" (served as {base.content_type})" if base.content_type else ""
    if sniffed.kind == "empty":
        return f"the URL serves 0 bytes{claimed}"
    if sniffed.kind == "page":
        what = _PAGE_WORDS.get(sniffed.description, f"a {sniffed.description} page")
        return (
            f"the URL serves {what}{claimed}, not a media file: a share or preview link? "
            "Use the file's direct download link"
        )
    return f"the URL serves {sniffed.description}{claimed}, not a media file"
