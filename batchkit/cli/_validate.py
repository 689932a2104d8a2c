"""``batchkit validate`` and ``batchkit schema``."""

from __future__ import annotations

from pathlib import Path

import click

from .._formats import FORMATS, write_format
from .._validate.validate import validate_files
from .._wire.limits import Limits
from . import _render as render
from ._common import EXIT_FAILED, command
from ._options import Output, limits_options, output_options

_CI = {
    "github": "GitHub Actions annotations",
    "junit": "JUnit XML",
    "sarif": "SARIF 2.1.0 (code scanning); paths are relative to the working directory",
}


@command("validate", failed="findings of severity error")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PATH...")
@click.option(
    "--schema",
    "policy",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also check every line against this JSON Schema (findings coded 'policy').",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write every finding to this file, as JSON Lines (the outputs keep the first 1,000 per code).",
)
@limits_options()
@output_options("the whole report", formats={k: v for k, v in _CI.items() if k in FORMATS}, max_findings=200)
def validate(
    paths: tuple[Path, ...], policy: Path | None, report_file: Path | None, limits: Limits, output: Output
) -> None:
    """Dry-run validate batch JSONL files (or directories of them) before upload.

    Every finding is counted; the first 1,000 of each code are listed (text: --max-findings of them), and
    --report FILE writes all of them. Warnings do not fail it. The CI formats go to stdout, the verdict to
    stderr.
    """
    report = validate_files(paths, limits=limits, schema=policy, report_file=report_file)
    if output.json:
        render.document(report)
    elif output.format in FORMATS:
        stdout = render.stream()
        write_format(output.format, report.findings, report.stats, stdout)
        stdout.flush()
        render.verdict(report)
    else:
        render.report(report, max_findings=output.max_findings)
    if not report.valid:
        raise SystemExit(EXIT_FAILED)


@command("schema", failed=None)
@click.option(
    "-o",
    "--out",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("schemas"),
    show_default=True,
    help="Folder to write the *.schema.json files into.",
)
@output_options("the paths written")
def schema(folder: Path, output: Output) -> None:
    """Write the JSON Schemas of the batch line, generate payload, output line and Batch object."""
    from .._wire.schemas import write_schemas

    written = write_schemas(folder)
    if output.json:
        render.document({"written": [str(p) for p in written]})
    else:
        for path in written:
            render.say(f"wrote {path}")
