"""The sweep fanned out through the sweep queue (Azurite) against the emulator (HTTPS); client-side pacing.

Estates come from the emulator's `generate:` section; which VMs are stuck is read from the emulator's
estate before the sweep runs, never from the code under test. "Triggered" is counted from the
emulator's request log: a "Backup now" POST it accepted (202).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.functions.queue import QueueMessage as HostQueueMessage  # the class the host's converter builds
from azure.functions.timer import TimerRequest
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import BackupStatusRequest
from azure.mgmt.resourcegraph.models import QueryRequest
from azure.storage.queue import QueueClient, QueueMessage

import function_app
from backupwarden.adapters.azure.clients import AzureClients, StaticTokenCredential
from backupwarden.adapters.azure.pacing import (
    RESYNC_MARGIN,
    BucketRate,
    Pacer,
    PacingPolicy,
    TokenBucket,
)
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import Ledger, LedgerStatus
from backupwarden.adapters.storage.run_slots import LedgerRunSlots
from backupwarden.app import build_sweep_fanout, build_sweep_worker, forget_shared_pacers
from backupwarden.cli.drain import DrainConfig, DrainResult, sweep_and_drain
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.backup_now import LEDGER_ACTION, todays_trigger
from backupwarden.flows.sweep.fanout import MAX_DELIVERIES, FanoutResult, SweepItemFailed
from backupwarden.settings import Settings
from emulator.core.realism import Fault
from emulator.generator import subscription_id
from tests.sweep_fixtures import BACKUP_POST, SweepBench, vm_name
from tests.test_cli import cli_env, run_cli

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"
SUB0 = subscription_id(0)
CAP_REASON = "per-run cap reached"


# --- estates and settings ------------------------------------------------------------------------
def generated(
    *, subscriptions: int = 1, vaults: int = 1, vms: int = 50, stuck: float = 100, start: str | None = None
) -> dict[str, Any]:
    """A generated estate; every stuck VM was configured 3 h before the clock start (past the grace)."""
    return {
        "clock": {"start": start or "2026-11-25T08:00:00Z"},
        "timings": {"retry_after_s": 0, "backup_job_s": 3600},
        "generate": {
            "subscriptions": subscriptions,
            "vaults_per_subscription": vaults,
            "vms_per_vault": vms,
            "stuck_percent": stuck,
        },
    }


def wall_clock_start() -> str:
    """For entry points that read the wall clock (the functions, the CLI)."""
    return datetime.now(UTC).isoformat()


@pytest.fixture(autouse=True)
def fresh_pacers() -> Iterator[None]:
    """Each test starts with full client buckets, as a fresh process would."""
    forget_shared_pacers()
    yield
    forget_shared_pacers()


@pytest.fixture
def fan(sweep_bench: SweepBench) -> Iterator[FanBench]:
    bench = FanBench(sweep_bench)
    yield bench
    bench.close()


class FanBench:
    """The sweep bench with its own sweep queue; every plan fans out (BACKUPWARDEN_SWEEP_INLINE_MAX=0)."""

    def __init__(self, bench: SweepBench) -> None:
        self.bench = bench
        self.emulator = bench.emulator
        self.queue_name = f"sweep-{uuid.uuid4().hex[:10]}"

    def env(self, **overrides: str) -> dict[str, str]:
        return self.bench.env(
            BACKUPWARDEN_SWEEP_QUEUE=self.queue_name, BACKUPWARDEN_SWEEP_INLINE_MAX="0", **overrides
        )

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.env(**overrides))

    def stuck_names(self) -> set[str]:
        with self.emulator.lock:
            return {
                item.vm.name
                for item in self.emulator.estate.protected_items.values()
                if item.protection_state == "IRPending"
            }

    def accepted_posts(self) -> Counter[str]:
        """VM name -> "Backup now" POSTs the emulator accepted (202)."""
        return Counter(
            match["vm"]
            for entry in self.bench.requests()
            if entry.method == "POST" and entry.status == 202 and (match := BACKUP_POST.search(entry.path))
        )

    def sweep_and_drain(
        self, workers: int = 8, config: DrainConfig | None = None, **overrides: str
    ) -> tuple[FanoutResult, DrainResult]:
        """The CLI's path in this process: plan on the emulator's clock, enqueue, drain with threads."""
        settings = self.settings(**overrides)
        clients = self.bench.clients(settings)
        now = self.emulator.now
        fanout = build_sweep_fanout(settings, clients, now=now, workers=workers)
        worker = build_sweep_worker(settings, clients, now=now, workers=workers)
        return sweep_and_drain(fanout, worker, config or DrainConfig(workers=workers, retry_delay_s=0))

    def raw_queue(self, suffix: str = "") -> QueueClient:
        return QueueClient.from_connection_string(self.bench.storage, self.queue_name + suffix)

    def received(self) -> list[QueueMessage]:
        """Every visible message, dequeued and decoded (base64) as the queue trigger gets them."""
        with self.raw_queue() as queue:
            messages: list[QueueMessage] = []
            while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=300)):
                messages.extend(batch)
            return messages

    def close(self) -> None:
        for suffix in ("", "-poison"):
            with self.raw_queue(suffix) as queue, contextlib.suppress(ResourceNotFoundError):
                queue.delete_queue()


def by_result(outcomes: list[Outcome], result: Result) -> Counter[str]:
    return Counter(vm_name(o.vm_id) for o in outcomes if o.result is result and o.vm_id)


def body_of(message: QueueMessage) -> str:
    return base64.b64decode(str(message.content)).decode("utf-8")


# --- the functions, as the host indexes them --------------------------------------------------------
@functools.cache
def sweep_functions() -> dict[str, Callable[..., Any]]:
    app = importlib.reload(function_app).app
    return {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}


@pytest.fixture
def app_env(fan: FanBench, monkeypatch: pytest.MonkeyPatch) -> FanBench:
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    for name, value in fan.env().items():
        monkeypatch.setenv(name, value)
    return fan


def logged_outcomes(caplog: pytest.LogCaptureFixture) -> list[Outcome]:
    fields = Outcome.__dataclass_fields__
    return [
        Outcome(**{**{k: record.__dict__[k] for k in fields}, "result": Result(record.__dict__["result"])})
        for record in caplog.records
        if record.getMessage() == "sweep outcome" and record.__dict__.get("vm_id")
    ]


def test_host_json_max_dequeue_count_is_the_workers_last_delivery() -> None:
    queues = json.loads(HOST_JSON.read_text(encoding="utf-8"))["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DELIVERIES
    assert queues["messageEncoding"] == "base64"


# --- 1. fan-out end to end ------------------------------------------------------------------------
def test_two_timer_plans_drained_by_racing_workers_trigger_each_stuck_vm_once(
    app_env: FanBench, caplog: pytest.LogCaptureFixture
) -> None:
    app_env.bench.load(generated(subscriptions=2, vaults=2, vms=60, stuck=80, start=wall_clock_start()))
    stuck = app_env.stuck_names()
    assert len(stuck) == 192
    functions = sweep_functions()

    functions["sweep"](TimerRequest(past_due=False))  # two overlapping runs plan the same estate
    functions["sweep"](TimerRequest(past_due=False))
    messages = app_env.received()
    assert len(messages) == 2 * 4 * 3, "each run: 4 vaults of 48 stuck VMs, 20 candidates per work item"
    assert app_env.accepted_posts() == Counter(), "the timer only planned"

    with caplog.at_level(logging.INFO), ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda m: functions["sweep_worker"](
                    HostQueueMessage(id=m.id, body=body_of(m), dequeue_count=1, pop_receipt=m.pop_receipt)
                ),
                messages,
            )
        )

    assert app_env.accepted_posts() == Counter(dict.fromkeys(stuck, 1)), "one Backup now per stuck VM"
    outcomes = logged_outcomes(caplog)
    assert by_result(outcomes, Result.TRIGGERED) == Counter(dict.fromkeys(stuck, 1))
    assert by_result(outcomes, Result.SKIPPED) == Counter(dict.fromkeys(stuck, 1)), "the other run skipped it"
    assert by_result(outcomes, Result.FAILED) == Counter()


def test_cli_plans_and_drains_the_queue_with_n_workers(fan: FanBench) -> None:
    fan.bench.load(generated(vaults=2, vms=75, stuck=100, start=wall_clock_start()))
    stuck = fan.stuck_names()

    done = run_cli(
        "sweep", "--workers", "8", "--output", "json", env={**cli_env(fan.bench), **fan.env()}, timeout_s=90
    )

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    outcomes = printed["outcomes"]
    triggered = Counter(o["vm_id"].rsplit("/", 1)[-1] for o in outcomes if o["result"] == "triggered")
    assert triggered == Counter(dict.fromkeys(stuck, 1))
    assert printed["summary"]["candidates"] == len(stuck) == 150
    assert fan.accepted_posts() == Counter(dict.fromkeys(stuck, 1))
    assert fan.received() == [], "every work item was deleted"


# --- 2. a worker killed mid-item --------------------------------------------------------------------
class WorkerKilled(RuntimeError):
    """Stands for the process dying at that line."""


@pytest.mark.parametrize("moment", ["after-claim-before-trigger", "after-trigger-before-complete"])
def test_worker_killed_mid_item_leaves_it_to_the_redelivery_neither_lost_nor_doubled(
    fan: FanBench, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    fan.bench.load(generated(vms=30))
    stuck = fan.stuck_names()
    victim = sorted(stuck)[7]
    kills = Counter[str]()

    def kill_once(vm: str) -> None:
        if victim in vm.lower() and not kills[moment]:
            kills[moment] += 1
            raise WorkerKilled(moment)

    if moment == "after-claim-before-trigger":
        trigger = RecoveryServices.trigger_backup

        def dying_trigger(self: RecoveryServices, vault: Any, container: str, item: str, expiry: Any) -> Any:
            kill_once(item)  # the ledger claim is taken; nothing reached Azure
            return trigger(self, vault, container, item, expiry)

        monkeypatch.setattr(RecoveryServices, "trigger_backup", dying_trigger)
    else:
        complete = Ledger.complete

        def dying_complete(self: Ledger, claim: Any, job_id: str, *args: Any, **kwargs: Any) -> None:
            kill_once(claim.vm_id)  # Azure accepted the backup; the claim still says in progress
            complete(self, claim, job_id, *args, **kwargs)

        monkeypatch.setattr(Ledger, "complete", dying_complete)

    planned, drained = fan.sweep_and_drain()

    assert kills[moment] == 1 and drained.redelivered >= 1 and not drained.timed_out
    assert fan.accepted_posts() == Counter(dict.fromkeys(stuck, 1)), "no VM lost, none triggered twice"
    outcome = next(o for o in planned.report.outcomes if vm_name(o.vm_id) == victim)
    assert outcome.result is Result.TRIGGERED, outcome
    with fan.emulator.lock:
        jobs = [
            job.job_id
            for job in fan.emulator.estate.jobs.values()
            if job.operation == "Backup" and job.vm.name == victim
        ]
    assert len(jobs) == 1, jobs
    # the redelivery sent the POST alone (no job id) when the dead delivery had not; when it had, the
    # redelivery found that POST's job in the job list
    expected_job = None if moment == "after-claim-before-trigger" else jobs[0]
    assert outcome.job_id == expected_job, outcome
    settings = fan.settings()
    clients = fan.bench.clients(settings)
    ledger = Ledger(clients.ledger_table())
    now = fan.emulator.now()
    record = ledger.record(outcome.vm_id, LEDGER_ACTION, now.date())
    assert record is not None and (record.status, record.job_id or None) == (
        LedgerStatus.COMPLETED,
        expected_job,
    )
    # a trigger without its job id is read with the job the list shows since its claim: that one job
    today = todays_trigger(
        ledger, RecoveryServices(clients.backup), VaultRef.parse(outcome.vault_id), outcome.vm_id, now
    )
    assert today.record is not None and today.record.job_id == jobs[0]
    assert by_result(planned.report.outcomes, Result.TRIGGERED) == Counter(dict.fromkeys(stuck, 1))


def test_worker_function_raises_for_a_redelivery_then_the_redelivery_finishes_the_item(
    app_env: FanBench, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app_env.bench.load(generated(vms=4, start=wall_clock_start()))
    functions = sweep_functions()
    functions["sweep"](TimerRequest(past_due=False))
    (message,) = app_env.received()
    complete = Ledger.complete
    calls = Counter[str]()

    def dying_complete(self: Ledger, claim: Any, job_id: str, *args: Any, **kwargs: Any) -> None:
        calls["complete"] += 1
        if calls["complete"] == 1:
            raise WorkerKilled("after the trigger")
        complete(self, claim, job_id, *args, **kwargs)

    monkeypatch.setattr(Ledger, "complete", dying_complete)

    def deliver(count: int) -> None:
        functions["sweep_worker"](HostQueueMessage(id=message.id, body=body_of(message), dequeue_count=count))

    with pytest.raises(SweepItemFailed):
        deliver(1)
    with caplog.at_level(logging.INFO):
        deliver(2)

    stuck = app_env.stuck_names()
    assert app_env.accepted_posts() == Counter(dict.fromkeys(stuck, 1))
    outcomes = logged_outcomes(caplog)
    triggered = by_result(outcomes, Result.TRIGGERED)
    # one VM recovered on the redelivery; the three delivery 1 triggered are stated again as triggered
    # (their records share RecordIds with delivery 1's: a `skipped` would hide those triggers)
    assert triggered == Counter(dict.fromkeys(stuck, 1))
    assert sum("an earlier delivery triggered it" in o.reason for o in outcomes) == 1
    assert sum("an earlier delivery of this run triggered it" in o.reason for o in outcomes) == 3


# --- 3. poison ----------------------------------------------------------------------------------------
def test_item_failing_every_delivery_ends_as_failed_outcomes_with_the_reason(
    app_env: FanBench, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app_env.bench.load(generated(vms=3, start=wall_clock_start()))
    functions = sweep_functions()
    functions["sweep"](TimerRequest(past_due=False))
    (message,) = app_env.received()
    broken = sorted(app_env.stuck_names())[0]
    verify = RecoveryServices.protected_item

    def failing_verify(self: RecoveryServices, vault: Any, container: str, item: str) -> dict[str, Any]:
        if broken in item:
            raise ValueError("unreadable item")
        return verify(self, vault, container, item)

    monkeypatch.setattr(RecoveryServices, "protected_item", failing_verify)

    def delivery(count: int | None) -> HostQueueMessage:
        return HostQueueMessage(id="m", body=body_of(message), dequeue_count=count)

    with caplog.at_level(logging.INFO):
        for count in range(1, MAX_DELIVERIES):
            with pytest.raises(SweepItemFailed):
                functions["sweep_worker"](delivery(count))
        functions["sweep_worker"](delivery(MAX_DELIVERIES))
        functions["sweep_worker_poison"](delivery(None))

    outcomes = logged_outcomes(caplog)
    failed = [o for o in outcomes if o.result is Result.FAILED]
    reasons = {o.reason for o in failed}
    assert {vm_name(o.vm_id) for o in failed} == {broken}
    assert reasons == {
        f"gave up after {MAX_DELIVERIES} deliveries: ValueError: unreadable item",
        f"the queue gave up after {MAX_DELIVERIES} deliveries (poison queue): "
        "no delivery finished it (a worker crash or timeout)",
    }, "the last delivery and the poison handler each name why; VMs the run triggered are not failed"
    assert app_env.accepted_posts() == Counter(dict.fromkeys(app_env.stuck_names() - {broken}, 1))


def test_local_drain_moves_an_item_to_the_poison_queue_after_its_last_delivery(
    fan: FanBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    fan.bench.load(generated(vms=2))
    broken = sorted(fan.stuck_names())[1]
    verify = RecoveryServices.protected_item

    def failing_verify(self: RecoveryServices, vault: Any, container: str, item: str) -> dict[str, Any]:
        if broken in item:
            raise ValueError("unreadable item")
        return verify(self, vault, container, item)

    monkeypatch.setattr(RecoveryServices, "protected_item", failing_verify)

    planned, drained = fan.sweep_and_drain(config=DrainConfig(workers=2, retry_delay_s=0, max_deliveries=3))

    assert (drained.poisoned, drained.redelivered, drained.settled) == (1, 2, 1)
    failed = [o for o in planned.report.outcomes if o.result is Result.FAILED]
    assert [(vm_name(o.vm_id), o.reason) for o in failed] == [
        (broken, "gave up after 3 deliveries: ValueError: unreadable item")
    ]
    with fan.raw_queue("-poison") as poison:
        assert len(list(poison.peek_messages(max_messages=32))) == 1


# --- 4. the per-run cap across workers ------------------------------------------------------------
def test_per_run_cap_holds_across_racing_workers(fan: FanBench) -> None:
    fan.bench.load(generated(vms=60))

    planned, _ = fan.sweep_and_drain(workers=12, BACKUPWARDEN_MAX_TRIGGERS_PER_RUN="25")

    assert planned.cap == 25 and planned.enqueued == 60
    outcomes = planned.report.outcomes
    assert sum(by_result(outcomes, Result.TRIGGERED).values()) == 25
    assert sum(fan.accepted_posts().values()) == 25
    capped = [o for o in outcomes if o.result is Result.SKIPPED and CAP_REASON in o.reason]
    assert len(capped) == 35 and all("(25 triggers)" in o.reason for o in capped)
    settings = fan.settings()
    counter = LedgerRunSlots(fan.bench.clients(settings).ledger_table(), planned.report.run_id)
    assert counter.count() == 25


def test_plan_within_the_cap_needs_no_counter(fan: FanBench) -> None:
    fan.bench.load(generated(vms=20))

    planned, _ = fan.sweep_and_drain(BACKUPWARDEN_MAX_TRIGGERS_PER_RUN="20")

    assert planned.cap is None
    assert sum(fan.accepted_posts().values()) == 20
    counter = LedgerRunSlots(fan.bench.clients(fan.settings()).ledger_table(), planned.report.run_id)
    assert counter.count() == 0


# --- 5. pacing ---------------------------------------------------------------------------------------
def test_pacing_keeps_a_50_vm_burst_under_the_write_bucket_without_a_429(fan: FanBench) -> None:
    scenario = generated(vms=50)
    scenario["realism"] = {"throttle": {"write": {"capacity": 20, "refill_per_s": 5}}}
    fan.bench.load(scenario)

    started = time.monotonic()
    fan.sweep_and_drain(workers=16, BACKUPWARDEN_ARM_WRITE_BUCKET="20/5")
    paced_s = time.monotonic() - started

    statuses = Counter(entry.status for entry in fan.bench.requests())
    assert statuses[429] == 0
    assert fan.accepted_posts() == Counter(dict.fromkeys(fan.stuck_names(), 1))
    assert paced_s >= (50 - 20) / 5 * 0.9, "30 writes past the bucket's 20 wait for its refill"

    # the emulated bucket is really that small: 30 writes at once from a client without pacing
    settings = fan.settings()
    unpaced = RecoveryServicesBackupClient(
        StaticTokenCredential("x"),
        SUB0,
        base_url=settings.arm_endpoint,
        connection_verify=settings.connection_verify,
        credential_scopes=[f"{settings.arm_endpoint}/.default"],
        retry_total=0,
    )
    request = BackupStatusRequest(resource_type="VM", resource_id=a_vm_id(fan))
    with unpaced, ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: _status_of(unpaced, request), range(30)))
    assert 429 in answers


def _status_of(client: RecoveryServicesBackupClient, request: BackupStatusRequest) -> int:
    try:
        client.backup_status.get("westeurope", request)
    except HttpResponseError as exc:
        return int(exc.status_code or 0)
    return 200


class RecordedSleep:
    """A clock and a sleep for a pacer under test: sleeping records the wait and moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def backup_status(clients: AzureClients, vm_id: str) -> None:
    """A write (POST) that changes nothing: the protection check of one VM."""
    request = BackupStatusRequest(resource_type="VM", resource_id=vm_id)
    clients.backup(SUB0).backup_status.get("westeurope", request)


def a_vm_id(fan: FanBench) -> str:
    with fan.emulator.lock:
        return next(iter(fan.emulator.estate.vms.values())).id


def test_pacing_resyncs_a_bucket_down_to_the_servers_remaining_writes(fan: FanBench) -> None:
    scenario = generated(vms=1)
    scenario["realism"] = {"throttle": {"write": {"capacity": 10, "refill_per_s": 0.01}}}
    fan.bench.load(scenario)
    settings = fan.settings(BACKUPWARDEN_ARM_WRITE_BUCKET="10/0.01")
    vm_id = a_vm_id(fan)
    with AzureClients(settings, pacer=Pacer(writes=BucketRate(10, 0.01))) as other_process:
        for _ in range(6):
            backup_status(other_process, vm_id)  # the server's bucket: 4 left
    fake = RecordedSleep()
    pacer = Pacer(writes=BucketRate(10, 0.01), clock=fake.clock, sleep=fake.sleep)

    with AzureClients(settings, pacer=pacer) as clients:
        backup_status(clients, vm_id)
        bucket = pacer.bucket(SUB0, "write")
        margin = RESYNC_MARGIN * 10
        assert bucket.tokens == pytest.approx(3 - margin), (
            "resynced from 9 down to the server's 3 (less a margin)"
        )
        for _ in range(2):
            backup_status(clients, vm_id)
        assert fake.waits == []
        bucket.acquire()  # the 10th write: the server's bucket holds 1, this one keeps the margin

    assert fake.waits == [pytest.approx(margin / 0.01, rel=0.01)]
    assert Counter(e.status for e in fan.bench.requests()) == Counter({200: 9})


def test_pacing_pauses_a_bucket_for_a_429s_retry_after(fan: FanBench) -> None:
    fan.bench.load(generated(vms=1))
    fan.emulator.faults.add(
        Fault(path_regex=f"^/subscriptions/{SUB0}$", status=429, remaining=1, retry_after_s=7)
    )
    fake = RecordedSleep()
    pacer = Pacer(clock=fake.clock, sleep=fake.sleep)

    pipeline: Pipeline[Any, Any] = Pipeline(
        RequestsTransport(connection_verify=fan.bench.server.ca_bundle),
        policies=[
            BearerTokenCredentialPolicy(StaticTokenCredential("x"), "https://management.azure.com/.default"),
            PacingPolicy(pacer),
        ],
    )
    url = f"{fan.bench.server.endpoint}/subscriptions/{SUB0}?api-version=2022-12-01"
    with pipeline:
        answered = pipeline.run(HttpRequest("GET", url)).http_response.status_code
        assert answered == 429
        pacer.bucket(SUB0, "read").acquire()  # another thread's next read
        assert fake.waits == [pytest.approx(7)]
        assert pipeline.run(HttpRequest("GET", url)).http_response.status_code == 200


def test_pacing_waits_for_resource_graphs_quota_window(fan: FanBench) -> None:
    scenario = generated(vms=1)
    scenario["resource_graph"] = {"quota_per_5s": 2}
    fan.bench.load(scenario)
    fake = RecordedSleep()
    pacer = Pacer(clock=fake.clock, sleep=fake.sleep)

    with AzureClients(fan.settings(), pacer=pacer) as clients:
        query = QueryRequest(subscriptions=[SUB0], query="resources | project id")
        for _ in range(2):
            clients.resource_graph().resources(query)
        pacer.resource_graph.acquire()  # the third query of the window

    assert len(fake.waits) == 1 and 0 < fake.waits[0] <= 5
    assert [e.status for e in fan.bench.requests()] == [200, 200]


def test_token_bucket_is_shared_safely_by_threads() -> None:
    bucket = TokenBucket(BucketRate(capacity=5, refill_per_s=100))
    tickets: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        ticket = bucket.acquire()
        with lock:
            tickets.append(ticket)

    started = time.monotonic()
    threads = [threading.Thread(target=take) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    elapsed = time.monotonic() - started

    assert sorted(tickets) == list(range(1, 31)), "every taker got its own token"
    assert elapsed >= (30 - 5) / 100 * 0.9, "25 takers past the capacity waited for the refill"
    assert bucket.tokens <= 5
