"""What every benchmark shares: the ``--quick`` flag and how a ratio is reported against its target.

A benchmark measures a ratio against a baseline timed in the same run (these machines are shared and noisy;
absolute times drift). ``--quick`` runs a small size so the script can be tried in seconds; its ratios are
less steady than a full run's, and :func:`ratio` says so instead of reading like a failure.
"""

from __future__ import annotations

import argparse
import os
import sys


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring as help, and ``--quick``."""
    made = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("--quick", action="store_true", help="a small run, in seconds (ratios less steady)")
    return made


def header() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")


def ratio(
    what: str, value: float, *, target: float, lower_is_better: bool = True, quick: bool = False
) -> str:
    """``what: 1.42× (target ≤ 1.5×: met)``; a quick run that misses says it is a quick run, not a failure."""
    sign = "≤" if lower_is_better else "≥"
    met = value <= target if lower_is_better else value >= target
    if met:
        verdict = "met"
    elif quick:
        verdict = "not met on this quick run; measure with the full size before concluding"
    else:
        verdict = "NOT met"
    line = f"{what}: {value:.2f}× (target {sign} {target:g}×: {verdict})"
    print(line)
    return line
