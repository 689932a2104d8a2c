"""One CLI: every command, found by walking the click tree, follows the same rules.

The rules: every command has ``--format`` with ``json`` and ``-v/--verbose``; its help ends with the exit-code
table; an option that several commands share is spelled the same everywhere (the same short flag) and, within
the verbs of one kind, declared the same (type, default); every verb that talks to the API takes
``--sandbox``, ``--base-url``, ``--api-key`` and ``--timeout``; every verb that reads a source takes the same
source options; a usage error is one ``error:`` line and a ``hint:`` line, exit status 2, never click's
three-line usage block.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import click
import pytest
from click.testing import CliRunner

from batchkit.cli import main
from batchkit.cli._common import EXIT_CODES

_CTX = click.Context(main)
COMMANDS: dict[str, click.Command] = {}
for _name in main.list_commands(_CTX):
    _command = main.get_command(_CTX, _name)
    assert _command is not None
    COMMANDS[_name] = _command

#: The verbs that talk to the Batch API.
API_VERBS = ("run", "estimate", "submit", "status", "wait", "recover", "inspect", "results", "fetch", "retry")
API_OPTIONS = ("--sandbox", "--base-url", "--api-key", "--timeout")
#: The verbs that read a tabular source through a mapping, and the options they share.
SOURCE_VERBS = ("run", "build", "probe")
SOURCE_OPTIONS = ("--mapping", "--sheet", "--source-format", "--delimiter", "--encoding")
#: The verbs that build a directory, and the options they share on top of the source ones.
BUILD_VERBS = ("run", "build")
BUILD_OPTIONS = ("--out", "--name", "--skip-invalid", "--force", "--include-held", "--probe", "--reuse")


def _options(command: click.Command) -> dict[str, click.Option]:
    """Long option name → the option."""
    found: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                if opt.startswith("--"):
                    found[opt] = param
    return found


def _declaration(option: click.Option) -> tuple[object, ...]:
    return (
        tuple(sorted(option.opts)),
        option.type.name,
        repr(option.default),
        option.is_flag,
        option.multiple,
    )


def test_the_tree_has_every_pipeline_verb() -> None:
    for verb in (
        "run",
        "build",
        "shard",
        "validate",
        "submit",
        "status",
        "wait",
        "results",
        "fetch",
        "review",
        "retry",
    ):
        assert verb in COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_json_output_and_verbose(name: str) -> None:
    options = _options(COMMANDS[name])
    assert "--format" in options, f"{name} has no --format"
    choices = options["--format"].type
    assert isinstance(choices, click.Choice)
    assert "json" in choices.choices, f"{name} --format lacks json"
    assert "-v" in options["--verbose"].opts


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_help_ends_with_the_exit_codes(name: str) -> None:
    """``Exit status: 0 success; 2 usage, I/O or API error; 130 interrupted.``: the codes this command can
    exit with, all from the one table; 0, 2 and 130 mean the same everywhere (what 1 and 3 mean is said
    in the command's own words)."""
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit status: " in text, f"{name} --help does not give its exit codes"
    table = text[text.index("Exit status: ") + len("Exit status: ") :].rstrip(".")
    given = {}
    for entry in re.split(r"; (?=\d+ )", table):
        code, _, meaning = entry.partition(" ")
        given[int(code)] = meaning
    assert {0, 2, 130} <= set(given) <= set(EXIT_CODES), table
    assert {code: given[code] for code in (0, 2, 130)} == {code: EXIT_CODES[code] for code in (0, 2, 130)}, (
        table
    )


def test_a_shared_option_is_spelled_the_same_everywhere() -> None:
    spellings: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for command in COMMANDS.values():
        for long, option in _options(command).items():
            spellings[long].add(tuple(sorted(option.opts)))
    differing = {long: forms for long, forms in spellings.items() if len(forms) > 1}
    assert differing == {}


@pytest.mark.parametrize(
    ("verbs", "names"),
    [(API_VERBS, API_OPTIONS), (SOURCE_VERBS, SOURCE_OPTIONS), (BUILD_VERBS, BUILD_OPTIONS)],
    ids=["api", "source", "build"],
)
def test_verbs_of_one_kind_declare_their_options_alike(
    verbs: tuple[str, ...], names: tuple[str, ...]
) -> None:
    for long in names:
        declared = {}
        for verb in verbs:
            options = _options(COMMANDS[verb])
            assert long in options, f"{verb} lacks {long}"
            declared[verb] = _declaration(options[long])
        assert len(set(declared.values())) == 1, f"{long} differs: {declared}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_usage_error_is_one_error_line_and_a_hint(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--no-such-option"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: no such option '--no-such-option'")
    assert lines[1].startswith("hint: ")
    assert f"batchkit {name} --help" in lines[1]
    assert "Usage:" not in result.stderr
    assert "Traceback" not in result.stderr


def test_the_hint_names_the_command_however_batchkit_was_started() -> None:
    """``python -m batchkit submit --nope`` hints at ``batchkit submit --help``, not ``batchkit -m batchkit ...``."""
    done = subprocess.run(
        [sys.executable, "-m", "batchkit", "submit", "--no-such-option"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "hint: `batchkit submit --help` lists its options"
