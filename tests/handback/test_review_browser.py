"""The review page in a real headless Chromium (Debian's ``chromium``), driven by Playwright.

Playwright is used rather than Selenium because it sees what these tests assert in one place: every console
message and page error, every request the page makes (so "nothing from the network" is checked, not
assumed), dialogs (a script injected through the data would open one), and downloads (the decisions CSV is
captured as the browser saves it). It drives the system's Chromium through ``executable_path``, so nothing is
downloaded (``playwright install`` is never run) and no chromedriver has to match the browser's version.

Without ``/usr/bin/chromium`` (or the browser ``BATCHKIT_CHROMIUM`` names) these tests are skipped, except where
``BATCHKIT_REQUIRE_BROWSER=1`` is set (``.ci/run`` sets it after installing Chromium): there they fail instead. Nothing here waits on a clock: each
step waits for the page to show its result.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest
from review_samples import SETTLED_BADLY, localization_frame, make_mp4, results_row

from batchkit._handback.decisions import read_decisions
from batchkit._handback.review import read_page_data, write_review

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails) with the reason
    expect = None  # type: ignore[assignment]

CHROMIUM = Path(os.environ.get("BATCHKIT_CHROMIUM", "/usr/bin/chromium"))
# Read at import: the suite's autouse fixture clears BATCHKIT_* variables before each test runs.
REQUIRED = os.environ.get("BATCHKIT_REQUIRE_BROWSER") == "1"
#: The flags Chromium needs on a machine with a closed network (see the machine notes): no background
#: connections, no component updates, no QUIC, no GPU. Playwright adds --headless and --no-sandbox (root).
FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = "<script>alert(1)</script>"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"BATCHKIT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module (each test gets its own fresh context)."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is absent: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@dataclass
class Opened:
    """A review page open in a fresh browser context, with everything it said and asked for."""

    page: Page
    path: Path
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Console errors and warnings, page errors (recorded as console errors), and dialogs."""
        return self.console + [f"dialog: {d}" for d in self.dialogs]

    def remote(self) -> list[str]:
        """Requests for anything but the page's own local files and data: URIs."""
        return [url for url in self.requests if not url.startswith(("file://", "data:", "blob:"))]

    def cards(self) -> list[str]:
        """The request_ids of the cards on screen, in order."""
        return self.page.locator(".card .rid").all_text_contents()

    def card(self, request_id: str) -> Any:
        return self.page.locator(f'.card[data-request-id="{request_id}"]')

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()


@pytest.fixture
def open_page(browser: Browser, tmp_path: Path) -> Iterator[Callable[..., Opened]]:
    """Write a review page of a table and open it from a file:// URL, recording what it does."""
    contexts = []

    def opener(frame: pl.DataFrame, *, name: str = "review.html", **options: Any) -> Opened:
        options.setdefault("title", "Localization review")
        options.setdefault("each", ["lang"])
        path = write_review(frame, tmp_path / name, **options)
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        opened = Opened(page=context.new_page(), path=path)

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                opened.console.append(f"{message.type}: {message.text}")

        def on_request(request: Request) -> None:
            opened.requests.append(request.url)

        opened.page.on("console", on_console)
        opened.page.on("pageerror", lambda error: opened.console.append(f"pageerror: {error}"))
        opened.page.on("request", on_request)
        opened.page.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
        # Anything that is not a local file is refused (and recorded above): the network is not there.
        context.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())
        opened.page.goto(path.as_uri())
        opened.page.wait_for_selector("html[data-ready]")
        return opened

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture
def fetched(tmp_path: Path) -> dict[str, Path]:
    """Two fetched videos beside the page (the others are only at their output URLs)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    return {rid: make_mp4(folder / f"{rid}.mp4", width=160, height=90) for rid in ("v001_de", "v001_fr")}


def test_the_page_loads_offline_with_one_card_per_request(
    open_page: Callable[..., Opened], fetched: dict[str, Path]
) -> None:
    """From a file:// URL: no console error, no request but the page itself, one card per request, grouped by
    source row, with posters where given and placeholders elsewhere."""
    from batchkit._handback.poster import poster_jpeg

    frame = localization_frame()
    posters = {rid: poster_jpeg(path) for rid, path in fetched.items()}
    opened = open_page(frame, files=fetched, posters=posters)
    assert opened.cards() == frame["request_id"].to_list()
    assert opened.page.locator(".group").count() == 5
    assert opened.page.locator(".group-title").all_text_contents() == ["v001", "v002", "v003", "v004", "v005"]
    assert opened.page.locator(".card img.poster:visible").count() == 2
    assert opened.page.locator(".card .placeholder:visible").count() == 13
    failed = opened.card("v002_fr")
    assert failed.locator(".badge").inner_text().lower() == "failed"
    assert failed.locator(".code").inner_text() == "generation_pipeline_failed"
    assert "15 requests in 5 source rows" in opened.text("#summary")
    assert opened.text("#shown") == "15 shown"
    assert opened.problems() == []
    assert opened.requests == [opened.path.as_uri()]  # posters are inline; no video is loaded before Play


def test_outcome_and_each_filters_change_what_is_shown(open_page: Callable[..., Opened]) -> None:
    """Unticking an outcome hides its cards; choosing a language shows only it; Reset shows all again."""
    opened = open_page(localization_frame())
    page = opened.page
    page.get_by_role("checkbox", name=re.compile(r"^completed")).uncheck()
    expected = [f"v{v:03d}_{lang}" for (v, lang) in sorted(SETTLED_BADLY)]
    assert opened.cards() == expected
    assert opened.text("#shown") == "3 shown (of 15)"
    page.get_by_label("lang").select_option(label="fr (5)")
    assert opened.cards() == ["v002_fr"]
    page.get_by_role("checkbox", name=re.compile(r"^completed")).check()
    assert opened.cards() == [f"v{v:03d}_fr" for v in range(1, 6)]
    page.get_by_label("Search").fill("v003")
    expect(page.locator(".card")).to_have_count(1)
    assert opened.cards() == ["v003_fr"]
    page.get_by_role("button", name="Reset").click()
    expect(page.locator(".card")).to_have_count(15)
    assert opened.text("#shown") == "15 shown"
    assert opened.problems() == []


def test_decisions_per_card_and_in_bulk_export_as_csv_that_reads_back(
    open_page: Callable[..., Opened], fetched: dict[str, Path], tmp_path: Path
) -> None:
    """Approve and reject cards one by one (buttons and keys), reject every Spanish card at once, undo a bulk
    step, write a note; the decisions survive a reload and download as a CSV that read_decisions accepts."""
    from batchkit._handback.poster import poster_jpeg

    frame = localization_frame()
    opened = open_page(
        frame, files=fetched, posters={rid: poster_jpeg(path) for rid, path in fetched.items()}
    )
    page = opened.page
    opened.card("v001_de").get_by_role("button", name="Approve").click()
    opened.card("v002_fr").get_by_role("button", name="Reject").click()
    note = opened.card("v002_fr").get_by_label("Note")
    note.fill('=HYPERLINK("x"), lips drift')
    opened.card("v001_fr").get_by_role("button", name="Approve").focus()
    page.keyboard.press("r")  # a / r / u decide the focused card
    assert opened.card("v001_fr").get_by_role("button", name="Reject").get_attribute("aria-pressed") == "true"
    assert opened.card("v001_de").get_attribute("class") == "card approved"

    page.get_by_role("button", name="Approve shown").click()
    assert "15 approved" in opened.text("#tally")
    page.get_by_role("button", name="Undo").click()
    assert "1 approved · 2 rejected · 12 undecided" in opened.text("#tally")

    page.get_by_label("lang").select_option(label="es (5)")
    page.get_by_role("button", name="Reject shown").click()
    assert opened.page.locator(".card.rejected").count() == 5
    assert "1 approved · 7 rejected · 7 undecided" in opened.text("#tally")

    page.reload()
    page.wait_for_selector("html[data-ready]")
    assert "1 approved · 7 rejected · 7 undecided" in opened.text("#tally")
    shot = tmp_path / "review.png"  # for people to look at (run with --basetemp to keep it)
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert opened.card("v002_fr").get_by_label("Note").input_value() == '=HYPERLINK("x"), lips drift'

    with page.expect_download() as waiting:
        page.get_by_role("button", name="Download decisions (CSV)").click()
    download = waiting.value
    assert download.suggested_filename == "decisions.csv"
    saved = tmp_path / "decisions.csv"
    download.save_as(saved)
    raw = saved.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfrequest_id,decision,note,outcome,lang,build\n")

    build = read_page_data(opened.path.read_text())["build"]
    decisions = read_decisions(saved, build=build, request_ids=frame["request_id"].to_list())
    spanish = [f"v{v:03d}_es" for v in range(1, 6)]
    assert sorted(decisions.rejected) == sorted(["v001_fr", "v002_fr", *spanish])
    assert decisions.approved == ("v001_de",)
    assert len(decisions) == frame.height
    assert decisions.by_id["v002_fr"].note == '=HYPERLINK("x"), lips drift'
    assert b'v002_fr,rejected,"\'=HYPERLINK(""x""), lips drift",failed,fr,' in raw  # no formula in a sheet
    assert opened.problems() == []


def test_user_text_renders_as_text_and_runs_nothing(open_page: Callable[..., Opened]) -> None:
    """Script, markup and </script> in every kind of field show literally; no dialog opens, no CSP violation."""
    rows = [
        {
            **results_row(1, "de", outcome="failed", code="x", message=HOSTILE),
            "title": '"><img src=x onerror=alert(2)>',
            "request_id": "</script><script>alert(3)</script>",
        },
        {**results_row(1, "fr"), "title": '"><img src=x onerror=alert(2)>', "lang": "<b>fr</b>"},
    ]
    opened = open_page(pl.DataFrame(rows), title=HOSTILE, source_columns=["title", "video_id"])
    page = opened.page
    assert page.title() == HOSTILE
    assert page.locator("h1").inner_text() == HOSTILE
    assert opened.cards() == ["</script><script>alert(3)</script>", "v001_fr"]
    assert page.locator(".card .message").first.inner_text() == HOSTILE
    assert page.locator(".group-title").inner_text() == '"><img src=x onerror=alert(2)>'
    assert "<b>fr</b>" in page.locator(".card .each").nth(1).inner_text()
    assert page.locator(".card img:not(.poster), .card b b, main script").count() == 0
    assert opened.dialogs == []
    assert opened.problems() == []


def test_ten_thousand_cards_render_a_page_at_a_time(open_page: Callable[..., Opened]) -> None:
    """10,000 requests: 60 cards in the document at first, more on demand; filters and bulk cover all 10,000."""
    frame = localization_frame(videos=2500, langs=("de", "fr", "es", "it"))
    opened = open_page(frame)
    page = opened.page
    assert opened.text("#shown") == "10,000 shown"
    assert page.locator(".card").count() == 60
    more = page.get_by_role("button", name="Show more (9,940 left)")
    more.dispatch_event("click")  # as a click lands, without scrolling to the button first
    assert page.locator(".card").count() == 120
    assert (
        page.locator(".card").nth(60).evaluate("card => card === document.activeElement")
    )  # keyboard goes on
    page.locator(".more").evaluate("end => end.scrollIntoView()")  # the end of the list comes into view
    expect(page.locator(".card").nth(120)).to_be_attached()  # so the next page renders by itself
    assert page.locator(".card").count() == 180
    page.get_by_label("lang").select_option(label="it (2,500)")
    assert opened.text("#shown") == "2,500 shown (of 10,000)"
    assert page.locator(".card").count() == 60
    page.get_by_role("button", name="Approve shown").click()
    assert "2,500 approved · 0 rejected · 7,500 undecided" in opened.text("#tally")
    assert opened.path.stat().st_size < 10_000 * 400
    assert opened.problems() == []


def test_play_loads_the_fetched_file_else_the_url_and_only_then(
    open_page: Callable[..., Opened], fetched: dict[str, Path]
) -> None:
    """Play on a fetched card plays the local file (relative to the page); on another card it asks for the
    output URL. Nothing is requested before Play."""
    opened = open_page(localization_frame(videos=2), files=fetched)
    assert opened.remote() == []
    opened.card("v001_de").get_by_role("button", name="Play v001_de").click()
    video = opened.card("v001_de").locator("video")
    assert video.get_attribute("src") == "videos/v001_de.mp4"
    metadata = "v => v.readyState >= 1 || new Promise(r => v.addEventListener('loadedmetadata', r))"
    video.evaluate(metadata)  # the local file's metadata loaded
    assert video.evaluate("v => v.videoWidth") == 160
    assert opened.remote() == []
    opened.card("v002_de").get_by_role("button", name="Play v002_de").click()
    expect(opened.card("v002_de").locator(".media-error")).to_contain_text(
        "link may have expired"
    )  # no network
    assert set(opened.remote()) == {"https://cdn.example.com/out/v002_de.mp4"}
