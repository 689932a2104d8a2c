"""The public surface: __all__ sorted and documented, every name importable, lazy imports honest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

import batchkit
from batchkit.cli import COMMANDS, main

PACKAGE = Path(batchkit.__file__).parent
README = (PACKAGE.parent / "README.md").read_text()


def test_all_is_unique_and_sorted() -> None:
    """One list, in one order: case-insensitive alphabetical."""
    assert len(batchkit.__all__) == len(set(batchkit.__all__))
    assert batchkit.__all__ == sorted(batchkit.__all__, key=str.casefold)


@pytest.mark.parametrize("name", batchkit.__all__)
def test_every_public_name_resolves(name: str) -> None:
    """Each name in __all__ imports, and lives in a private module (or is the version)."""
    value = getattr(batchkit, name)
    assert value is not None
    module = getattr(value, "__module__", None)
    if module is not None and module.startswith("batchkit"):
        assert module.split(".")[1].startswith("_")


def test_the_readme_api_reference_lists_exactly_the_public_names() -> None:
    """README's API reference is the documented surface: nothing exported that it does not name, and back."""
    section = README[README.index("## API reference") :]
    section = section[: section.index("\n## ", 1)]
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", section)) - {"batchkit", "__all__"}
    assert documented == set(batchkit.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        batchkit.no_such_thing  # noqa: B018


def test_importing_batchkit_loads_no_heavy_dependency() -> None:
    """`import batchkit` and `batchkit validate` stay light: no polars, httpx or starlette."""
    code = (
        "import sys, batchkit; from batchkit.cli import main; "
        "from click.testing import CliRunner; "
        "CliRunner().invoke(main, ['validate', 'fixtures/sample-batch.jsonl']); "
        "print(sorted(m for m in ('polars', 'httpx', 'starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_loads_and_is_documented(name: str) -> None:
    """Each lazily registered command imports, has help, and the README shows it in use."""
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.help
    assert f"batchkit {name}" in README
