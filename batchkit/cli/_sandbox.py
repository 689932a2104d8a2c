"""``batchkit sandbox``: run the local Batch API emulator in the foreground until Ctrl-C."""

from __future__ import annotations

import importlib.util
import re
import threading
from typing import TYPE_CHECKING, Any

import click

from .._errors import install_hint
from ._common import err, fail, handle_errors, limits_options, make_limits

if TYPE_CHECKING:
    from ..sandbox import Rule

__all__ = ["parse_rule", "sandbox"]

_RULE = re.compile(
    r"^(?P<pattern>.+?)=(?P<outcome>FAILED|REJECTED|MISSING)(?::(?P<code>[^:]*)(?::(?P<message>.*))?)?$"
)
_EXTRA = ("starlette", "uvicorn", "multipart")


def parse_rule(text: str) -> Rule:
    """``'REGEX=FAILED:code:message'`` (code and message optional for MISSING) → a :class:`Rule`."""
    from pydantic import ValidationError

    from ..sandbox import Rule

    match = _RULE.match(text)
    if match is None:
        msg = (
            f"--rule {text!r} is not REGEX=OUTCOME[:code[:message]] with OUTCOME one of FAILED, REJECTED, MISSING "
            "(e.g. --rule 'bad-take=FAILED:generation_pipeline_failed:take is broken')"
        )
        raise click.BadParameter(msg)
    try:
        return Rule(
            pattern=match["pattern"],
            outcome=match["outcome"],
            error_code=match["code"] or "",
            message=match["message"] or "",
        )
    except ValidationError as exc:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        msg = f"--rule {text!r}: {reasons}"
        raise click.BadParameter(msg) from None


def _rules(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[Rule]:
    return [parse_rule(value) for value in values]


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on (keep it loopback)."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="0 picks a free port."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds fault shares and output order.")
@click.option(
    "--pending-seconds",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="PENDING time per batch.",
)
@click.option(
    "--seconds-per-generation",
    type=click.FloatRange(min=0),
    default=0.005,
    show_default=True,
    help="Processing time per request; a batch of n ends at pending + n × this.",
)
@click.option(
    "--concurrency-limit", type=click.IntRange(min=1), help="Running batches allowed; more get 429."
)
@click.option(
    "--rate-limit-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share answered 429.",
)
@click.option(
    "--server-error-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share answered 5xx.",
)
@click.option(
    "--latency", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Seconds per answer."
)
@click.option(
    "--api-key", "api_keys", multiple=True, help="Accept only this key (repeatable); default: any key."
)
@click.option(
    "--no-batch-access", is_flag=True, help="Answer 402 to batch creates, as plans below Scale get."
)
@click.option(
    "--open-results",
    is_flag=True,
    help="Let the outputUrl redirect answer without x-api-key (default: key needed).",
)
@click.option("--webhook-secret", default="whsec_sandbox", show_default=True, help="Key for Sync-Signature.")
@click.option(
    "--no-demo-rules", is_flag=True, help="Drop the ?sandbox=fail|reject|timeout|inaccessible|missing rules."
)
@click.option(
    "--rule",
    "rules",
    multiple=True,
    callback=_rules,
    metavar="REGEX=OUTCOME[:CODE[:MESSAGE]]",
    help="Outcome for requests whose input URL or script matches REGEX (repeatable; checked before demo rules).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Keep the account (batches, generations) in this file: started again with it, on any port, it resumes.",
)
@click.option(
    "--foreign-batches",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Before each create, make this many batches of the same size for someone else on the account.",
)
@click.option("--finished-on-create", is_flag=True, help="Batches are already COMPLETED when the create answers.")
@click.option(
    "--deliver-webhooks-anywhere",
    is_flag=True,
    help="Also POST webhooks to non-loopback hosts (default: loopback only).",
)
@limits_options
@handle_errors
def sandbox(
    host: str,
    port: int,
    seed: int,
    pending_seconds: float,
    seconds_per_generation: float,
    concurrency_limit: int | None,
    rate_limit_share: float,
    server_error_share: float,
    latency: float,
    api_keys: tuple[str, ...],
    no_batch_access: bool,
    open_results: bool,
    webhook_secret: str,
    no_demo_rules: bool,
    rules: list[Rule],
    state_path: str | None,
    foreign_batches: int,
    finished_on_create: bool,
    deliver_webhooks_anywhere: bool,
    min_records: int,
    max_records: int,
    max_bytes: int,
) -> None:
    """Run a local emulator of Sync's Batch API until Ctrl-C.

    Batches go PENDING → PROCESSING → COMPLETED/FAILED on a fast clock; results download from the
    outputUrl; webhooks are signed with Sync-Signature. Add ?sandbox=fail (or reject, timeout,
    inaccessible, missing) to an input URL to get that outcome for the request.
    """
    missing = [name for name in _EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        fail(
            f"the sandbox needs the optional 'sandbox' extra (missing: {', '.join(missing)}); "
            f"install it with: {install_hint('sandbox')}"
        )
    from pydantic import ValidationError

    from ..sandbox import DEMO_RULES, SandboxConfig, serve

    settings: dict[str, Any] = {
        "seed": seed,
        "pending_seconds": pending_seconds,
        "seconds_per_generation": seconds_per_generation,
        "concurrency_limit": concurrency_limit,
        "rate_limit_share": rate_limit_share,
        "server_error_share": server_error_share,
        "latency": latency,
        "api_keys": api_keys or None,
        "batch_access": not no_batch_access,
        "webhook_secret": webhook_secret,
        "result_requires_key": not open_results,
        "rules": (*rules, *(() if no_demo_rules else DEMO_RULES)),
        "webhooks_to_loopback_only": not deliver_webhooks_anywhere,
        "foreign_batches": foreign_batches,
        "finished_on_create": finished_on_create,
        "limits": make_limits(min_records, max_records, max_bytes),
    }
    try:
        config = SandboxConfig(**settings)
    except ValidationError as exc:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        fail(f"invalid sandbox settings: {reasons}")
    from ..sandbox import Sandbox

    try:
        try:
            account = Sandbox(config, state_path=state_path)
        except (OSError, ValueError) as exc:
            fail(f"cannot use the sandbox state {state_path}: {exc}")
        with serve(account, host=host, port=port) as url:
            _announce(url, config)
            try:
                while True:
                    threading.Event().wait(1.0)
            except KeyboardInterrupt:
                err.print("stopping the sandbox")
    except OSError as exc:
        fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port (0 picks a free one)"
        )


def _announce(url: str, config: Any) -> None:
    key_hint = "one of the --api-key values" if config.api_keys else "any non-empty key works"
    err.print(f"[bold green]batchkit sandbox[/] listening on [bold]{url}[/]")
    err.print("Point batchkit (or syncsdk) at it:")
    err.print(f"  export SYNC_BASE_URL={url}", markup=False)
    err.print(f"  export SYNC_API_KEY=sandbox-key      # {key_hint}", markup=False)
    err.print(f"  or pass --base-url {url} to any command that calls the API", markup=False)
    limits = config.limits
    err.print(
        f"Uploads: {limits.describe()}; batches take {config.pending_seconds:g} s PENDING + "
        f"{config.seconds_per_generation:g} s per request.",
        markup=False,
    )
    for rule in config.rules:
        code = f" {rule.error_code}" if rule.error_code else ""
        err.print(f"  rule: {rule.pattern} → {rule.outcome}{code}", markup=False)
    err.print("Press Ctrl-C to stop.")
