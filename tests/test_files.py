"""The one atomic write: the whole new file or the old one, never a half-written one, with the usual
permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from batchkit import InputError
from batchkit._files import atomic_write, save


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_replaces_the_file_with_the_umask_permissions(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")
    previous = os.umask(0o027)
    try:
        atomic_write(target, b"new")
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o640  # 0666 less the umask, as open() gives; not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"old")

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_save_makes_the_folder_and_words_a_failure_in_one_line(tmp_path: Path) -> None:
    page = tmp_path / "deep" / "er" / "review.html"
    save(page, b"<html></html>")
    assert page.read_bytes() == b"<html></html>"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InputError, match=r"cannot write .*nothing half-written was left there"):
        save(blocker / "review.html", b"x")
