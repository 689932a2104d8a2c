"""The sandbox a build directory keeps: ``DIR/sandbox-state.ndjson``, served for as long as one call needs it.

``batchkit run --sandbox`` (and ``submit DIR --sandbox``) keep their sandbox's account in the directory, so a
later ``status``, ``wait``, ``results``, ``fetch`` or ``retry`` with ``--sandbox`` serves the same account again
(on a new port) and finds its batches. This module is that one implementation, for :func:`batchkit.run` and the
command line alike.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from .._api.backoff import PollPolicy
from .._api.client import Client
from .._errors import ConfigurationError, install_hint
from .._shard.builddir import SANDBOX_STATE
from .._submit.reconcile import ReconcilePolicy

__all__ = ["SANDBOX_KEY", "SANDBOX_POLL", "in_process_policy", "kept_sandbox", "require_sandbox_extra"]

log = logging.getLogger("batchkit")

#: The API key a kept sandbox is called with (it accepts any).
SANDBOX_KEY: Final = "sandbox"
#: Poll fast against a sandbox: a demo of a few shards finishes in seconds.
SANDBOX_POLL: Final = PollPolicy(initial=0.2, factor=1.5, maximum=1.0)
_EXTRA: Final = ("starlette", "uvicorn", "multipart")


def require_sandbox_extra(what: str = "--sandbox") -> None:
    """Raise :class:`ConfigurationError` (with the install command) when the ``sandbox`` extra is missing."""
    missing = [name for name in _EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        msg = f"{what} needs the optional 'sandbox' extra (missing: {', '.join(missing)}): {install_hint('sandbox')}"
        raise ConfigurationError(msg)


def in_process_policy(given: ReconcilePolicy | None = None) -> ReconcilePolicy:
    """How lost creates are settled against a sandbox served by this very process: a create sent to an earlier
    one cannot land any more, so nothing waits for it (``given``'s clock and sleep are kept)."""
    base = given or ReconcilePolicy()
    return ReconcilePolicy(
        skew=base.skew,
        in_flight=0.0,
        second_look=0.0,
        now=base.now,
        sleep=base.sleep,
        at_least_twice_the_timeout=False,
    )


@contextmanager
def kept_sandbox(directory: str | Path, *, create: bool = False, timeout: float = 60.0) -> Iterator[Client]:
    """A client of the sandbox kept in ``directory``, served on loopback while the block runs.

    Without ``create`` the directory must already keep one (it was made by ``run --sandbox`` or submitted with
    ``submit --sandbox``); with it, a new account is started there.
    """
    folder = Path(directory)
    state = folder / SANDBOX_STATE
    if not state.is_file() and not create:
        msg = (
            f"{folder} keeps no sandbox ({SANDBOX_STATE} is missing): it was not sent with `batchkit run --sandbox` "
            "or `batchkit submit --sandbox`, so leave out --sandbox (and give --base-url and an API key)"
        )
        raise ConfigurationError(msg)
    require_sandbox_extra()
    from ._sandbox import Sandbox
    from ._server import serve

    with (
        serve(Sandbox(state_path=state)) as url,
        Client(api_key=SANDBOX_KEY, base_url=url, timeout=timeout) as client,
    ):
        log.debug("sandbox: its account is kept in %s", state)
        yield client
