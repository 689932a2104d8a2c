"""A stateful model of submission against the sandbox: whatever happens, no shard is ever paid for twice.

Hypothesis drives random sequences of submits, waits and results with lost answers, creates the server
finishes only after the client gave up, 5xx, 429, foreign batches of the same size on the account, a second
submitter while the first holds the directory, and kills of the submitter. After every step: no shard has two
batches holding its request_ids (counting creates the server is still working on). At the end, with the
faults gone: every shard has exactly one batch, the journal names it, and no row whose output exists is
called missing (every row completed).

The world runs on one clock: the sandbox's :class:`ManualClock`, which reconciliation's ``sleep`` advances
(so waiting for a create's in-flight horizon takes no real time). A create the server finishes late is held
by the sandbox and lands at most 20 model seconds after it was sent, inside the 30 s ``in_flight`` the
policy allows: the documented contract "a create can no longer be in flight after that", kept by construction.

The submitter is killed *in process*: an API call raises :class:`Killed` before it is sent or after the server
acted on it (its answer is then lost). Every journal write is one SQLite transaction, committed or not, and
the exception unwinds the directory lock as the OS releases a dead process's ``flock``, so this reaches every
state a ``kill -9`` can leave between two durable steps, deterministically; ``test_submit_crash.py`` kills real
processes at random moments to cover what lies between.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from batchkit import BatchkitError, DirectoryLockedError, Limits
from batchkit._api.backoff import PollPolicy, RetryPolicy
from batchkit._api.client import Client
from batchkit._results.results import collect_results
from batchkit._shard.reshard import shard_file
from batchkit._submit.journal import Journal
from batchkit._submit.lock import directory_lock
from batchkit._submit.reconcile import ReconcilePolicy
from batchkit._submit.submit import submit, wait
from batchkit.sandbox import Fault, ManualClock, Sandbox, serve

SHARDS = 3
PER_SHARD = 20
LAND_WITHIN = 20.0  # model seconds: a slow create lands this soon after it was sent
POLICY = {"skew": 60.0, "in_flight": 30.0, "second_look": 1.0}
POLL = PollPolicy(initial=1.0, factor=2.0, maximum=30.0)


class Killed(BaseException):
    """The submitter died (``kill -9``): nothing after this point of the call ran."""


class _Deferring(Sandbox):
    """A sandbox whose next creates can be finished late: the upload is read, the answer lost, and the batch
    made only when :meth:`land` is called (the model calls it before the create's in-flight horizon)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.defer = 0
        self.held: list[tuple[Any, ...]] = []

    def _create_batch(self, data: bytes, lines: Any, *, webhook_url: str | None, api_base: str) -> Any:
        if self.defer:
            self.defer -= 1
            self.held.append(
                (self.clock.now() + timedelta(seconds=LAND_WITHIN), data, lines, webhook_url, api_base)
            )
            return _Placeholder()
        return super()._create_batch(data, lines, webhook_url=webhook_url, api_base=api_base)

    def land(self, until: Any = None) -> None:
        """Make the held creates due by ``until`` (all when None)."""
        keep = []
        for item in self.held:
            if until is None or item[0] <= until:
                super()._create_batch(item[1], item[2], webhook_url=item[3], api_base=item[4])
            else:
                keep.append(item)
        self.held = keep


class _Placeholder:
    def to_wire(self, _now: float) -> dict[str, Any]:
        return {"id": "never-answered", "status": "PENDING"}


def _template(root: Path) -> Path:
    lines = [
        orjson.dumps(
            {
                "request_id": f"m-{i:04d}",
                "endpoint": "/v2/generate",
                "payload": {
                    "model": "lipsync-2",
                    "input": [
                        {"type": "video", "url": f"https://cdn.example.com/v/{i}.mp4"},
                        {"type": "audio", "url": f"https://cdn.example.com/a/{i}.wav"},
                    ],
                },
            }
        )
        for i in range(SHARDS * PER_SHARD)
    ]
    source = root / "rows.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = root / "template"
    shard_file(source, out, limits=Limits(min_records=PER_SHARD, max_records=PER_SHARD))
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _template(tmp_path_factory.mktemp("model"))


class SubmissionModel(RuleBasedStateMachine):
    template: Path
    workdir: Path

    @initialize()
    def start(self) -> None:
        self.clock = ManualClock()
        self.sandbox = _Deferring(clock=self.clock, pending_seconds=5.0, seconds_per_generation=0.1, seed=3)
        self._serving = serve(self.sandbox)
        url = self._serving.__enter__()
        self.client = Client(
            api_key="model-key",
            base_url=url,
            timeout=5.0,
            retry=RetryPolicy(initial=0.001),
            sleep=lambda _s: None,
        )
        number = len(list(self.workdir.iterdir()))
        self.dir = self.workdir / f"run-{number}"
        shutil.copytree(self.template, self.dir)
        self.ids = {
            p.name: {orjson.loads(line)["request_id"] for line in p.read_bytes().splitlines()}
            for p in sorted(self.dir.glob("*.jsonl"))
        }
        self.kill_at: tuple[int, str] | None = None

    def teardown(self) -> None:
        if not hasattr(self, "client"):
            return
        try:
            self._settle_everything()
        finally:
            self.client.close()
            self._serving.__exit__(None, None, None)

    # -- the world -----------------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        """Time passes (reconciliation waits): held creates due meanwhile land first, as the contract says."""
        self.sandbox.land(self.clock.now() + timedelta(seconds=max(seconds, 0.0)))
        self.clock.advance(max(seconds, 0.0))

    def _policy(self) -> ReconcilePolicy:
        return ReconcilePolicy(now=self.clock.now, sleep=self._sleep, **POLICY)

    def _armed(self) -> Client:
        """The client, with a kill armed at its n-th API call when one was drawn."""
        if self.kill_at is None:
            return self.client
        count, when = self.kill_at
        calls = [0]
        batches = self.client.batches

        def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                calls[0] += 1
                if calls[0] == count and when == "before":
                    raise Killed
                result = method(*args, **kwargs)
                if calls[0] == count:
                    raise Killed
                return result

            return call

        killing = Client.__new__(Client)  # the same connection pool and settings, its own call counter
        killing.__dict__.update(self.client.__dict__)
        own = type(batches)(killing)
        for name in ("create", "list", "get", "download"):
            setattr(own, name, wrap(getattr(own, name)))
        killing.batches = own
        return killing

    def _batches_holding(self) -> dict[str, int]:
        """Per shard: batches on the server (and held creates that will land) whose requests are its own."""
        counts = dict.fromkeys(self.ids, 0)
        uploads = [set(b.request_ids) for b in self.sandbox.batches]
        uploads += [{line.request_id for line in item[2]} for item in self.sandbox.held]
        for ids in uploads:
            for file, mine in self.ids.items():
                if ids & mine:
                    counts[file] += 1
        return counts

    # -- rules -----------------------------------------------------------------------------------------------

    @rule(count=st.integers(1, 12), when=st.sampled_from(["before", "after"]))
    def arm_kill(self, count: int, when: str) -> None:
        """The next command dies at its count-th API call (before it is sent, or after the server acted)."""
        self.kill_at = (count, when)

    @rule()
    def lose_next_answer(self) -> None:
        self.sandbox.inject(Fault(route="POST /v2/batch", kind="reset_after_accept"))

    @rule()
    def finish_next_create_late(self) -> None:
        self.sandbox.defer += 1
        self.sandbox.inject(Fault(route="POST /v2/batch", kind="reset_after_accept"))

    @rule(status=st.sampled_from([500, 502, 503]))
    def fail_next_create(self, status: int) -> None:
        self.sandbox.inject(Fault(route="POST /v2/batch", kind="status", status=status))

    @rule(times=st.integers(1, 6))
    def rate_limit_creates(self, times: int) -> None:
        self.sandbox.inject(
            Fault(route="POST /v2/batch", kind="status", status=429, times=times, retry_after=0)
        )

    @rule(finished=st.booleans())
    def foreign_batch(self, finished: bool) -> None:
        """Someone else on the account makes a batch of the same size."""
        self.sandbox.add_foreign_batch(PER_SHARD, finished=finished)

    @rule(seconds=st.sampled_from([1.0, 5.0, 15.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self._sleep(seconds)

    @rule()
    def run_submit(self) -> None:
        client, self.kill_at = self._armed(), None
        # A kill, a 429 storm, a failing list: the journal says what happened; the next run goes on.
        with contextlib.suppress(Killed, BatchkitError):
            submit(self.dir, client=client, policy=self._policy(), poll=POLL)

    @rule()
    def run_wait(self) -> None:
        client, self.kill_at = self._armed(), None
        with contextlib.suppress(Killed, BatchkitError):
            wait(self.dir, client=client, policy=self._policy(), poll=POLL, deadline=None)

    @rule()
    def run_results(self) -> None:
        client, self.kill_at = self._armed(), None
        with contextlib.suppress(Killed, BatchkitError):
            collect_results(self.dir, client=client)

    @precondition(lambda self: (self.dir / "journal.sqlite").exists())
    @rule()
    def second_submitter_is_refused(self) -> None:
        """While one submitter holds the directory, another one is turned away and sends nothing."""
        held, release = threading.Event(), threading.Event()

        def first() -> None:
            with directory_lock(self.dir, "the first submitter"):
                held.set()
                release.wait(10)

        thread = threading.Thread(target=first)
        thread.start()
        held.wait(10)
        before = len(self.sandbox.batches)
        try:
            with pytest.raises(DirectoryLockedError, match="the first submitter"):
                submit(self.dir, client=self.client, policy=self._policy(), poll=POLL)
        finally:
            release.set()
            thread.join()
        assert len(self.sandbox.batches) == before

    @invariant()
    def no_shard_is_paid_for_twice(self) -> None:
        if hasattr(self, "sandbox"):
            doubles = {f: n for f, n in self._batches_holding().items() if n > 1}
            assert not doubles, f"shards with two batches: {doubles}"

    # -- the end -----------------------------------------------------------------------------------------------

    def _settle_everything(self) -> None:
        self.sandbox.clear_faults()
        self.sandbox.defer = 0
        self.sandbox.land()
        for _ in range(6):
            submit(self.dir, client=self.client, policy=self._policy(), poll=POLL)
            wait(self.dir, client=self.client, policy=self._policy(), poll=POLL)
            with Journal.open(self.dir) as journal:
                if all(s.state == "submitted" and not s.provisional for s in journal.shards()):
                    break
        assert self._batches_holding() == dict.fromkeys(self.ids, 1)
        results = collect_results(self.dir, client=self.client)
        with Journal.open(self.dir) as journal:
            for shard in journal.shards():
                batch = self.sandbox.batch(shard.batch_id or "")
                assert set(batch.request_ids) == self.ids[shard.file]
        assert results.outcomes["completed"] == SHARDS * PER_SHARD, results.outcomes
        assert results.outcomes["missing"] == 0


@pytest.fixture
def model(template: Path, tmp_path: Path) -> Iterator[type[SubmissionModel]]:
    SubmissionModel.template = template
    SubmissionModel.workdir = tmp_path
    return SubmissionModel


def test_no_shard_is_ever_paid_for_twice(model: type[SubmissionModel]) -> None:
    """Random sequences of faults, kills, foreign batches and a second submitter never make a double batch."""
    run = model.TestCase
    run.settings = settings(
        max_examples=12,
        stateful_step_count=14,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    run().runTest()
