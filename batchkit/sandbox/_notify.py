"""Webhook delivery: POST each batch or generation that became terminal to its webhook URL, signed.

Best effort, as Sync documents: one attempt, never retried, logged. Each delivery runs in its own task, so a
receiver that hangs delays nothing else. By default only loopback receivers are contacted: a sandbox must
not POST to hosts on the internet because a fixture happened to name one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Final

import httpx
import orjson

from .._api.webhooks import SIGNATURE_HEADER, sign_payload
from ._sandbox import Notification, Sandbox, WebhookDelivery

__all__ = ["Notifier", "is_loopback_url"]

log = logging.getLogger("batchkit.sandbox")

POLL_SECONDS: Final = 0.02


def is_loopback_url(url: str) -> bool:
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Notifier:
    """Watches a sandbox for due webhooks and delivers them; runs for the life of the app."""

    def __init__(self, sandbox: Sandbox, client: httpx.AsyncClient) -> None:
        self._sandbox = sandbox
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                for note in self._sandbox._due_notifications():
                    task = asyncio.create_task(self._deliver(note))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self, note: Notification) -> None:
        sandbox = self._sandbox
        body = orjson.dumps(note.body)
        signature = sign_payload(body, sandbox.config.webhook_secret)
        status_code: int | None = None
        error: str | None = None
        if sandbox.config.webhooks_to_loopback_only and not is_loopback_url(note.url):
            error = "skipped: not a loopback URL (set webhooks_to_loopback_only=False to deliver)"
            log.warning(
                "sandbox: %s webhook for %s not sent to %s: %s", note.kind, note.object_id, note.url, error
            )
        else:
            try:
                response = await self._client.post(
                    note.url,
                    content=body,
                    headers={
                        "content-type": "application/json",
                        SIGNATURE_HEADER: signature,
                        "user-agent": "batchkit-sandbox",
                    },
                    timeout=sandbox.config.webhook_timeout,
                )
                status_code = response.status_code
                log.info(
                    "sandbox: %s webhook for %s → %s: %d", note.kind, note.object_id, note.url, status_code
                )
            except Exception as exc:  # best effort: a broken receiver must never break the server
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "sandbox: %s webhook for %s to %s failed: %s", note.kind, note.object_id, note.url, error
                )
        sandbox._record_webhook(
            WebhookDelivery(note.kind, note.object_id, note.url, body, signature, status_code, error)
        )
