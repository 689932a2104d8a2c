"""One test per defect found by throwing hostile input at every command; each failed before its fix.

Grouped as they were reported: tracebacks, hangs, memory that grew with findings, silent wrong answers,
and messages.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from click.testing import CliRunner, Result

import batchkit
from batchkit import (
    BuildOptions,
    ConfigurationError,
    InputError,
    Report,
    ValidationFailed,
    WebhookVerificationError,
    build,
    collect_results,
    load_manifest,
    read_source,
    shard_file,
    sign_payload,
    validate_file,
    validate_lines,
    verify_signature,
)
from batchkit.cli import main

from . import corpus

README = Path(__file__).resolve().parents[2] / "README.md"


def cli(*args: str | Path, timeout: float = 60) -> Result:
    """Run the CLI in a watchdog thread: a hang fails the test instead of stopping the suite."""
    box: dict[str, Result] = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("r", CliRunner().invoke(main, [str(a) for a in args])), daemon=True
    )
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"batchkit {' '.join(map(str, args))} hangs"
    result = box["r"]
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    ), result.output + repr(result.exception)
    return result


def csv_source(folder: Path, rows: int = 25, name: str = "people.csv") -> Path:
    path = folder / name
    path.write_text(corpus.csv_rows(rows))
    return path


def mapping(folder: Path) -> Path:
    path = folder / "people.toml"
    path.write_text(corpus.MAPPING)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory built, submitted and finished against the sandbox, results downloaded."""
    root = tmp_path_factory.mktemp("finished")
    out = root / "out"
    batchkit.run(csv_source(root, 25), mapping(root), out, batchkit.RunOptions(sandbox=True))
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def output_file(folder: Path) -> Path:
    return next((folder / "results").glob("*.output.jsonl"))


# -- tracebacks ------------------------------------------------------------------------------------------------


DEEP = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize("where", ["endpoint", "unknown-key", "model"])
def test_a_deeply_nested_reported_value_is_a_finding(tmp_path: Path, where: str) -> None:
    """A value nested 1,000 deep in a field the message shows used to raise RecursionError while rendering."""
    raw = corpus.line(1)
    if where == "endpoint":
        raw = raw.replace(b'"/v2/generate"', DEEP)
    elif where == "model":
        raw = raw.replace(b'"lipsync-2"', DEEP)
    else:
        raw = raw[:-1] + b',"extra":' + DEEP + b"}"
    path = tmp_path / "deep.jsonl"
    path.write_bytes(raw + b"\n")
    report = validate_file(path)
    assert not report.valid
    assert all(len(f.message) < 2000 for f in report.findings)
    assert cli("validate", path).exit_code == 1
    assert cli("shard", path, "--out", tmp_path / "out").exit_code == 1


def test_one_deep_error_or_status_does_not_stop_results(finished: Path, tmp_path: Path) -> None:
    """A deeply nested ``error`` or ``status`` in one output line used to make results fail for the whole
    directory; now the field is a finding and every other line is used."""
    folder = copy_of(finished, tmp_path)
    out = output_file(folder)
    lines = out.read_bytes().splitlines()
    lines[0] = lines[0][:-1] + b',"error":' + b"[" * 900 + b'"x"' + b"]" * 900 + b',"status":' + DEEP + b"}"
    out.write_bytes(b"\n".join(lines) + b"\n")
    results = collect_results(folder, download=False)
    assert results.outcomes["completed"] == 25
    assert {f.code for f in results.report.findings} == {"invalid-result-field"}
    assert cli("results", folder, "--offline").exit_code == 0


def test_an_ndjson_source_nested_deeper_than_orjson_writes(tmp_path: Path) -> None:
    """A value nested more than 254 deep, even in a column no template reads, used to crash the build."""
    deep = b"[" * 300 + b"]" * 300
    lines = [
        b'{"id":"c%d","video":"https://c.example.com/%d.mp4","audio":"https://c.example.com/%d.wav","x":%s}'
        % (i, i, i, deep)
        for i in range(25)
    ]
    source = tmp_path / "deep.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = build(source, mapping(tmp_path), tmp_path / "out")
    assert result.counts.requests == 25


def _failing_writes(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """Every file opened for writing after ``after`` bytes were written fails with ENOSPC (a full disk)."""
    written = [0]
    real_open = Path.open

    class Full(io.RawIOBase):
        pass

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, mode, *args, **kwargs)
        if "w" not in mode and "a" not in mode:
            return handle
        write = handle.write

        def limited(data: Any) -> int:
            written[0] += len(data)
            if written[0] > after:
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(data)

        handle.write = limited  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(Path, "open", open_)


@pytest.mark.parametrize("after", [0, 2_000, 20_000, 60_000])
def test_a_disk_that_fills_during_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """A full disk used to end in an OSError or a polars ComputeError, with temporary files left behind (and,
    at the last step, shards without a manifest). Now: one InputError, nothing temporary left, and the earlier
    build as it was."""
    source, rules = csv_source(tmp_path, 600), mapping(tmp_path)
    out = tmp_path / "out"
    first = build(source, rules, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bigger = csv_source(tmp_path, 700, "people2.csv")
    _failing_writes(monkeypatch, after)
    with pytest.raises(InputError, match="No space left on device"):
        build(bigger, rules, out, BuildOptions(name="people"))
    monkeypatch.undo()
    after_files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after_files == before, "the earlier build changed"
    assert load_manifest(out).counts == first.counts


def test_a_disk_that_fills_while_polars_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """polars' native writers (requests.parquet) fail with their own errors: also one InputError, no temp file."""
    source, rules = csv_source(tmp_path, 60), mapping(tmp_path)

    def full(*args: Any, **kwargs: Any) -> None:
        raise pl.exceptions.ComputeError(
            "parquet: File out of specification: underlying IO error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", full)
    with pytest.raises(InputError, match="No space left on device"):
        build(source, rules, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_build_into_a_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing --out that cannot be written used to raise PermissionError."""
    out = tmp_path / "ro"
    out.mkdir()

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refused)
    monkeypatch.setattr("tempfile.mkdtemp", refused)
    with pytest.raises(InputError, match=r"cannot write into .*Permission denied"):
        build(csv_source(tmp_path), mapping(tmp_path), out)
    if os.geteuid() != 0:  # the real thing, where permissions apply
        monkeypatch.undo()
        out.chmod(0o555)
        try:
            result = cli("build", csv_source(tmp_path), "--mapping", mapping(tmp_path), "--out", out)
            assert result.exit_code == 2
            assert "cannot write into" in result.stderr
        finally:
            out.chmod(0o755)


def test_an_encoding_that_is_not_a_text_encoding(tmp_path: Path) -> None:
    """``--encoding rot13`` used to raise LookupError (rot13 is a codec, but not bytes → text)."""
    result = cli(
        "build",
        csv_source(tmp_path),
        "--mapping",
        mapping(tmp_path),
        "--out",
        tmp_path / "out",
        "--encoding",
        "rot13",
    )
    assert result.exit_code == 2
    assert "not a text encoding 'rot13'" in result.stderr


def test_an_endless_line_is_measured_not_held(tmp_path: Path) -> None:
    """A line without end used to be read whole (MemoryError from /dev/zero). A device is refused now, and a
    long line in a regular file is measured a block at a time: memory stays within a few blocks."""
    assert "character device" in cli("validate", "/dev/zero").stderr if Path("/dev/zero").exists() else True
    path = tmp_path / "long.jsonl"
    path.write_bytes(
        corpus.good_lines(3) + b'{"x":"' + b"y" * 40_000_000 + b'"}\n' + corpus.good_lines(3, 10)
    )
    tracemalloc.start()
    report = validate_file(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(f.code, f.line) for f in report.findings if f.code == "line-too-large"] == [
        ("line-too-large", 4)
    ]
    assert report.stats.lines == 7
    assert report.stats.bytes == path.stat().st_size
    assert peak < 16_000_000, f"peak {peak:,} bytes: the long line was held"


def test_schema_out_naming_an_existing_file(tmp_path: Path) -> None:
    """``schema --out FILE`` used to raise FileExistsError."""
    target = tmp_path / "taken"
    target.write_text("mine")
    result = cli("schema", "--out", target)
    assert result.exit_code == 2
    assert "is a file" in result.stderr  # --out is checked as a directory before anything is written
    assert target.read_text() == "mine"


def test_a_timestamp_of_thousands_of_digits_is_a_malformed_header() -> None:
    """int() refuses over 4,300 digits: a ValueError used to escape before any signature check."""
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(b"{}", "t=" + "1" * 5000 + ",v1=ab", "whsec_x")
    assert info.value.reason == "malformed-header"


# -- hangs -----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("role", ["validate", "schema", "source", "mapping", "shard"])
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, role: str) -> None:
    """A FIFO given as an input used to block forever (nobody writes to it)."""
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    good = csv_source(tmp_path)
    sample = tmp_path / "good.jsonl"
    sample.write_bytes(corpus.good_lines(25))
    argv = {
        "validate": ["validate", fifo],
        "schema": ["validate", sample, "--schema", fifo],
        "source": [
            "build",
            fifo,
            "--mapping",
            mapping(tmp_path),
            "--out",
            tmp_path / "o",
            "--source-format",
            "csv",
        ],
        "mapping": ["build", good, "--mapping", fifo, "--out", tmp_path / "o"],
        "shard": ["shard", fifo, "--out", tmp_path / "o"],
    }[role]
    result = cli(*argv, timeout=30)
    assert result.exit_code == 2
    assert "is a FIFO (named pipe), not a regular file" in result.stderr


# -- memory that grew with findings ----------------------------------------------------------------------------


def test_findings_are_counted_exactly_but_kept_bounded(tmp_path: Path) -> None:
    """20,000 lines of ``{}`` (60,000 findings) used to keep every finding: now the first 1,000 of each code,
    exact counts, and every one of them in the --report file."""
    path = tmp_path / "empties.jsonl"
    path.write_bytes(b"{}\n" * 20_000)
    report_file = tmp_path / "all.ndjson"
    report = validate_file(path, report_file=report_file)
    assert report.counts == {"missing-field": 60_000, "too-many-records": 1}
    assert report.stats.errors == 60_001
    assert report.elided == 59_000
    assert len(report.findings) == 1_001
    assert report_file.read_bytes().count(b"\n") == 60_001
    data = orjson.loads(report.to_json())
    assert data["elided"] == 59_000
    assert data["findings_file"] == str(report_file)
    assert "59,000 of them not kept" not in report.render_text()  # the file has them: it says where instead
    assert f"every finding is in {report_file}" in report.render_text(max_findings=3)
    text = cli("validate", path, "--max-findings", "3").stderr  # text for a person is on stderr
    assert "59,000 of them not kept" in text
    assert "--report FILE" in text


def test_a_csv_validated_by_mistake_keeps_bounded_findings(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"a,b,c\n" + b"1,2,3\n" * 30_000)
    report = validate_file(path)
    assert report.counts["invalid-json"] == 30_001
    assert len(report.findings) <= 2 * 1_000 + 2


def test_build_and_shard_stream_their_findings(tmp_path: Path) -> None:
    """A build's report.json keeps the first findings of each code; findings.ndjson has all of them."""
    source = tmp_path / "bad.csv"
    source.write_text(
        "id,video,audio\n" + "".join(f"c{i},ftp://x/{i},https://c.example.com/{i}.wav\n" for i in range(3000))
    )
    with pytest.raises(ValidationFailed) as info:
        build(source, mapping(tmp_path), tmp_path / "out")
    assert info.value.invalid_units == {"invalid-url": 3000}
    report = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    assert report["counts"] == {"invalid-url": 3000}
    assert len(report["findings"]) == 1000
    assert report["elided"] == 2000
    assert (tmp_path / "out" / "findings.ndjson").read_bytes().count(b"\n") == 3000
    lines = tmp_path / "lines.jsonl"
    lines.write_bytes(b"{}\n" * 2000)
    with pytest.raises(ValidationFailed) as info:
        shard_file(lines, tmp_path / "sharded")
    assert info.value.invalid_units == {"missing-field": 2000}
    assert (tmp_path / "sharded" / "findings.ndjson").read_bytes().count(b"\n") == 6000


# -- silent wrong answers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "pointer"),
    [
        (b'"url":"ftp://x"', b'"url":"https://cdn.example.com/a.wav"', "/payload/input/1/url"),
        (b'"endpoint":"/v1/generate"', b'"endpoint":"/v2/generate"', "/endpoint"),
        (b'"request_id":"r0"', b'"request_id":"r1"', "/request_id"),
    ],
)
def test_a_duplicate_key_is_reported_whichever_value_is_bad(
    first: bytes, second: bytes, pointer: str
) -> None:
    """JSON readers keep the last duplicate (batchkit) or the first (others): a bad first value used to pass."""
    raw = corpus.line(1).replace(second, first + b"," + second, 1)
    assert raw != corpus.line(1)
    report = validate_lines([raw, corpus.line(2)], file_checks=False)
    assert ("duplicate-key", pointer) in [(f.code, f.pointer) for f in report.findings]
    assert report.stats.valid_records == 1


def _workbook(path: Path) -> Path:
    import xlsxwriter

    book = xlsxwriter.Workbook(path)
    old = book.add_worksheet("old")
    old.write_row(0, 0, ["id", "video", "audio"])
    for i in range(25):
        old.write_row(1 + i, 0, [f"OLD{i}", "https://c.example.com/old.mp4", "https://c.example.com/old.wav"])
    old.hide()
    sheet = book.add_worksheet("campaign")
    sheet.write_row(0, 0, ["id", "video", "audio"])
    for i in range(25):
        sheet.write_row(
            1 + i, 0, [f"c{i:03d}", f"https://c.example.com/{i}.mp4", f"https://c.example.com/{i}.wav"]
        )
    sheet.write_formula(26, 0, '="VID"&"041"')  # cached value 0
    sheet.write_formula(27, 0, '="VID"&"042"', None, "")  # no cached value
    for row in (26, 27):
        sheet.write(row, 1, "https://c.example.com/f.mp4")
        sheet.write(row, 2, "https://c.example.com/f.wav")
    sheet.activate()
    book.close()
    return path


def test_the_visible_active_sheet_is_read_not_a_hidden_first_one(tmp_path: Path) -> None:
    source = read_source(_workbook(tmp_path / "book.xlsx"))
    assert source.sheet == "campaign"
    assert read_source(tmp_path / "book.xlsx", sheet="old").sheet == "old"  # named: any sheet


def test_an_xlsx_formula_cell_is_formula_in_cell(tmp_path: Path) -> None:
    """A formula's cached value (``0``, or nothing) used to be sent as the request id (``0_de``) or reported as
    empty, although formula-in-cell is promised."""
    with pytest.raises(ValidationFailed) as info:
        build(_workbook(tmp_path / "book.xlsx"), mapping(tmp_path), tmp_path / "out")
    found = [(f.code, f.row, f.column) for f in info.value.report.errors]
    assert ("formula-in-cell", 26, "id") in found
    assert ("formula-in-cell", 27, "id") in found
    assert '\'="VID"&"041"\'' in next(f.message for f in info.value.report.errors if f.row == 26)
    assert info.value.invalid_units is not None
    assert info.value.invalid_units.get("formula-in-cell") == 2


def test_a_csv_header_longer_than_64_kb(tmp_path: Path) -> None:
    """A 6,000-column export (header over 64 KB) used to be refused as malformed."""
    extra = [f"column_{i:05d}_of_a_wide_export" for i in range(6000)]
    path = tmp_path / "wide.csv"
    rows = [
        f"c{i},https://c.example.com/{i}.mp4,https://c.example.com/{i}.wav," + ",".join("x" * len(extra))
        for i in range(25)
    ]
    path.write_text("id,video,audio," + ",".join(extra) + "\n" + "\n".join(rows) + "\n")
    assert len(path.read_text().split("\n", 1)[0]) > 65_536
    source = read_source(path)
    assert len(source.columns) == 6003
    assert build(source, mapping(tmp_path), tmp_path / "out").counts.requests == 25


def test_a_csv_with_cr_only_line_endings(tmp_path: Path) -> None:
    """Classic-Mac line endings used to give "no data rows"."""
    path = tmp_path / "mac.csv"
    path.write_bytes(corpus.csv_rows(25).replace("\n", "\r").encode())
    result = build(path, mapping(tmp_path), tmp_path / "out")
    assert result.counts.requests == 25
    rows = result.manifest.requests_frame().select("row", "source_line").rows()
    assert rows[0] == (1, 2)
    assert rows[-1] == (25, 26)


def test_results_when_results_dir_is_a_file_or_an_output_a_fifo(finished: Path, tmp_path: Path) -> None:
    """Rows used to stay pending with no finding at all."""
    folder = copy_of(finished, tmp_path / "a")
    shutil.rmtree(folder / "results")
    (folder / "results").write_text("oops")
    results = collect_results(folder, download=False)
    assert results.outcomes["pending"] == 25
    assert [f.code for f in results.report.errors] == ["unreadable-output"]
    if hasattr(os, "mkfifo"):
        folder = copy_of(finished, tmp_path / "b")
        out = output_file(folder)
        out.unlink()
        os.mkfifo(out)
        results = collect_results(folder, download=False)
        assert results.outcomes["pending"] == 25
        assert [f.code for f in results.report.errors] == ["unreadable-output"]
        assert "FIFO" in results.report.errors[0].message


def test_a_build_replaces_an_earlier_build_of_another_name(tmp_path: Path) -> None:
    """The old shards used to stay beside the new ones, and ``validate DIR`` then reported duplicate ids."""
    out = tmp_path / "out"
    build(csv_source(tmp_path, 600), mapping(tmp_path), out, BuildOptions(name="first"))
    build(csv_source(tmp_path, 600), mapping(tmp_path), out, BuildOptions(name="second"))
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["second-0001.jsonl", "second-0002.jsonl"]
    assert batchkit.validate_files([out]).valid


# -- messages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://user:sk-SECRET@api.sync.so",
        "https://api.sync.so/?api_key=sk-SECRET",
        "http://sk-SECRET@example.com",
        "sk-SECRET",
    ],
)
def test_a_refused_base_url_never_echoes_a_secret(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        batchkit.Client(api_key="sk-SECRET", base_url=url)
    assert "SECRET" not in str(info.value)


def test_the_sandbox_advises_no_key_it_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    """With --api-key K, the start-up text used to advise SYNC_API_KEY=sandbox-key, which it then refused."""
    from batchkit.cli._sandbox import _announce
    from batchkit.sandbox import SandboxConfig

    _announce("http://127.0.0.1:1", SandboxConfig(api_keys=("K1",)))
    text = capsys.readouterr().err
    assert "sandbox-key" not in text
    assert "K1" not in text
    assert "one of the keys given with --accept-key" in text  # the sandbox's own flag for the keys it accepts


def test_ctrl_c_during_start_up_is_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while a command is being loaded used to print click's ``Aborted!`` and exit 1 (the findings
    status)."""
    import batchkit.cli as package

    def interrupted(*args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(package.importlib, "import_module", interrupted)
    result = CliRunner().invoke(main, ["validate", "x.jsonl"])
    assert result.exit_code == 130
    assert "Aborted!" not in result.output
    assert "interrupted" in result.stderr


def test_the_readme_webhook_example_is_true(capsys: pytest.CaptureFixture[str]) -> None:
    """The example used to claim that ``body + b" "`` is refused; it was accepted. The verifier now accepts
    the raw body, or its compact re-serialisation for a body every JSON reader reads alike, and the example
    shows a refusal that happens."""
    text = README.read_text()
    block = text[text.index("**Webhooks.**") :]
    code = block[block.index("```python\n") + 10 : block.index("```\n", block.index("```python\n") + 10)]
    exec(compile(code, "README webhook example", "exec"), {})
    assert capsys.readouterr().out.splitlines()[-1].startswith("mismatch")
    secret, now = "whsec_x", time.time()
    payload = {"id": "b", "status": "COMPLETED", "note": "é"}
    signed = json.dumps(payload, separators=(",", ":")).encode()  # what Sync's Python sample signs
    header = sign_payload(signed, secret, timestamp=int(now))
    verify_signature(signed, header, secret)
    verify_signature(signed + b" ", header, secret)  # only whitespace differs: it says exactly the same
    verify_signature(orjson.dumps(payload, option=orjson.OPT_INDENT_2), header, secret)  # as UTF-8, pretty
    body = signed
    for variant in (
        body.decode().encode("utf-16"),
        body.replace(b'{"id"', b'{"status":"FAILED","id"'),
        body.replace(b"COMPLETED", b"FAILED"),
    ):
        with pytest.raises(WebhookVerificationError):
            verify_signature(variant, header, secret)


@pytest.mark.parametrize("tolerance", [math.nan, -1.0])
def test_tolerance_nan_no_longer_turns_off_the_replay_check(tolerance: float) -> None:
    body = b'{"id":"b","status":"COMPLETED"}'
    header = sign_payload(body, "whsec_x", timestamp=0)
    with pytest.raises(ConfigurationError, match="tolerance"):
        verify_signature(body, header, "whsec_x", tolerance=tolerance, now=10**9)


def test_a_report_read_back_keeps_its_counts() -> None:
    """Report stays backward compatible: built from findings, folded, raised."""
    report = Report(findings=[batchkit.Finding(code="invalid-url", severity="error", message="x")])
    assert report.counts == {"invalid-url": 1}
    other = Report()
    other.extend(report)
    assert other.counts == {"invalid-url": 1}
    assert other.stats.errors == 1


def test_the_report_file_never_overwrites_an_input(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_bytes(corpus.good_lines(25))
    result = cli("validate", path, "--report", path)
    assert result.exit_code == 2
    assert path.read_bytes() == corpus.good_lines(25)


def test_ctrl_c_while_a_build_renames_its_files_waits_for_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the harness: a Ctrl-C between the renames of the shards and of the manifest left shards
    without a manifest. It now waits for the last rename, then interrupts."""
    import signal

    real_replace = os.replace
    sent: list[bool] = []

    def replace(source: Any, target: Any) -> None:
        real_replace(source, target)
        if str(target).endswith("-0001.jsonl") and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build(csv_source(tmp_path, 1200), mapping(tmp_path), out)
    assert sent
    manifest = load_manifest(out)
    assert batchkit.verify_shards(out, manifest) == []
    assert sorted(p.name for p in out.glob("*.jsonl")) == [s.file for s in manifest.shards]
