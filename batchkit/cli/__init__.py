"""The ``batchkit`` command line: thin commands over the library (parse, call, render, exit code)."""

from __future__ import annotations

import click

from .. import __version__
from ._build import build, shard
from ._common import configure_logging
from ._results import results_command
from ._run import run_command
from ._sandbox import sandbox
from ._submit import status_command, submit_command, wait_command
from ._validate import schema, validate

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="batchkit")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def main(verbose: int) -> None:
    """Build, validate, shard, submit and reconcile Sync lipsync Batch API files."""
    configure_logging(verbose)


main.add_command(build)
main.add_command(shard)
main.add_command(validate)
main.add_command(schema)
main.add_command(sandbox)
main.add_command(submit_command)
main.add_command(status_command)
main.add_command(wait_command)
main.add_command(results_command)
main.add_command(run_command)
