"""The package's house rules: stage folders in pipeline order, no import cycles, no climbing back up.

Every import inside ``batchkit`` is read from the source (module level, inside functions and under
``TYPE_CHECKING`` alike), so a late import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import batchkit

PACKAGE = Path(batchkit.__file__).parent

#: The layers, bottom first. A module may import its own layer and the layers before it, never a later one.
LAYERS: tuple[str, ...] = (
    "_version",
    "_errors",
    "_files",
    "_wire",
    "_report",
    "_formats",  # renders Reports for CI (GitHub annotations, JUnit XML, SARIF)
    "_api",
    "_validate",
    "_sources",
    "_mapping",
    "_probe",
    "_shard",
    "_build",
    "_submit",
    "_results",
    "_handback",
    "_retry",
    "sandbox",
    "_run",
    "cli",
    "__init__",
    "__main__",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The batchkit modules ``path`` imports, as dotted names below ``batchkit``."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" and name != "__init__" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "batchkit":
                target = node.module.split(".")[1:]
            else:
                continue
            module = ".".join(target)
            for alias in node.names:  # `from . import x` may name a module
                sub = f"{module}.{alias.name}" if module else alias.name
                found.add(sub if (PACKAGE / sub.replace(".", "/")).with_suffix(".py").exists() else module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "batchkit":
                    found.add(".".join(alias.name.split(".")[1:]))
    found.discard(name)
    found.discard("")
    return found


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_every_module_has_a_layer() -> None:
    """A new top-level module or folder takes its place in LAYERS (and in the package docstring)."""
    assert {m.split(".")[0] for m in GRAPH} <= set(LAYERS)


def test_there_is_no_import_cycle() -> None:
    """Module by module, function-level and type-only imports included."""
    try:
        tuple(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as exc:  # pragma: no cover - the message names the cycle
        pytest.fail(f"import cycle: {' → '.join(exc.args[1])}")


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_a_later_layer(module: str) -> None:
    """Data flows down the pipeline: a stage uses earlier stages, never the other way round."""
    later = sorted(t for t in GRAPH[module] if _layer(t) > _layer(module))
    assert later == [], f"{module} imports later layers: {later}"


def test_the_package_docstring_lists_the_layers() -> None:
    """batchkit/__init__.py tells a new reader the same order this test enforces."""
    doc = batchkit.__doc__ or ""
    folders = [layer for layer in LAYERS if (PACKAGE / layer).is_dir()]
    positions = [doc.find(f"{folder}/") for folder in folders]
    assert -1 not in positions, (
        f"not in the docstring: {[f for f, p in zip(folders, positions, strict=True) if p < 0]}"
    )
    assert positions == sorted(positions)
