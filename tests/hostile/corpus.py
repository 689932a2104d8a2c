"""The hostile-input corpus: files no well-behaved producer writes, generated on demand.

Every case is a :class:`Case`: a name, a kind (``jsonl`` for batch files, ``source`` for tables a build reads,
``mapping``, ``schema``, ``builddir`` for directories ``results``/``retry``/``status`` read, ``outdir`` for
places to write into), its path, and, for sources, how many data rows it holds (so a build can be checked to
account for every one). ``full=True`` adds the slow cases (megabytes of cells, tens of thousands of columns).
"""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import polars as pl

LINE = {
    "request_id": "r0",
    "endpoint": "/v2/generate",
    "payload": {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "https://cdn.example.com/v.mp4"},
            {"type": "audio", "url": "https://cdn.example.com/a.wav"},
        ],
    },
}
MAPPING = """request_id = "{id}"
model = "lipsync-2"
video = "{video}"
audio = "{audio}"
output_file_name = "{id}_x"
"""


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # jsonl | source | mapping | schema | builddir | outdir
    path: Path
    rows: int | None = None  # data rows of a source (blank rows excluded), when known
    blank: int = 0  # blank rows of a source
    fast: bool = True  # part of the quick harness (else only with --hostile-full)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


def line(i: int, **payload: object) -> bytes:
    obj = orjson.loads(orjson.dumps(LINE))
    obj["request_id"] = f"r{i}"
    obj["payload"].update(payload)
    return orjson.dumps(obj)


def good_lines(n: int, start: int = 0) -> bytes:
    return b"".join(line(i) + b"\n" for i in range(start, start + n))


def csv_rows(n: int, *, extra: str = "", cell: Callable[[int], str] = lambda i: f"c{i:04d}") -> str:
    head = "id,video,audio" + ("," + extra if extra else "")
    body = [
        f"{cell(i)},https://cdn.example.com/v/{i}.mp4,https://cdn.example.com/a/{i}.wav"
        + ("," + "x" if extra else "")
        for i in range(n)
    ]
    return "\n".join([head, *body]) + "\n"


#: The cases of the quick harness: one of every kind of hostility, and every one a defect was found with.
FAST: frozenset[str] = frozenset(
    {
        # batch files
        "good",
        "deep-reported-field",
        "deep-unknown-key",
        "deeper-than-orjson",
        "nul-bytes",
        "lone-surrogate",
        "nan-infinity",
        "huge-numbers",
        "duplicate-keys",
        "utf16",
        "gzip-named-jsonl",
        "cr-only",
        "long-ids",
        "path-traversal",
        "empties",
        "huge-line",
        "no-newline-at-all",
        "two-objects-a-line",
        # sources
        "good.csv",
        "cr-only.csv",
        "wide-header.csv",
        "unclosed-quote.csv",
        "braces.csv",
        "formula-text.csv",
        "traversal.csv",
        "blank-rows.csv",
        "utf16.csv",
        "gzip.csv",
        "deep.ndjson",
        "deeper.ndjson",
        "hidden-first.xlsx",
        "nested.parquet",
        "big-cell.csv",
        "header-only.csv",
        # mappings and schemas
        "good.toml",
        "deep.toml",
        "braces.toml",
        "missing-column.toml",
        "good.json",
        "deep.json",
        "deeper.json",
        # paths that are not regular files
        "fifo",
        "symlink-loop",
        "directory",
        "missing",
        "dev-zero",
        "unreadable",
    }
)


def build(folder: Path, *, full: bool = False) -> list[Case]:
    """Write the corpus under ``folder`` (created); return its cases (``full``: the slow ones too)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    cases += _jsonl(folder / "jsonl", full)
    cases += _sources(folder / "sources", full)
    cases += _mappings(folder / "mappings")
    cases += _schemas(folder / "schemas")
    cases += _specials(folder / "specials")
    return [case if case.name in FAST else replace(case, fast=False) for case in cases]


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def _jsonl(folder: Path, full: bool) -> list[Case]:
    deep = b"[" * 1000 + b"]" * 1000
    deeper = b"[" * 3000 + b"]" * 3000
    good = good_lines(25)
    raw: dict[str, bytes] = {
        "good": good,
        "deep-reported-field": good + b'{"request_id":"d","endpoint":' + deep + b',"payload":{}}\n',
        "deep-unknown-key": good + line(99)[:-1] + b',"x":' + deep + b"}\n",
        "deeper-than-orjson": good + deeper + b"\n",
        "deep-object": good + b'{"a":' * 900 + b"1" + b"}" * 900 + b"\n",
        "nul-bytes": good + b'{"request_id":"a\x00b"}\n\x00\x00\x00\n',
        "lone-surrogate": good + line(98).replace(b'"r98"', b'"\\ud800"') + b"\n",
        "invalid-utf8": good + b'{"request_id":"\xff\xfe"}\n',
        "nan-infinity": good
        + b'{"request_id":NaN,"endpoint":Infinity}\n'
        + line(97).replace(b"https", b"https")
        + b"\n",
        "huge-numbers": good + b'{"request_id":"n","x":1e400,"y":' + b"1" * 400 + b"}\n",
        "duplicate-keys": b"".join(
            line(i).replace(
                b'"url":"https://cdn.example.com/a.wav"',
                b'"url":"ftp://x","url":"https://cdn.example.com/a.wav"',
            )
            + b"\n"
            for i in range(25)
        ),
        "utf16": good.decode().encode("utf-16"),
        "gzip-named-jsonl": gzip.compress(good),
        "zip-named-jsonl": _zip_bytes(good),
        "empty": b"",
        "only-newlines": b"\n" * 50,
        "only-bom": b"\xef\xbb\xbf",
        "crlf": good.replace(b"\n", b"\r\n"),
        "cr-only": good.replace(b"\n", b"\r"),
        "long-ids": b"".join(
            line(i).replace(b'"r%d"' % i, b'"' + b"x" * 300 + b'%d"' % i) + b"\n" for i in range(25)
        ),
        "path-traversal": b"".join(
            line(i, outputFileName="../../etc/passwd").replace(b'"r%d"' % i, b'"../../r%d"' % i) + b"\n"
            for i in range(25)
        ),
        "braces": b"".join(line(i).replace(b'"r%d"' % i, b'"{id}{{%d}}"' % i) + b"\n" for i in range(25)),
        "empties": b"{}\n" * 3000,
        "huge-line": good + b'{"request_id":"h","x":"' + b"y" * 6_000_000 + b'"}\n' + good_lines(3, 50),
        "no-newline-at-all": b"z" * 3_000_000,
        "binary": bytes(range(256)) * 40,
        "array-lines": b"[1,2,3]\n" * 30,
        "two-objects-a-line": b"".join(line(i) + line(i + 100) + b"\n" for i in range(25)),
    }
    if full:
        raw["empties-big"] = b"{}\n" * 200_000
        raw["huge-line-big"] = b'{"request_id":"h","x":"' + b"y" * 60_000_000 + b'"}\n'
        raw["many-findings-csv"] = ("a,b,c\n" + "1,2,3\n" * 200_000).encode()
    return [Case(name, "jsonl", _write(folder / f"{name}.jsonl", data)) for name, data in raw.items()]


def _zip_bytes(data: bytes) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.jsonl", data)
    return buffer.getvalue()


def _sources(folder: Path, full: bool) -> list[Case]:
    cases: list[Case] = []

    def text(name: str, data: str | bytes, rows: int | None, blank: int = 0) -> None:
        cases.append(Case(name, "source", _write(folder / name, data), rows, blank))

    text("good.csv", csv_rows(25), 25)
    text("cr-only.csv", csv_rows(25).replace("\n", "\r"), 25)
    text("crlf.csv", csv_rows(25).replace("\n", "\r\n"), 25)
    text("bom.csv", "\ufeff" + csv_rows(25), 25)
    wide = [f"column_with_a_long_name_{i:05d}" for i in range(3000 if not full else 10_000)]
    head = "id,video,audio," + ",".join(wide)
    body = "\n".join(
        f"c{i:04d},https://cdn.example.com/v/{i}.mp4,https://cdn.example.com/a/{i}.wav,"
        + ",".join("x" * len(wide))
        for i in range(25)
    )
    text("wide-header.csv", head + "\n" + body + "\n", 25)
    text(
        "ragged.csv",
        csv_rows(25) + "c9999,https://cdn.example.com/v.mp4,https://cdn.example.com/a.wav,extra,more\n",
        26,
    )
    text("unclosed-quote.csv", csv_rows(25) + 'c9999,"https://cdn.example.com/v.mp4,https://x\n', None)
    text("nul.csv", csv_rows(25).replace("c0003", "c\x000003"), 25)
    text("braces.csv", csv_rows(25, cell=lambda i: f"{{id}}{{{{{i}}}}}"), 25)
    text("formula-text.csv", csv_rows(25, cell=lambda i: f'=HYPERLINK("x",{i})'), 25)
    text("traversal.csv", csv_rows(25, cell=lambda i: f"../../etc/{i}"), 25)
    text("long-ids.csv", csv_rows(25, cell=lambda i: "x" * 400 + str(i)), 25)
    text("blank-rows.csv", csv_rows(25) + ",,\n , ,\n" + csv_rows(28).split("\n", 26)[-1], 28, blank=2)
    text("latin1.csv", csv_rows(25, cell=lambda i: f"café{i}").encode("latin-1"), 25)
    text("utf16.csv", csv_rows(25).encode("utf-16"), 25)
    text("gzip.csv", gzip.compress(csv_rows(25).encode()), None)
    text("empty.csv", "", None)
    text("header-only.csv", "id,video,audio\n", None)
    text("duplicate-header.csv", "id,id,video\n1,2,3\n", None)
    text("reserved-column.csv", "__row,video,audio\n1,2,3\n", None)
    big = "y" * (6_000_000 if not full else 10_000_000)
    text(
        "big-cell.csv",
        csv_rows(25) + f"c9999,https://cdn.example.com/v.mp4,https://cdn.example.com/{big}.wav\n",
        26,
    )
    deep = "[" * 300 + "]" * 300
    deeper = "[" * 1100 + "]" * 1100
    ndjson = [
        json.dumps(
            {
                "id": f"c{i:04d}",
                "video": f"https://cdn.example.com/v/{i}.mp4",
                "audio": f"https://cdn.example.com/a/{i}.wav",
            }
        )
        for i in range(25)
    ]
    text("deep.ndjson", "\n".join(s[:-1] + f', "unused": {deep}}}' for s in ndjson) + "\n", 25)
    text("deeper.ndjson", "\n".join(ndjson) + "\n" + deeper + "\n", 26)
    text("not-objects.ndjson", "\n".join(ndjson) + '\n[1,2]\n"x"\n42\n', 28)
    text("dup-keys.ndjson", "\n".join(s[:-1] + ', "id": "dup"}' for s in ndjson) + "\n", 25)
    cases += _workbooks(folder)
    nested = pl.DataFrame(
        {
            "id": [f"c{i:04d}" for i in range(25)],
            "video": [f"https://cdn.example.com/v/{i}.mp4" for i in range(25)],
            "audio": [f"https://cdn.example.com/a/{i}.wav" for i in range(25)],
            "tags": [[str(i), "x"] for i in range(25)],
            "meta": [{"a": i, "b": "x"} for i in range(25)],
        }
    )
    nested.write_parquet(folder / "nested.parquet")
    cases.append(Case("nested.parquet", "source", folder / "nested.parquet", 25))
    nested.drop("tags", "meta").write_parquet(folder / "flat.parquet")
    cases.append(Case("flat.parquet", "source", folder / "flat.parquet", 25))
    text("not-parquet.parquet", b"PAR1 not really", None)
    text("no-suffix", csv_rows(25), None)
    return cases


def _workbooks(folder: Path) -> list[Case]:
    import xlsxwriter

    cases: list[Case] = []
    path = folder / "hidden-first.xlsx"
    book = xlsxwriter.Workbook(path)
    hidden = book.add_worksheet("old")
    hidden.write_row(0, 0, ["id", "video", "audio"])
    hidden.write_row(1, 0, ["OLD", "https://cdn.example.com/old.mp4", "https://cdn.example.com/old.wav"])
    hidden.hide()
    sheet = book.add_worksheet("campaign")
    sheet.write_row(2, 1, ["id", "video", "audio"])
    for i in range(25):
        sheet.write_row(
            3 + i,
            1,
            [f"c{i:04d}", f"https://cdn.example.com/v/{i}.mp4", f"https://cdn.example.com/a/{i}.wav"],
        )
    sheet.write_formula(28, 1, '="VID"&"041"')  # cached value 0
    sheet.write_formula(29, 1, '="VID"&"042"', None, "")  # no cached value
    sheet.write(28, 2, "https://cdn.example.com/v/f.mp4")
    sheet.write(28, 3, "https://cdn.example.com/a/f.wav")
    sheet.write(29, 2, "https://cdn.example.com/v/g.mp4")
    sheet.write(29, 3, "https://cdn.example.com/a/g.wav")
    sheet.merge_range(30, 1, 30, 3, "merged across every column")
    sheet.activate()
    book.add_worksheet("empty")
    book.close()
    cases.append(Case("hidden-first.xlsx", "source", path, 28))
    path = folder / "only-hidden.xlsx"
    book = xlsxwriter.Workbook(path)
    for name in ("a", "b"):
        sheet = book.add_worksheet(name)
        sheet.write_row(0, 0, ["id", "video", "audio"])
    book.worksheets()[0].hide()
    book.worksheets()[1].activate()
    book.worksheets()[1].hide()  # xlsxwriter refuses to hide the active sheet, so this one stays visible
    book.close()
    cases.append(Case("only-hidden.xlsx", "source", path, None))
    path = folder / "empty-sheet.xlsx"
    book = xlsxwriter.Workbook(path)
    book.add_worksheet("nothing")
    book.close()
    cases.append(Case("empty-sheet.xlsx", "source", path, None))
    _write(folder / "fake.xlsx", b"PK\x03\x04 not a workbook")
    cases.append(Case("fake.xlsx", "source", folder / "fake.xlsx", None))
    return cases


def _mappings(folder: Path) -> list[Case]:
    raw = {
        "good.toml": MAPPING,
        "deep.toml": MAPPING + "[options]\nx = " + "[" * 2000 + "]" * 2000 + "\n",
        "deep-value.toml": MAPPING + "[options]\nsync_mode = " + "[" * 300 + "]" * 300 + "\n",
        "braces.toml": MAPPING.replace('"{id}_x"', '"{{id}}_{id}"'),
        "unbalanced.toml": MAPPING.replace('"{id}_x"', '"{id_x"'),
        "missing-column.toml": MAPPING.replace("{audio}", "{no_such_column}"),
        "binary.toml": "\x00\xff\xfe garbage".encode("latin-1").decode("latin-1"),
        "not-utf8.toml": b'request_id = "\xff"\n',
        "empty.toml": "",
        "huge-key.toml": MAPPING + "[options]\n" + "k" * 100_000 + " = 1\n",
    }
    return [Case(name, "mapping", _write(folder / name, data)) for name, data in raw.items()]


def _schemas(folder: Path) -> list[Case]:
    raw = {
        "good.json": '{"properties": {"payload": {"properties": {"model": {"const": "lipsync-2"}}}}}',
        "deep.json": '{"properties": {"x": ' * 400 + "{}" + "}}" * 400,
        "deeper.json": "[" * 3000 + "]" * 3000,
        "invalid-schema.json": '{"type": 12}',
        "not-json.json": "{",
        "array.json": "[]",
        "remote-ref.json": '{"$ref": "https://example.com/x.json"}',
    }
    return [Case(name, "schema", _write(folder / name, data)) for name, data in raw.items()]


def _specials(folder: Path) -> list[Case]:
    """Paths that are not regular files: FIFOs, symlink loops, directories, devices, missing ones."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    fifo = folder / "fifo.jsonl"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        for kind in ("jsonl", "source", "mapping", "schema"):
            cases.append(Case("fifo", kind, fifo))
    loop = folder / "loop.jsonl"
    loop.symlink_to(folder / "loop.jsonl")
    for kind in ("jsonl", "source", "mapping", "schema"):
        cases.append(Case("symlink-loop", kind, loop))
    directory = folder / "dir.jsonl"
    directory.mkdir()
    for kind in ("jsonl", "source", "mapping", "schema"):
        cases.append(Case("directory", kind, directory))
    for kind in ("jsonl", "source", "mapping", "schema"):
        cases.append(Case("missing", kind, folder / "missing.jsonl"))
    if Path("/dev/zero").exists():
        for kind in ("jsonl", "source", "mapping", "schema"):
            cases.append(Case("dev-zero", kind, Path("/dev/zero")))
    unreadable = _write(folder / "unreadable.jsonl", good_lines(25))
    unreadable.chmod(0)
    for kind in ("jsonl", "source", "mapping", "schema"):
        cases.append(Case("unreadable", kind, unreadable))
    return cases
