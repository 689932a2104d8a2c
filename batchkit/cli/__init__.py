"""The ``batchkit`` command line: thin commands over the library (parse, call, render, exit code).

``_options`` holds the option groups every command is made of (each handed to the command as one typed
value), ``_render`` everything that is shown, ``_common`` the exit-code table and the one-line errors.
Commands are imported when they are used, so ``batchkit validate`` never pays for polars or httpx.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _imports_uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C while modules load: a signal inside a native extension's initialisation (orjson, polars)
    can crash the interpreter. A Ctrl-C held here arrives, as KeyboardInterrupt, right after."""
    held = hasattr(signal, "pthread_sigmask")
    if held:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


try:  # Ctrl-C while the command line itself loads (click, rich, pydantic): exit 130, no traceback
    with _imports_uninterrupted():
        import click

        from .._version import __version__
        from ._common import Group, configure_logging, exit_epilog
except KeyboardInterrupt:
    sys.stderr.write("error: interrupted\n")
    raise SystemExit(130) from None

__all__ = ["COMMANDS", "main"]

#: Command name → (module, attribute), in pipeline order (the order ``batchkit --help`` lists them).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("._run", "run_command"),
    "build": ("._build", "build"),
    "shard": ("._build", "shard"),
    "validate": ("._validate", "validate"),
    "probe": ("._probe", "probe_command"),
    "estimate": ("._estimate", "estimate_command"),
    "submit": ("._submit", "submit_command"),
    "status": ("._submit", "status_command"),
    "wait": ("._submit", "wait_command"),
    "recover": ("._recover", "recover_command"),
    "inspect": ("._inspect", "inspect_command"),
    "results": ("._results", "results_command"),
    "fetch": ("._fetch", "fetch_command"),
    "review": ("._review", "review_command"),
    "retry": ("._retry", "retry_command"),
    "sandbox": ("._sandbox", "sandbox"),
    "schema": ("._validate", "schema"),
}


class _LazyGroup(Group):
    """A group whose commands are imported on first use (Ctrl-C is exit status 130 at any moment: see
    :class:`Group`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *sorted(set(self.commands) - set(COMMANDS))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        with _imports_uninterrupted():
            command = getattr(importlib.import_module(where[0], __name__), where[1])
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=exit_epilog(
        "findings, refused or failed items", "not finished yet (a --deadline passed; run it again later)"
    ),
)
@click.version_option(__version__, prog_name="batchkit")
@click.option(
    "-v", "--verbose", count=True, help="Show every item and log more (-v info, -vv debug), on stderr."
)
def main(verbose: int) -> None:
    """Build, validate, shard, submit and reconcile Sync lipsync Batch API files.

    Human text goes to stderr; stdout carries only documents (--format json), so it can be piped.
    """
    for stream in (sys.stdout, sys.stderr):
        # A path that is not valid UTF-8 (its bytes kept as surrogates) is printed escaped, never a crash.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    configure_logging(verbose)
