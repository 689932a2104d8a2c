"""Findings and reports: what validation and building say, as data.

A :class:`Finding` has a stable kebab-case ``code`` (a public contract, listed in :data:`CODES`), a severity,
a message that says what and how to fix it, and a location: a JSONL file and line, or a source and row
(and column), plus the ``request_id`` and a JSON pointer into the line where known.

A :class:`Report` counts every finding of a run exactly (``counts``, ``stats``, ``valid``) but keeps in
memory only the first :data:`DEFAULT_KEEP` findings of each code (``findings``, the *retained sample*), so
its memory does not grow with the number of findings. Every finding can also be streamed, as it is added,
to a JSON Lines file (:meth:`Report.stream_to`, a :class:`FindingsFile`), written under a temporary name
and renamed into place when complete; :meth:`Report.iter_findings` reads every finding back from there.
A report raises only when asked.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, computed_field

from ._errors import BatchkitError, InputError
from ._files import describe_oserror, sync_dir
from ._wire.limits import DEFAULT_LIMITS, Limits

__all__ = ["CODES", "DEFAULT_KEEP", "Finding", "FindingsFile", "Report", "Stats", "ValidationFailed"]

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
    "duplicate-key": "a key given twice in one JSON object (readers disagree on which value counts)",
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
    "unreadable-output": "a downloaded results file cannot be read (not a regular file, no permission, too large)",
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


#: Longest message and longest other text a finding holds: whatever the input, a finding stays small.
MAX_MESSAGE = 2000
MAX_TEXT = 1000


def _clip(limit: int) -> AfterValidator:
    def clip(text: str | None) -> str | None:
        return text if text is None or len(text) <= limit else text[: limit - 1] + "…"

    return AfterValidator(clip)


_Text = Annotated[str | None, _clip(MAX_TEXT)]


class Finding(BaseModel):
    """One coded, located observation about the input. Texts are clipped (``message`` to 2,000 characters,
    the others to 1,000), so a finding stays small whatever the input holds."""

    model_config = ConfigDict(frozen=True)

    code: str
    severity: Severity
    message: Annotated[str, _clip(MAX_MESSAGE)]
    file: _Text = None
    line: int | None = Field(default=None, description="1-based line of the JSONL file")
    source: _Text = Field(default=None, description="the tabular source a row came from")
    row: int | None = Field(default=None, description="1-based data row of the source (header excluded)")
    source_line: int | None = Field(default=None, description="physical line of a CSV source")
    each: dict[str, str] | None = Field(
        default=None, description="the [each] values of the request unit, e.g. {'lang': 'de'}"
    )
    column: _Text = None
    request_id: _Text = None
    pointer: _Text = Field(default=None, description="JSON pointer into the line, e.g. /payload/input/0/url")

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

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON data, unset fields left out (what reports and findings files hold)."""
        return {key: value for key, value in self.__dict__.items() if value is not None}


class Stats(BaseModel):
    """Counts of one validation or build run."""

    files: int = 0
    lines: int = 0
    records: int = 0
    valid_records: int = 0
    bytes: int = 0
    errors: int = 0
    warnings: int = 0


#: Findings of one code a :class:`Report` keeps in memory by default; the rest are counted (and streamed).
DEFAULT_KEEP = 1000
_FLUSH_BYTES = 1 << 16


class FindingsFile:
    """Every finding of a report as JSON Lines (one :meth:`Finding.to_dict` object per line).

    Lines go to a temporary file beside ``path`` (``.NAME.tmp``); :meth:`commit` makes it durable and
    renames it into place, :meth:`discard` removes it, so ``path`` is never half-written. Raises
    :class:`InputError` when the file cannot be created or written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.temp = self.path.with_name(f".{self.path.name}.tmp")
        self.count = 0
        self.committed = False
        self._buffer: list[bytes] = []
        self._size = 0
        try:
            self._handle = self.temp.open("wb")
        except OSError as exc:
            msg = f"cannot write the findings file {self.path}: {describe_oserror(exc)}; choose another path"
            raise InputError(msg, path=self.path) from None

    def write(self, finding: Finding) -> None:
        data = orjson.dumps(finding.to_dict()) + b"\n"
        self._buffer.append(data)
        self._size += len(data)
        self.count += 1
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._buffer or self._handle.closed:
            return
        try:
            self._handle.write(b"".join(self._buffer))
            self._handle.flush()
        except OSError as exc:
            self.discard()
            msg = f"cannot write the findings file {self.path}: {describe_oserror(exc)}"
            raise InputError(msg, path=self.path) from None
        self._buffer.clear()
        self._size = 0

    def read(self) -> Iterator[Finding]:
        """Every finding written so far, in order."""
        self.flush()
        with (self.temp if not self._handle.closed else self.path).open("rb") as handle:
            for raw in handle:
                yield Finding.model_construct(**orjson.loads(raw))

    def commit(self) -> Path:
        """Make the file durable and rename it into place; return its path."""
        if self.committed:
            return self.path
        self.flush()
        try:
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self.temp, self.path)
        except OSError as exc:
            self.discard()
            msg = f"cannot write the findings file {self.path}: {describe_oserror(exc)}"
            raise InputError(msg, path=self.path) from None
        self.committed = True
        sync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (the final one, if any, is left as it was); no-op once committed."""
        if self.committed:
            return
        self._buffer.clear()
        if not self._handle.closed:
            self._handle.close()
        self.temp.unlink(missing_ok=True)


class _Tally:
    """What a report counts as findings arrive (a plain object: the report's hot path)."""

    __slots__ = ("counts", "errors", "kept", "sink")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self.sink: FindingsFile | None = None

    def count(self, finding: Finding) -> None:
        self.counts[finding.code] += 1
        if finding.severity == "error":
            self.errors[finding.code] += 1


class Report(BaseModel):
    """The findings of a run, counted exactly, with its statistics. ``valid`` is true when no finding is an error.

    ``findings`` is the *retained sample*: the first ``keep`` findings of each code, in the order they were
    found (all of them unless ``elided`` is above 0). ``counts``, ``error_counts``, ``stats`` and ``valid``
    always count every finding. ``findings_file`` names the JSON Lines file that holds every finding, when
    the report streamed them to one (:meth:`stream_to`); :meth:`iter_findings` yields every finding.
    """

    stats: Stats = Field(default_factory=Stats)
    findings: list[Finding] = Field(default_factory=list)
    limits: Limits = DEFAULT_LIMITS
    elided: int = Field(default=0, description="findings counted but not kept in `findings`")
    findings_file: str | None = Field(default=None, description="a JSON Lines file with every finding")
    keep: int | None = Field(
        default=DEFAULT_KEEP,
        ge=0,
        exclude=True,
        description="findings of one code kept in memory (None: all)",
    )
    _tally: _Tally = PrivateAttr(default_factory=lambda: _Tally())

    def model_post_init(self, context: Any, /) -> None:
        tally = self._tally
        for finding in self.findings:
            tally.count(finding)
            tally.kept[finding.code] += 1

    @property
    def _counts(self) -> Counter[str]:
        return self._tally.counts

    @property
    def _errors(self) -> Counter[str]:
        return self._tally.errors

    @property
    def _sink(self) -> FindingsFile | None:
        return self._tally.sink

    @computed_field  # type: ignore[prop-decorator]
    @property
    def valid(self) -> bool:
        return self.stats.errors == 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Findings per code (every finding, not only the retained ones), most frequent first."""
        return dict(self._counts.most_common())

    @property
    def total(self) -> int:
        """How many findings the report counted."""
        return sum(self._counts.values())

    @property
    def error_counts(self) -> dict[str, int]:
        """Error findings per code, most frequent first (exact)."""
        return dict((+self._errors).most_common())

    def severity_of(self, code: str) -> Severity:
        """``error`` when any finding of ``code`` is an error, else ``warning``."""
        return "error" if self._errors[code] else "warning"

    @property
    def errors(self) -> list[Finding]:
        """The retained error findings."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """The retained warnings."""
        return [f for f in self.findings if f.severity == "warning"]

    def stream_to(self, path: str | os.PathLike[str]) -> FindingsFile:
        """Write every finding added from now on (and every one kept so far) to a JSON Lines file.

        The file is complete once :meth:`close` (or the returned file's ``commit``) is called. Raises
        :class:`InputError` when findings were already elided (they could no longer be written) or the file
        cannot be created.
        """
        if self.elided:
            msg = "stream_to must be called before findings are elided"
            raise ValueError(msg)
        sink = FindingsFile(path)
        for finding in self.findings:
            sink.write(finding)
        self._tally.sink = sink
        self.findings_file = str(sink.path)
        return sink

    def close(self) -> None:
        """Complete the findings file, if the report streams to one."""
        if self._sink is not None:
            self._sink.commit()

    def discard(self) -> None:
        """Drop an unfinished findings file (the run failed); the report no longer names one. A findings file
        already complete is kept."""
        if self._sink is not None and not self._sink.committed:
            self._sink.discard()
            self._tally.sink = None
            self.findings_file = None

    def add(self, finding: Finding) -> None:
        # The hot path of every run with many findings: plain objects, no pydantic attribute machinery.
        tally: _Tally = self.__pydantic_private__["_tally"]  # type: ignore[index]
        tally.count(finding)
        stats = self.__dict__["stats"].__dict__
        stats["errors" if finding.severity == "error" else "warnings"] += 1
        self._place(finding, tally)

    def _place(self, finding: Finding, tally: _Tally | None = None) -> None:
        """Stream the (already counted) finding, and keep it unless its code has ``keep`` already."""
        tally = tally or self._tally
        if tally.sink is not None:
            tally.sink.write(finding)
        fields = self.__dict__
        keep = fields["keep"]
        if keep is None or tally.kept[finding.code] < keep:
            tally.kept[finding.code] += 1
            fields["findings"].append(finding)
        else:
            fields["elided"] += 1

    def iter_findings(self) -> Iterator[Finding]:
        """Every finding, in the order found: from the findings file when some were elided, else the sample.

        Without a findings file, findings beyond ``keep`` per code are gone: only the sample is yielded.
        """
        if self._sink is not None and self.elided:
            yield from self._sink.read()
        else:
            yield from list(self.findings)

    def extend(self, other: Report) -> None:
        """Fold ``other``'s findings and counts into this report (exactly, elided ones included)."""
        errors = sum(other._errors.values())
        self._counts.update(other._counts)
        self._errors.update(other._errors)
        self.stats.errors += errors
        self.stats.warnings += other.total - errors
        for finding in other.iter_findings():
            self._place(finding)
        if other._sink is None:
            self.elided += other.elided  # counted there, kept nowhere
        for name in ("files", "lines", "records", "valid_records", "bytes"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(other.stats, name))

    def raise_for_errors(self) -> Self:
        """Raise :class:`ValidationFailed` when any finding is an error; return the report otherwise."""
        if not self.valid:
            raise ValidationFailed(self)
        return self

    def to_json(self, *, indent: bool = True) -> str:
        """The report as JSON: ``valid``, ``stats``, ``counts``, ``limits``, ``findings`` (the retained sample,
        unset fields left out), ``elided`` and ``findings_file`` (where every finding is, or null)."""
        data = {
            "valid": self.valid,
            "stats": self.stats.model_dump(mode="json"),
            "counts": self.counts,
            "limits": self.limits.as_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "elided": self.elided,
            "findings_file": self.findings_file,
        }
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 if indent else 0).decode()

    def more_note(self, shown: int) -> str | None:
        """What a listing of the first ``shown`` retained findings leaves out, and where the rest are."""
        hidden = self.total - shown
        if hidden <= 0:
            return None
        if self.findings_file is not None:
            return f"… and {hidden:,} more (every finding is in {self.findings_file})"
        if self.elided:
            return (
                f"… and {hidden:,} more ({self.elided:,} of them not kept: at most {self.keep or 0:,} per code are; "
                "write every finding to a file with --report FILE)"
            )
        return f"… and {hidden:,} more (--format json lists all)"

    def render_text(self, *, max_findings: int | None = 200) -> str:
        """A human rendering: one line per finding, then a summary and a table of counts by code."""
        shown = self.findings if max_findings is None else self.findings[:max_findings]
        lines = [str(f) for f in shown]
        note = self.more_note(len(shown))
        if note is not None:
            lines.append(note)
        s = self.stats
        verdict = "valid" if self.valid else "INVALID"
        lines.append(
            f"{verdict}: {s.files} file(s), {s.records} record(s), {s.valid_records} valid, "
            f"{s.errors} error(s), {s.warnings} warning(s)"
        )
        if self._counts:
            width = max(len(code) for code in self._counts)
            lines.append(f"{'code'.ljust(width)}  severity  count")
            lines.extend(
                f"{code.ljust(width)}  {self.severity_of(code).ljust(8)}  {n:>5}"
                for code, n in self.counts.items()
            )
        return "\n".join(lines)


class ValidationFailed(BatchkitError):
    """Raised by :meth:`Report.raise_for_errors` when a report holds findings of severity error.

    ``invalid_units`` (set by a build that stops on invalid rows) counts the invalid request units by their
    first error code, exactly, however many findings the report kept.
    """

    #: How many of the first error findings the message names (all are in ``report``).
    SHOWN = 3

    def __init__(self, report: Report, *, invalid_units: dict[str, int] | None = None) -> None:
        self.report = report
        self.invalid_units = invalid_units
        counts = ", ".join(f"{code} × {n}" for code, n in sorted(report.error_counts.items()))
        errors = report.errors
        first = "; ".join(str(f) for f in errors[: self.SHOWN])
        total = report.stats.errors
        more = f" (and {total - self.SHOWN:,} more)" if total > self.SHOWN else ""
        text = f"{report.stats.errors} error finding(s): {counts}"
        super().__init__(f"{text}. First: {first}{more}" if first else text)
