"""decisions.csv read back: what the page writes, what a spreadsheet makes of it, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchkit import InputError
from batchkit._handback.decisions import DECISION_CODES, read_decisions

BOM = "\ufeff"
PAGE_CSV = (
    BOM + "request_id,decision,note,outcome,lang,build\n"
    "v001_de,approved,,completed,de,b1\n"
    'v001_fr,rejected,"lips drift at 0:02, redo",completed,fr,b1\n'
    "v002_de,undecided,,failed,de,b1\n"
    "v002_fr,rejected,,failed,fr,b1\n"
)


def _write(tmp_path: Path, content: str | bytes, name: str = "decisions.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_the_page_format_reads_back(tmp_path: Path) -> None:
    """The page's own file: every request's decision in file order, notes, the build, and no finding."""
    decisions = read_decisions(_write(tmp_path, PAGE_CSV))
    assert decisions.rejected == ("v001_fr", "v002_fr")
    assert decisions.approved == ("v001_de",)
    assert decisions.undecided == ("v002_de",)
    assert decisions.by_id["v001_fr"].note == "lips drift at 0:02, redo"
    assert decisions.by_id["v001_fr"].line == 3
    assert decisions.build == "b1"
    assert len(decisions) == 4
    assert next(d.request_id for d in decisions) == "v001_de"
    assert decisions.findings == ()


def test_expected_build_and_request_ids_pass(tmp_path: Path) -> None:
    """Checked against its own build and request_ids, the page's file passes."""
    ids = {"v001_de", "v001_fr", "v002_de", "v002_fr", "v003_de"}
    assert read_decisions(_write(tmp_path, PAGE_CSV), build="b1", request_ids=ids).rejected == (
        "v001_fr",
        "v002_fr",
    )


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(PAGE_CSV.replace("\n", "\r\n"), id="crlf"),
        pytest.param(PAGE_CSV.removeprefix(BOM), id="no-bom"),
        pytest.param(PAGE_CSV.replace(",", ";").replace("0:02; redo", "0:02, redo"), id="semicolons"),
        pytest.param(
            "sep=;\n" + PAGE_CSV.removeprefix(BOM).replace(",", ";").replace("0:02; redo", "0:02, redo"),
            id="excel-sep-line",
        ),
        pytest.param(PAGE_CSV.replace(",", "\t").replace("0:02\t redo", "0:02, redo"), id="tabs"),
        pytest.param(PAGE_CSV + "\n\n,,,,,\n", id="blank-and-empty-rows"),
        pytest.param(
            PAGE_CSV.replace("request_id,decision,note", "Request ID , Decision,NOTE"), id="header-spelling"
        ),
        pytest.param(
            BOM
            + 'decision,extra,request_id,note\napproved,x,v001_de,\nrejected,y,v001_fr,"lips drift at 0:02, redo"\n'
            "undecided,,v002_de,\nREJECT ,,v002_fr,\n",
            id="columns-in-any-order",
        ),
    ],
)
def test_what_spreadsheets_do_to_the_file_is_read_kindly(tmp_path: Path, content: str) -> None:
    """CRLF, no BOM, ; or tab delimiters, Excel's sep= line, blank rows, header case, column order: same answer."""
    decisions = read_decisions(_write(tmp_path, content))
    assert decisions.rejected == ("v001_fr", "v002_fr")
    assert decisions.approved == ("v001_de",)
    assert decisions.by_id["v001_fr"].note == "lips drift at 0:02, redo"


def test_utf16_tab_separated_text_from_excel(tmp_path: Path) -> None:
    """Excel's 'Unicode Text' (UTF-16 with a BOM, tab-separated) reads like the original."""
    content = PAGE_CSV.removeprefix(BOM).replace(",", "\t").replace("0:02\t redo", "0:02, redo")
    decisions = read_decisions(_write(tmp_path, content.encode("utf-16")))
    assert decisions.rejected == ("v001_fr", "v002_fr")


def test_windows_1252_is_read_with_a_warning(tmp_path: Path) -> None:
    """A file saved as Windows-1252 keeps its accents, with a decisions-encoding warning naming the line."""
    content = 'request_id,decision,note\nv001_de,rejected,"trop rapide, café"\n'
    decisions = read_decisions(_write(tmp_path, content.encode("cp1252")))
    assert decisions.by_id["v001_de"].note == "trop rapide, café"
    [finding] = decisions.findings
    assert finding.code == "decisions-encoding"
    assert finding.severity == "warning"
    assert finding.line == 2
    assert finding.code in DECISION_CODES


def test_decision_spellings_and_an_empty_cell(tmp_path: Path) -> None:
    """Approve, REJECTED, spaces around, or an empty cell (undecided) are all understood."""
    content = "request_id,decision\na, Approve \nb,REJECTED\nc,\nd,reject\n"
    decisions = read_decisions(_write(tmp_path, content))
    assert decisions.approved == ("a",)
    assert decisions.rejected == ("b", "d")
    assert decisions.undecided == ("c",)


def test_the_formula_apostrophe_is_taken_off(tmp_path: Path) -> None:
    """The page writes '=x for a cell starting with =; it reads back as =x (other apostrophes stay)."""
    content = "request_id,decision,note\n'=x,rejected,'+1 take\n'quoted',approved,'tis fine\n"
    decisions = read_decisions(_write(tmp_path, content))
    assert decisions.rejected == ("=x",)
    assert decisions.by_id["=x"].note == "+1 take"
    assert decisions.by_id["'quoted'"].note == "'tis fine"


def test_a_repeated_line_with_the_same_decision_is_a_warning(tmp_path: Path) -> None:
    """Twice the same decision: kept once (the later line, with its note) and a duplicate-decision warning."""
    content = "request_id,decision,note\na,rejected,first\nb,approved,\na,rejected,second\n"
    decisions = read_decisions(_write(tmp_path, content))
    assert decisions.rejected == ("a",)
    assert decisions.by_id["a"].note == "second"
    assert decisions.by_id["a"].line == 4
    [finding] = decisions.findings
    assert (finding.code, finding.line, finding.request_id) == ("duplicate-decision", 4, "a")
    assert "line 2" in finding.message


def test_a_header_only_file_has_no_decisions(tmp_path: Path) -> None:
    """Nothing reviewed yet is not an error: no decisions at all."""
    decisions = read_decisions(_write(tmp_path, BOM + "request_id,decision,note\n"))
    assert len(decisions) == 0
    assert decisions.rejected == ()


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        pytest.param(b"", 1, ["is empty"], id="empty"),
        pytest.param(
            "id,verdict\na,rejected\n",
            1,
            ["no request_id and no decision column", "request_id,decision"],
            id="no-columns",
        ),
        pytest.param("request_id,decision,decision\n", 1, ["'decision' twice"], id="header-twice"),
        pytest.param(
            "request_id,decision\na,approved\nb,rejcted\n",
            3,
            ["unknown decision 'rejcted'", "'b'", "approved, rejected"],
            id="unknown-decision",
        ),
        pytest.param("request_id,decision\n,rejected\n", 2, ["no request_id"], id="no-request-id"),
        pytest.param(
            "request_id,decision,note\na,rejected,too, many\n",
            2,
            ["4 cells but the header has 3", "quoted"],
            id="unquoted-comma",
        ),
        pytest.param(
            "request_id,decision\na,rejected\nb,approved\na,approved\n",
            4,
            ["'a' is approved here but rejected on line 2"],
            id="conflict",
        ),
        pytest.param(
            "request_id,decision,build\na,rejected,b1\nb,approved,b2\n",
            3,
            ["two review pages", "'b2'", "'b1'"],
            id="two-builds",
        ),
        pytest.param(
            'request_id,decision,note\na,rejected,"open\nb,approved,\n',
            2,
            ["cannot be read", "closing quote"],
            id="open-quote",
        ),
        pytest.param(
            'request_id,decision,note\na,rejected,"two\nlines"\nb,maybe,\n',
            4,
            ["unknown decision 'maybe'"],
            id="line-after-a-multiline-note",
        ),
    ],
)
def test_problems_are_one_line_errors_with_file_line_and_fix(
    tmp_path: Path, content: str | bytes, line: int, words: list[str]
) -> None:
    """Each refusal is an InputError on one line: the file, the line, what is wrong and how to fix it."""
    path = _write(tmp_path, content)
    with pytest.raises(InputError) as caught:
        read_decisions(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: ")
    assert "\n" not in message
    assert all(word in message for word in words), message
    assert caught.value.path == str(path)
    assert caught.value.line == line


def test_several_problems_are_counted_in_the_first_ones_message(tmp_path: Path) -> None:
    """The first problem is the message; the others are counted with their lines, so one edit fixes all."""
    content = "request_id,decision\na,nope\nb,approved\nc,nah\nd,meh\n"
    with pytest.raises(
        InputError, match=r":2: unknown decision 'nope'.*\(2 more problem\(s\), on lines 4, 5\)"
    ):
        read_decisions(_write(tmp_path, content))


def test_another_builds_decisions_are_refused(tmp_path: Path) -> None:
    """Decisions downloaded from another build's page are never applied to this one."""
    with pytest.raises(InputError, match="from another build \\('b1'; this one is 'b9'\\)"):
        read_decisions(_write(tmp_path, PAGE_CSV), build="b9")


def test_request_ids_the_build_lacks_are_refused_with_a_spreadsheet_hint(tmp_path: Path) -> None:
    """An id not in the build is refused; one that looks like a number hints at the spreadsheet's doing."""
    content = "request_id,decision\n00042,approved\n42,rejected\nzz,approved\n"
    with pytest.raises(InputError) as caught:
        read_decisions(_write(tmp_path, content), request_ids=["00042"])
    assert (
        ":3: request_id '42' is not a request of this build (a spreadsheet may have turned it into a number"
        in str(caught.value)
    )
    assert "1 more problem(s), on lines 4" in str(caught.value)


def test_an_unreadable_path_is_an_input_error(tmp_path: Path) -> None:
    """A file that is not there: an InputError naming it."""
    with pytest.raises(InputError, match=r"cannot read the decisions file .*nowhere\.csv"):
        read_decisions(tmp_path / "nowhere.csv")
