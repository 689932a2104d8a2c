"""``batchkit sandbox``: run the local Batch API emulator in the foreground until Ctrl-C."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

import click

from .._wire.limits import DEFAULT_LIMITS, Limits
from ..sandbox._kept import require_sandbox_extra
from . import _render as render
from ._common import command, fail
from ._options import Output, group, output_options

if TYPE_CHECKING:
    from ..sandbox import Rule

__all__ = ["parse_rule", "sandbox"]

_RULE = re.compile(
    r"^(?P<pattern>.+?)=(?P<outcome>FAILED|REJECTED|MISSING)(?::(?P<code>[^:]*)(?::(?P<message>.*))?)?$"
)


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


def _config(v: dict[str, Any]) -> Any:
    """The sandbox's settings from its options; a setting the sandbox refuses is a usage error."""
    from pydantic import ValidationError

    from ..sandbox import DEMO_RULES, SandboxConfig

    low, high = v["min_records"], v["max_records"]
    if low > high:
        msg = f"--min-records ({low}) is larger than --max-records ({high})"
        raise click.UsageError(msg)
    settings: dict[str, Any] = {
        "seed": v["seed"], "pending_seconds": v["pending_seconds"], "seconds_per_generation": v["seconds_per_generation"],
        "concurrency_limit": v["concurrency_limit"], "rate_limit_share": v["rate_limit_share"],
        "server_error_share": v["server_error_share"], "latency": v["latency"], "api_keys": v["accept_keys"] or None,
        "batch_access": not v["no_batch_access"], "webhook_secret": v["webhook_secret"],
        "result_requires_key": not v["open_results"], "rules": (*v["rules"], *(() if v["no_demo_rules"] else DEMO_RULES)),
        "webhooks_to_loopback_only": not v["deliver_webhooks_anywhere"], "foreign_batches": v["foreign_batches"],
        "finished_on_create": v["finished_on_create"],
        "limits": Limits(min_records=low, max_records=high, max_bytes=v["max_bytes"]),
    }  # fmt: skip
    try:
        return SandboxConfig(**settings)
    except ValidationError as exc:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        msg = f"invalid sandbox settings: {reasons}"
        raise click.UsageError(msg) from None


def _float(flag: str, default: float, text: str, *, min: float = 0, max: float | None = None) -> click.Option:
    return click.Option(
        [flag], type=click.FloatRange(min=min, max=max), default=default, show_default=True, help=text
    )


_config_options = group("config", _config, lambda: [
    click.Option(["--seed"], type=int, default=0, show_default=True, help="Seeds fault shares and output order."),
    _float("--pending-seconds", 0.2, "PENDING time per batch.", min=0),
    _float("--seconds-per-generation", 0.005, "Processing time per request; a batch of n ends at pending + n × this.", min=0),
    click.Option(["--concurrency-limit"], type=click.IntRange(min=1), help="Running batches allowed; more get 429."),
    _float("--rate-limit-share", 0.0, "Share answered 429.", min=0, max=1),
    _float("--server-error-share", 0.0, "Share answered 5xx.", min=0, max=1),
    _float("--latency", 0.0, "Seconds per answer.", min=0),
    click.Option(["--accept-key", "accept_keys"], multiple=True, help="Accept only this API key (repeatable); default: any key."),
    click.Option(["--no-batch-access"], is_flag=True, help="Answer 402 to batch creates, as plans below Scale get."),
    click.Option(["--open-results"], is_flag=True, help="Let the outputUrl redirect answer without x-api-key (default: key needed)."),
    click.Option(["--webhook-secret"], default="whsec_sandbox", show_default=True, help="Key for Sync-Signature."),
    click.Option(["--no-demo-rules"], is_flag=True, help="Drop the ?sandbox=fail|reject|timeout|inaccessible|missing rules."),
    click.Option(["--rule", "rules"], multiple=True, callback=_rules, metavar="REGEX=OUTCOME[:CODE[:MESSAGE]]",
                 help="Outcome for requests whose input URL or script matches REGEX (repeatable; checked before demo rules)."),
    click.Option(["--foreign-batches"], type=click.IntRange(min=0), default=0, show_default=True,
                 help="Before each create, make this many batches of the same size for someone else on the account."),
    click.Option(["--finished-on-create"], is_flag=True, help="Batches are already COMPLETED when the create answers."),
    click.Option(["--deliver-webhooks-anywhere"], is_flag=True, help="Also POST webhooks to non-loopback hosts (default: loopback only)."),
    *(click.Option([flag], type=click.IntRange(min=low), default=default, show_default=True, help=text) for flag, low, default, text in (
        ("--min-records", 1, DEFAULT_LIMITS.min_records, "Fewest records an upload may hold."),
        ("--max-records", 1, DEFAULT_LIMITS.max_records, "Most records an upload may hold."),
        ("--max-bytes", 64, DEFAULT_LIMITS.max_bytes, "Largest upload, in bytes."))),
])  # fmt: skip


@command("sandbox", failed=None)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to listen on (keep it loopback)."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="0 picks a free port."
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Keep the account (batches, generations) in this file: started again with it, on any port, it resumes.",
)
@_config_options
@output_options("one line once it listens: its URL and whether it wants a particular key")
def sandbox(host: str, port: int, state_path: str | None, config: Any, output: Output) -> None:
    """Run a local emulator of Sync's Batch API until Ctrl-C.

    Batches go PENDING → PROCESSING → COMPLETED/FAILED on a fast clock; results download from the
    outputUrl; webhooks are signed with Sync-Signature. Add ?sandbox=fail (or reject, timeout,
    inaccessible, missing) to an input URL to get that outcome for the request.
    """
    require_sandbox_extra("the sandbox")
    from ..sandbox import Sandbox, serve

    try:
        account = Sandbox(config, state_path=state_path)
    except (OSError, ValueError) as exc:
        fail(f"cannot use the sandbox state {state_path}: {exc}")
    try:
        with serve(account, host=host, port=port) as url:
            if output.json:
                render.document({"url": url, "keys": "given" if config.api_keys else "any"})
            else:
                _announce(url, config)
            try:
                while True:
                    threading.Event().wait(1.0)
            except KeyboardInterrupt:
                render.say("stopping the sandbox")
    except OSError as exc:
        fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port (0 picks a free one)"
        )


def _announce(url: str, config: Any) -> None:
    render.line(f"[bold green]batchkit sandbox[/] listening on [bold]{render.escape(url)}[/]")
    render.say("Point batchkit (or syncsdk) at it:")
    render.say(f"  export SYNC_BASE_URL={url}")
    if config.api_keys:  # never echo the keys themselves
        render.say("  export SYNC_API_KEY=...              # one of the keys given with --accept-key")
    else:
        render.say("  export SYNC_API_KEY=sandbox-key      # any non-empty key works")
    render.say(f"  or pass --base-url {url} to any command that calls the API")
    render.say(f"Uploads: {config.limits.describe()}; batches take {config.pending_seconds:g} s PENDING + "
               f"{config.seconds_per_generation:g} s per request.")  # fmt: skip
    for rule in config.rules:
        code = f" {rule.error_code}" if rule.error_code else ""
        render.say(f"  rule: {rule.pattern} → {rule.outcome}{code}")
    render.say("Press Ctrl-C to stop.")
