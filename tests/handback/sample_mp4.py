"""Make ``batchkit/sandbox/sample.mp4``: the small real video the sandbox serves at every output URL.

    .venv/bin/python tests/handback/sample_mp4.py      # rewrites the checked-in file

Two seconds of 160×90 H.264 at 12 frames per second (a square crossing a shifting colour field) with a mono
AAC tone, muxed as MP4 with the ``moov`` box first (``faststart``), so a poster frame can be read with a few
Range requests. PyAV (a ``dev`` dependency) makes it once; the sandbox only reads the bytes.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

TARGET = Path(__file__).resolve().parents[2] / "batchkit" / "sandbox" / "sample.mp4"
WIDTH, HEIGHT, FPS, SECONDS, RATE = 160, 90, 12, 2, 16_000


def frame_pixels(index: int) -> np.ndarray:
    """One RGB frame: a background whose hue drifts, and a white square moving left to right."""
    t = index / (FPS * SECONDS)
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, :, 0] = int(40 + 120 * t)
    image[:, :, 1] = 90
    image[:, :, 2] = int(160 - 100 * t)
    x = int((WIDTH - 24) * t)
    image[33:57, x : x + 24, :] = 255
    return image


def make(path: Path) -> int:
    """Write the sample to ``path``; return its size in bytes."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "32", "preset": "veryslow", "threads": "1"}
        audio = container.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        for index in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = 1024
        for start in range(0, RATE * SECONDS, samples):
            tone = np.array(
                [[0.2 * math.sin(2 * math.pi * 440 * (start + i) / RATE) for i in range(samples)]],
                dtype=np.float32,
            )
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            frame.time_base = Fraction(1, RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path.stat().st_size


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    print(f"{out}: {make(out):,} bytes")
