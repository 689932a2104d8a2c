"""The distribution is ``sync-batchkit`` (``batchkit`` on PyPI is an unrelated project); the import name and the
command stay ``batchkit``.

Two checks: no message, docstring, test or README line suggests installing a name that is not ours, and the
wheel that hatchling builds installs as ``sync-batchkit`` and runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from batchkit._errors import DISTRIBUTION, install_hint

ROOT = Path(__file__).resolve().parents[1]

#: ``install``, its options, then a requirement named ``batchkit`` (not ours, ``sync-batchkit``): the hint
#: ``pip install '<name>[excel]'``, ``install <name>[media]`` or a bare ``pip install <name>``.
_FOREIGN = re.compile(r"\binstall((?:\s+-{1,2}[\w-]+)*)\s+['\"]?batchkit(?=\[|['\"]?(?:\s|$|[`),;.]))", re.M)


def _texts() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / ".pre-commit-hooks.yaml"]
    for folder in ("batchkit", "tests", "benchmarks", ".ci"):
        files += [
            p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".toml", "")
        ]
    here = Path(__file__).resolve()  # its own examples of wrong hints are the point
    return [p for p in files if p.is_file() and "__pycache__" not in p.parts and p.resolve() != here]


def test_the_pattern_finds_a_foreign_install_hint() -> None:
    """The checker itself: it flags the hints that installed the wrong project, and passes ours."""
    wrong = [
        "pip install 'batchkit[excel]'",
        "install batchkit[media] (PyAV)",
        "pip install batchkit",
        "pip install -U batchkit",
    ]
    right = [install_hint("excel"), "pip install sync-batchkit", "pip install '.[sandbox]'", "pip install -e '.[dev]'",
             "pip install sync-batchkit[media]", "uv pip install sync-batchkit"]  # fmt: skip
    assert all(_FOREIGN.search(text) for text in wrong)
    assert not any(_FOREIGN.search(text) for text in right)
    assert install_hint("excel") == "pip install 'sync-batchkit[excel]'"


def test_no_text_suggests_installing_a_name_that_is_not_ours() -> None:
    """Every message, docstring, test and README line that says how to install names ``sync-batchkit``."""
    found = []
    for path in _texts():
        text = path.read_text(errors="replace")
        for match in _FOREIGN.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{path.relative_to(ROOT)}:{line}: {text.splitlines()[line - 1].strip()}")
    assert found == [], "install hints that name another project:\n" + "\n".join(found)


def test_the_project_metadata_names_the_distribution() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "sync-batchkit"
    assert project["scripts"] == {"batchkit": "batchkit.cli:main"}
    assert all(
        r.startswith("sync-batchkit[") for r in project["optional-dependencies"]["dev"] if "batchkit" in r
    )
    assert f"pip install {DISTRIBUTION}" in (ROOT / "README.md").read_text()


@pytest.mark.packaging
def test_the_wheel_installs_as_sync_batchkit_and_runs(tmp_path: Path) -> None:
    """Build the wheel, install it into a fresh venv, ask that venv what it has, run its ``batchkit``.

    Kept to a few seconds: the wheel is built by hatchling without build isolation (``pip wheel --no-deps
    --no-build-isolation``: hatchling is a dev dependency, nothing is downloaded); the venv is made without pip
    and without the system site-packages, and this venv's pip installs the wheel into it (``pip --python``,
    ``--no-deps --no-index``). ``importlib.metadata`` is asked there while it holds nothing but the wheel. Then,
    for ``batchkit --version``, a ``.pth`` line puts this venv's site-packages *after* its own (click and rich
    come from there; ``batchkit`` itself from the wheel, which the test checks).
    """
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name.startswith("sync_batchkit-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "batchkit/__init__.py" in names
    assert "batchkit/cli/__init__.py" in names
    assert not any(n.startswith(("tests/", "fixtures/")) for n in names)

    fresh = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(fresh)
    python = fresh / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    ask = (
        "import importlib.metadata as m, json;"
        "d = m.distribution('sync-batchkit');"
        "print(json.dumps({'names': sorted(x.metadata['Name'] for x in m.distributions()),"
        "'version': d.version, 'scripts': [e.value for e in d.entry_points if e.group == 'console_scripts'],"
        "'top': (d.read_text('top_level.txt') or '').split() or sorted({f.parts[0] for f in d.files or []})}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    seen = json.loads(
        subprocess.run(
            [str(python), "-c", ask], check=True, capture_output=True, text=True, env=env, cwd=tmp_path
        ).stdout
    )
    assert "sync-batchkit" in seen["names"]
    assert "batchkit" not in seen["names"]
    assert seen["scripts"] == ["batchkit.cli:main"]
    assert "batchkit" in seen["top"]

    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, env=env, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = fresh / ("Scripts/batchkit.exe" if os.name == "nt" else "bin/batchkit")
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    from batchkit import __version__

    assert done.stdout.strip() == f"batchkit, version {__version__}"
    where = subprocess.run(
        [str(python), "-c", "import batchkit; print(batchkit.__file__)"], check=True, capture_output=True, text=True, env=env, cwd=tmp_path
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(Path(purelib)), f"batchkit came from {where}, not from the wheel"
