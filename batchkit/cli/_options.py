"""The option groups every command is made of, each declared once and handed to the command as ONE typed value.

=====================  ======================================================================  ==============
decorator              options                                                                 the command gets
=====================  ======================================================================  ==============
``build_options``      SOURCE, ``-m/--mapping``, ``-o/--out``, ``--sheet``, ``--source-format``,   ``BuildJob``
                       ``--delimiter``, ``--encoding``, ``--name``, ``--skip-invalid``,
                       ``--force``, ``--include-held``, the limits
``shard_options``      JSONL, ``-o/--out``, ``--name``, ``--skip-invalid``, ``--force``, limits    ``ShardJob``
``limits_options``     ``--min-records``, ``--max-records``, ``--max-bytes``                       ``Limits``
``api_options``        ``--sandbox``, ``--base-url``, ``--api-key``, ``--timeout``                 ``Api``
``poll_options``       ``--poll-initial``, ``--poll-factor``, ``--poll-max``, ``--deadline``       ``Polling``
``reconcile_options``  ``--in-flight``, ``--clock-skew``                                           ``ReconcilePolicy``
``output_options``     ``--format`` (text, json, ...), ``-v/--verbose``, ``--max-findings``        ``Output``
``probe_options``      SOURCE|DIRECTORY, how to read it, ``--refresh``, ``--no-cache``,            ``ProbeJob``
                       ``--probe-concurrency`` (``build_options`` has them too, with ``--probe``
                       and ``--reuse``)
``budget_options``     ``--max-cost``, ``--prices``, ``--allow-unknown-cost``, ``-y/--yes``        ``BudgetAsk``
=====================  ======================================================================  ==============

Every command that builds has the same source options with the same defaults and short flags, every command
that talks to the API the same API options, and every command ``--format json`` and ``-v``
(``tests/test_cli_tree.py`` walks the command tree and checks it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._api.backoff import PollPolicy
from .._wire.limits import DEFAULT_LIMITS, Limits
from ._common import configure_logging

# What a command needs only once it runs is imported then: `batchkit validate` never loads polars or httpx.
if TYPE_CHECKING:
    from .._api.client import Client
    from .._build.options import BuildOptions
    from .._submit.reconcile import ReconcilePolicy

__all__ = [
    "Api",
    "BudgetAsk",
    "BuildJob",
    "Output",
    "Polling",
    "ProbeJob",
    "ShardJob",
    "api_options",
    "budget_options",
    "build_options",
    "build_prices_options",
    "limits_options",
    "output_options",
    "poll_options",
    "probe_options",
    "reconcile_options",
    "shard_options",
]

F = Callable[..., Any]


def group(
    name: str, make: Callable[[dict[str, Any]], Any], params: Callable[[], Sequence[click.Parameter]]
) -> Callable[[F], F]:
    """A decorator that adds ``params`` to a command and hands it ``make(their values)`` as keyword ``name``.

    The parameters are made anew for every command (click keeps per-command state on them); they are listed in
    ``--help`` in the order given, where the decorator stands."""

    def decorate(func: F) -> F:
        made = list(params())

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {p.name: kwargs.pop(p.name) for p in made if p.name is not None}
            kwargs[name] = make(values)
            return func(*args, **kwargs)

        wrapper.__click_params__ = [*getattr(func, "__click_params__", []), *reversed(made)]  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _option(*decls: str, **attrs: Any) -> click.Option:
    attrs.setdefault("show_default", attrs.get("default") not in (None, False, ()))
    return click.Option(list(decls), **attrs)


def _given(name: str) -> bool:
    """Whether the option was typed on the command line (not a default, not the environment)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is click.core.ParameterSource.COMMANDLINE


#: The build directory a command reads (it must exist).
directory_argument = click.argument(
    "directory", type=click.Path(path_type=Path, file_okay=False, exists=True)
)


# -- limits --------------------------------------------------------------------------------------------------


def _limit_params(*, of_directory: bool) -> list[click.Parameter]:
    """The limits, defaulting to Sync's (or, ``of_directory``, to those of the directory a command reads)."""
    said = "[default: DIRECTORY's]" if of_directory else ""
    fields = (
        ("--min-records", 1, "Fewest records a batch file may hold"),
        ("--max-records", 1, "Most records a batch file may hold"),
        ("--max-bytes", 64, "Largest batch file, in bytes"),
    )
    return [
        _option(
            flag,
            type=click.IntRange(min=low),
            default=None if of_directory else getattr(DEFAULT_LIMITS, flag[2:].replace("-", "_")),
            help=f"{text}{' ' + said if said else ''}.",
        )
        for flag, low, text in fields
    ]


def _limits(values: Mapping[str, int | None]) -> Limits:
    low, high = values["min_records"], values["max_records"]
    if low is not None and high is not None and low > high:
        msg = f"--min-records ({low}) is larger than --max-records ({high})"
        raise click.UsageError(msg)
    return Limits(**{k: v for k, v in values.items() if v is not None})


def limits_options(*, of_directory: bool = False) -> Callable[[F], F]:
    """``--min-records``, ``--max-records``, ``--max-bytes`` → ``limits``: a :class:`Limits`, or (with
    ``of_directory``) a mapping of the ones given, that change the directory's own."""

    def changes(values: dict[str, Any]) -> dict[str, int]:
        return {k: v for k, v in values.items() if v is not None}

    return group(
        "limits", changes if of_directory else _limits, lambda: _limit_params(of_directory=of_directory)
    )


# -- building ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildJob:
    """What a building command was asked: SOURCE, the mapping, the build directory, and the build's options
    (a :class:`BuildOptions`, or the :class:`RunOptions` of ``run``)."""

    source: Path
    mapping: Path
    out_dir: Path
    options: BuildOptions


@dataclass(frozen=True, slots=True)
class ShardJob:
    """What ``shard`` was asked: the JSONL file, the build directory, and the options of the shards."""

    jsonl: Path
    out_dir: Path
    name: str | None
    skip_invalid: bool
    force: bool
    limits: Limits


def _out_params(what: str) -> list[click.Parameter]:
    return [
        _option(
            "-o",
            "--out",
            "out_dir",
            required=True,
            type=click.Path(path_type=Path, file_okay=False),
            help="The build directory (shards, manifest, journal, results).",
        ),
        _option("--name", help=f"Shard file stem [default: the {what}'s stem]."),
        _option(
            "--skip-invalid",
            is_flag=True,
            help="Write the valid rows and report the rest (exit 0); without it any invalid row fails the build.",
        ),
        _option("--force", is_flag=True, help="Rebuild a directory that was already submitted."),
    ]


def source_params(*, mapping_required: bool = True) -> list[click.Parameter]:
    """SOURCE and how to read it: the mapping, the sheet, the format, the delimiter, the encoding."""
    from .._sources.source import FORMAT_NAMES

    return [
        click.Argument(["source"], type=click.Path(path_type=Path), metavar="SOURCE"),
        _option(
            "-m",
            "--mapping",
            required=mapping_required,
            type=click.Path(path_type=Path, dir_okay=False),
            help="The mapping TOML: how a row becomes a request.",
        ),
        _option("--sheet", help="Excel sheet to read [default: the active one]."),
        _option(
            "--source-format",
            type=click.Choice(sorted(FORMAT_NAMES), case_sensitive=False),
            help="Read SOURCE as this format instead of telling it from its suffix.",
        ),
        _option("--delimiter", help="CSV delimiter [default: detected]."),
        _option(
            "--encoding", help="Text encoding of a CSV or NDJSON source [default: UTF-8, else detected]."
        ),
    ]


def probe_params(*, flag: bool) -> list[click.Parameter]:
    """How media is probed (``flag``: and ``--probe`` to ask for it, with ``--reuse``, as ``build`` has them)."""
    made: list[click.Parameter] = []
    if flag:
        made.append(
            _option(
                "--probe",
                is_flag=True,
                help="Probe every media URL first; a row whose media fails is invalid (see `batchkit probe`).",
            )
        )
    made += [
        _option(
            "--refresh", is_flag=True, help="Probe every media URL again, whatever the probe cache holds."
        ),
        _option("--no-cache", is_flag=True, help="Neither read nor write the probe cache."),
        _option(
            "--probe-concurrency",
            type=click.IntRange(min=1),
            default=16,
            help="Media URLs probed at once (at most 6 per host).",
        ),
    ]
    if flag:
        made.append(
            _option(
                "--reuse",
                multiple=True,
                type=click.Path(path_type=Path, file_okay=False, exists=True),
                help="Do not send again what already completed in this build directory (repeatable).",
            )
        )
    return made


def _probe(v: dict[str, Any], *, asked: bool) -> Any:
    """The ProbeOptions the probe options ask for (None without ``--probe``)."""
    if not asked:
        return None
    from .._probe.config import ProbeConfig
    from .._probe.options import ProbeOptions

    return ProbeOptions(
        config=ProbeConfig(concurrency=v["probe_concurrency"]), cache=not v["no_cache"], refresh=v["refresh"]
    )


def _held_param() -> click.Parameter:
    return _option(
        "--include-held",
        multiple=True,
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        help="Add the requests `batchkit retry --hold` kept in this directory (repeatable).",
    )


def build_options(kind: type[BuildOptions] | None = None) -> Callable[[F], F]:
    """The source, mapping and build options → ``job``: a :class:`BuildJob` whose options are a ``kind``
    (default :class:`BuildOptions`)."""

    def make(v: dict[str, Any]) -> BuildJob:
        from .._build.options import BuildOptions

        limits = _limits({k: v.pop(k) for k in ("min_records", "max_records", "max_bytes")})
        reuse = None
        if v["reuse"]:
            from .._results.reuse import find_reusable

            reuse = find_reusable(v["reuse"])
        options = (kind or BuildOptions)(
            name=v["name"],
            limits=limits,
            skip_invalid=v["skip_invalid"],
            sheet=v["sheet"],
            format=v["source_format"],
            delimiter=v["delimiter"],
            encoding=v["encoding"],
            force=v["force"],
            include_held=v["include_held"],
            probe=_probe(v, asked=v["probe"]),
            reuse=reuse,
        )
        return BuildJob(v["source"], v["mapping"], v["out_dir"], options)

    return group(
        "job",
        make,
        lambda: [
            *source_params(),
            *_out_params("source file"),
            _held_param(),
            *_limit_params(of_directory=False),
            *probe_params(flag=True),
        ],
    )


@dataclass(frozen=True, slots=True)
class ProbeJob:
    """What ``probe`` was asked: a source (with its mapping and how to read it) or a build directory."""

    target: Path
    mapping: Path | None
    options: BuildOptions  # how to read the source, and its ``probe``


def probe_options() -> Callable[[F], F]:
    """SOURCE (or a build directory), how to read it, and how to probe → ``job``: a :class:`ProbeJob`."""

    def make(v: dict[str, Any]) -> ProbeJob:
        from .._build.options import BuildOptions

        if v["source"].is_dir() and v["mapping"] is not None:
            msg = "a build directory has its mapping already; drop --mapping"
            raise click.UsageError(msg)
        if not v["source"].is_dir() and v["mapping"] is None:
            msg = "probing a source needs its --mapping (or give a build directory)"
            raise click.UsageError(msg)
        options = BuildOptions(
            sheet=v["sheet"],
            format=v["source_format"],
            delimiter=v["delimiter"],
            encoding=v["encoding"],
            probe=_probe(v, asked=True),
        )
        return ProbeJob(v["source"], v["mapping"], options)

    def params() -> list[click.Parameter]:
        made = source_params(mapping_required=False)
        made[0] = click.Argument(
            ["source"], type=click.Path(path_type=Path, exists=True), metavar="SOURCE|DIRECTORY"
        )
        return [*made, *probe_params(flag=False)]

    return group("job", make, params)


# -- budget --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetAsk:
    """``--max-cost``, ``--prices``, ``--allow-unknown-cost``, ``--yes``: what a submission may cost."""

    max_cost: float | None
    prices: Path | None
    allow_unknown: bool
    yes: bool

    def budget(self, *, live: bool, confirm: Callable[[Any], bool]) -> Any:
        """The :class:`batchkit.Budget` these ask for (None: none); a ``live`` submission on a terminal also
        asks once (``confirm``), unless ``--yes``."""
        import sys

        from . import _render as render

        asks = live and not self.yes and sys.stdin.isatty() and render.err.is_terminal
        if self.max_cost is None and not asks:
            if self.allow_unknown:
                msg = "--allow-unknown-cost only means something with --max-cost"
                raise click.UsageError(msg)
            return None
        from .._probe.budget import Budget

        return Budget(
            max_cost=self.max_cost,
            prices=self.prices,
            allow_unknown=self.allow_unknown,
            confirm=confirm if asks else None,
        )


def prices_param(text: str) -> click.Parameter:
    return _option("--prices", type=click.Path(path_type=Path, dir_okay=False, exists=True), help=text)


def budget_options(func: F) -> F:
    """``--max-cost``, ``--prices``, ``--allow-unknown-cost``, ``-y/--yes`` → ``budget``: a :class:`BudgetAsk`."""
    return group(
        "budget",
        lambda v: BudgetAsk(v["max_cost"], v["prices"], v["allow_unknown_cost"], v["yes"]),
        lambda: [
            _option(
                "--max-cost",
                type=click.FloatRange(min=0),
                help="Refuse, before anything is sent, when the estimate is over this many USD (or unknown).",
            ),
            prices_param("Price the estimate with this prices.toml instead of Sync's estimate API."),
            _option(
                "--allow-unknown-cost",
                is_flag=True,
                help="With --max-cost: let a partly unknown estimate through when its known part fits.",
            ),
            _option(
                "-y", "--yes", is_flag=True, help="Do not ask before sending (on a terminal it asks once)."
            ),
        ],
    )(func)


def build_prices_options(func: F) -> F:
    """``--prices`` of ``build`` → ``prices``: the prices.toml a probed build's estimate is priced with."""
    return group(
        "prices",
        lambda v: v["prices"],
        lambda: [
            prices_param("With --probe: price the estimate with this prices.toml (USD per second by model)."),
        ],
    )(func)


def shard_options() -> Callable[[F], F]:
    """JSONL and the build options that apply to it → ``job``: a :class:`ShardJob`."""

    def make(v: dict[str, Any]) -> ShardJob:
        limits = _limits({k: v.pop(k) for k in ("min_records", "max_records", "max_bytes")})
        return ShardJob(v["jsonl"], v["out_dir"], v["name"], v["skip_invalid"], v["force"], limits)

    def params() -> list[click.Parameter]:
        jsonl = click.Argument(["jsonl"], type=click.Path(path_type=Path, dir_okay=False), metavar="JSONL")
        return [jsonl, *_out_params("input file"), *_limit_params(of_directory=False)]

    return group("job", make, params)


# -- the API -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Api:
    """Where a command's API calls go: Sync's API (``base_url`` / ``api_key``, also from the environment),
    or, with ``sandbox``, the sandbox kept in the build directory."""

    sandbox: bool
    base_url: str | None
    api_key: str | None
    timeout: float

    @contextmanager
    def client(self, directory: Path | None = None, *, start: bool = False) -> Iterator[Client]:
        """A client for the command (closed after it). With ``--sandbox`` it serves the sandbox kept in
        ``directory`` (``start``: or starts one there, as ``submit --sandbox`` may)."""
        from .._api.client import Client

        if not self.sandbox:
            with Client(
                api_key=self.api_key or None, base_url=self.base_url or None, timeout=self.timeout
            ) as made:
                yield made
            return
        if directory is None:
            msg = "--sandbox serves the sandbox kept in a build directory; name one (--dir DIR)"
            raise click.UsageError(msg)
        from ..sandbox._kept import kept_sandbox

        with kept_sandbox(directory, create=start, timeout=self.timeout) as made:
            yield made

    def poll(self, polling: Polling) -> PollPolicy:
        """The poll policy: the one asked for, else a quick one for the sandbox, else the default."""
        if polling.poll is not None:
            return polling.poll
        from ..sandbox._kept import SANDBOX_POLL

        return SANDBOX_POLL if self.sandbox else PollPolicy()

    def policy(self, given: ReconcilePolicy | None) -> ReconcilePolicy | None:
        """How lost creates are settled (a sandbox served by this process need not wait for any)."""
        if not self.sandbox:
            return given
        from ..sandbox._kept import in_process_policy

        return in_process_policy(given)

    def sending(self, sending: Any) -> Any:
        """``sending`` (a ``Sending``) with this server's poll policy and reconcile policy."""
        import dataclasses

        poll = self.poll(Polling(sending.poll, sending.deadline))
        return dataclasses.replace(sending, poll=poll, policy=self.policy(sending.policy))


def _api_params() -> list[click.Parameter]:
    return [
        _option(
            "--sandbox",
            is_flag=True,
            help="Talk to the sandbox kept in the build directory (made by `run --sandbox` "
            "or `submit --sandbox`) instead of Sync's API; no API key needed.",
        ),
        _option(
            "--base-url",
            envvar="SYNC_BASE_URL",
            show_envvar=True,
            help="API base URL [default: https://api.sync.so]; plain http:// only for loopback.",
        ),
        _option(
            "--api-key",
            envvar="SYNC_API_KEY",
            show_envvar=True,
            help="Sync API key (prefer the environment variable: options show up in shell history).",
        ),
        _option(
            "--timeout", type=click.FloatRange(min=0.1), default=60.0, help="Seconds one request may take."
        ),
    ]


def _api(values: dict[str, Any]) -> Api:
    if values["sandbox"] and _given("base_url"):
        msg = "--sandbox and --base-url name two different servers; choose one"
        raise click.UsageError(msg)
    return Api(values["sandbox"], values["base_url"], values["api_key"], values["timeout"])


def api_options(func: F) -> F:
    """``--sandbox``, ``--base-url``, ``--api-key``, ``--timeout`` → ``api``: an :class:`Api`."""
    decorated = group("api", _api, _api_params)(func)
    decorated.talks_to_api = True  # type: ignore[attr-defined]
    return decorated


@dataclass(frozen=True, slots=True)
class Polling:
    """How to wait: the poll policy (None: the default) and a deadline in seconds (None: none)."""

    poll: PollPolicy | None
    deadline: float | None


def _polling(v: dict[str, Any]) -> Polling:
    given = (v["poll_initial"], v["poll_factor"], v["poll_max"]) != (
        _POLL.initial,
        _POLL.factor,
        _POLL.maximum,
    )
    poll = PollPolicy(
        initial=v["poll_initial"], factor=v["poll_factor"], maximum=max(v["poll_max"], v["poll_initial"])
    )
    return Polling(poll if given else None, v["deadline"])


#: The library's polling, whose values are the options' defaults.
_POLL = PollPolicy()


def _poll_params() -> list[click.Parameter]:
    return [
        _option(
            "--poll-initial",
            type=click.FloatRange(min=0),
            default=_POLL.initial,
            help="Seconds before the first status poll.",
        ),
        _option(
            "--poll-factor",
            type=click.FloatRange(min=1),
            default=_POLL.factor,
            help="Each poll interval is the previous one times this.",
        ),
        _option(
            "--poll-max",
            type=click.FloatRange(min=0),
            default=_POLL.maximum,
            help="Longest interval between polls, in seconds.",
        ),
        _option(
            "--deadline",
            type=click.FloatRange(min=0),
            help="Stop waiting after this many seconds: exit 3 (waiting again later is safe).",
        ),
    ]


def poll_options(func: F) -> F:
    """``--poll-initial``, ``--poll-factor``, ``--poll-max``, ``--deadline`` → ``polling``: a :class:`Polling`."""
    return group("polling", _polling, _poll_params)(func)


def _reconcile(v: dict[str, Any]) -> ReconcilePolicy | None:
    from .._submit.reconcile import ReconcilePolicy

    defaults = ReconcilePolicy()
    if (v["in_flight"], v["clock_skew"]) == (defaults.in_flight, defaults.skew):
        return None
    return ReconcilePolicy(in_flight=v["in_flight"], skew=v["clock_skew"])


def _reconcile_params() -> list[click.Parameter]:
    from .._submit.reconcile import ReconcilePolicy

    defaults = ReconcilePolicy()  # the library's defaults are the options' defaults

    return [
        _option(
            "--in-flight",
            type=click.FloatRange(min=0),
            default=defaults.in_flight,
            help="Seconds a create whose answer was lost may still land (at least twice --timeout is used).",
        ),
        _option(
            "--clock-skew",
            type=click.FloatRange(min=0),
            default=defaults.skew,
            help="Seconds the server's clock may differ from this machine's.",
        ),
    ]


def reconcile_options(func: F) -> F:
    """``--in-flight``, ``--clock-skew`` → ``policy``: how a create whose answer was lost is settled (None:
    the default)."""
    return group("policy", _reconcile, _reconcile_params)(func)


def _webhook_param() -> click.Parameter:
    return _option("--webhook-url", help="URL Sync POSTs each batch's final status to.")


def sending_options(*, first_round: bool = True) -> Callable[[F], F]:
    """``--webhook-url``, the poll options, the reconcile options (and, ``first_round``, ``--force`` and
    ``--rebind``) → ``sending``: a :class:`batchkit._submit.rounds.Sending`."""

    def make(v: dict[str, Any]) -> Any:
        from .._submit.rounds import Sending

        polling = _polling({k: v[k] for k in ("poll_initial", "poll_factor", "poll_max", "deadline")})
        return Sending(
            webhook_url=v["webhook_url"],
            poll=polling.poll,
            deadline=polling.deadline,
            policy=_reconcile(v),
            force=v.get("force", False),
            rebind=v.get("rebind", False),
        )

    def params() -> list[click.Parameter]:
        made = [_webhook_param()]
        if first_round:
            made += [
                _option(
                    "--force",
                    is_flag=True,
                    help="Submit shards that already have a batch again (new batches!).",
                ),
                _option(
                    "--rebind",
                    is_flag=True,
                    help="The directory's account is now reached at this (real) base URL: record the move and go on.",
                ),
            ]
        return [*made, *_poll_params(), *_reconcile_params()]

    return group("sending", make, params)


# -- output --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """How to show the outcome: ``format`` (``text``: for a person, on stderr; ``json``: one document on
    stdout; ``validate`` adds CI formats), and how many findings text lists."""

    format: str
    max_findings: int

    @property
    def json(self) -> bool:
        return self.format == "json"

    @property
    def text(self) -> bool:
        return self.format == "text"


def output_options(
    json: str, *, formats: Mapping[str, str] | None = None, max_findings: int | None = None
) -> Callable[[F], F]:
    """``--format`` (``text``, ``json``, then ``formats``), ``-v/--verbose`` and, when ``max_findings`` is
    given, ``--max-findings`` → ``output``: an :class:`Output`. ``json`` says what the JSON document holds."""
    extra = dict(formats or {})
    described = "; ".join(
        [f"text: for a person, on stderr; json: {json}", *(f"{k}: {v}" for k, v in extra.items())]
    )

    def make(v: dict[str, Any]) -> Output:
        ctx = click.get_current_context()
        root = ctx.find_root()
        configure_logging(v["verbose"] + (int(root.params.get("verbose") or 0) if root is not ctx else 0))
        return Output(v["format"], v.get("max_findings", max_findings or 0))

    def params() -> list[click.Parameter]:
        made: list[click.Parameter] = [
            _option(
                "--format",
                "format",
                type=click.Choice(["text", "json", *extra]),
                default="text",
                help=f"{described}.",
            ),
            _option(
                "-v",
                "--verbose",
                count=True,
                show_default=False,
                help="Show every item (a line per shard or request); log more (-vv debug).",
            ),
        ]
        if max_findings is not None:
            made.append(
                _option(
                    "--max-findings",
                    type=click.IntRange(min=0),
                    default=max_findings,
                    help="Findings listed in text form (all are counted; --format json lists all).",
                )
            )
        return made

    return group("output", make, params)
