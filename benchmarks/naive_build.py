"""The script a user would write without batchkit: the baseline of ``bench_build.py``.

csv.DictReader → a dict per row → json.dumps → a jsonschema check against the published batch-line schema
→ a new file every 500 lines. (It cannot balance shards, and it stops at nothing: a bad row only prints.)

    python benchmarks/naive_build.py campaign.csv out_dir
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import jsonschema

from batchkit._wire.schemas import json_schema


def main(source: str, out_dir: str) -> int:
    schema = json_schema("batch-line")
    validator = jsonschema.Draft202012Validator(schema)  # compiled once, as a careful user would
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle = None
    written = 0
    with open(source, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            line = {
                "request_id": row["customer_id"],
                "endpoint": "/v2/generate",
                "payload": {
                    "model": "lipsync-2",
                    "input": [
                        {"type": "video", "url": row["video_url"]},
                        {"type": "audio", "url": row["audio_url"]},
                    ],
                    "options": {"sync_mode": "loop"},
                    "outputFileName": f"{row['customer_id']}_{row['lang']}",
                },
            }
            text = json.dumps(line, ensure_ascii=False, separators=(",", ":"))
            errors = list(validator.iter_errors(json.loads(text)))
            if errors:
                print(f"row {written + 1}: {errors[0].message}", file=sys.stderr)
                continue
            if written % 500 == 0:
                if handle is not None:
                    handle.close()
                handle = open(folder / f"batch-{written // 500 + 1:05d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
            assert handle is not None
            handle.write(text + "\n")
            written += 1
    if handle is not None:
        handle.close()
    return written


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
