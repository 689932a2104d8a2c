"""The README is the user's manual: its examples run, in order, and print what it says they print.

Python blocks run in order in one copy of the fixtures. What a block prints is checked two ways:

- a ``print(...)`` line with a trailing comment: everything that line printed must read as the comment
  (``...`` stands for any text, as in doctest's ELLIPSIS);
- a ```` ```text ```` block right after the Python block: what the block's other print calls printed (those
  without such a comment), in order, must read as it.

Shell blocks run in order too, in their own copy of the fixtures, with ``SYNC_BASE_URL`` and ``SYNC_API_KEY``
pointing at a sandbox started for the test (the README says where it assumes one). Every command must exit
0, unless its comment says ``exit N``; a command the README marks ``# needs a real API key``, one with a
placeholder in capitals for the reader to fill in (``BATCH_ID``), the foreground ``batchkit sandbox`` server
and ``export`` lines are not run. The opening install commands are
CI's own job; of the first one, its ``batchkit`` part is run here.
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchkit.sandbox import serve

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"```(python|sh|text)\n(.*?)```", flags=re.S)
BIN = Path(sys.executable).parent
_CHECKER = doctest.OutputChecker()
_PLACEHOLDER = re.compile(r"(?<![\w.-])[A-Z][A-Z_]{2,}(?![\w.-])")


@dataclass
class Block:
    kind: str
    code: str
    line: int  # the README line of the block's first line of code


def _blocks() -> list[Block]:
    return [
        Block(m.group(1), m.group(2), README.count("\n", 0, m.start(2)) + 1) for m in FENCE.finditer(README)
    ]


BLOCKS = _blocks()


def _python_examples() -> Iterator[tuple[Block, Block | None]]:
    """Each Python block with the ``text`` block that follows it directly, if any."""
    for i, block in enumerate(BLOCKS):
        if block.kind != "python":
            continue
        after = BLOCKS[i + 1] if i + 1 < len(BLOCKS) else None
        gap = README[README.index(block.code) + len(block.code) : README.index(after.code)] if after else ""
        yield (
            block,
            after if after is not None and after.kind == "text" and gap.strip() == "```\n\n```text" else None,
        )


def _matches(want: str, got: str) -> bool:
    return _CHECKER.check_output(want.strip() + "\n", got.strip() + "\n", doctest.ELLIPSIS)


def _expected_comments(code: str) -> dict[int, str]:
    """Line number (1-based, in the block) → the expected output written after a print call on that line."""
    found = {}
    for number, text in enumerate(code.splitlines(), 1):
        match = re.match(r"^\s*print\(.*\)\s+# (.+)$", text)
        if match:
            found[number] = match.group(1)
    return found


def test_the_readme_has_checked_examples() -> None:
    """Enough examples, and most of them check what they print."""
    examples = list(_python_examples())
    assert len(examples) >= 6
    checked = sum(1 for block, text in examples if text is not None or _expected_comments(block.code))
    assert checked == len(examples), "every Python example shows what it prints"


def test_every_python_example_prints_what_it_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block runs, in order, from a copy of the fixtures (no network, no API key)."""
    shutil.copytree(ROOT / "fixtures", tmp_path / "fixtures")
    monkeypatch.chdir(tmp_path)
    wrong: list[str] = []
    for block, text in _python_examples():
        name = f"README.md line {block.line}"
        printed = _run_block(block.code, name)
        for number, want in _expected_comments(block.code).items():
            got = "\n".join(out for line, out in printed if line == number)
            if not _matches(want, got):
                wrong.append(f"README.md line {block.line + number - 1}: README says\n{want}\ngot\n{got}")
        if text is not None:
            commented = _expected_comments(block.code)
            got = "\n".join(out for line, out in printed if line not in commented)
            if not _matches(text.code, got):
                wrong.append(f"README.md line {text.line}: README says\n{text.code}\ngot\n{got}")
    assert not wrong, "\n\n".join(wrong)


def _run_block(code: str, name: str) -> list[tuple[int, str]]:
    """Run one block with ``print`` recorded: (line of the block that printed, the text)."""
    printed: list[tuple[int, str]] = []

    def record(*args: Any, sep: str | None = " ", **_: Any) -> None:
        frame = sys._getframe(1)
        while frame.f_code.co_filename != name and frame.f_back is not None:
            frame = frame.f_back
        printed.append((frame.f_lineno, (" " if sep is None else sep).join(str(a) for a in args)))

    try:
        exec(compile(code, name, "exec"), {"__name__": "__readme__", "print": record})
    except Exception as exc:  # pragma: no cover - the message says which block broke
        pytest.fail(f"{name}: {type(exc).__name__}: {exc}\n{code}")
    return printed


def _commands(block: Block) -> Iterator[tuple[int, str, int]]:
    """The shell lines to run: (README line, command, expected exit status)."""
    for offset, raw in enumerate(block.code.splitlines()):
        command, _, comment = raw.partition("  #")
        command = command.strip()
        if not command or command.startswith(("export ", "batchkit sandbox")):
            continue
        if "needs a real API key" in comment or _PLACEHOLDER.search(re.sub(r"\$\{?[A-Z_]+\}?", "", command)):
            continue
        status = re.search(r"\bexit (\d)\b", comment)
        yield block.line + offset, command, int(status.group(1)) if status else 0


def test_every_shell_example_works_in_order(tmp_path: Path) -> None:
    """The README's commands, one after another, as a user following it would type them."""
    shutil.copytree(ROOT / "fixtures", tmp_path / "fixtures")
    shells = [b for b in BLOCKS if b.kind == "sh"]
    opening = shells[0].code.strip().split("&& ")[-1].removeprefix(".venv/bin/")
    runs = [(shells[0].line, opening, 0)] + [c for block in shells[2:] for c in _commands(block)]
    runs = [r for r in runs if not r[1].startswith((".venv/", ".ci/", "python3 "))]
    assert len(runs) >= 20
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SYNC_API_KEY": "readme-key",
    }
    env["BATCHKIT_CACHE_DIR"] = str(tmp_path / "cache")  # the probe cache of the README's commands
    with serve(pending_seconds=0.05, seconds_per_generation=0.001) as url:
        env["SYNC_BASE_URL"] = url
        for line, command, status in runs:
            done = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
            )
            assert "Traceback" not in done.stderr, f"README.md line {line}: {command}\n{done.stderr}"
            assert done.returncode == status, (
                f"README.md line {line}: `{command}` exited {done.returncode}, the README says {status}\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )


def test_the_two_opening_commands() -> None:
    """The README opens with the install-and-run command, then the test command CI runs."""
    shells = [b.code for b in BLOCKS if b.kind == "sh"]
    assert "batchkit run fixtures/campaign.csv" in shells[0]
    assert "--sandbox" in shells[0]
    assert "pytest" in shells[1]
    assert README.index("<!-- test-command -->") < README.index(shells[1])
