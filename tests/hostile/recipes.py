"""How each command is run over the corpus: per-command argument recipes, and one generic recipe for the rest.

The commands are found by walking the click tree of ``batchkit.cli.main``, so a command added later is run
too: with a recipe here when it has one, else with the generic recipe, which fills its required arguments and
options from the corpus by their click type (a path → every kind of hostile path, a choice → its first value,
anything else → a hostile string). A recipe returns groups of :class:`~tests.hostile.harness.Invocation`\\ s;
each group is one test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from batchkit.cli import main

from .corpus import Case
from .harness import Invocation

#: Strings nobody should type, for options that take text.
HOSTILE_TEXT = [
    "",
    " ",
    "../../etc/passwd",
    "{x}{{",
    "\x00",
    "x" * 5000,
    "--help",
    "-1",
    "nan",
    "1e400",
    "\udcff",
]
REFUSED_URL = "http://127.0.0.1:9"  # nothing listens there: calls fail at once, no retries that wait


def commands() -> dict[str, click.Command]:
    """Every command of the CLI, by its name (``group sub`` for nested groups)."""
    ctx = click.Context(main)
    found: dict[str, click.Command] = {}

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))
            elif command is not None:
                found[" ".join((*prefix, name))] = command

    walk(main, ())
    return found


@dataclass
class World:
    """What recipes draw from: the corpus, the build directories, and a place for fresh output directories."""

    cases: list[Case]
    builddirs: dict[str, Path]
    scratch: Path
    full: bool = False
    _count: int = 0

    def of(self, kind: str) -> list[Case]:
        """The cases of ``kind`` in this run (the quick ones only, without --hostile-full)."""
        return [c for c in self.cases if c.kind == kind and (self.full or c.fast)]

    def specials(self, kind: str = "jsonl") -> list[Case]:
        """Paths that are not regular files, as a case of ``kind``."""
        return [c for c in self.of(kind) if c.path.parent.name == "specials" or c.path.name in ("zero",)]

    def case(self, kind: str, name: str) -> Case:
        return next(c for c in self.cases if c.kind == kind and c.name == name)

    def out(self, label: str) -> Path:
        """A fresh output directory path (not created)."""
        self._count += 1
        return self.scratch / f"out-{self._count:04d}-{label.replace('/', '_')[:40]}"

    def outdirs(self) -> dict[str, Path]:
        """Output directories in awkward states: missing, a file, holding an earlier build of another name,
        already submitted."""
        dirs: dict[str, Path] = {"fresh": self.out("fresh")}
        file = self.out("a-file")
        file.write_text("not a directory")
        dirs["a-file"] = file
        earlier = self.out("earlier-build")
        shutil.copytree(self.builddirs["built"], earlier)
        dirs["earlier-build"] = earlier
        submitted = self.out("submitted")
        shutil.copytree(self.builddirs["finished"], submitted)
        dirs["submitted"] = submitted
        return dirs


Group = tuple[str, list[Invocation]]
Recipe = Callable[[World], list[Group]]


def _validate(world: World) -> list[Group]:
    jsonl = [Invocation(f"validate {c.id}", ["validate", str(c.path)]) for c in world.of("jsonl")]
    as_json = [
        Invocation(
            f"validate --format json {c.id}",
            ["validate", str(c.path), "--format", "json", "--max-findings", "3"],
        )
        for c in world.of("jsonl")
        if c.name in ("empties", "deep-reported-field", "duplicate-keys", "huge-line", "nan-infinity")
    ]
    report = world.scratch / "report.ndjson"
    as_json.append(
        Invocation(
            "validate --report",
            ["validate", str(world.case("jsonl", "empties").path), "--report", str(report)],
            writes=[report],
        )
    )
    good = str(world.case("jsonl", "good").path)
    schemas = [
        Invocation(f"validate --schema {c.id}", ["validate", good, "--schema", str(c.path)])
        for c in world.of("schema")
    ]
    specials = [Invocation(f"validate {c.id}", ["validate", str(c.path)]) for c in world.specials()]
    specials += [
        Invocation(f"validate --schema {c.id}", ["validate", good, "--schema", str(c.path)])
        for c in world.specials("schema")
    ]
    options = [
        Invocation("validate --max-bytes 64", ["validate", good, "--max-bytes", "64"]),
        Invocation(
            "validate directory of the corpus", ["validate", str(world.case("jsonl", "good").path.parent)]
        ),
        Invocation("validate a build directory", ["validate", str(world.builddirs["finished"])]),
    ]
    return [
        ("jsonl", jsonl),
        ("json-and-report", as_json),
        ("schemas", schemas + specials),
        ("options", options),
    ]


def _shard(world: World) -> list[Group]:
    runs = []
    for c in world.of("jsonl") + world.specials():
        for flags in ([], ["--skip-invalid"]) if world.full or c.name == "good" else (["--skip-invalid"],):
            out = world.out(f"shard-{c.name}")
            runs.append(
                Invocation(
                    f"shard {c.id} {' '.join(flags)}",
                    ["shard", str(c.path), "--out", str(out), *flags],
                    out=out,
                )
            )
    good = world.case("jsonl", "good").path
    for label, out in world.outdirs().items():
        runs.append(
            Invocation(
                f"shard into {label}",
                ["shard", str(good), "--out", str(out), "--name", "../" + label],
                out=out,
            )
        )
    half = len(runs) // 2
    return [("first-half", runs[:half]), ("second-half", runs[half:])]


def _build(world: World) -> list[Group]:
    mapping = str(world.case("mapping", "good.toml").path)
    sources = []
    for c in world.of("source"):
        out = world.out(f"build-{c.name}")
        sources.append(
            Invocation(
                f"build {c.id}",
                [
                    "build",
                    str(c.path),
                    "--mapping",
                    mapping,
                    "--out",
                    str(out),
                    "--skip-invalid",
                    "--min-records",
                    "1",
                ],
                out=out,
                rows=c.rows,
                blank=c.blank,
            )
        )
    for c in world.specials("source"):
        out = world.out(f"build-{c.name}")
        sources.append(
            Invocation(
                f"build {c.id}",
                ["build", str(c.path), "--mapping", mapping, "--out", str(out), "--source-format", "csv"],
                out=out,
            )
        )
    good = world.case("source", "good.csv")
    mappings = []
    for c in world.of("mapping") + world.specials("mapping"):
        out = world.out(f"mapping-{c.name}")
        mappings.append(
            Invocation(
                f"build --mapping {c.id}",
                ["build", str(good.path), "--mapping", str(c.path), "--out", str(out)],
                out=out,
                rows=good.rows,
            )
        )
    options = []
    for label, out in world.outdirs().items():
        options.append(
            Invocation(
                f"build into {label}",
                ["build", str(good.path), "--mapping", mapping, "--out", str(out), "--name", "new"],
                out=out,
                rows=good.rows,
            )
        )
    variants = [
        ["--encoding", "rot13"],
        ["--name", "x" * 400],
        ["--name", "../../../x"],
        ["--max-bytes", "64"],
    ]
    if world.full:
        variants += [
            ["--encoding", "no-such"],
            ["--encoding", "utf-16"],
            ["--delimiter", "ab"],
            ["--sheet", "../x"],
            ["--source-format", "xlsx"],
        ]
    for flags in variants:
        out = world.out("options")
        options.append(
            Invocation(
                f"build {' '.join(flags)[:30]}",
                ["build", str(good.path), "--mapping", mapping, "--out", str(out), *flags],
                out=out,
                rows=good.rows,
            )
        )
    hidden = world.case("source", "hidden-first.xlsx")
    for sheet in ("old", "empty", "campaign", "nope") if world.full else ("empty",):
        out = world.out(f"sheet-{sheet}")
        options.append(
            Invocation(
                f"build --sheet {sheet}",
                [
                    "build",
                    str(hidden.path),
                    "--mapping",
                    mapping,
                    "--out",
                    str(out),
                    "--sheet",
                    sheet,
                    "--skip-invalid",
                    "--min-records",
                    "1",
                ],
                out=out,
            )
        )
    return [("sources", sources), ("mappings", mappings), ("options", options)]


def _builddir_runs(world: World, command: str, *extra: str, out: bool = False) -> list[Invocation]:
    runs = []
    for label, folder in world.builddirs.items():
        target = world.out(f"{command}-{label}") if out else None
        argv = [command, str(folder), *extra] + (["--out", str(target)] if target is not None else [])
        runs.append(Invocation(f"{command} {label}", argv, out=target))
    for c in world.specials():
        runs.append(Invocation(f"{command} {c.id}", [command, str(c.path), *extra]))
    return runs


def _results(world: World) -> list[Group]:
    offline = _builddir_runs(world, "results", "--offline")
    as_json = _builddir_runs(world, "results", "--offline", "--format", "json", "--strict")
    written = []
    for suffix in ("csv", "xlsx", "parquet", "jsonl", "txt"):
        target = world.scratch / f"results-{suffix}" / f"out.{suffix}"
        written.append(
            Invocation(
                f"results --out .{suffix}",
                ["results", str(world.builddirs["finished"]), "--offline", "--out", str(target)],
                writes=[target],
            )
        )
    return [("offline", offline), ("json", as_json + written)]


def _retry(world: World) -> list[Group]:
    runs = _builddir_runs(world, "retry", "--offline", out=True)
    runs += _builddir_runs(world, "retry", "--offline", "--hold", out=True)[:4]
    return [("offline", runs)]


def _status(world: World) -> list[Group]:
    return [
        (
            "offline",
            _builddir_runs(world, "status", "--offline")
            + _builddir_runs(world, "status", "--offline", "--format", "json"),
        )
    ]


def _submit(world: World) -> list[Group]:
    runs = _builddir_runs(world, "submit", "--base-url", REFUSED_URL, "--api-key", "k")
    if not world.full:  # an unsent build retries the refused connection for seconds: the full harness does it
        runs = [r for r in runs if r.id != "submit built"]
    runs += [
        Invocation(
            "submit bad base url",
            ["submit", str(world.builddirs["built"]), "--base-url", url, "--api-key", "k"],
        )
        for url in ("ftp://x", "http://user:sk-secret@example.com", "https://api.sync.so/?k=1", "not a url")
    ]
    return [("refused", runs)]


def _wait(world: World) -> list[Group]:
    return [
        (
            "refused",
            _builddir_runs(world, "wait", "--base-url", REFUSED_URL, "--api-key", "k", "--deadline", "0"),
        )
    ]


def _run(world: World) -> list[Group]:
    mapping = str(world.case("mapping", "good.toml").path)
    runs = []
    for c in world.of("source"):
        if c.rows is not None and not world.full:
            continue  # a source that builds runs the whole pipeline: the full harness does those
        out = world.out(f"run-{c.name}")
        runs.append(
            Invocation(
                f"run {c.id}",
                [
                    "run",
                    str(c.path),
                    "--mapping",
                    mapping,
                    "--out",
                    str(out),
                    "--sandbox",
                    "--min-records",
                    "1",
                ],
                out=out,
            )
        )
    for c in world.of("mapping"):
        if c.name == "good.toml":
            continue
        out = world.out(f"run-{c.name}")
        runs.append(
            Invocation(
                f"run --mapping {c.id}",
                [
                    "run",
                    str(world.case("source", "good.csv").path),
                    "--mapping",
                    str(c.path),
                    "--out",
                    str(out),
                    "--sandbox",
                ],
                out=out,
            )
        )
    return [("sources", runs)]


def _sandbox(world: World) -> list[Group]:
    """The sandbox serves until Ctrl-C: here only what it refuses before listening."""
    bad = [
        ["--port", "70000"],
        ["--rule", "no-outcome"],
        ["--rule", "(=FAILED"],
        ["--api-key", ""],
        ["--rate-limit-share", "2"],
        ["--rate-limit-share", "0.7", "--server-error-share", "0.7"],
        ["--min-records", "9", "--max-records", "3"],
    ]
    return [("refused", [Invocation(f"sandbox {' '.join(a)}", ["sandbox", *a]) for a in bad])]


def _schema(world: World) -> list[Group]:
    runs = []
    for label, out in world.outdirs().items():
        runs.append(
            Invocation(
                f"schema --out {label}",
                ["schema", "--out", str(out / "schemas") if label == "earlier-build" else str(out)],
            )
        )
    for c in world.specials():
        runs.append(Invocation(f"schema --out {c.id}", ["schema", "--out", str(c.path)]))
    return [("out", runs)]


RECIPES: dict[str, Recipe] = {
    "validate": _validate,
    "shard": _shard,
    "build": _build,
    "results": _results,
    "retry": _retry,
    "status": _status,
    "submit": _submit,
    "wait": _wait,
    "run": _run,
    "sandbox": _sandbox,
    "schema": _schema,
}


def generic(name: str, command: click.Command, world: World) -> list[Group]:
    """A command without a recipe: its required arguments and options filled from the corpus by type, once
    per kind of hostile path (and hostile text for text parameters), plus ``--help``."""
    paths = [c.path for c in world.of("jsonl")][:12] + [c.path for c in world.specials()]
    paths += list(world.builddirs.values())
    runs = [Invocation(f"{name} --help", [*name.split(), "--help"])]
    for i, path in enumerate(paths):
        argv = name.split()
        for param in command.params:
            if not param.required:
                continue
            value = _value(param, path, HOSTILE_TEXT[i % len(HOSTILE_TEXT)])
            if isinstance(param, click.Option):
                argv += [param.opts[0], value]
            else:
                argv.append(value)
        runs.append(Invocation(f"{name} generic {i}", argv))
    return [("generic", runs)]


def _value(param: click.Parameter, path: Path, text: str) -> str:
    kind = param.type
    if isinstance(kind, click.Path):
        return str(path)
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
        return "-1"
    return text


def groups(world: World) -> list[tuple[str, str, list[Invocation]]]:
    """``(command, group, invocations)`` for every command of the CLI."""
    out = []
    for name, command in commands().items():
        recipe = RECIPES.get(name)
        made = recipe(world) if recipe is not None else generic(name, command, world)
        out.extend((name, label, runs) for label, runs in made)
    return out
