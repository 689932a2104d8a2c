"""Every command of the CLI against the hostile corpus: exit 0, 1 or 2, never a traceback, never a hang,
nothing half-written, and every source row of a build in exactly one place.

The commands come from the click tree (:func:`recipes.commands`), so one added later is run too (with the
generic recipe until it has its own). The quick part runs in this process; ``--hostile-full`` adds the
slow cases, real processes under a memory limit, and full disks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from . import corpus
from .harness import Invocation, check, invoke, read_only, spawn
from .recipes import RECIPES, World, commands, generic

COMMANDS = sorted(commands())


def test_every_command_is_found_and_known() -> None:
    """The walk finds the commands of the CLI; the ones without a recipe of their own get the generic one."""
    assert {
        "validate",
        "build",
        "shard",
        "results",
        "retry",
        "submit",
        "status",
        "wait",
        "run",
        "sandbox",
        "schema",
    } <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_over_the_corpus(command: str, world: World, tmp_path: Path) -> None:
    """Each invocation of the command's recipe keeps every promise."""
    recipe = RECIPES.get(command)
    made = recipe(world) if recipe is not None else generic(command, commands()[command], world)
    ran = 0
    for _, runs in made:
        for number, invocation in enumerate(runs):
            temp = tmp_path / "tmp" / f"{command}-{ran}-{number}"
            temp.mkdir(parents=True)
            check(invoke(invocation, temp))
            ran += 1
    assert ran, f"no invocation of {command}"


def test_a_new_command_gets_the_generic_recipe(world: World) -> None:
    """The generic recipe fills required arguments and options from the corpus by their type."""
    made = generic("validate", commands()["validate"], world)
    argv = [invocation.argv for _, runs in made for invocation in runs]
    assert ["validate", "--help"] in argv
    assert all(len(a) == 2 for a in argv)  # one required argument: a path


# -- the slow part ---------------------------------------------------------------------------------------------


@pytest.mark.hostile_full
@pytest.mark.parametrize("command", COMMANDS)
def test_command_as_a_process(command: str, world: World, tmp_path: Path) -> None:
    """The same recipes as real processes under a 2 GiB address-space limit: a real stderr, a real exit."""
    recipe = RECIPES.get(command)
    made = recipe(world) if recipe is not None else generic(command, commands()[command], world)
    for number, invocation in enumerate(i for _, runs in made for i in runs):
        if any("\x00" in arg for arg in invocation.argv):
            continue  # no process can be given a NUL in its arguments (execve refuses them): the in-process run has it
        temp = tmp_path / "tmp" / str(number)
        temp.mkdir(parents=True)
        check(spawn(invocation, temp))


@pytest.mark.hostile_full
@pytest.mark.parametrize("limit", [4096, 40_000, 100_000, 250_000])
def test_build_when_files_cannot_grow(limit: int, world: World, tmp_path: Path) -> None:
    """A file-size limit (a disk that fills, file by file): exit 0 or 2, no traceback, nothing half-written."""
    source = tmp_path / "many.csv"
    source.write_text(corpus.csv_rows(3000))
    out = tmp_path / "out"
    invocation = Invocation(
        "build, files limited",
        ["build", str(source), "--mapping", str(world.case("mapping", "good.toml").path), "--out", str(out)],
        out=out,
        rows=3000,
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    check(spawn(invocation, temp, file_size=limit))


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.hostile_full
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a small disk needs root"
)
@pytest.mark.parametrize("size", ["64k", "600k", "700k", "716k", "724k", "732k", "2m"])
def test_build_onto_a_full_disk(size: str, world: World, tmp_path: Path) -> None:
    """A real disk that fills at every stage of a build: the spill, the shards, requests.parquet, the
    manifest. Exit 0 or 2; no temporary file left; shards only with their manifest; an earlier build intact."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, size):
        pytest.skip("cannot mount a tmpfs here")
    try:
        source = tmp_path / "many.csv"
        source.write_text(corpus.csv_rows(3000))
        mapping = str(world.case("mapping", "good.toml").path)
        out = disk / "out"
        for round_ in range(2):  # the second build finds the first (or its remains)
            invocation = Invocation(
                f"build onto {size} ({round_})",
                ["build", str(source), "--mapping", mapping, "--out", str(out)],
                out=out,
                rows=3000,
            )
            temp = tmp_path / f"tmp{round_}"
            temp.mkdir()
            check(spawn(invocation, temp))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, check=False)


@pytest.mark.hostile_full
def test_build_into_a_read_only_directory(world: World, tmp_path: Path) -> None:
    out = tmp_path / "ro"
    with read_only(out) as done:
        if not done:
            pytest.skip("cannot make a read-only directory here")
        invocation = Invocation(
            "build into read-only",
            [
                "build",
                str(world.case("source", "good.csv").path),
                "--mapping",
                str(world.case("mapping", "good.toml").path),
                "--out",
                str(out),
            ],
        )
        temp = tmp_path / "tmp"
        temp.mkdir()
        outcome = spawn(invocation, temp)
        check(outcome, codes=(2,))
        assert "cannot write into" in outcome.stderr


@pytest.mark.hostile_full
@pytest.mark.parametrize("after", [0.01, 0.05, 0.15, 0.3, 1.0])
def test_ctrl_c_at_any_moment_is_130(after: float, world: World, tmp_path: Path) -> None:
    """SIGINT during start-up or in the middle of a build: 130 (or killed by the signal before Python
    could handle it), never a traceback, never click's ``Aborted!``, nothing half-written."""
    source = tmp_path / "many.csv"
    source.write_text(corpus.csv_rows(20_000))
    out = tmp_path / "out"
    invocation = Invocation(
        "build, interrupted",
        ["build", str(source), "--mapping", str(world.case("mapping", "good.toml").path), "--out", str(out)],
        out=out,
        rows=20_000,
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    outcome = spawn(invocation, temp, signal_after=after)
    trace = outcome.stderr.split("Traceback", 1)[1] if "Traceback" in outcome.stderr else ""
    frames = set(re.findall(r"batchkit/([\w/]+)\.py", trace))
    if trace and frames <= {"__init__", "__main__"}:
        return  # the first milliseconds, while Python itself starts and before batchkit's code runs
    check(outcome, codes=(0, 130, -2))
