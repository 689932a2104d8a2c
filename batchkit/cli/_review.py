"""``batchkit review``: one self-contained page to look at every video and approve or reject it."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .._handback.pages import ReviewOptions, review_directory
from ._common import err, handle_errors, out

__all__ = ["review_command"]


@click.command("review")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--out",
    "-o",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the page [default: DIRECTORY/review.html].",
)
@click.option("--no-posters", is_flag=True, help="Leave out the poster frames (faster for big builds).")
@click.option("--title", help="The page's title [default: the build's name].")
@handle_errors
def review_command(directory: Path, out_path: Path | None, no_posters: bool, title: str | None) -> None:
    """Write a review page of DIRECTORY: a card per request, its outcome, its fields, a poster, its video.

    Open it in any browser (no server; nothing is fetched but the videos you play). Approve or reject
    cards, then download the decisions and send the rejected ones again with
    `batchkit retry DIRECTORY --from-review decisions.csv --out NEW`.
    """
    bar = Progress(
        TextColumn("[bold]posters"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("posters", total=None)

    def on_poster(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        page = review_directory(
            directory, out_path, ReviewOptions(posters=not no_posters, title=title), on_poster=on_poster
        )
    out.print(f"wrote {escape(str(page))} ({page.stat().st_size:,} bytes): open it in a browser", highlight=False)
