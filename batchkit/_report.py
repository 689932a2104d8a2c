"""Findings and reports: what validation and building say, as data.

A :class:`Finding` has a stable kebab-case ``code`` (a public contract, listed in :data:`CODES`), a severity,
a message that says what and how to fix it, and a location: a JSONL file and line, or a source and row
(and column), plus the ``request_id`` and a JSON pointer into the line where known.
A :class:`Report` collects every finding of a run with its statistics; it raises only when asked.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, computed_field

from ._errors import BatchkitError
from ._wire.limits import DEFAULT_LIMITS, Limits

__all__ = ["CODES", "Finding", "Report", "Stats", "ValidationFailed"]

Severity = Literal["error", "warning"]

#: Every finding code batchkit emits, with what it means. Codes never change meaning once published.
CODES: dict[str, str] = {
    # a file as a whole
    "empty-file": "the file has no bytes, or no records",
    "not-utf8": "bytes that are not UTF-8",
    "utf8-bom": "the file starts with a UTF-8 byte-order mark",
    "crlf-line-endings": "lines end with CR LF instead of LF (warning)",
    "blank-line": "an empty or whitespace-only line between records",
    "too-few-records": "fewer records than the limits profile's minimum",
    "too-many-records": "more records than the limits profile's maximum",
    "file-too-large": "more bytes than the limits profile allows",
    # one line
    "invalid-json": "the line is not valid JSON",
    "not-an-object": "the line is JSON but not an object",
    "missing-field": "a required field is absent",
    "unknown-field": "a field the wire contract does not have",
    "invalid-value": "wrong type, range, enum or pattern",
    "unknown-value": "a value of an open enumeration that Sync does not document (warning)",
    "wrong-endpoint": "endpoint is not the one the limits profile names",
    "duplicate-request-id": "a request_id already used earlier in the same set of files",
    "invalid-request-id": "request_id is not a usable identifier",
    "missing-video": "no video input item",
    "multiple-videos": "more than one video input item",
    "missing-audio": "no audio or text-to-speech input item",
    "invalid-url": "not an absolute http(s) URL",
    "invalid-output-file-name": "outputFileName is not 1-255 of A-Z a-z 0-9 _ -",
    "line-too-large": "one line alone is over the byte limit",
    "segment-ref-missing": "a segment's refId matches no input",
    "unknown-model": "a model Sync does not document (warning)",
    "ignored-option": "an option the chosen model ignores (warning)",
    "deprecated-field": "a field Sync has deprecated (warning)",
    "unsupported-input": "an input the request cannot take: an image without sync-3, audio with dialogueEdit, "
    "an image with dubParams or dialogueEdit",
    "ignored-input": "an audio or text input Sync ignores because the request dubs (dubParams) (warning)",
    "unmodelled-field": "a key Sync documents that batchkit does not model yet; sent unchecked (warning)",
    "policy": "the line breaks the user's own JSON Schema (--schema)",
    # building from a source
    "missing-column": "a mapping template names a column the source does not have",
    "empty-value": "a required field resolves to an empty value for this row",
    "ragged-row": "a CSV row has more fields than the header",
    "blank-row": "a source row with every value empty was skipped (warning)",
    "formula-in-cell": "a mapped cell holds a spreadsheet formula (=...) instead of its value",
    "source-encoding": "the source is not UTF-8 and was decoded with a guessed encoding (warning)",
    "cannot-shard": "no split of the valid records satisfies the limits profile (counts and bytes)",
    "optional-empty": "an [each] value marked optional is empty for this row: no request, outcome skipped (warning)",
    "filtered-rows": "rows the mapping's [where] left out: their units have the outcome filtered (warning)",
    # media, probed before anything is sent (build --probe, batchkit probe)
    "media-unreachable": "an input URL gave no usable answer: connect error, timeout, HTTP 4xx/5xx after "
    "retries, a redirect loop, or a URL the probe refuses (credentials in it)",
    "media-not-media": "an input URL serves an HTML, JSON or text page, nothing, or bytes that are not media "
    "(a share link instead of the file's own)",
    "media-unsupported": "an input's container is not one Sync lists (video: MP4, MOV, WebM, AVI; audio: WAV, "
    "MP3, OGG, FLAC, M4A, AAC, WMA)",
    "media-unreadable": "an input is media but damaged or cut short, so it cannot be read whole",
    "media-too-long": "an input lasts longer than the limits profile's max_input_seconds",
    "media-no-video-track": "the video input has no video track",
    "media-no-audio-track": "an audio input has no audio track",
    "segment-beyond-media": "a segment ends after the media it refers to",
    "media-duration-unknown": "an input's duration could not be read (warning)",
    "media-duration-mismatch": "audio and video lengths differ enough that sync_mode will loop, cut, pad or "
    "stretch (warning)",
    "media-url-expires": "a signed input URL expires before a batch's 24-hour turnaround ends (warning)",
    "tts-may-be-too-long": "a text-to-speech script likely speaks for longer than max_input_seconds (warning)",
    # reusing what completed before (build --reuse)
    "reuse-pending": "a request identical to one still pending in a --reuse directory is sent again (warning)",
    # a build directory
    "shard-missing": "a shard listed in manifest.json is missing",
    "shard-changed": "a shard's bytes, records or sha256 differ from manifest.json",
    # results: output files
    "empty-output": "a batch's output.jsonl has no result lines",
    "truncated-output": "a batch's output.jsonl ends in the middle of a line",
    "invalid-result-line": "an output line that is not JSON, not an object, or has no usable request_id",
    "invalid-result-field": "an output line field of an unexpected type, or no status at all (warning)",
    "unexpected-result": "a result line for a request_id its batch was never sent (warning)",
    "duplicate-result": "a request_id with several result lines in one output file (warning)",
    "download-failed": "a finished batch's results could not be downloaded",
    # results: reconciliation
    "manifest-changed": "manifest.json, requests.parquet or the journal disagree (edited by hand, or rebuilt)",
    "missing-result": "a finished batch gave no result for some of its requests (warning)",
    "batch-failed": "a batch FAILED without a results file (warning)",
    "shard-refused": "the server refused a shard, so its requests were never submitted (warning)",
    "source-changed": "the source changed since the build, but every row still gives its request_id (warning)",
    "retry-not-followed": "a directory the rows were retried into could not be followed; they keep their earlier outcome (warning)",
    "submission-uncertain": "a shard's create may have made a batch and nothing tells which yet; its rows stay pending (warning)",
    "batch-unverified": "a batch adopted for a lost create is finished but not checked by content yet; rows pending (warning)",
    "output-unavailable": "a finished batch gives no results file yet (empty outputUrl, asked again); rows pending, not missing (warning)",
    "shard-retired": "a journal row of a shard the manifest no longer lists (rebuilt) was retired; not joined (warning)",
}


class Finding(BaseModel):
    """One coded, located observation about the input."""

    model_config = ConfigDict(frozen=True)

    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = Field(default=None, description="1-based line of the JSONL file")
    source: str | None = Field(default=None, description="the tabular source a row came from")
    row: int | None = Field(default=None, description="1-based data row of the source (header excluded)")
    source_line: int | None = Field(default=None, description="physical line of a CSV source")
    each: dict[str, str] | None = Field(
        default=None, description="the [each] values of the request unit, e.g. {'lang': 'de'}"
    )
    column: str | None = None
    request_id: str | None = None
    pointer: str | None = Field(
        default=None, description="JSON pointer into the line, e.g. /payload/input/0/url"
    )

    @property
    def location(self) -> str:
        """``file.jsonl:12`` or ``campaign.csv row 7 (line 8) [lang=de], column audio_de``."""
        parts: list[str] = []
        if self.source is not None:
            where = self.source
            if self.row is not None:
                where += f" row {self.row}"
            if self.source_line is not None:
                where += f" (line {self.source_line})"
            if self.each:
                where += " [" + ", ".join(f"{k}={v}" for k, v in self.each.items()) + "]"
            if self.column is not None:
                where += f", column {self.column}"
            parts.append(where)
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        return " ".join(parts) or "input"

    def __str__(self) -> str:
        at = f" at {self.pointer}" if self.pointer else ""
        rid = f" [{self.request_id}]" if self.request_id is not None else ""
        return f"{self.location}: {self.severity} {self.code}{rid}{at}: {self.message}"


class Stats(BaseModel):
    """Counts of one validation or build run."""

    files: int = 0
    lines: int = 0
    records: int = 0
    valid_records: int = 0
    bytes: int = 0
    errors: int = 0
    warnings: int = 0


class Report(BaseModel):
    """Every finding of a run, with its statistics. ``valid`` is true when no finding is an error."""

    stats: Stats = Field(default_factory=Stats)
    findings: list[Finding] = Field(default_factory=list)
    limits: Limits = DEFAULT_LIMITS

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> bool:
        return self.stats.errors == 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Findings per code, most frequent first."""
        return dict(Counter(f.code for f in self.findings).most_common())

    @property
    def error_counts(self) -> dict[str, int]:
        return dict(Counter(f.code for f in self.findings if f.severity == "error").most_common())

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)
        if finding.severity == "error":
            self.stats.errors += 1
        else:
            self.stats.warnings += 1

    def extend(self, other: Report) -> None:
        """Fold ``other``'s findings and counts into this report."""
        for finding in other.findings:
            self.add(finding)
        for name in ("files", "lines", "records", "valid_records", "bytes"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(other.stats, name))

    def raise_for_errors(self) -> Self:
        """Raise :class:`ValidationFailed` when any finding is an error; return the report otherwise."""
        if not self.valid:
            raise ValidationFailed(self)
        return self

    def to_json(self, *, indent: bool = True) -> str:
        """The report as JSON: ``valid``, ``stats``, ``counts``, ``limits``, ``findings`` (unset fields left out)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data = {key: data[key] for key in ("valid", "stats", "counts", "limits", "findings")}
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 if indent else 0).decode()

    def render_text(self, *, max_findings: int | None = 200) -> str:
        """A human rendering: one line per finding, then a summary and a table of counts by code."""
        shown = self.findings if max_findings is None else self.findings[:max_findings]
        lines = [str(f) for f in shown]
        if max_findings is not None and len(self.findings) > max_findings:
            lines.append(f"… and {len(self.findings) - max_findings} more (use --format json for all)")
        s = self.stats
        verdict = "valid" if self.valid else "INVALID"
        lines.append(
            f"{verdict}: {s.files} file(s), {s.records} record(s), {s.valid_records} valid, "
            f"{s.errors} error(s), {s.warnings} warning(s)"
        )
        if self.findings:
            severity = {f.code: f.severity for f in self.findings}
            width = max(len(code) for code in self.counts)
            lines.append(f"{'code'.ljust(width)}  severity  count")
            lines.extend(
                f"{code.ljust(width)}  {severity[code].ljust(8)}  {n:>5}" for code, n in self.counts.items()
            )
        return "\n".join(lines)


class ValidationFailed(BatchkitError):
    """Raised by :meth:`Report.raise_for_errors` when a report holds findings of severity error."""

    #: How many of the first error findings the message names (all are in ``report``).
    SHOWN = 3

    def __init__(self, report: Report) -> None:
        self.report = report
        counts = ", ".join(f"{code} × {n}" for code, n in sorted(report.error_counts.items()))
        errors = report.errors
        first = "; ".join(str(f) for f in errors[: self.SHOWN])
        more = f" (and {len(errors) - self.SHOWN:,} more)" if len(errors) > self.SHOWN else ""
        text = f"{report.stats.errors} error finding(s): {counts}"
        super().__init__(f"{text}. First: {first}{more}" if first else text)
