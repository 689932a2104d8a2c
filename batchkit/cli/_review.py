"""``batchkit review``: one self-contained page to look at every video and approve or reject it."""

from __future__ import annotations

from pathlib import Path

import click

from .._handback.pages import ReviewOptions, review_directory
from . import _render as render
from ._common import command
from ._options import Output, directory_argument, output_options

__all__ = ["review_command"]


@command("review", failed=None)
@directory_argument
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the page [default: DIRECTORY/review.html].",
)
@click.option("--no-posters", is_flag=True, help="Leave out the poster frames (faster for big builds).")
@click.option("--title", help="The page's title [default: the build's name].")
@output_options("the page's path and size")
def review_command(
    directory: Path, out_path: Path | None, no_posters: bool, title: str | None, output: Output
) -> None:
    """Write a review page of DIRECTORY: a card per request, its outcome, its fields, a poster, its video.

    Open it in any browser (no server; nothing is fetched but the videos you play). Approve or reject
    cards, then download the decisions and send the rejected ones again with
    `batchkit retry DIRECTORY --from-review decisions.csv --out NEW`.
    """
    with render.progress("posters") as bar:
        options = ReviewOptions(posters=not no_posters, title=title)
        page = review_directory(
            directory, out_path, options, on_poster=lambda done, total: bar.update(done, total)
        )
    size = page.stat().st_size
    if output.json:
        render.document({"page": str(page), "bytes": size})
    else:
        render.say(f"wrote {page} ({size:,} bytes): open it in a browser")
