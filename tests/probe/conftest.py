"""Shared helpers of the probe tests: a sandbox served for the whole module, and quick probe settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from batchkit._probe import ProbeConfig
from batchkit.sandbox import Sandbox, serve
from batchkit.sandbox._media import MediaHost


class Sleeps(list[float]):
    """A ``sleep`` that records the waits asked for and returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def quick(**changes: Any) -> ProbeConfig:
    """Probe settings for tests: short timeouts and budgets, waits recorded instead of slept."""
    settings: dict[str, Any] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "time_budget": 5.0,
        "backoff": 0.0,
        "sleep": Sleeps(),
    }
    settings.update(changes)
    return ProbeConfig(**settings)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox, API and media host, served on loopback for every test of a module."""
    box = Sandbox(pending_seconds=0)
    with serve(box):
        yield box


@pytest.fixture
def media(sandbox: Sandbox) -> MediaHost:
    """The sandbox's media host; build URLs with ``media.url("clip.mp4", duration=12)``."""
    return sandbox.media
