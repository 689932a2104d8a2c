"""The README is the user's manual: its Python examples run, and its first command is the demo."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 6


def test_every_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block runs, in order, from a copy of the fixtures (no network, no API key)."""
    shutil.copytree(ROOT / "fixtures", tmp_path / "fixtures")
    monkeypatch.chdir(tmp_path)
    for number, block in enumerate(BLOCKS, 1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), {"__name__": "__readme__"})
        except Exception as exc:  # pragma: no cover - the message says which block broke
            pytest.fail(f"README python block {number} failed: {type(exc).__name__}: {exc}\n{block}")


def test_the_two_opening_commands() -> None:
    """The README opens with the install-and-run command, then the test command CI runs."""
    commands = re.findall(r"```sh\n(.*?)\n```", README, flags=re.S)
    assert "batchkit run fixtures/campaign.csv" in commands[0]
    assert "--sandbox" in commands[0]
    assert "pytest" in commands[1]
    assert README.index("<!-- test-command -->") < README.index(commands[1])
