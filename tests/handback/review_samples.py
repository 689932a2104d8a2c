"""Sample data for the review page's tests: real little videos made with PyAV, and results tables shaped like
``batchkit results``' (source columns, the ``[each]`` variable, then the result columns)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

BLACK = (0, 0, 0)
GREEN = (30, 200, 60)


def make_mp4(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 25,
    first: tuple[int, int, int] = BLACK,
    rest: tuple[int, int, int] = GREEN,
    detailed: bool = False,
) -> Path:
    """A real H.264 MP4 at 25 fps: the first frame in ``first``'s colour, every later one in ``rest``'s
    (with ``detailed``, a fine checkerboard of it and black, which compresses less)."""
    import av
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    checker = ((x // 2 + y // 2) % 2).astype(bool)

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[...] = first if index == 0 else rest
            if detailed and index > 0:
                pixels[checker] = 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def results_row(
    video: int, lang: str, *, outcome: str = "completed", code: str | None = None, message: str | None = None
) -> dict[str, Any]:
    """One request unit of a localization build, as ``batchkit results`` gives it."""
    request_id = f"v{video:03d}_{lang}"
    done = outcome == "completed"
    return {
        "video_id": f"v{video:03d}",
        "title": f"Product tour {video}",
        "video_url": f"https://cdn.example.com/in/v{video:03d}.mp4",
        "lang": lang,
        "request_id": request_id,
        "shard": "localization-0001.jsonl",
        "batch_id": "batch_1",
        "outcome": outcome,
        "error_code": code,
        "error_message": message,
        "output_url": f"https://cdn.example.com/out/{request_id}.mp4" if done else None,
        "output_duration": 3.2 if done else None,
        "generation_id": f"gen_{request_id}" if done else None,
    }


#: The units of :func:`localization_frame` that did not complete: (video, lang) → (outcome, code, message).
SETTLED_BADLY = {
    (2, "fr"): ("failed", "generation_pipeline_failed", "The generation pipeline failed"),
    (3, "es"): ("rejected", "generation_media_metadata_missing", "audio has no duration"),
    (4, "de"): ("missing", "missing-result", "the batch finished without a result for it"),
}


def localization_frame(videos: int = 5, langs: Sequence[str] = ("de", "fr", "es")) -> pl.DataFrame:
    """``videos`` × ``langs`` units, mostly completed, with the three of :data:`SETTLED_BADLY`."""
    rows = []
    for video in range(1, videos + 1):
        for lang in langs:
            bad = SETTLED_BADLY.get((video, lang))
            if bad is None:
                rows.append(results_row(video, lang))
            else:
                rows.append(results_row(video, lang, outcome=bad[0], code=bad[1], message=bad[2]))
    return pl.DataFrame(rows)
