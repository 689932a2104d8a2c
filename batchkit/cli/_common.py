"""What every command shares: error-to-exit-code mapping, limit options, consoles."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from .._errors import BatchkitError
from .._report import ValidationFailed
from .._wire.limits import DEFAULT_LIMITS, Limits

P = ParamSpec("P")
R = TypeVar("R")


#: Results go to stdout; progress, summaries and errors to stderr, so stdout can be piped.
def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, soft_wrap=True, highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # a pipe or a log: don't squeeze tables into 80 columns and cut ids short
    return console


out = _console(stderr=False)
err = _console(stderr=True)

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    sys.exit(code)


EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def interrupted_is_130() -> Iterator[None]:
    """Ctrl-C (or SIGINT) anywhere inside: ``error: interrupted`` and exit status 130, never a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn batchkit's exceptions into one-line messages and exit codes (1 findings, 2 anything else).

    Anything else that escapes (a bug) is one line too, exit status 2, with the traceback logged at debug
    level (``-vv``): a command run unattended never prints a traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ValidationFailed as exc:
            fail(str(exc), EXIT_FINDINGS)
        except BatchkitError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except MemoryError:
            fail("out of memory; batchkit's inputs are read within fixed budgets, so this is a bug: please report it")
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            logging.getLogger("batchkit").debug("unexpected failure", exc_info=True)
            fail(
                f"unexpected failure ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); this is a bug in "
                "batchkit: please report it with the command that caused it (-vv shows the details)"
            )
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover

    return wrapper


def limits_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--min-records``, ``--max-records``, ``--max-bytes``: override the limits profile."""
    options = [
        click.option(
            "--min-records",
            type=click.IntRange(min=1),
            default=DEFAULT_LIMITS.min_records,
            show_default=True,
            help="Fewest records a batch file may hold.",
        ),
        click.option(
            "--max-records",
            type=click.IntRange(min=1),
            default=DEFAULT_LIMITS.max_records,
            show_default=True,
            help="Most records a batch file may hold.",
        ),
        click.option(
            "--max-bytes",
            type=click.IntRange(min=64),
            default=DEFAULT_LIMITS.max_bytes,
            show_default=True,
            help="Largest batch file, in bytes.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_limits(min_records: int, max_records: int, max_bytes: int) -> Limits:
    if min_records > max_records:
        fail(f"--min-records ({min_records}) is larger than --max-records ({max_records})")
    return Limits(min_records=min_records, max_records=max_records, max_bytes=max_bytes)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(verbose: int) -> None:
    """``-v``: info, ``-vv``: debug, on stderr. Only the CLI does this; the library only logs."""
    logger = logging.getLogger("batchkit")
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _StderrHandler)] + [
        _StderrHandler()
    ]
    logger.setLevel(logging.WARNING - 10 * min(verbose, 2))
