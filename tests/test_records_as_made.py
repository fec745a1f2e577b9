"""Decisions are recorded as they are made, and a later delivery or run never hides a `triggered`.

The functions run as the host calls them, against the emulator (HTTPS) and Azurite; a run is killed
by raising a BaseException from one of our components (nothing of ours catches it), as a timeout
or a crash would end it. What the outbox holds is read back with the de-duplicated view's rule:
the latest row per RecordId.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.functions.queue import QueueMessage as HostQueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

import function_app
from backupwarden.adapters.azure.discovery import DiscoveryResult, ResourceGraphDiscovery
from backupwarden.adapters.azure.recovery_services import RecoveryServices
from backupwarden.adapters.storage.ledger import DEFAULT_IN_PROGRESS_TTL, Ledger, LedgerStatus
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.app import forget_shared_pacers
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Result
from backupwarden.flows.backup_now import LEDGER_ACTION
from backupwarden.flows.sweep.fanout import SweepItemFailed
from backupwarden.flows.sweep.messages import SweepWorkItem
from tests.sweep_fixtures import BACKUP_POST, SweepBench, vm_name


class RunKilled(BaseException):
    """Stands for the process dying at that line (a timeout, a crash): nothing of ours catches it."""


def estate(vms: int, start: str | None = None) -> dict[str, Any]:
    """Every VM stuck, configured 3 h before the clock start; a backup job runs for three hours."""
    return {
        "clock": {"start": start or datetime.now(UTC).isoformat()},
        "timings": {"retry_after_s": 0, "backup_job_s": 3 * 3600},
        "generate": {
            "subscriptions": 1,
            "vaults_per_subscription": 1,
            "vms_per_vault": vms,
            "stuck_percent": 100,
        },
    }


class Recorded:
    """The bench with its own outbox table and sweep queue, its settings as the app settings."""

    def __init__(self, bench: SweepBench) -> None:
        self.bench = bench
        self.outbox_table = f"outbox{uuid.uuid4().hex[:12]}"
        self.queue_name = f"sweep-{uuid.uuid4().hex[:10]}"

    def env(self, inline_max: int) -> dict[str, str]:
        return self.bench.env(
            BACKUPWARDEN_OUTBOX_TABLE=self.outbox_table,
            BACKUPWARDEN_SWEEP_QUEUE=self.queue_name,
            BACKUPWARDEN_SWEEP_INLINE_MAX=str(inline_max),
        )

    def latest_records(self) -> dict[str, dict[str, Any]]:
        """VM name -> the latest outbox row of its RecordId (what the de-duplicated view shows)."""
        settings = self.bench.settings(BACKUPWARDEN_OUTBOX_TABLE=self.outbox_table)
        outbox = Outbox(self.bench.clients(settings).outbox_table())
        with contextlib.suppress(ResourceNotFoundError):
            rows = sorted(
                (p.row for p in outbox.pending(AUTOMATION_ACTIONS.stream)), key=lambda r: r["TimeGenerated"]
            )
            latest = {row["RecordId"]: row for row in rows if row["VmId"]}
            return {vm_name(row["VmId"]): row for row in latest.values()}
        return {}

    def accepted_posts(self) -> Counter[str]:
        return Counter(
            match["vm"]
            for entry in self.bench.requests()
            if entry.method == "POST" and entry.status == 202 and (match := BACKUP_POST.search(entry.path))
        )

    def queue(self) -> QueueClient:
        return QueueClient.from_connection_string(self.bench.storage, self.queue_name)

    def close(self) -> None:
        with TableServiceClient.from_connection_string(self.bench.storage) as service:
            service.delete_table(self.outbox_table)
        for suffix in ("", "-poison"):
            queue = QueueClient.from_connection_string(self.bench.storage, self.queue_name + suffix)
            with queue, contextlib.suppress(ResourceNotFoundError):
                queue.delete_queue()


@pytest.fixture
def recorded(sweep_bench: SweepBench) -> Iterator[Recorded]:
    forget_shared_pacers()
    bench = Recorded(sweep_bench)
    yield bench
    bench.close()
    forget_shared_pacers()


def use_app_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@functools.cache
def functions() -> dict[str, Callable[..., Any]]:
    app = importlib.reload(function_app).app
    return {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}


def die_after_triggers(monkeypatch: pytest.MonkeyPatch, survived: int) -> None:
    """The process dies at the "Backup now" after the first `survived` (and stays dead)."""
    trigger = RecoveryServices.trigger_backup
    calls = Counter[str]()
    lock = threading.Lock()  # the sweep's worker threads trigger at once

    def dying_trigger(self: RecoveryServices, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls["trigger"] += 1
            count = calls["trigger"]
        if count > survived:
            raise RunKilled(f"killed at trigger {count}")
        return trigger(self, *args, **kwargs)

    monkeypatch.setattr(RecoveryServices, "trigger_backup", dying_trigger)


def assert_every_trigger_recorded(recorded: Recorded, triggers: int) -> None:
    posted = recorded.accepted_posts()
    assert sum(posted.values()) == triggers
    latest = recorded.latest_records()
    for vm in posted:
        row = latest.get(vm)
        assert row is not None, f"{vm} was triggered but has no record"
        assert row["Result"] == Result.TRIGGERED.value, row
        assert started_job(recorded, row) in vm_backup_jobs(recorded, vm), row


OPERATION_IN_REASON = re.compile(r"\(operation ([0-9a-f-]+)\)")


def started_job(recorded: Recorded, row: dict[str, Any]) -> str | None:
    """The backup job a `triggered` record names: its JobId, or, for a POST sent alone (no job id
    yet), the job of the operation its reason names, as the service holds it."""
    if row["JobId"]:
        return str(row["JobId"])
    found = OPERATION_IN_REASON.search(str(row["Reason"]))
    assert found, f"a trigger without a job id names its operation: {row}"
    emulator = recorded.bench.emulator
    with emulator.lock:
        operation = emulator.estate.operations.get(found.group(1))
        return operation.job_id if operation is not None else None


def vm_backup_jobs(recorded: Recorded, vm: str) -> set[str]:
    """The ids of the VM's Backup jobs, as the service holds them."""
    emulator = recorded.bench.emulator
    with emulator.lock:
        return {
            job.job_id
            for job in emulator.estate.jobs.values()
            if job.operation == "Backup" and job.vm.name.lower() == vm.lower()
        }


def test_a_timer_run_killed_part_way_keeps_the_record_of_every_trigger_it_made(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded.bench.load(estate(vms=12))
    use_app_settings(monkeypatch, recorded.env(inline_max=100))  # handled within the timer run
    die_after_triggers(monkeypatch, survived=5)

    with pytest.raises(RunKilled):
        functions()["sweep"](TimerRequest(past_due=False))

    assert_every_trigger_recorded(recorded, triggers=5)


def test_a_sweep_worker_killed_part_way_keeps_the_record_of_every_trigger_it_made(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded.bench.load(estate(vms=12))
    use_app_settings(monkeypatch, recorded.env(inline_max=0))  # fanned out: one work item
    functions()["sweep"](TimerRequest(past_due=False))
    with recorded.queue() as queue:
        (message,) = list(queue.receive_messages(max_messages=32, visibility_timeout=300))
    die_after_triggers(monkeypatch, survived=5)

    with pytest.raises(RunKilled):
        functions()["sweep_worker"](
            HostQueueMessage(id=message.id, body=decoded(message.content), dequeue_count=1)
        )

    assert_every_trigger_recorded(recorded, triggers=5)


def decoded(content: Any) -> str:
    """The body as the host hands it to the trigger (the queue holds it base64-encoded)."""
    return base64.b64decode(str(content)).decode("utf-8")


def test_a_redelivery_restates_the_trigger_an_earlier_delivery_made(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded.bench.load(estate(vms=4))
    use_app_settings(monkeypatch, recorded.env(inline_max=0))
    functions()["sweep"](TimerRequest(past_due=False))
    with recorded.queue() as queue:
        (message,) = list(queue.receive_messages(max_messages=32, visibility_timeout=300))
    complete = Ledger.complete
    calls = Counter[str]()

    def failing_first_complete(self: Ledger, *args: Any, **kwargs: Any) -> None:
        calls["complete"] += 1
        if calls["complete"] == 1:
            raise RuntimeError("worker failed after the trigger")
        complete(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "complete", failing_first_complete)

    def deliver(count: int) -> None:
        host_message = HostQueueMessage(id=message.id, body=decoded(message.content), dequeue_count=count)
        functions()["sweep_worker"](host_message)

    with pytest.raises(SweepItemFailed):
        deliver(1)
    deliver(2)

    posted = recorded.accepted_posts()
    assert posted == Counter(dict.fromkeys(posted, 1)) and len(posted) == 4
    latest = recorded.latest_records()
    assert {vm: row["Result"] for vm, row in latest.items()} == dict.fromkeys(posted, Result.TRIGGERED.value)
    assert all(started_job(recorded, row) in vm_backup_jobs(recorded, vm) for vm, row in latest.items()), (
        latest
    )


def test_a_later_run_records_the_trigger_of_a_run_that_died_holding_its_claim(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = recorded.bench
    bench.load(estate(vms=3, start="2026-11-25T08:00:00Z"))
    complete = Ledger.complete

    def dead_before_settling(self: Ledger, *args: Any, **kwargs: Any) -> None:
        raise RunKilled("killed after the trigger, before its claim was completed")

    monkeypatch.setattr(Ledger, "complete", dead_before_settling)
    dead_run = "dead-run"
    with pytest.raises(RunKilled):
        bench.sweep().run(dead_run)
    monkeypatch.setattr(Ledger, "complete", complete)
    triggered_by_dead_run = set(recorded.accepted_posts())
    assert triggered_by_dead_run
    bench.emulator.advance((DEFAULT_IN_PROGRESS_TTL + timedelta(minutes=1)).total_seconds())
    discover = ResourceGraphDiscovery.find_stuck_initial_backups

    def lagging(self: ResourceGraphDiscovery, subscriptions: list[str]) -> DiscoveryResult:
        """Resource Graph trails ARM: it does not show the running backups yet."""
        found = discover(self, subscriptions)
        return replace(found, candidates=[replace(c, job_in_progress=False) for c in found.candidates])

    monkeypatch.setattr(ResourceGraphDiscovery, "find_stuck_initial_backups", lagging)

    report = bench.sweep().run("later-run")

    assert recorded.accepted_posts() == Counter(dict.fromkeys(triggered_by_dead_run, 1)), "none sent again"
    with bench.emulator.lock:
        jobs = {
            job.vm.name: job.job_id
            for job in bench.emulator.estate.jobs.values()
            if job.operation == "Backup"
        }
    ledger = Ledger(bench.clients(bench.settings()).ledger_table())
    for outcome in report.outcomes:
        name = vm_name(outcome.vm_id)
        if name.lower() not in triggered_by_dead_run:
            continue
        assert (outcome.run_id, outcome.result, outcome.job_id) == (dead_run, Result.TRIGGERED, jobs[name]), (
            outcome
        )
        record = ledger.record(outcome.vm_id, LEDGER_ACTION, bench.emulator.now().date())
        assert record is not None and (record.status, record.job_id) == (LedgerStatus.COMPLETED, jobs[name])


def test_a_duplicate_delivery_restates_the_trigger_the_first_copy_made(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded.bench.load(estate(vms=3))
    use_app_settings(monkeypatch, recorded.env(inline_max=0))
    functions()["sweep"](TimerRequest(past_due=False))
    with recorded.queue() as queue:
        (message,) = list(queue.receive_messages(max_messages=32, visibility_timeout=300))

    for _ in range(2):  # the same work item delivered twice, each as a first delivery
        host_message = HostQueueMessage(id=str(uuid.uuid4()), body=decoded(message.content), dequeue_count=1)
        functions()["sweep_worker"](host_message)

    posted = recorded.accepted_posts()
    assert posted == Counter(dict.fromkeys(posted, 1)) and len(posted) == 3
    latest = recorded.latest_records()
    assert {vm: row["Result"] for vm, row in latest.items()} == dict.fromkeys(posted, Result.TRIGGERED.value)
    assert all(row["JobId"] for row in latest.values()), latest


def test_a_duplicate_delivery_meeting_its_runs_claim_in_flight_is_redelivered_not_recorded_skipped(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = recorded.bench
    bench.load(estate(vms=3))
    use_app_settings(monkeypatch, recorded.env(inline_max=0))
    functions()["sweep"](TimerRequest(past_due=False))
    with recorded.queue() as queue:
        (message,) = list(queue.receive_messages(max_messages=32, visibility_timeout=300))
    body = decoded(message.content)
    item = SweepWorkItem.from_json(body)
    in_flight = item.candidates[0].vm_id
    ledger = Ledger(bench.clients(bench.settings()).ledger_table())
    # another delivery of the same work item holds the claim and is triggering right now
    claim = ledger.claim(in_flight, LEDGER_ACTION, bench.emulator.now().date(), item.run_id, max_attempts=3)

    with pytest.raises(SweepItemFailed):
        functions()["sweep_worker"](HostQueueMessage(id="duplicate", body=body, dequeue_count=1))

    latest = recorded.latest_records()
    assert vm_name(in_flight) not in latest  # before: "skipped: another run is triggering this VM right now"
    assert {row["Result"] for row in latest.values()} == {Result.TRIGGERED.value} and len(latest) == 2

    ledger.complete(claim, "job-of-the-other-delivery", triggered_by="Sweep")
    functions()["sweep_worker"](HostQueueMessage(id="duplicate", body=body, dequeue_count=2))

    latest = recorded.latest_records()
    assert latest[vm_name(in_flight)]["Result"] == Result.TRIGGERED.value
    assert latest[vm_name(in_flight)]["JobId"] == "job-of-the-other-delivery"
    assert in_flight.rsplit("/", 1)[-1] not in recorded.accepted_posts()  # this delivery sent nothing for it
