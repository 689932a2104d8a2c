"""What every command shares: the exit-code table, errors mapped to it, one-line usage errors, the command
decorator that puts both in every command's help.

Exit codes, for every command:

====  ==========================================================================================
0     success
1     findings of severity error, refused or failed items, ``--strict`` not met
2     usage, I/O, API, lock or journal error (one ``error:`` line, never a traceback)
3     not finished yet: a ``--deadline`` passed with work still running (running it again later is safe)
130   interrupted (Ctrl-C)
====  ==========================================================================================
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from .._errors import BatchkitError, WaitTimeoutError
from .._report import ValidationFailed
from . import _render as render

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FINISHED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: Kept for the code that says "findings": the same status as any failed item.
EXIT_FINDINGS = EXIT_FAILED

#: The exit-code table, as every command's help ends with it.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "findings, refused or failed items",
    EXIT_USAGE: "usage, I/O or API error",
    EXIT_NOT_FINISHED: "not finished yet (run it again later)",
    EXIT_INTERRUPTED: "interrupted",
}


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    render.error(message)
    sys.exit(code)


@contextlib.contextmanager
def interrupted_is_130() -> Iterator[None]:
    """Ctrl-C (or SIGINT) anywhere inside: ``error: interrupted`` and exit status 130, never a traceback."""
    try:
        yield
    except (KeyboardInterrupt, click.Abort):
        fail("interrupted", EXIT_INTERRUPTED)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn batchkit's exceptions into one-line messages and exit codes (see the table above).

    Anything else that escapes (a bug) is one line too, exit status 2, with the traceback logged at debug
    level (``-vv``): a command run unattended never prints a traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ValidationFailed as exc:
            fail(str(exc), EXIT_FAILED)
        except WaitTimeoutError as exc:
            fail(str(exc), EXIT_NOT_FINISHED)
        except BatchkitError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except MemoryError:
            fail(
                "out of memory; batchkit's inputs are read within fixed budgets, so this is a bug: please report it"
            )
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            logging.getLogger("batchkit").debug("unexpected failure", exc_info=True)
            fail(
                f"unexpected failure ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); this is a bug in "
                "batchkit: please report it with the command that caused it (-vv shows the details)"
            )

    return wrapper


# -- one-line usage errors -----------------------------------------------------------------------------------

_DID_YOU_MEAN = re.compile(r"\.?\s*\(?(Did you mean [^?]*\?)\)?\s*", re.I)


def _one_line(message: str) -> str:
    text = " ".join(message.split()).rstrip(".")
    text = _DID_YOU_MEAN.sub(lambda m: f" ({m.group(1)[0].lower()}{m.group(1)[1:]})", text).strip()
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


class OneLineError(click.ClickException):
    """A click error shown as batchkit shows errors: one ``error:`` line and a one-line hint."""

    def __init__(self, message: str, hint: str | None, exit_code: int) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        render.error(self.message, hint=self.hint)


def _subcommands(ctx: click.Context | None) -> list[str]:
    """The names of the subcommands ``ctx`` stands for, whatever the program was called (``batchkit``,
    ``python -m batchkit``)."""
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return names


def _rewrite(exc: click.ClickException) -> OneLineError:
    if isinstance(exc, OneLineError):
        return exc
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    path = " ".join(["batchkit", *_subcommands(ctx)])
    if isinstance(exc, click.UsageError):
        hint = f"`{path} --help` lists its options" if " " in path else "`batchkit --help` lists the commands"
        if (
            isinstance(exc, click.NoSuchOption | click.BadOptionUsage | click.MissingParameter)
            and " " not in path
        ):
            hint = "`batchkit --help` lists the options and commands"
        return OneLineError(_one_line(exc.format_message()), hint, EXIT_USAGE)
    return OneLineError(_one_line(exc.format_message()), None, exc.exit_code)


class _OneLine:
    """Mixed into batchkit's command and group classes: usage errors are one line plus a hint (exit 2, not
    click's three-line ``Usage: ... Try ...`` block), and Ctrl-C is exit status 130 at any moment."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with interrupted_is_130():
            try:
                return super().make_context(info_name, args, parent, **extra)  # type: ignore[misc, no-any-return]
            except click.ClickException as exc:
                raise _rewrite(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        with interrupted_is_130():
            try:
                return super().invoke(ctx)  # type: ignore[misc]
            except click.ClickException as exc:
                raise _rewrite(exc) from exc


class Command(_OneLine, click.Command):
    """A batchkit command (see :class:`_OneLine`)."""


class Group(_OneLine, click.Group):
    """A batchkit group (see :class:`_OneLine`)."""


def exit_epilog(failed: str | None, unfinished: str | None = None) -> str:
    """The last paragraph of a command's help: its exit statuses, in the order of the table."""
    parts = [f"0 {EXIT_CODES[EXIT_OK]}"]
    if failed:
        parts.append(f"1 {failed}")
    parts.append(f"2 {EXIT_CODES[EXIT_USAGE]}")
    if unfinished:
        parts.append(f"3 {unfinished}")
    parts.append(f"130 {EXIT_CODES[EXIT_INTERRUPTED]}")
    return "Exit status: " + "; ".join(parts) + "."


def command(
    name: str, *, failed: str | None, unfinished: str | None = None
) -> Callable[[Callable[..., Any]], click.Command]:
    """``@command("build", failed="invalid rows ...")``: a :class:`Command` whose errors map to the exit-code
    table and whose help ends with its exit statuses (``failed``: what exit 1 means for it, None when it never
    exits 1; ``unfinished``: what exit 3 means, None when it never does)."""

    def decorate(func: Callable[..., Any]) -> click.Command:
        made = click.command(name, cls=Command, epilog=exit_epilog(failed, unfinished))(handle_errors(func))
        made.exit_statuses = sorted({0, 2, 130} | ({1} if failed else set()) | ({3} if unfinished else set()))  # type: ignore[attr-defined]
        return made

    return decorate


# -- logging -------------------------------------------------------------------------------------------------


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
    render.set_verbosity(verbose)
