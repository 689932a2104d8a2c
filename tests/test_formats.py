"""CI formats: GitHub annotations follow the runner's grammar, JUnit XML and SARIF validate against their schemas.

The schemas are vendored in ``tests/schemas/`` (see its README for where each came from). Real reports come
from the validator over every ``fixtures/bad/*.jsonl`` and from a build of ``fixtures/campaign.csv``; the
property tests throw arbitrary findings (any text, odd paths) at every writer.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import os
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import jsonschema
import pytest
import xmlschema
import yaml
from click.testing import CliRunner
from conftest import FIXTURES, ROOT
from hypothesis import HealthCheck, given, settings, strategies as st
from pre_commit.clientlib import MANIFEST_HOOK_DICT, load_manifest

import batchkit._formats as formats
from batchkit import BuildOptions, Finding, Report, build, validate_file, validate_files
from batchkit._formats import write_format, write_junit, write_sarif
from batchkit._report import CODES, Stats
from batchkit.cli import COMMANDS, main

SCHEMAS = Path(__file__).parent / "schemas"
BAD_FILES = sorted((FIXTURES / "bad").glob("*.jsonl"))

# -- the grammars and schemas ----------------------------------------------------------------------------


@functools.cache
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(SCHEMAS / "junit-10.xsd")


@functools.cache
def sarif_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


#: Properties of the annotation commands, from GitHub's workflow-command documentation.
_PROPERTIES = {"file", "line", "endLine", "col", "endColumn", "title"}
#: Escapes the runner undoes (actions/runner ActionCommand.cs), in the order it undoes them; ``%25`` last.
_DATA_UNESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY_UNESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
_COMMAND = re.compile(r"::(error|warning)(?: ([^:\r\n]*))?::([^\r\n]*)")


def _unescape(value: str, escapes: tuple[tuple[str, str], ...], what: str) -> str:
    """Undo the runner's escapes, refusing any ``%`` that does not start one (it would be misread)."""
    known = "|".join(re.escape(escaped) for escaped, _ in escapes)
    assert re.fullmatch(rf"(?:[^%]|{known})*", value), f"stray % in {what}: {value!r}"
    for escaped, raw in escapes:
        value = value.replace(escaped, raw)
    return value


def parse_command(line: str) -> tuple[str, dict[str, str], str]:
    """Parse one ``::error``/``::warning`` line as strictly as GitHub's grammar allows: (command, props, data).

    Stricter than the runner, so that what passes here means the same to it: no unknown or repeated or
    empty property, no raw ``:`` ``,`` CR or LF inside a value, every ``%`` an escape, ``line`` a positive
    integer given with ``file``, and no whitespace at either end of the property list (the runner trims it).
    """
    match = _COMMAND.fullmatch(line)
    assert match, f"not a workflow command: {line!r}"
    command, raw_props, raw_data = match.groups()
    props: dict[str, str] = {}
    if raw_props is not None:
        assert raw_props == raw_props.strip(), f"the runner would trim {raw_props!r}"
        for item in raw_props.split(","):
            key, sep, value = item.partition("=")
            assert sep, f"property without a value: {item!r}"
            assert value, f"empty property: {item!r}"
            assert key in _PROPERTIES, f"unknown property: {key!r}"
            assert key not in props, f"repeated property: {key!r}"
            props[key] = _unescape(value, _PROPERTY_UNESCAPES, key)
    if "line" in props:
        assert "file" in props
        assert re.fullmatch(r"[1-9][0-9]*", props["line"])
    return command, props, _unescape(raw_data, _DATA_UNESCAPES, "data")


def parse_github(text: str) -> list[tuple[str, dict[str, str], str]]:
    """Every line of the output is one command; nothing else, and no CR anywhere."""
    assert "\r" not in text
    assert text == "" or text.endswith("\n")
    return [parse_command(line) for line in text.split("\n")[:-1]]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("::error file=a,b.jsonl,title=t::m", id="raw-comma-in-value"),
        pytest.param("::error file=a.jsonl,line=0,title=t::m", id="line-zero"),
        pytest.param("::error line=3,title=t::m", id="line-without-file"),
        pytest.param("::error file=a.jsonl,title=t ::m", id="trailing-space-trimmed-by-runner"),
        pytest.param("::error title=t,title=u::m", id="repeated-property"),
        pytest.param("::error title=::m", id="empty-value-dropped-by-runner"),
        pytest.param("::error colour=red::m", id="unknown-property"),
        pytest.param("::error title=t::100% sure", id="stray-percent-in-data"),
        pytest.param("::error title=50%::m", id="stray-percent-in-property"),
        pytest.param("::notice title=t::m", id="not-error-or-warning"),
        pytest.param("Error: m", id="not-a-command"),
    ],
)
def test_the_annotation_parser_refuses_what_the_runner_would_misread(line: str) -> None:
    """The strict parser has teeth: each of these lines would lose or change text on a real runner."""
    with pytest.raises(AssertionError):
        parse_command(line)


def test_the_annotation_parser_undoes_every_escape() -> None:
    """Each documented escape comes back as its character; ``%25`` last, so ``%250A`` is a literal ``%0A``."""
    line = "::warning file=a%3Ab%2Cc%25d%0Ae%0Df,line=7,title=x::p%25q%0Ar%0Ds%250A::t"
    assert parse_command(line) == (
        "warning",
        {"file": "a:b,c%d\ne\rf", "line": "7", "title": "x"},
        "p%q\nr\rs%0A::t",
    )


# -- what each format must say ---------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def utf8(text: str) -> str:
    """The documented replacement in every format: a lone surrogate becomes ``\\udXXX``."""
    return _SURROGATE.sub(_escaped, text)


def xml_text(text: str) -> str:
    """The documented replacement in XML: each character XML 1.0 forbids becomes its Python escape."""
    return _NOT_XML.sub(_escaped, text)


def target(finding: Finding) -> tuple[str | None, int | None]:
    """The file a finding points at (as given) and its line: the source row first, then the JSONL line."""
    if finding.source:
        return finding.source, finding.source_line
    if finding.file:
        return finding.file, finding.line
    return None, None


def same_file(shown: str | bytes, given: str | bytes) -> bool:
    """``shown`` (relative to the working directory, or absolute) names the file ``given`` names."""
    if isinstance(shown, bytes) or isinstance(given, bytes):
        cwd_b, shown_b, given_b = os.getcwdb(), os.fsencode(shown), os.fsencode(given)
        return os.path.normpath(os.path.join(cwd_b, shown_b)) == os.path.normpath(
            os.path.join(cwd_b, given_b)
        )
    cwd = os.getcwd()
    return os.path.normpath(os.path.join(cwd, shown)) == os.path.normpath(os.path.join(cwd, given))


def path_bytes(path: str) -> bytes:
    """The bytes a path stands for: undecodable bytes kept by surrogateescape, other surrogates as UTF-8."""
    try:
        return path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogatepass")


def render(fmt: str, findings: list[Finding], stats: Stats | None = None, **options: Any) -> str:
    out = io.StringIO()
    write_format(fmt, findings, stats or Stats(), out, **options)
    return out.getvalue()


def check_junit(text: str) -> ET.Element:
    """Valid against junit-10.xsd, and every count agrees with the elements it counts."""
    junit_schema().validate(text)
    root = ET.fromstring(text)
    cases = root.findall("./testsuite/testcase")
    failures = root.findall("./testsuite/testcase/failure")
    assert (int(root.get("tests", "")), int(root.get("failures", ""))) == (len(cases), len(failures))
    for suite in root.findall("testsuite"):
        assert int(suite.get("tests", "")) == len(suite.findall("testcase"))
        assert int(suite.get("failures", "")) == len(suite.findall("testcase/failure"))
    return root


def check_sarif(text: str, *, rules: bool = True) -> dict[str, Any]:
    """Valid against the SARIF 2.1.0 schema (formats included); relative URIs have no scheme.

    ``rules=False`` leaves the driver's rules (the same in every log, and checked by the other tests) out of
    the validation, which is most of its cost; everything else is still validated.
    """
    log = json.loads(text)
    checked = (
        log
        if rules
        else {
            **log,
            "runs": [
                {**run, "tool": {"driver": {**run["tool"]["driver"], "rules": []}}} for run in log["runs"]
            ],
        }
    )
    errors = sorted(sarif_validator().iter_errors(checked), key=str)
    assert not errors, errors[0]
    for result in log["runs"][0]["results"]:
        for location in result.get("locations", []):
            artifact = location["physicalLocation"]["artifactLocation"]
            scheme = urlsplit(artifact["uri"]).scheme
            assert scheme == ("" if "uriBaseId" in artifact else "file")
    return dict(log)


def check_all(report: Report, **options: Any) -> dict[str, Any]:
    """Render ``report`` in every format, check each against its grammar or schema, return them parsed."""
    return {
        "github": parse_github(render("github", report.findings, report.stats, **options)),
        "junit": check_junit(render("junit", report.findings, report.stats, **options)),
        "sarif": check_sarif(render("sarif", report.findings, report.stats, **options)),
    }


# -- real reports: every bad fixture, a build ------------------------------------------------------------


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.name)
def test_every_bad_fixture_renders_valid_ci_formats(path: Path) -> None:
    """Each bad fixture's report is a valid annotation list, JUnit document and SARIF log, finding by finding."""
    report = validate_file(path)
    assert report.findings
    parsed = check_all(report, root=ROOT)
    rel = path.relative_to(ROOT).as_posix()

    annotations = parsed["github"]
    assert len(annotations) == len(report.findings)
    for (command, props, data), finding in zip(annotations, report.findings, strict=True):
        assert command == finding.severity
        assert props["file"] == rel
        assert props.get("line") == (str(finding.line) if finding.line is not None else None)
        assert props["title"] == f"batchkit {finding.code}"
        assert data.endswith(finding.message)

    failures = parsed["junit"].findall(f"./testsuite[@name='{rel}']/testcase/failure")
    assert [(f.get("type"), f.get("message")) for f in failures] == [
        (f.code, f.message) for f in report.findings if f.severity == "error"
    ]

    results = parsed["sarif"]["runs"][0]["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [(f.code, f.severity) for f in report.findings]
    for result, finding in zip(results, report.findings, strict=True):
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": rel, "uriBaseId": "%SRCROOT%"}
        assert physical.get("region", {}).get("startLine") == finding.line


def test_the_whole_bad_folder_at_once_keeps_one_suite_per_file() -> None:
    """Thirty files in one report (cross-file duplicates included) give one JUnit suite per file with errors."""
    report = validate_files([FIXTURES / "bad"])
    parsed = check_all(report, root=ROOT)
    assert len(parsed["github"]) == len(parsed["sarif"]["runs"][0]["results"]) == len(report.findings)
    suites = [s.get("name") for s in parsed["junit"].findall("testsuite")]
    with_errors = {f.file for f in report.findings if f.severity == "error"}
    assert len(suites) == len(set(suites))  # the validator never interleaves two files' findings
    assert {f"fixtures/bad/{Path(str(f)).name}" for f in with_errors} <= set(suites)
    assert suites[-1] == "batchkit validate"
    assert int(parsed["junit"].get("failures", "")) == report.stats.errors


@pytest.fixture(scope="module")
def build_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The campaign build with its two bad rows skipped: findings located at source rows (CSV lines)."""
    result = build(
        FIXTURES / "campaign.csv",
        FIXTURES / "campaign.toml",
        tmp_path_factory.mktemp("b") / "b",
        BuildOptions(skip_invalid=True),
    )
    assert result.report.findings
    return result.report


def test_build_findings_point_at_the_source_file_and_line(build_report: Report) -> None:
    """With the source's path known, each format points at the CSV and its physical line, not a shard."""
    sources = {"campaign.csv": FIXTURES / "campaign.csv"}
    parsed = check_all(build_report, root=ROOT, sources=sources)
    first = build_report.findings[0]
    assert (first.source, first.row, first.source_line, first.column) == ("campaign.csv", 7, 8, "audio_url")

    _command, props, data = parsed["github"][0]
    assert props == {"file": "fixtures/campaign.csv", "line": "8", "title": "batchkit invalid-url"}
    assert data == f"row 7, column audio_url [c007] at /payload/input/1/url: {first.message}"

    result = parsed["sarif"]["runs"][0]["results"][0]
    assert result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "fixtures/campaign.csv", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 8},
    }
    assert result["properties"] == {
        "source": "campaign.csv",
        "row": 7,
        "source_line": 8,
        "column": "audio_url",
        "request_id": "c007",
        "pointer": "/payload/input/1/url",
    }
    suite = parsed["junit"].find("testsuite")
    assert suite is not None
    assert suite.get("file") == "fixtures/campaign.csv"
    assert [c.get("name") for c in suite.findall("testcase")] == [
        "invalid-url: row 7 (line 8), column audio_url [c007]",
        "empty-value: row 13 (line 14), column audio_url [c013]",
    ]


def test_a_source_without_a_file_keeps_its_location_in_the_message(build_report: Report) -> None:
    """A source mapped to None (a DataFrame) points at no file; the text location leads the message."""
    parsed = check_all(build_report, sources={"campaign.csv": None})
    _command, props, data = parsed["github"][0]
    assert props == {"title": "batchkit invalid-url"}
    assert data.startswith("campaign.csv row 7 (line 8), column audio_url [c007] at /payload/input/1/url: ")
    assert "locations" not in parsed["sarif"]["runs"][0]["results"][0]
    names = [s.get("name") for s in parsed["junit"].findall("testsuite")]
    assert names == ["batchkit validate"]  # every finding sits in the run's own suite


def test_a_source_without_a_file_falls_back_to_the_jsonl_line_and_names_the_source() -> None:
    """A row of a fileless source that also has a JSONL line points there, and says which source row it is."""
    finding = Finding(
        code="invalid-url",
        severity="error",
        message="m",
        file="b/batch-00001.jsonl",
        line=4,
        source="frame",
        row=3,
        column="url",
        request_id="r3",
    )
    ((_, props, data),) = parse_github(render("github", [finding], sources={"frame": None}))
    assert (props["file"], props["line"]) == ("b/batch-00001.jsonl", "4")
    assert data == "frame row 3, column url [r3]: m"


def test_an_unmapped_source_name_is_taken_as_a_path() -> None:
    """Without ``sources``, a source name is a path relative to the working directory."""
    finding = Finding(
        code="ragged-row", severity="error", message="m", source="in/c.csv", row=2, source_line=3
    )
    ((_, props, _),) = parse_github(render("github", [finding]))
    assert (props["file"], props["line"]) == ("in/c.csv", "3")


# -- specific shapes -------------------------------------------------------------------------------------


def test_a_clean_run_is_one_passing_test_and_no_annotation() -> None:
    """No findings: no annotation, an empty SARIF result list, and JUnit's single passing ``no errors`` case."""
    report = validate_file(FIXTURES / "sample-batch.jsonl")
    assert report.valid
    assert not report.findings
    parsed = check_all(report)
    assert parsed["github"] == []
    assert parsed["sarif"]["runs"][0]["results"] == []
    assert parsed["sarif"]["runs"][0]["properties"]["records"] == 25
    junit = parsed["junit"]
    assert (junit.get("tests"), junit.get("failures")) == ("1", "0")
    case = junit.find("./testsuite/testcase")
    assert case is not None
    assert case.get("name") == "no errors"
    assert len(case) == 0
    props = {p.get("name"): p.get("value") for p in junit.iterfind(".//property")}
    assert props["valid"] == "true"
    assert props["records"] == "25"


def test_warnings_are_annotations_but_not_junit_failures() -> None:
    """A warning is a ``::warning`` and a SARIF warning, and in JUnit a line of output, not a failure."""
    report = validate_file(FIXTURES / "bad" / "crlf.jsonl")
    assert [f.severity for f in report.findings] == ["warning"]
    parsed = check_all(report, root=ROOT)
    assert parsed["github"][0][0] == "warning"
    assert parsed["sarif"]["runs"][0]["results"][0]["level"] == "warning"
    junit = parsed["junit"]
    assert junit.findall(".//failure") == []
    assert [c.get("name") for c in junit.iter("testcase")] == ["no errors"]
    out = junit.find("./testsuite[@name='fixtures/bad/crlf.jsonl']/system-out")
    assert out is not None
    assert str(report.findings[0]) in (out.text or "")


def test_a_finding_without_any_location_is_still_well_formed() -> None:
    """No file, no source: a bare annotation, a SARIF result without locations, a case in the run's suite."""
    finding = Finding(code="cannot-shard", severity="error", message="no split fits: 1 record over")
    parsed = check_all(Report(findings=[finding], stats=Stats(errors=1)))
    assert parsed["github"] == [("error", {"title": "batchkit cannot-shard"}, "no split fits: 1 record over")]
    result = parsed["sarif"]["runs"][0]["results"][0]
    assert "locations" not in result
    assert "properties" not in result
    case = parsed["junit"].find("./testsuite[@name='batchkit validate']/testcase")
    assert case is not None
    assert case.get("name") == "cannot-shard: input"


def test_paths_are_relative_to_root_and_absolute_outside_it(tmp_path: Path) -> None:
    """Under ``root``: relative (percent-encoded in SARIF); outside it: absolute (a ``file:`` URI in SARIF)."""
    inside = tmp_path / "dir with space" / "a%b,c:d#e?.jsonl"
    outside = Path("/elsewhere/x.jsonl")
    findings = [
        Finding(code="blank-line", severity="error", message="m", file=str(inside), line=3),
        Finding(code="blank-line", severity="error", message="m", file=str(outside), line=4),
    ]
    annotations = parse_github(render("github", findings, root=tmp_path))
    assert [props["file"] for _, props, _ in annotations] == ["dir with space/a%b,c:d#e?.jsonl", str(outside)]
    raw = render("github", findings, root=tmp_path)
    assert "file=dir with space/a%25b%2Cc%3Ad#e?.jsonl,line=3," in raw

    results = check_sarif(render("sarif", findings, root=tmp_path))["runs"][0]["results"]
    locations = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in results]
    assert locations == [
        {"uri": "dir%20with%20space/a%25b%2Cc%3Ad%23e%3F.jsonl", "uriBaseId": "%SRCROOT%"},
        {"uri": "file:///elsewhere/x.jsonl"},
    ]


def test_a_file_name_with_undecodable_bytes_keeps_them_in_the_sarif_uri() -> None:
    """A path decoded with surrogateescape becomes its original bytes in the URI, ``\\udcff`` elsewhere."""
    name = os.fsdecode(b"bad\xff.jsonl")
    findings = [Finding(code="not-utf8", severity="error", message="m", file=name, line=1)]
    result = check_sarif(render("sarif", findings))["runs"][0]["results"][0]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "bad%FF.jsonl"
    assert unquote_to_bytes(uri) == b"bad\xff.jsonl"
    assert parse_github(render("github", findings))[0][1]["file"] == "bad\\udcff.jsonl"
    failure = check_junit(render("junit", findings)).find(".//failure")
    assert failure is not None
    assert "bad\\udcff.jsonl:1" in (failure.text or "")


def test_xml_replaces_what_it_cannot_carry_and_keeps_the_rest() -> None:
    """NUL, C0 controls, lone surrogates and U+FFFE become Python escapes; CR, tab, ``]]>`` and ``&`` survive."""
    message = "a\x00b\x1fc\ud800d\ufffee\r\n\tf]]>&<'\"g"
    finding = Finding(code="invalid-json", severity="error", message=message, file="x.jsonl", line=1)
    failure = check_junit(render("junit", [finding])).find(".//failure")
    assert failure is not None
    assert failure.get("message") == "a\\x00b\\x1fc\\ud800d\\ufffee\r\n\tf]]>&<'\"g"
    assert (failure.text or "").endswith("e\r\n\tf]]>&<'\"g")


def test_messages_cannot_break_out_of_an_annotation() -> None:
    """A message with newlines and ``::`` stays one command: injected text is data, never a second command."""
    message = "bad value\n::error file=evil.py,line=1::injected\r\n%0A literal"
    finding = Finding(code="invalid-value", severity="error", message=message, file="x.jsonl", line=2)
    raw = render("github", [finding])
    assert raw.count("\n") == 1
    assert raw.startswith("::error file=x.jsonl,line=2,title=batchkit invalid-value::")
    ((_, props, data),) = parse_github(raw)
    assert props["file"] == "x.jsonl"
    assert data == message


def test_sarif_rules_come_from_codes_and_unknown_codes_have_no_index() -> None:
    """Every code is a rule with its meaning; warning codes default to warning; an unlisted code is ruleId only."""
    findings = [
        Finding(code="unknown-model", severity="warning", message="m", file="x.jsonl", line=1),
        Finding(code="brand-new-code", severity="error", message="m", file="x.jsonl", line=2),
    ]
    out = io.StringIO()
    write_sarif(findings, out, tool_version="9.9.9", information_uri="https://example.com/batchkit")
    run = check_sarif(out.getvalue())["runs"][0]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"], driver["informationUri"]) == (
        "batchkit",
        "9.9.9",
        "https://example.com/batchkit",
    )
    rules = driver["rules"]
    assert [(r["id"], r["shortDescription"]["text"]) for r in rules] == list(CODES.items())
    levels = {r["id"]: r["defaultConfiguration"]["level"] for r in rules}
    assert levels["unknown-model"] == "warning"
    assert levels["invalid-url"] == "error"
    first, second = run["results"]
    assert rules[first["ruleIndex"]]["id"] == "unknown-model"
    assert second["ruleId"] == "brand-new-code"
    assert "ruleIndex" not in second
    assert "properties" not in run  # no stats given


def test_an_unknown_format_is_a_clear_error() -> None:
    """``write_format`` names the formats it knows."""
    with pytest.raises(ValueError, match="unknown format 'xml'; choose one of github, junit, sarif"):
        write_format("xml", [], Stats(), io.StringIO())


# -- streaming -------------------------------------------------------------------------------------------


def _findings(n: int) -> list[Finding]:
    return [
        Finding(
            code="invalid-url",
            severity="error" if i % 3 else "warning",
            message=f"m{i}",
            file=f"f{i // 7}.jsonl",
            line=i + 1,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("fmt", ["github", "sarif"])
def test_github_and_sarif_write_each_finding_before_reading_the_next(fmt: str) -> None:
    """Output grows while the findings are still being read: nothing waits for the end of the stream."""
    out = io.StringIO()
    sizes: list[int] = []

    def stream() -> Iterator[Finding]:
        for finding in _findings(20):
            sizes.append(len(out.getvalue()))
            yield finding

    write_format(fmt, stream(), Stats(), out)
    assert len(sizes) == 20
    assert all(a < b for a, b in itertools.pairwise(sizes))


def test_junit_spilling_to_disk_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 64-byte spool every suite spills to a temporary file; the document is byte-identical."""
    findings = _findings(300)
    stats = Stats(files=43, errors=200, warnings=100)
    in_memory = io.StringIO()
    write_junit(findings, stats, in_memory)
    monkeypatch.setattr(formats, "_SPOOL_BYTES", 64)
    spilled = io.StringIO()
    write_junit(iter(findings), stats, spilled)
    assert spilled.getvalue() == in_memory.getvalue()
    root = check_junit(spilled.getvalue())
    assert root.get("failures") == "200"
    assert len(root.findall("testsuite")) == 43 + 1


# -- arbitrary findings ----------------------------------------------------------------------------------

_SPECIALS = [
    "%",
    "%0A",
    "%25",
    "%3A",
    "::",
    ":",
    ",",
    "=",
    "\r",
    "\n",
    "\r\n",
    "]]>",
    "&",
    "<",
    '"',
    "'",
    "\t",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\ud800",
    "\udfff",
    "\ufffe",
    "\uffff",
    " ",
    "é",
    "😀",
]
_ANY_CHAR = st.characters(exclude_categories=())
nasty = st.lists(st.one_of(st.sampled_from(_SPECIALS), st.text(_ANY_CHAR, max_size=4)), max_size=6).map(
    "".join
)
paths = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(["", "/", "../", "./", "/tmp/"]),
    st.lists(st.one_of(nasty, st.sampled_from(["..", ".", "a b", "ünï", "x.jsonl"])), min_size=1, max_size=3),
)
lines = st.none() | st.integers(min_value=1, max_value=10**9)
findings_lists = st.lists(
    st.builds(
        Finding,
        code=st.sampled_from([*sorted(CODES), "brand-new-code", "x"]),
        severity=st.sampled_from(["error", "warning"]),
        message=nasty,
        file=st.none() | paths,
        line=lines,
        source=st.none() | paths,
        row=lines,
        source_line=lines,
        column=st.none() | nasty,
        request_id=st.none() | nasty,
        pointer=st.none() | nasty,
    ),
    max_size=4,
)


def _stats(findings: list[Finding]) -> Stats:
    errors = sum(f.severity == "error" for f in findings)
    return Stats(files=1, records=len(findings), errors=errors, warnings=len(findings) - errors)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(findings_lists)
def test_any_findings_make_strict_annotations_that_round_trip(findings: list[Finding]) -> None:
    """Whatever the text, each finding is one command that parses strictly back to its severity, file, line,
    title and message (lone surrogates written as ``\\udXXX``)."""
    annotations = parse_github(render("github", findings))
    assert len(annotations) == len(findings)
    for (command, props, data), finding in zip(annotations, findings, strict=True):
        assert command == finding.severity
        assert props["title"] == f"batchkit {finding.code}"
        assert data.endswith(utf8(finding.message))
        path, line = target(finding)
        if path is None:
            assert "file" not in props
            assert "line" not in props
        else:
            assert same_file(props["file"], utf8(path))
            assert props.get("line") == (None if line is None else str(line))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(findings_lists)
def test_any_findings_make_valid_junit_that_round_trips(findings: list[Finding]) -> None:
    """The document validates and parses; each error is a failure with its code and message (XML-replaced),
    each warning a line of output."""
    root = check_junit(render("junit", findings, _stats(findings)))
    failures = sorted((f.get("type") or "", f.get("message") or "") for f in root.iter("failure"))
    errors = [f for f in findings if f.severity == "error"]
    assert failures == sorted((xml_text(f.code), xml_text(f.message)) for f in errors)
    output = "\n".join(e.text or "" for e in root.iter("system-out"))
    for warning in (f for f in findings if f.severity == "warning"):
        assert xml_text(str(warning)) in output
    if not errors:
        assert [c.get("name") for c in root.iter("testcase")] == ["no errors"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(findings_lists)
def test_any_findings_make_valid_sarif_that_round_trips(findings: list[Finding]) -> None:
    """The log validates; each result keeps code, level, message, line and every location field; its URI
    decodes back to the file it points at."""
    results = check_sarif(render("sarif", findings, _stats(findings)), rules=False)["runs"][0]["results"]
    assert len(results) == len(findings)
    for result, finding in zip(results, findings, strict=True):
        assert (result["ruleId"], result["level"]) == (finding.code, finding.severity)
        assert result["message"]["text"].endswith(utf8(finding.message))
        located = finding.model_dump(exclude={"code", "severity", "message"}, exclude_none=True)
        expected = {k: utf8(v) if isinstance(v, str) else v for k, v in located.items()}
        assert result.get("properties", {}) == expected
        path, line = target(finding)
        if path is None:
            assert "locations" not in result
            continue
        physical = result["locations"][0]["physicalLocation"]
        artifact = physical["artifactLocation"]
        decoded = unquote_to_bytes(artifact["uri"].removeprefix("file://"))
        assert same_file(decoded, path_bytes(path))
        assert physical.get("region", {}).get("startLine") == line


# -- the pre-commit hook ---------------------------------------------------------------------------------

HOOKS = ROOT / ".pre-commit-hooks.yaml"


def test_pre_commit_accepts_the_hook_manifest() -> None:
    """pre-commit's own loader validates the manifest, and it uses no key pre-commit does not define."""
    hooks = load_manifest(str(HOOKS))
    assert [hook["id"] for hook in hooks] == ["batchkit-validate"]
    known = {item.key for item in MANIFEST_HOOK_DICT.items}
    raw = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    assert isinstance(raw, list)
    assert set(raw[0]) <= known
    assert {"id", "name", "entry", "language"} <= set(raw[0])


def test_the_hook_runs_batchkit_validate_on_jsonl_files_only() -> None:
    """language python, pass_filenames, all files in one process; ``files`` matches .jsonl and nothing else."""
    (hook,) = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    assert (hook["language"], hook["pass_filenames"], hook["require_serial"]) == ("python", True, True)
    files = re.compile(hook["files"])
    assert files.search("fixtures/bad/bom.jsonl")
    assert files.search("a b/c.jsonl")
    assert not any(files.search(p) for p in ("x.json", "x.jsonl.bak", "x.ndjson", "jsonl/README.md"))
    script, *command = hook["entry"].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert script in scripts
    assert command[0] in COMMANDS


def test_the_hook_entry_fails_a_bad_file_and_passes_a_good_one() -> None:
    """Run as pre-commit runs it (the entry, then the file names): exit 1 on findings, 0 on a clean file."""
    (hook,) = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    args = hook["entry"].split()[1:]
    bad = CliRunner().invoke(main, [*args, str(FIXTURES / "bad" / "unknown-field.jsonl")])
    good = CliRunner().invoke(main, [*args, str(FIXTURES / "sample-batch.jsonl")])
    assert (bad.exit_code, good.exit_code) == (1, 0)


def test_vendored_schemas_are_unchanged() -> None:
    """The schema files are byte for byte the ones tests/schemas/README.md names."""
    digests = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SCHEMAS.glob("*.*") if p.suffix != ".md"
    }
    assert digests == {
        "sarif-schema-2.1.0.json": "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e",
        "junit-10.xsd": "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6",
    }
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    assert all(digest in readme for digest in digests.values())
