"""Findings in the formats CI systems read: GitHub Actions annotations, JUnit XML and SARIF 2.1.0.

Each writer takes an *iterable* of :class:`Finding` and writes to a text stream as it goes, so it works the
same whether the findings are a list in memory or a stream read back from disk; none builds its output as
one string.

Where a finding points:

- a finding with a ``source`` (a build's row) points at the source file, at ``source_line`` when the source
  is a CSV (Parquet and Excel rows have no text line, so those point at the file only);
- otherwise at ``file`` and ``line`` (a JSONL file, or the whole file when ``line`` is None);
- a finding with neither points nowhere; every format still carries it, with its text location in the message.

``Finding.source`` holds the source's *name* (``campaign.csv``); ``sources=`` maps names to the paths they
were read from (a manifest's ``sources[].path``), and to None for sources without a file (a DataFrame).
Paths are written relative to ``root`` (default: the working directory) so that GitHub can place them on a
pull request's diff; a path outside ``root`` is written absolute.

Text that a format cannot carry is replaced, never dropped silently: lone surrogates (which no UTF-8 output
can hold) in every format, and in XML also the characters XML 1.0 forbids even as references (NUL and the
other C0 controls except tab, LF and CR, U+FFFE, U+FFFF). Each becomes its Python escape, ``\\x00`` or
``\\udc80``, the notation batchkit's own messages already use when they quote a value with ``repr``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, TextIO, TypeAlias
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from ._report import CODES, Finding, Stats
from ._version import __version__

__all__ = ["FORMATS", "SourcePaths", "write_format", "write_github", "write_junit", "write_sarif"]

#: The CI formats, as ``validate --format`` would name them.
FORMATS: Final = ("github", "junit", "sarif")

#: Source name → the path it was read from, or None for a source without a file (a DataFrame).
SourcePaths: TypeAlias = Mapping[str, str | os.PathLike[str] | None]

SARIF_SCHEMA: Final = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SRCROOT: Final = "%SRCROOT%"

#: Bytes of one JUnit test suite kept in memory before its body spills to a temporary file.
_SPOOL_BYTES = 1 << 20

_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _python_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _utf8(text: str) -> str:
    """``text`` with each lone surrogate written as ``\\udXXX``, so that it encodes as UTF-8."""
    return _SURROGATE.sub(_python_escape, text)


def _xml(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold, each written as its Python escape."""
    return _NOT_XML.sub(_python_escape, text)


# -- where a finding points ------------------------------------------------------------------------------


class _Where(NamedTuple):
    path: str | None  # relative to root (posix), or absolute when outside root; None: no file
    inside: bool  # path is relative to root
    line: int | None
    on_source: bool = False  # the path is the finding's source (not its JSONL file)


class _Locator:
    """Turns a finding into the file and line it points at, relative to ``root``."""

    def __init__(self, root: Path | None, sources: SourcePaths | None) -> None:
        self._cwd = Path.cwd()
        self._root = Path(os.path.normpath(self._cwd / root if root is not None else self._cwd))
        self._sources = sources or {}
        self._cache: dict[str, tuple[str, bool]] = {}

    def __call__(self, finding: Finding) -> _Where:
        if finding.source is not None:
            given = self._sources.get(finding.source, finding.source)
            if given is not None and os.fspath(given):
                return self._where(os.fspath(given), finding.source_line)._replace(on_source=True)
        if finding.file:
            return self._where(finding.file, finding.line)
        return _Where(None, False, None)

    def _where(self, path: str, line: int | None) -> _Where:
        if path not in self._cache:
            full = Path(os.path.normpath(self._cwd / path))
            try:
                self._cache[path] = full.relative_to(self._root).as_posix(), True
            except ValueError:
                self._cache[path] = full.as_posix(), False
        shown, inside = self._cache[path]
        return _Where(shown, inside, line if line is not None and line >= 1 else None)


def _context(finding: Finding, where: _Where) -> str:
    """What the file and line do not say: the row, column, request_id and pointer, before the message.

    A finding that points at no file starts with its whole text location (``campaign.csv row 7 ...``).
    """
    head = ""
    if where.path is None:
        location = finding.location
        head = "" if location == "input" else location
    elif finding.source is not None:  # name the source unless the finding points at it
        head = "" if where.on_source else finding.source
        if finding.row is not None:
            head = f"{head} row {finding.row}" if head else f"row {finding.row}"
        if finding.column is not None:
            head = f"{head}, column {finding.column}" if head else f"column {finding.column}"
    if finding.request_id is not None:
        head = f"{head} [{finding.request_id}]" if head else f"[{finding.request_id}]"
    if finding.pointer:
        head = f"{head} at {finding.pointer}" if head else f"at {finding.pointer}"
    return f"{head}: {finding.message}" if head else finding.message


# -- GitHub Actions workflow commands --------------------------------------------------------------------

_DATA_ESCAPES: Final = str.maketrans({"%": "%25", "\r": "%0D", "\n": "%0A"})
_PROPERTY_ESCAPES: Final = str.maketrans({"%": "%25", "\r": "%0D", "\n": "%0A", ":": "%3A", ",": "%2C"})


def write_github(
    findings: Iterable[Finding],
    out: TextIO,
    *,
    root: Path | None = None,
    sources: SourcePaths | None = None,
) -> None:
    """Write one GitHub Actions ``::error`` / ``::warning`` workflow command per finding, as it comes.

    ``::error file=fixtures/bad/x.jsonl,line=8,title=batchkit unknown-field::[id] at /ptr: message``:
    the runner turns each into an annotation on that file and line of the pull request. Data is escaped as
    the runner unescapes it (``%`` ``CR`` ``LF``; in properties also ``:`` and ``,``), so no message can end
    the command early or inject another one. ``title`` comes last, since the runner trims the end of the
    property list. GitHub shows at most 10 annotations of each kind per step; the log keeps every line.
    """
    locate = _Locator(root, sources)
    for finding in findings:
        where = locate(finding)
        props: list[tuple[str, str]] = []
        if where.path is not None:
            props.append(("file", where.path))
            if where.line is not None:
                props.append(("line", str(where.line)))
        props.append(("title", f"batchkit {finding.code}"))
        rendered = ",".join(f"{key}={_utf8(value).translate(_PROPERTY_ESCAPES)}" for key, value in props)
        data = _utf8(_context(finding, where)).translate(_DATA_ESCAPES)
        out.write(f"::{finding.severity} {rendered}::{data}\n")


# -- JUnit XML -------------------------------------------------------------------------------------------


def _attrs(**values: str | int | None) -> str:
    return "".join(
        f" {key}={quoteattr(_xml(str(value)))}" for key, value in values.items() if value is not None
    )


def _text(value: str) -> str:
    # CR is a reference, or the parser would read it back as LF.
    return escape(_xml(value), {"\r": "&#13;"})


def _spool() -> tempfile.SpooledTemporaryFile[str]:
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+", encoding="utf-8", newline="")


def _copy(spool: IO[str], out: IO[str]) -> None:
    spool.seek(0)
    shutil.copyfileobj(spool, out)


class _Suite:
    """One ``<testsuite>``: test cases and output are spooled, because its counts open the element."""

    def __init__(self, name: str, file: str | None) -> None:
        self.name, self.file = name, file
        self.tests = self.failures = 0
        self._cases = _spool()
        self._log = _spool()
        self._logged = False

    def add(self, finding: Finding, where: _Where) -> None:
        if finding.severity == "error":
            self.case(_case_name(finding, where), failure=finding)
        else:
            self.log(str(finding))

    def case(self, name: str, *, failure: Finding | None = None) -> None:
        self.tests += 1
        head = f"    <testcase{_attrs(name=name, classname=self.file or self.name)}"
        if failure is None:
            self._cases.write(f"{head}/>\n")
            return
        self.failures += 1
        self._cases.write(
            f"{head}>\n      <failure{_attrs(type=failure.code, message=failure.message)}>"
            f"{_text(str(failure))}</failure>\n    </testcase>\n"
        )

    def log(self, line: str) -> None:
        self._log.write(f"{_text(line)}\n")
        self._logged = True

    def close(self, out: IO[str], properties: Mapping[str, str | int] | None = None) -> None:
        """Write the whole element to ``out`` and drop the spools."""
        counts = _attrs(name=self.name, tests=self.tests, failures=self.failures, errors=0, skipped=0)
        out.write(f"  <testsuite{counts}{_attrs(file=self.file)}>\n")
        if properties:
            out.write("    <properties>\n")
            for key, value in properties.items():
                out.write(f"      <property{_attrs(name=key, value=value)}/>\n")
            out.write("    </properties>\n")
        _copy(self._cases, out)
        if self._logged:
            out.write("    <system-out>")
            _copy(self._log, out)
            out.write("</system-out>\n")
        out.write("  </testsuite>\n")
        self.discard()

    def discard(self) -> None:
        self._cases.close()
        self._log.close()


def _case_name(finding: Finding, where: _Where) -> str:
    """``unknown-field: line 8 [spring26-0008]``, stable from run to run while the input is unchanged."""
    if finding.source is not None and where.path is not None:
        place = finding.location.removeprefix(finding.source).strip()
    elif where.line is not None:
        place = f"line {where.line}"
    elif where.path is not None:
        place = "file"
    else:
        place = finding.location
    rid = f" [{finding.request_id}]" if finding.request_id is not None else ""
    return f"{finding.code}: {place}{rid}"


def write_junit(
    findings: Iterable[Finding],
    stats: Stats,
    out: TextIO,
    *,
    name: str = "batchkit validate",
    root: Path | None = None,
    sources: SourcePaths | None = None,
) -> None:
    """Write a JUnit XML report (the Jenkins/Surefire ``junit-10.xsd`` dialect that GitLab and most CI read).

    - One ``<testsuite>`` per file (or source) with findings, named by its path relative to ``root``;
      consecutive findings of the same file form one suite, so a file whose findings are not consecutive in
      the stream gets several suites of that name (the validator and the build never interleave them).
    - One ``<testcase>`` per **error** finding, with one ``<failure type="CODE" message="...">`` whose text is
      the finding's full line (location, request_id, pointer, message).
    - **Warnings** are not failures: they are lines of the suite's ``<system-out>``.
    - A last suite named ``name`` holds the run's ``Stats`` as ``<properties>``, the verdict in its
      ``<system-out>``, findings that point at no file, and, when there is no error at all, one passing
      test case ``no errors`` (so a clean run is one passing test, not an empty report).

    ``testsuite`` opens with its counts, so each suite's body is spooled (in memory up to 1 MiB, then a
    temporary file) and so is the document's, whose totals open it: memory stays bounded however many
    findings stream through, and every count is exact.
    """
    locate = _Locator(root, sources)
    body = _spool()
    summary = _Suite(name, None)
    current: _Suite | None = None
    tests = failures = 0

    def finish(suite: _Suite, properties: Mapping[str, str | int] | None = None) -> None:
        nonlocal tests, failures
        tests += suite.tests
        failures += suite.failures
        suite.close(body, properties)

    try:
        for finding in findings:
            where = locate(finding)
            if where.path is None:
                summary.add(finding, where)
                continue
            if current is None or current.file != where.path:
                if current is not None:
                    finish(current)
                current = _Suite(where.path, where.path)
            current.add(finding, where)
        if current is not None:
            finish(current)
            current = None
        if failures + summary.failures == 0:
            summary.case("no errors")
        summary.log(_verdict(stats))
        finish(summary, {"valid": str(stats.errors == 0).lower(), **stats.model_dump()})
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        out.write(f"<testsuites{_attrs(name=name, tests=tests, failures=failures, errors=0)}>\n")
        _copy(body, out)
        out.write("</testsuites>\n")
    finally:
        if current is not None:
            current.discard()
        summary.discard()
        body.close()


def _verdict(stats: Stats) -> str:
    verdict = "valid" if stats.errors == 0 else "invalid"
    return (
        f"{verdict}: {stats.files} file(s), {stats.records:,} record(s), {stats.valid_records:,} valid, "
        f"{stats.errors:,} error(s), {stats.warnings:,} warning(s)"
    )


# -- SARIF 2.1.0 -----------------------------------------------------------------------------------------


def _uri(where: _Where) -> dict[str, str]:
    """An ``artifactLocation``: a percent-encoded URI relative to ``%SRCROOT%``, or an absolute file URI."""
    assert where.path is not None
    try:  # a path decoded from the file system keeps its undecodable bytes as surrogates
        raw = where.path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = where.path.encode("utf-8", "surrogatepass")
    encoded = quote(raw, safe="/")
    if where.inside:
        return {"uri": encoded, "uriBaseId": SRCROOT}
    return {"uri": f"file://{encoded}"}


def _level(meaning: str) -> str:
    return "warning" if meaning.rstrip().endswith("(warning)") else "error"


def _json(value: Any) -> str:
    # ASCII output: any text stream can take it; lone surrogates are replaced before this.
    return json.dumps(value, ensure_ascii=True)


def _clean(value: Any) -> Any:
    return _utf8(value) if isinstance(value, str) else value


def write_sarif(
    findings: Iterable[Finding],
    out: TextIO,
    *,
    tool_version: str = __version__,
    codes: Mapping[str, str] = CODES,
    root: Path | None = None,
    sources: SourcePaths | None = None,
    stats: Stats | None = None,
    information_uri: str | None = None,
) -> None:
    """Write a SARIF 2.1.0 log with one run of ``batchkit``, one result per finding, as they come.

    ``tool.driver.rules`` lists every code of ``codes`` (``shortDescription`` its meaning; the default
    level is warning for meanings marked "(warning)"), so results are streamed after it. A result has
    ``ruleId`` (the code, plus ``ruleIndex`` for a known one), ``level``, ``message.text`` (the finding's
    context and message, as in the annotations), one location (``artifactLocation.uri`` relative to
    ``%SRCROOT%``, the ``root``; ``region.startLine`` when the finding has a line) unless it points at no
    file, and a ``properties`` bag with every location field of the finding (file, line, source, row,
    source_line, column, request_id, pointer). ``stats`` become the run's ``properties``.
    GitHub code scanning shows only results that have a location.
    """
    locate = _Locator(root, sources)
    index = {code: i for i, code in enumerate(codes)}
    rules = [
        {
            "id": code,
            "shortDescription": {"text": meaning},
            "defaultConfiguration": {"level": _level(meaning)},
        }
        for code, meaning in codes.items()
    ]
    driver: dict[str, Any] = {"name": "batchkit", "version": tool_version}
    if information_uri is not None:
        driver["informationUri"] = information_uri
    driver["rules"] = rules
    out.write(f'{{"$schema": {_json(SARIF_SCHEMA)}, "version": "2.1.0", "runs": [{{\n')
    out.write(f'"tool": {{"driver": {json.dumps(driver, ensure_ascii=True, indent=2)}}},\n"results": [')
    separator = "\n"
    for finding in findings:
        where = locate(finding)
        result: dict[str, Any] = {"ruleId": _utf8(finding.code)}
        if finding.code in index:
            result["ruleIndex"] = index[finding.code]
        result["level"] = finding.severity
        result["message"] = {"text": _utf8(_context(finding, where))}
        if where.path is not None:
            physical: dict[str, Any] = {"artifactLocation": _uri(where)}
            if where.line is not None:
                physical["region"] = {"startLine": where.line}
            result["locations"] = [{"physicalLocation": physical}]
        located = finding.model_dump(exclude={"code", "severity", "message"}, exclude_none=True)
        if located:
            result["properties"] = {key: _clean(value) for key, value in located.items()}
        out.write(separator + _json(result))
        separator = ",\n"
    out.write("\n]")
    if stats is not None:
        out.write(f',\n"properties": {_json(stats.model_dump())}')
    out.write("\n}]}\n")


# -- one entry point for the CLI -------------------------------------------------------------------------


def write_format(
    fmt: str,
    findings: Iterable[Finding],
    stats: Stats,
    out: TextIO,
    *,
    root: Path | None = None,
    sources: SourcePaths | None = None,
) -> None:
    """Write ``findings`` in one of :data:`FORMATS`; a ``ValueError`` names the formats for any other."""
    writers: dict[str, Callable[[], None]] = {
        "github": lambda: write_github(findings, out, root=root, sources=sources),
        "junit": lambda: write_junit(findings, stats, out, root=root, sources=sources),
        "sarif": lambda: write_sarif(findings, out, root=root, sources=sources, stats=stats),
    }
    if fmt not in writers:
        msg = f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}"
        raise ValueError(msg)
    writers[fmt]()
