"""A local emulator of Sync's Batch API (and the Generate API), for offline demos, tests and CI.

>>> from batchkit.sandbox import serve
>>> with serve(pending_seconds=0.05) as url:  # doctest: +SKIP
...     ...  # point a client (batchkit, syncsdk, curl) at url with any non-empty x-api-key

A :class:`Sandbox` is one emulated account: its batches, generations, sent webhooks, request counts and
injected faults are all inspectable from Python. Its media host (:class:`MediaHost`, ``sandbox.media``)
serves clips, pages and misbehaving servers under ``/_media/`` for the probe, and the estimate endpoints
price requests at the sandbox's own documented prices. :func:`serve` runs it with uvicorn on loopback in a
background thread. The web stack (starlette, uvicorn, python-multipart) is the optional ``sandbox`` extra;
this module imports it only when an app is built or served.
"""

from __future__ import annotations

from ._config import DEMO_RULES, ROUTES, Fault, Rule, SandboxConfig
from ._media import MediaHost
from ._sandbox import KeyLeak, Sandbox, WebhookDelivery
from ._server import serve
from ._state import Clock, ManualClock, Result, SandboxBatch, SandboxGeneration, SystemClock

__all__ = [
    "DEMO_RULES",
    "ROUTES",
    "Clock",
    "Fault",
    "KeyLeak",
    "ManualClock",
    "MediaHost",
    "Result",
    "Rule",
    "Sandbox",
    "SandboxBatch",
    "SandboxConfig",
    "SandboxGeneration",
    "SystemClock",
    "WebhookDelivery",
    "serve",
]
