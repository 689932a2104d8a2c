"""The public surface: __all__ complete and sorted, every name importable, lazy imports honest."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import click
import pytest

import batchkit
from batchkit.cli import COMMANDS, main

PACKAGE = Path(batchkit.__file__).parent
README = PACKAGE.parent / "README.md"


def test_all_is_unique() -> None:
    """No name twice (its order is kept by ruff's RUF022)."""
    assert len(batchkit.__all__) == len(set(batchkit.__all__))


@pytest.mark.parametrize("name", batchkit.__all__)
def test_every_public_name_resolves(name: str) -> None:
    """Each name in __all__ imports, and lives in a private module (or is the version)."""
    value = getattr(batchkit, name)
    assert value is not None
    module = getattr(value, "__module__", None)
    if module is not None and module.startswith("batchkit"):
        assert module.split(".")[1].startswith("_")


def test_type_checking_imports_match_the_lazy_table() -> None:
    """The names mypy sees are exactly the names imported lazily at run time, from the same modules."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    seen: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                seen[str(stmt.module)] = tuple(alias.name for alias in stmt.names)
    assert seen == batchkit._EXPORTS
    assert sorted({n for names in seen.values() for n in names} | {"__version__"}) == sorted(batchkit.__all__)


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_loads_and_is_documented(name: str) -> None:
    """Each lazily registered command imports, has help, and the README shows it in use."""
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.help
    assert f"batchkit {name}" in README.read_text()
