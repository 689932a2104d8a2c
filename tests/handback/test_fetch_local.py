"""fetch_outputs and local destinations: bad names and bad folders refused up front, full disks and folders
in the way reported per file, ledgers that are damaged or locked, and kills and Ctrl-C that leave nothing
half-written and are completed by the next run."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import polars as pl
import pytest
from servers import (
    FAST,
    MP4,
    MediaHost,
    item,
    media_host_fixture,  # noqa: F401 - fixtures
    tree,
    wait_for,
)

from batchkit import InputError
from batchkit._handback.fetch import FetchItem, fetch_outputs
from batchkit._handback.ledger import FetchLedger, journal_path
from batchkit._handback.stores import LocalStore, StoreError, Writer, open_destination


def _fetch(items: list[FetchItem], dest: Path | str, tmp_path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("options", FAST)
    return fetch_outputs(items, dest, ledger_path=tmp_path / "fetched.parquet", **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``path`` (needs root); the test is skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# -- refused before any request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../escape.mp4", "/etc/passwd.mp4", "a\\b.mp4", "de//a.mp4", "CON.mp4", ".hidden.mp4", "a\0b.mp4", ""],
    ids=["dotdot", "absolute", "backslash", "empty-part", "device-name", "leading-dot", "nul", "empty"],
)
def test_unsafe_names_are_refused_before_any_request(
    media_host: MediaHost, tmp_path: Path, name: str
) -> None:
    """A name that could escape the folder or that a file system refuses is an InputError; nothing is requested."""
    items = [item(media_host, "/ok/a", "fine.mp4"), item(media_host, "/ok/b", name)]
    with pytest.raises(InputError, match="ok-b"):
        _fetch(items, tmp_path / "v", tmp_path)
    assert media_host.count() == 0
    assert not (tmp_path / "v").exists()


def test_names_that_differ_only_in_case_are_refused(media_host: MediaHost, tmp_path: Path) -> None:
    """Intro.mp4 and intro.mp4 are one file on macOS and Windows: refused, as is a request listed twice."""
    with pytest.raises(InputError, match="both be saved"):
        _fetch(
            [item(media_host, "/ok/a", "Intro.mp4"), item(media_host, "/ok/b", "intro.mp4")],
            tmp_path / "v",
            tmp_path,
        )
    with pytest.raises(InputError, match="listed twice"):
        _fetch(
            [item(media_host, "/ok/a", "a.mp4"), item(media_host, "/ok/a", "b.mp4")], tmp_path / "v", tmp_path
        )
    assert media_host.count() == 0


def test_a_destination_that_is_a_file_is_refused(media_host: MediaHost, tmp_path: Path) -> None:
    """--to pointing at a file, or below one: one clear InputError, no request, the file untouched."""
    blocker = tmp_path / "report.csv"
    blocker.write_text("a,b\n")
    with pytest.raises(InputError, match="is a file"):
        _fetch([item(media_host, "/ok/a")], blocker, tmp_path)
    with pytest.raises(InputError, match="cannot create the destination folder"):
        _fetch([item(media_host, "/ok/a")], blocker / "videos", tmp_path)
    assert media_host.count() == 0
    assert blocker.read_text() == "a,b\n"


def test_a_destination_that_cannot_be_written_is_refused(media_host: MediaHost, tmp_path: Path) -> None:
    """A read-only destination (a read-only tmpfs, or a folder without write permission for non-root users)."""
    if os.geteuid() == 0:
        with tmpfs(tmp_path / "ro", "ro,size=1m") as folder, pytest.raises(InputError, match="read-only"):
            _fetch([item(media_host, "/ok/a")], folder, tmp_path)
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        with pytest.raises(InputError, match="permission denied"):
            _fetch([item(media_host, "/ok/a")], folder, tmp_path)
    assert media_host.count() == 0


# -- one file at a time -----------------------------------------------------------------------------------


def test_a_folder_in_the_way_is_a_finding_for_that_file_only(media_host: MediaHost, tmp_path: Path) -> None:
    """A folder where a file should go: fetch-destination for it; the others are fetched; no temp file stays."""
    (tmp_path / "v" / "b.mp4").mkdir(parents=True)
    items = [
        item(media_host, "/ok/a", "a.mp4"),
        item(media_host, "/ok/b", "b.mp4"),
        item(media_host, "/ok/c", "c.mp4"),
    ]
    result = _fetch(items, tmp_path / "v", tmp_path)
    assert [(f.code, f.request_id) for f in result.findings] == [("fetch-destination", "ok-b")]
    assert "is a folder" in result.findings[0].message
    assert sorted(tree(tmp_path / "v")) == ["a.mp4", "c.mp4"]


def test_a_full_disk_stops_the_fetch_cleanly_and_the_next_run_finishes(
    media_host: MediaHost, tmp_path: Path
) -> None:
    """A real 192 KiB tmpfs fills up: complete files only, fetch-destination findings saying the disk is full,
    no temporary file left; once there is room, the next run fetches just the missing ones."""
    items = [item(media_host, f"/ok/{i}", f"{i:02d}.mp4") for i in range(20)]
    with tmpfs(tmp_path / "small", "size=192k") as folder:
        result = _fetch(items, folder, tmp_path, concurrency=2)
        assert result.findings
        assert {f.code for f in result.findings} == {"fetch-destination"}
        assert all("disk is full" in f.message or "stopped when" in f.message for f in result.findings)
        files = tree(folder)
        assert files
        assert all(not name.startswith(".") for name in files)
        assert all(size == len(MP4) for _, size, _ in files.values())
        assert sorted(files) == sorted(e.name for e in result.fetched)
        requests = media_host.count()
        assert requests < len(items)  # it stopped starting downloads
        subprocess.run(["mount", "-o", "remount,size=2m", str(folder)], check=True)
        again = _fetch(items, folder, tmp_path)
        assert again.ok
        assert sorted(e.request_id for e in again.fetched) == sorted(f.request_id for f in result.findings)
        assert len(tree(folder)) == 20


class _FillingStore(LocalStore):
    """A local store whose disk holds ``room`` bytes: writing past it raises ENOSPC, as a full disk does."""

    def __init__(self, root: Path, room: int) -> None:
        super().__init__(root, fsync=False)
        self.room = room
        self.lock = threading.Lock()

    def writer(self, name: str) -> Writer:
        inner = super().writer(name)
        store = self

        class Filling:
            def write(self, chunk: bytes) -> None:
                with store.lock:
                    store.room -= len(chunk)
                    full = store.room < 0
                if full:
                    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    raise StoreError(f"{name}: the disk is full ({exc.strerror})", fatal=True)
                inner.write(chunk)

            def commit(self, size: int) -> None:
                inner.commit(size)

            def abort(self) -> None:
                inner.abort()

        return Filling()


def test_an_injected_enospc_is_handled_like_a_full_disk(media_host: MediaHost, tmp_path: Path) -> None:
    """The same guarantees without root: ENOSPC from the file system wrapper → findings, whole files, no temps."""
    items = [item(media_host, f"/ok/{i}", f"{i:02d}.mp4") for i in range(12)]
    store = _FillingStore(tmp_path / "v", room=5 * len(MP4) + 100)
    result = fetch_outputs(items, store, ledger_path=tmp_path / "l.parquet", concurrency=1, options=FAST)
    assert len(result.fetched) == 5
    assert {f.code for f in result.findings} == {"fetch-destination"}
    assert len(result.findings) == 7
    tried = [f for f in result.findings if not f.message.startswith("not fetched")]
    untried = [f for f in result.findings if "not fetched: the fetch stopped when" in f.message]
    assert len(tried) + len(untried) == 7
    assert 1 <= len(tried) <= 2  # the one that hit the wall, and perhaps one already started
    assert media_host.count() == 5 + len(tried)
    assert sorted(tree(tmp_path / "v")) == sorted(e.name for e in result.fetched)


def test_file_urls_are_local_folders(media_host: MediaHost, tmp_path: Path) -> None:
    """file:///path fetches into that folder without fsspec; a file URL naming another host is refused."""
    result = _fetch([item(media_host, "/ok/a")], f"file://{tmp_path / 'v'}", tmp_path)
    assert result.ok
    assert (tmp_path / "v" / "ok-a.mp4").read_bytes() == MP4
    assert isinstance(open_destination(f"file://{tmp_path}"), LocalStore)
    with pytest.raises(InputError, match="this machine"):
        open_destination("file://server/share")


def test_memory_urls_go_through_fsspec_and_resume(media_host: MediaHost, tmp_path: Path) -> None:
    """memory:// (fsspec): files land whole, no temp keys remain, and a re-run requests nothing."""
    import fsspec

    items = [item(media_host, f"/ok/{i}", f"de/{i}.mp4") for i in range(3)]
    dest = f"memory://fetch-{tmp_path.name}/out"
    result = _fetch(items, dest, tmp_path)
    assert result.ok
    fs = fsspec.filesystem("memory")
    assert sorted(fs.find(f"/fetch-{tmp_path.name}")) == [
        f"/fetch-{tmp_path.name}/out/de/{i}.mp4" for i in range(3)
    ]
    assert fs.cat_file(f"/fetch-{tmp_path.name}/out/de/0.mp4") == MP4
    assert result.fetched[0].destination == f"memory:///fetch-{tmp_path.name}/out/de/0.mp4"
    before = media_host.count()
    again = _fetch(items, dest, tmp_path)
    assert len(again.present) == 3
    assert media_host.count() == before


# -- the ledger -------------------------------------------------------------------------------------------


def test_a_damaged_ledger_is_a_clear_error(media_host: MediaHost, tmp_path: Path) -> None:
    """Bytes that are not Parquet, or a table without the ledger's columns: InputError saying how to start over."""
    ledger = tmp_path / "fetched.parquet"
    ledger.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match=r"not a readable fetch ledger.*move it aside"):
        _fetch([item(media_host, "/ok/a")], tmp_path / "v", tmp_path)
    pl.DataFrame({"request_id": ["a"], "file": ["x"]}).write_parquet(ledger)
    with pytest.raises(InputError, match="no destination, bytes, sha256 column"):
        _fetch([item(media_host, "/ok/a")], tmp_path / "v", tmp_path)
    pl.DataFrame(
        {"request_id": ["a"], "destination": ["d"], "bytes": ["many"], "sha256": ["x"]}
    ).write_parquet(ledger)
    with pytest.raises(InputError, match="wrong type"):
        _fetch([item(media_host, "/ok/a")], tmp_path / "v", tmp_path)
    assert media_host.count() == 0


def test_hand_edited_rows_only_cause_refetches(media_host: MediaHost, tmp_path: Path) -> None:
    """A row whose size was edited no longer matches its file (fetched again); a row with nulls is ignored."""
    items = [item(media_host, f"/ok/{i}") for i in range(3)]
    _fetch(items, tmp_path / "v", tmp_path)
    ledger = tmp_path / "fetched.parquet"
    frame = pl.read_parquet(ledger)
    frame = frame.with_columns(
        pl.when(pl.col("request_id") == "ok-0").then(pl.lit(1)).otherwise(pl.col("bytes")).alias("bytes"),
        pl.when(pl.col("request_id") == "ok-1").then(None).otherwise(pl.col("sha256")).alias("sha256"),
    )
    frame.write_parquet(ledger)
    before = media_host.count()
    result = _fetch(items, tmp_path / "v", tmp_path)
    assert sorted(e.request_id for e in result.fetched) == ["ok-0", "ok-1"]
    assert media_host.count() - before == 2
    assert pl.read_parquet(ledger).height == 3


def test_a_torn_journal_line_is_ignored(media_host: MediaHost, tmp_path: Path) -> None:
    """A journal a crash cut mid-line: the complete lines count (files present), the torn one is ignored."""
    items = [item(media_host, f"/ok/{i}") for i in range(2)]
    _fetch(items, tmp_path / "v", tmp_path)
    ledger = tmp_path / "fetched.parquet"
    lines = [b'{"request_id": "ok-0", "destina']
    with FetchLedger.open(ledger) as opened:
        entries = opened.entries
    ledger.unlink()
    journal_path(ledger).write_bytes(b"".join(e.to_json() + b"\n" for e in entries) + lines[0])
    before = media_host.count()
    result = _fetch(items, tmp_path / "v", tmp_path)
    assert len(result.present) == 2
    assert media_host.count() == before
    assert pl.read_parquet(ledger).height == 2
    assert not journal_path(ledger).exists()


def test_one_fetch_at_a_time_per_ledger(media_host: MediaHost, tmp_path: Path) -> None:
    """While a ledger is held (another fetch), a second fetch on it stops with a clear error and requests nothing."""
    with FetchLedger.open(tmp_path / "fetched.parquet"), pytest.raises(InputError, match="another fetch"):
        _fetch([item(media_host, "/ok/a")], tmp_path / "v", tmp_path)
    assert media_host.count() == 0
    assert _fetch([item(media_host, "/ok/a")], tmp_path / "v", tmp_path).ok


# -- interrupted --------------------------------------------------------------------------------------------


_CHILD = """
import json, sys
from batchkit._handback.fetch import FetchItem, FetchOptions, fetch_outputs
spec = json.loads(sys.argv[1])
items = [FetchItem(**i) for i in spec["items"]]
fetch_outputs(items, spec["dest"], ledger_path=spec["ledger"], concurrency=8, options=FetchOptions(fsync=False, chunk_size=65536))
"""


def test_kill_9_mid_file_leaves_no_file_and_the_next_run_completes_it(
    media_host: MediaHost, tmp_path: Path
) -> None:
    """A fetch killed with SIGKILL while a big file streams: the finished files are in place and journaled, the big
    one exists only as a temporary file; the next run fetches only it, removes the leftover and writes the ledger."""
    fast = [item(media_host, f"/ok/{i}") for i in range(4)]
    big = item(media_host, "/hang/big")
    spec = {
        "items": [
            {"request_id": i.request_id, "output_url": i.output_url, "name": i.name} for i in [*fast, big]
        ],
        "dest": str(tmp_path / "v"),
        "ledger": str(tmp_path / "fetched.parquet"),
    }
    child = subprocess.Popen([sys.executable, "-c", _CHILD, orjson.dumps(spec).decode()])
    journal = journal_path(tmp_path / "fetched.parquet")
    try:

        def stuck_mid_file() -> bool:
            temps = list((tmp_path / "v").glob(".hang-big.mp4.*.part")) if (tmp_path / "v").exists() else []
            lines = journal.read_bytes().count(b"\n") if journal.exists() else 0
            return lines == 4 and bool(temps) and temps[0].stat().st_size >= 256 * 1024

        wait_for(stuck_mid_file, "the child to finish the small files and stall in the big one")
    finally:
        child.kill()
        child.wait()
    files = tree(tmp_path / "v")
    assert "hang-big.mp4" not in files
    assert [name for name in files if name.endswith(".part")]
    assert not (tmp_path / "fetched.parquet").exists()
    media_host.release.set()
    before = media_host.count("/ok/")
    result = _fetch([*fast, big], tmp_path / "v", tmp_path)
    assert [e.request_id for e in result.fetched] == ["hang-big"]
    assert len(result.present) == 4
    assert media_host.count("/ok/") == before
    assert sorted(tree(tmp_path / "v")) == sorted(i.name for i in [*fast, big])
    assert (tmp_path / "v" / "hang-big.mp4").stat().st_size == 4 * 1024 * 1024
    assert pl.read_parquet(tmp_path / "fetched.parquet").height == 5
    assert not journal.exists()


def test_ctrl_c_mid_file_cleans_up_and_keeps_what_finished(media_host: MediaHost, tmp_path: Path) -> None:
    """SIGINT while a big file streams: KeyboardInterrupt comes back, its temporary file is gone, the finished files
    are in the ledger; the next run fetches only the interrupted one."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach only the main thread")
    fast = [item(media_host, f"/ok/{i}") for i in range(3)]
    big = item(media_host, "/hang/big")
    journal = journal_path(tmp_path / "fetched.parquet")

    def stalled() -> bool:
        temps = list((tmp_path / "v").glob(".hang-big.mp4.*.part")) if (tmp_path / "v").exists() else []
        return bool(temps) and journal.exists() and journal.read_bytes().count(b"\n") == 3

    def interrupt() -> None:
        wait_for(stalled, "the small files to finish and the big one to stall")
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        time.sleep(0.5)  # let the main thread tell the workers to stop before the rest of the body flows
        media_host.release.set()

    watcher = threading.Thread(target=interrupt, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        _fetch([*fast, big], tmp_path / "v", tmp_path, concurrency=4)
    watcher.join(10)
    assert sorted(tree(tmp_path / "v")) == sorted(i.name for i in fast)
    assert pl.read_parquet(tmp_path / "fetched.parquet")["request_id"].sort().to_list() == [
        "ok-0",
        "ok-1",
        "ok-2",
    ]
    assert not journal.exists()
    result = _fetch([*fast, big], tmp_path / "v", tmp_path)
    assert [e.request_id for e in result.fetched] == ["hang-big"]
    assert len(result.present) == 3
