"""Fixtures of the hostile-input harness: the corpus, build directories in hostile states, a world of both.

The corpus and the directories are made once per test process (each xdist worker makes its own).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import batchkit

from . import corpus
from .recipes import World


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--hostile-full"))


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory, full: bool) -> list[corpus.Case]:
    return corpus.build(tmp_path_factory.mktemp("corpus"), full=full)


def _output_file(folder: Path) -> Path:
    return next((folder / "results").glob("*.output.jsonl"))


@pytest.fixture(scope="session")
def builddirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Build directories: one built, one submitted and finished against a sandbox, and copies of that one
    broken in every way a disk, a hand or a server can break them."""
    root = tmp_path_factory.mktemp("builddirs")
    source = root / "people.csv"
    source.write_text(corpus.csv_rows(30))
    mapping = root / "people.toml"
    mapping.write_text(corpus.MAPPING)
    built = root / "built"
    batchkit.build(source, mapping, built)
    finished = root / "finished"
    batchkit.run(source, mapping, finished, batchkit.RunOptions(sandbox=True))
    dirs = {"built": built, "finished": finished}

    def broken(label: str, damage: object) -> None:
        folder = root / label
        shutil.copytree(finished, folder)
        damage(folder)  # type: ignore[operator]
        dirs[label] = folder

    def deep_output(folder: Path) -> None:
        out = _output_file(folder)
        lines = out.read_bytes().splitlines()
        deep = b"[" * 1000 + b'"x"' + b"]" * 1000
        lines[0] = (
            lines[0][:-1] + b',"error":' + deep + b',"status":' + b'{"a":' * 600 + b"1" + b"}" * 600 + b"}"
        )
        out.write_bytes(b"\n".join(lines) + b"\n")

    def fifo_output(folder: Path) -> None:
        out = _output_file(folder)
        out.unlink()
        os.mkfifo(out)

    def results_file(folder: Path) -> None:
        shutil.rmtree(folder / "results")
        (folder / "results").write_text("not a directory")

    def garbage_output(folder: Path) -> None:
        _output_file(folder).write_bytes(bytes(range(256)) * 10 + b"\n" + b"{" * 5000)

    def long_ids_output(folder: Path) -> None:
        out = _output_file(folder)
        out.write_bytes(
            out.read_bytes() + orjson.dumps({"request_id": "x" * 100_000, "status": "COMPLETED"}) + b"\n"
        )

    broken("deep-output", deep_output)
    if hasattr(os, "mkfifo"):
        broken("fifo-output", fifo_output)
    broken("results-a-file", results_file)
    broken("garbage-output", garbage_output)
    broken("long-id-output", long_ids_output)
    broken("manifest-garbage", lambda f: (f / "manifest.json").write_bytes(b"{"))
    broken("manifest-deep", lambda f: (f / "manifest.json").write_bytes(b"[" * 2000 + b"]" * 2000))
    broken("manifest-gone", lambda f: (f / "manifest.json").unlink())
    broken("requests-garbage", lambda f: (f / "requests.parquet").write_bytes(b"PAR1 garbage"))
    broken(
        "journal-garbage",
        lambda f: (f / "journal.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000),
    )
    not_a_dir = root / "not-a-dir"
    not_a_dir.write_text("a file")
    dirs["not-a-dir"] = not_a_dir
    return dirs


@pytest.fixture
def world(cases: list[corpus.Case], builddirs: dict[str, Path], tmp_path: Path, full: bool) -> World:
    """The corpus and fresh copies of the build directories (runs may write into them)."""
    copies: dict[str, Path] = {}
    for label, folder in builddirs.items():
        copies[label] = tmp_path / "dirs" / label
        copies[label].parent.mkdir(exist_ok=True)
        if folder.is_dir():
            shutil.copytree(folder, copies[label], symlinks=True, copy_function=_copy)
        else:
            shutil.copy(folder, copies[label])
    (tmp_path / "scratch").mkdir()
    return World(cases, copies, tmp_path / "scratch", full)


def _copy(source: str, target: str) -> None:
    """copy2, but a FIFO is made again instead of read."""
    if stat.S_ISFIFO(os.lstat(source).st_mode):
        os.mkfifo(target)
    else:
        shutil.copy2(source, target)
