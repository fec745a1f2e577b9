"""The fault matrix of issue 15: every row a fault, every row the same verdict, 0 duplicate triggers and
0 lost records.

Each sweep row takes one vault of the module's estate (tests/fault_fixtures.py: VMS_PER_VAULT VMs stuck
in their initial backup), delivers its sweep work through the functions as the host calls them, under
the row's fault, lets the host do what it does next (redeliver a killed or failed message), then
ships the outbox through `ship_outcomes` and reads Log Analytics' de-duplicated views. Each new-VM row
creates VMs of its own (their Event Grid events published) and puts them through `vm_written` and
`protect_vm` the same way. The storage row takes the last vault and two new VMs through an outage of
Azurite's queue and table services that starts in the middle of a delivery. The counts come from the
service's own state (the jobs it started, the requests it answered) and from the workspace, never
from what the app believes:

- duplicate triggers: more than one backup job started, or more than one "Backup now" (or protection
  PUT) answered 202, for a VM today;
- lost records: a VM whose `triggered` (sweep) or `protected` (new VM) decision is not in
  BackupAutomationActions_CL exactly once, or a finished backup job missing from BackupJobOutcomes_CL.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage as HostQueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

from backupwarden import app as wiring
from backupwarden.domain.alert_rules import BACKUP_FAILED
from backupwarden.domain.kql import load_kql
from backupwarden.domain.records import Candidate
from backupwarden.flows.sweep.messages import SweepWorkItem
from emulator import EmulatorServer
from emulator.core.realism import Fault
from emulator.estate import FailurePlan
from functions.context import StorageUnavailable
from tests.alert_webhook_fixtures import http_request
from tests.fault_fixtures import (
    AFTER_CLAIM,
    AFTER_PROTECT,
    AFTER_TRIGGER,
    BEFORE_RECORD,
    KillSwitch,
    StorageCut,
    StorageGate,
    at_once,
    candidates_by_vault,
    create_new_vms,
    fault_bench,
    send_to_protect_queue,
    send_to_sweep_queue,
    survived_by_host,
)
from tests.new_vm_fixtures import PROTECT_PUT, grid_event
from tests.remediation_fixtures import dimensions
from tests.sweep_fixtures import vm_name
from tests.test_unkind_end_to_end import accepted_backup_posts, decisions_of
from tests.unkind_fixtures import Function, QueueDrain, UnkindBench, functions

INGESTION_PATH = r"^/dataCollectionRules/[^/]+/streams/"
NEW_VM_VAULT = 9  # the vault new VMs are tagged for (their region holds two generated vaults)
STORAGE_VAULT = 9  # the sweep rows take vaults 0-8
REMEDIATION_VAULTS = (10, 11)  # one per remediation row
RETRYABLE_FAILURE = "BackUpOperationFailed"  # remediation retries it once


@pytest.fixture(scope="module")
def bench(emulator_server: EmulatorServer, azurite: str) -> Iterator[UnkindBench]:
    with fault_bench(emulator_server, azurite) as opened:
        yield opened


@pytest.fixture(scope="module")
def fns() -> Iterator[dict[str, Function]]:
    yield functions()
    import function_app

    importlib.reload(function_app)  # a fresh app for whoever indexes it next


@pytest.fixture(scope="module")
def vaults(bench: UnkindBench) -> list[list[Candidate]]:
    return candidates_by_vault(bench)


@dataclass
class Row:
    """One row's vault, what the host did with its work, and when it started."""

    bench: UnkindBench
    fns: dict[str, Function]
    candidates: list[Candidate]
    started: datetime

    @property
    def vms(self) -> set[str]:
        return {vm_name(c.vm_id) for c in self.candidates}

    @property
    def vault_name(self) -> str:
        return self.candidates[0].vault_id.rstrip("/").rsplit("/", 1)[-1]

    def item(self, candidates: list[Candidate] | None = None, run_id: str | None = None) -> str:
        chosen = tuple(self.candidates if candidates is None else candidates)
        return SweepWorkItem(run_id or str(uuid.uuid4()), False, chosen).to_json()

    def drain(self, worker: Function | None = None) -> None:
        """Deliver every sweep message as the host does (redelivered after a failure or a kill)."""
        fns = self.fns
        work = worker or fns["sweep_worker"]
        QueueDrain(self.bench.storage, self.bench.sweep_queue, work, fns["sweep_worker_poison"]).drain()

    def fault(self, fault: Fault) -> None:
        """A fault on this row's vault alone (ahead of any other)."""
        with self.bench.emulator.lock:
            self.bench.emulator.faults.set([fault, *self.bench.emulator.faults.list()])

    def ship(self, times: int = 1) -> None:
        """The outcomes timer, once every job of the row has ended."""
        ship_when_jobs_ended(self.bench, self.fns, self.started, times)


def wait_for_jobs_to_end(bench: UnkindBench, since: datetime) -> None:
    with bench.emulator.lock:
        starts = [j.start_time for j in bench.emulator.estate.jobs.values() if j.start_time >= since]
    if starts:
        job_s = bench.emulator.estate.timings.backup_job_s
        wait = (max(starts) - bench.emulator.now()).total_seconds() + job_s + 0.5
        time.sleep(max(0.0, wait))


def ship_when_jobs_ended(
    bench: UnkindBench, fns: dict[str, Function], since: datetime, times: int = 1
) -> None:
    """The outcomes timer, `times` runs, once every job started since `since` has ended."""
    wait_for_jobs_to_end(bench, since)
    for _ in range(times):
        fns["ship_outcomes"](TimerRequest(past_due=False))


def statuses_since(row: Row, path_part: str) -> list[int]:
    """The statuses the service answered on this row's paths holding `path_part` since it started."""
    return [
        e.status
        for e in row.bench.requests()
        if e.at >= row.started
        and path_part.lower() in e.path.lower()
        and row.vault_name.lower() in e.path.lower()
    ]


def send_once(row: Row) -> None:
    send_to_sweep_queue(row.bench, [row.item()])
    row.drain()


def kill(step: str) -> Callable[[Row, pytest.MonkeyPatch], None]:
    def killed_once(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
        switch = KillSwitch(step, vm_name(row.candidates[0].vm_id))
        switch.install(monkeypatch)
        send_to_sweep_queue(row.bench, [row.item()])
        row.drain(survived_by_host(row.fns["sweep_worker"]))
        assert switch.fired, f"the run was never killed {step}"

    return killed_once


def duplicated_and_reordered(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of the vault's work items (one VM each, one run) on the queue 3 times, shuffled."""
    run_id = str(uuid.uuid4())
    bodies = [row.item([c], run_id) for c in row.candidates] * 3
    random.Random(15).shuffle(bodies)
    send_to_sweep_queue(row.bench, bodies)
    row.drain()


def overlapping_sweeps(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sweep runs handle the same VMs at the same moment, on two threads."""
    worker = row.fns["sweep_worker"]
    messages = [
        HostQueueMessage(id=str(uuid.uuid4()), body=row.item(), dequeue_count=1, pop_receipt="p")
        for _ in range(2)
    ]
    results = at_once(*(lambda m=m: worker(m) for m in messages))
    assert results == [None, None], results


def lost_answers(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    names = "|".join(sorted(row.vms))
    row.fault(
        Fault(rf"/protectedItems/[^/]*;({names})/backup$", method="POST", lose_answer=True, remaining=3)
    )
    send_once(row)
    assert 0 in statuses_since(row, "/backup"), "answers were lost"


def storm(status: int, burst: int) -> Callable[[Row, pytest.MonkeyPatch], None]:
    def under_storm(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
        row.fault(
            Fault(f"/vaults/{row.vault_name}/", status=status, remaining=1, burst=burst, retry_after_s=1)
        )
        send_once(row)
        assert statuses_since(row, f"/vaults/{row.vault_name}/").count(status) == burst, "the storm came"

    return under_storm


def logs_ingestion_outage(row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logs Ingestion answers 503 through an hour of outcome runs (every 5 minutes), then comes back."""
    send_once(row)
    outage = Fault(INGESTION_PATH, status=503)
    row.fault(outage)
    monkeypatch.setenv("BACKUPWARDEN_HTTP_RETRY_TOTAL", "0")  # each run fails fast; the hour is its runs
    try:
        row.ship(times=12)
    finally:
        with row.bench.emulator.lock:
            row.bench.emulator.faults.set([f for f in row.bench.emulator.faults.list() if f is not outage])
        monkeypatch.undo()
    failed_uploads = [e for e in row.bench.uploads() if e.at >= row.started and e.status == 503]
    assert len(failed_uploads) >= 12, "every run of the hour met the outage"


ROWS: dict[str, Callable[[Row, pytest.MonkeyPatch], None]] = {
    "kill-after-claim": kill(AFTER_CLAIM),
    "kill-after-trigger": kill(AFTER_TRIGGER),
    "kill-before-record": kill(BEFORE_RECORD),
    "duplicate-reorder-x3": duplicated_and_reordered,
    "overlapping-sweeps": overlapping_sweeps,
    "lost-answers": lost_answers,
    "429-storm": storm(429, burst=4),
    "5xx-burst": storm(503, burst=3),
    "logs-ingestion-outage-1h": logs_ingestion_outage,
}


@pytest.mark.parametrize("fault", list(ROWS))
def test_no_duplicate_trigger_and_no_lost_record(
    bench: UnkindBench,
    fns: dict[str, Function],
    vaults: list[list[Candidate]],
    fault: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = Row(bench, fns, vaults[list(ROWS).index(fault)], bench.emulator.now())
    ROWS[fault](row, monkeypatch)
    monkeypatch.undo()  # the host's next runs are the plain app's
    row.ship()

    assert_swept_once_and_recorded(row)


def assert_swept_once_and_recorded(row: Row, source: str | None = None) -> None:
    """One backup job per VM of the row, its `triggered` decision (of `source`, default any) recorded once."""
    bench = row.bench
    jobs = bench.jobs_of("Backup", row.started)
    assert {vm: jobs[vm] for vm in row.vms} == dict.fromkeys(row.vms, 1), "one backup job per VM"
    accepted = accepted_backup_posts(bench, row.started)
    assert all(accepted[vm] <= 1 for vm in row.vms), accepted

    of_source = f" | where Source == '{source}'" if source else ""
    decisions = bench.query(load_kql("dedupe_automation_actions") + of_source)
    recorded = {vm: dict(decisions_of(decisions, vm)) for vm in sorted(row.vms)}
    lost = {vm for vm, results in recorded.items() if results.get("triggered") != 1}
    assert not lost, f"a decision lost: {recorded}; recorded instead: {reasons(decisions, lost)}"
    assert_job_outcomes_shipped(bench, row.started, row.vms)


def reasons(decisions: list[dict[str, Any]], vms: set[str]) -> dict[str, list[str]]:
    """What was recorded for each of `vms` (result: reason), for a failure's message."""
    return {
        vm: [
            f"{r['Result']}: {r['Reason']}" for r in decisions if r["VmId"] and vm_name(str(r["VmId"])) == vm
        ]
        for vm in sorted(vms)
    }


def assert_job_outcomes_shipped(bench: UnkindBench, since: datetime, vms: set[str]) -> None:
    with bench.emulator.lock:
        started = {
            j.job_id.lower()
            for j in bench.emulator.estate.jobs.values()
            if j.start_time >= since and j.operation == "Backup" and j.vm.name in vms
        }
    outcomes = {str(r["JobId"]).lower() for r in bench.query(load_kql("dedupe_job_outcomes"))}
    assert started <= outcomes, f"job outcomes lost: {started - outcomes}"


# --- new VMs: Event Grid's vm_written, then the protect queue's protect_vm ---------------------------
@dataclass
class NewVmRow:
    """One row's new VMs (name -> id) and when the row started."""

    bench: UnkindBench
    fns: dict[str, Function]
    vm_ids: dict[str, str]
    started: datetime

    def events(self) -> list[dict[str, Any]]:
        """Every write event the VMs' creation published (two per VM)."""
        return [event for vm_id in self.vm_ids.values() for event in self.bench.events_for(vm_id)]

    def deliver_events(self, events: list[dict[str, Any]] | None = None) -> None:
        for event in self.events() if events is None else events:
            self.fns["vm_written"](grid_event(event))

    def drain(self, worker: Function | None = None) -> None:
        """Deliver every protect message as the host does (redelivered after a failure or a kill)."""
        fns = self.fns
        work = worker or fns["protect_vm"]
        QueueDrain(self.bench.storage, self.bench.protect_queue, work, fns["protect_vm_poison"]).drain()


def events_duplicated_and_reordered(row: NewVmRow, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every VM's write events delivered by Event Grid 3 times, shuffled among the other VMs' events."""
    events = row.events() * 3
    random.Random(15).shuffle(events)
    row.deliver_events(events)
    row.drain()


def work_items_duplicated_and_reordered(row: NewVmRow, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each VM's work item on the protect queue 3 times, shuffled (handled 4 at a time)."""
    bodies = [row.bench.work_item(vm_id).to_json() for vm_id in row.vm_ids.values()] * 3
    random.Random(15).shuffle(bodies)
    send_to_protect_queue(row.bench, bodies)
    row.drain()


def new_vm_kill(
    step: str, claim_ttl: timedelta | None = None
) -> Callable[[NewVmRow, pytest.MonkeyPatch], None]:
    """A protect_vm run killed at `step` for the row's first VM; the queue redelivers. `claim_ttl`
    shortens how long a dead run's protect claim holds the VM (15 minutes), which the redelivery,
    a run of another id, waits out by requeueing."""

    def killed_once(row: NewVmRow, monkeypatch: pytest.MonkeyPatch) -> None:
        row.deliver_events()
        if claim_ttl is not None:
            monkeypatch.setattr(wiring, "PROTECT_CLAIM_TTL", claim_ttl)
        switch = KillSwitch(step, next(iter(row.vm_ids)))
        switch.install(monkeypatch)
        row.drain(survived_by_host(row.fns["protect_vm"]))
        assert switch.fired, f"the run was never killed {step}"

    return killed_once


NEW_VM_ROWS: dict[str, Callable[[NewVmRow, pytest.MonkeyPatch], None]] = {
    "vm-written-duplicate-reorder-x3": events_duplicated_and_reordered,
    "protect-vm-duplicate-reorder-x3": work_items_duplicated_and_reordered,
    "new-vm-kill-after-claim": new_vm_kill(AFTER_CLAIM, claim_ttl=timedelta(seconds=3)),
    "new-vm-kill-after-protection": new_vm_kill(AFTER_PROTECT),
    "new-vm-kill-after-trigger": new_vm_kill(AFTER_TRIGGER),
    "new-vm-kill-before-record": new_vm_kill(BEFORE_RECORD),
}


@pytest.mark.parametrize("fault", list(NEW_VM_ROWS))
def test_new_vms_no_duplicate_protection_or_trigger_and_no_lost_record(
    bench: UnkindBench, fns: dict[str, Function], fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_queue(bench, bench.protect_queue)  # a failed row's leftovers do not reach this one
    index = list(NEW_VM_ROWS).index(fault)
    started = bench.emulator.now()
    row = NewVmRow(
        bench, fns, create_new_vms(bench, [f"nv{index}-{i}" for i in range(3)], NEW_VM_VAULT), started
    )
    NEW_VM_ROWS[fault](row, monkeypatch)
    monkeypatch.undo()
    ship_when_jobs_ended(bench, fns, row.started)

    assert_protected_once_and_recorded(row)


def clear_queue(bench: UnkindBench, queue_name: str) -> None:
    with (
        QueueClient.from_connection_string(bench.storage, queue_name) as queue,
        contextlib.suppress(ResourceNotFoundError),
    ):
        queue.clear_messages()


def assert_protected_once_and_recorded(row: NewVmRow) -> None:
    bench, names = row.bench, set(row.vm_ids)
    with bench.emulator.lock:
        items = bench.emulator.estate.protected_items
        unprotected = sorted(name for name, vm_id in row.vm_ids.items() if vm_id not in items)
    assert not unprotected, f"not protected: {unprotected}"
    puts = {name: [e.status for e in bench.calls(PROTECT_PUT, vm_id)] for name, vm_id in row.vm_ids.items()}
    assert all(statuses.count(202) <= 1 for statuses in puts.values()), f"a second protection: {puts}"
    jobs = bench.jobs_of("Backup", row.started)
    assert {vm: jobs[vm] for vm in names} == dict.fromkeys(names, 1), "one initial backup per VM"
    accepted = accepted_backup_posts(bench, row.started)
    assert all(accepted[vm] <= 1 for vm in names), accepted

    decisions = bench.query(load_kql("dedupe_automation_actions"))
    recorded = {vm: dict(decisions_of(decisions, vm)) for vm in sorted(names)}
    # at least once: two deliveries of one VM's items (its two write events) may both record the one
    # protection and its job when they race; a second record is not a lost one
    lost = {vm for vm, results in recorded.items() if not results.get("protected")}
    assert not lost, f"a decision lost: {recorded}; recorded instead: {reasons(decisions, lost)}"
    assert_job_outcomes_shipped(bench, row.started, names)


# --- storage down and back -------------------------------------------------------------------------
def deliver_waiting(bench: UnkindBench, queue_name: str, function: Function) -> list[str]:
    """Deliver each visible message once, as the host does; a failed one is left on the queue (visible
    again at once). Returns the class name of what each delivery raised ("" when it settled)."""
    raised = []
    with QueueClient.from_connection_string(bench.storage, queue_name) as queue:
        for message in list(queue.receive_messages(max_messages=32, visibility_timeout=120)):
            body = base64.b64decode(str(message.content)).decode("utf-8")
            delivery = HostQueueMessage(
                id=message.id, body=body, dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt
            )
            try:
                function(delivery)
            except Exception as exc:
                raised.append(type(exc).__name__)
                queue.update_message(message, pop_receipt=message.pop_receipt, visibility_timeout=0)
            else:
                raised.append("")
                queue.delete_message(message)
    return raised


def waiting(bench: UnkindBench, queue_name: str) -> int:
    with QueueClient.from_connection_string(bench.storage, queue_name) as queue:
        return queue.get_queue_properties().approximate_message_count or 0


def test_storage_down_and_back_no_duplicate_and_no_lost_record(
    bench: UnkindBench,
    fns: dict[str, Function],
    vaults: list[list[Candidate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Azurite's queues and tables unreachable from the middle of a sweep delivery and of a new-VM
    delivery, while a new VM's event arrives, for longer than the backups the deliveries started:
    every delivery fails retryably, none is acknowledged; when storage is back the host's redeliveries
    settle them, each VM once, each decision recorded."""
    storage = StorageGate(bench.storage)
    try:
        monkeypatch.setenv("AzureWebJobsStorage", storage.connection_string)
        monkeypatch.setenv("BACKUPWARDEN_HTTP_RETRY_TOTAL", "0")  # a refused connection fails at once
        swept = Row(bench, fns, vaults[STORAGE_VAULT], bench.emulator.now())
        vm_ids = create_new_vms(bench, ["store-a", "store-b"], NEW_VM_VAULT)
        first, second = (NewVmRow(bench, fns, {name: vm_id}, swept.started) for name, vm_id in vm_ids.items())
        first.deliver_events()  # store-a's work items wait on the protect queue
        send_to_sweep_queue(bench, [swept.item()])

        with pytest.MonkeyPatch.context() as cut:  # down after the sweep's first "Backup now"
            StorageCut(AFTER_TRIGGER, vm_name(swept.candidates[0].vm_id), storage).install(cut)
            raised = deliver_waiting(bench, bench.sweep_queue, fns["sweep_worker"])
            assert raised == [StorageUnavailable.__name__]
        assert not storage.is_up
        for event in second.events():  # Event Grid's delivery meets the outage
            with pytest.raises(StorageUnavailable):
                fns["vm_written"](grid_event(event))
        storage.up()
        with pytest.MonkeyPatch.context() as cut:  # down again after store-a's protection PUT
            StorageCut(AFTER_PROTECT, "store-a", storage).install(cut)
            raised = deliver_waiting(bench, bench.protect_queue, fns["protect_vm"])
            assert len(raised) == 2 and all(raised), raised  # each raised: the queue redelivers it
        raised = deliver_waiting(bench, bench.sweep_queue, fns["sweep_worker"])
        assert raised == [StorageUnavailable.__name__]
        assert (waiting(bench, bench.sweep_queue), waiting(bench, bench.protect_queue)) == (1, 2), (
            "none acked"
        )

        wait_for_jobs_to_end(bench, swept.started)  # an outage longer than the backups it interrupted
        storage.up()
        second.deliver_events()  # Event Grid retries
        first.drain()  # the protect queue, both VMs' items
        swept.drain()
        ship_when_jobs_ended(bench, fns, swept.started)

        assert_protected_once_and_recorded(NewVmRow(bench, fns, vm_ids, swept.started))
        assert_swept_once_and_recorded(swept)
    finally:
        storage.close()


# --- remediation: the alert webhook, then the remediation queue's remediate ---------------------------
@pytest.fixture(scope="module")
def backup_failed_rule(bench: UnkindBench) -> None:
    bench.add_rules(None, BACKUP_FAILED)  # stored notifications, no webhook: the rows deliver them


def failure_alerts(row: Row) -> list[dict[str, Any]]:
    """The row's VMs' backups fail once (retryable): the sweep starts them, the outcomes are shipped and
    the "backup failed" rule fires, one notification per VM. Returns the notifications."""
    with row.bench.emulator.lock:
        for candidate in row.candidates:
            row.bench.emulator.estate.failure_plans[candidate.vm_id.lower()] = FailurePlan(
                RETRYABLE_FAILURE, 1
            )
    send_once(row)
    row.ship()
    row.bench.evaluate()
    alerts = [
        p for p in row.bench.notifications(BACKUP_FAILED.name) if vm_name(dimensions(p)["VmId"]) in row.vms
    ]
    assert len(alerts) == len(row.vms), alerts
    return alerts


def drain_remediation(row: Row) -> None:
    fns, bench = row.fns, row.bench
    QueueDrain(bench.storage, bench.remediation_queue, fns["remediate"], fns["remediate_poison"]).drain()


def webhook_deliveries_duplicated_and_reordered(row: Row, alerts: list[dict[str, Any]]) -> None:
    """The action group delivers each notification 3 times, shuffled."""
    deliveries = alerts * 3
    random.Random(15).shuffle(deliveries)
    statuses = [row.fns["alert_webhook"](http_request(alert)).status_code for alert in deliveries]
    assert statuses == [202] * len(deliveries), statuses
    drain_remediation(row)


def work_items_on_remediation_queue_x3(row: Row, alerts: list[dict[str, Any]]) -> None:
    """Each work item the webhook enqueued is on the remediation queue 3 times, shuffled."""
    for alert in alerts:
        assert row.fns["alert_webhook"](http_request(alert)).status_code == 202
    queue = row.bench.clients(row.bench.settings()).work_queue(row.bench.remediation_queue)
    messages = list(queue.receive_messages(max_messages=32, visibility_timeout=120))
    bodies = [str(m.content) for m in messages] * 3
    for message in messages:
        queue.delete_message(message)
    random.Random(15).shuffle(bodies)
    for body in bodies:
        queue.send_message(body)
    drain_remediation(row)


REMEDIATION_ROWS: dict[str, Callable[[Row, list[dict[str, Any]]], None]] = {
    "alert-webhook-duplicate-reorder-x3": webhook_deliveries_duplicated_and_reordered,
    "remediate-duplicate-reorder-x3": work_items_on_remediation_queue_x3,
}


@pytest.mark.parametrize("fault", list(REMEDIATION_ROWS))
def test_remediation_no_duplicate_retry_and_no_lost_record(
    bench: UnkindBench,
    fns: dict[str, Function],
    vaults: list[list[Candidate]],
    backup_failed_rule: None,
    fault: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vault = REMEDIATION_VAULTS[list(REMEDIATION_ROWS).index(fault)]
    alerts = failure_alerts(Row(bench, fns, vaults[vault], bench.emulator.now()))
    monkeypatch.setenv("BACKUPWARDEN_RETRY_BACKOFF", "0")  # the failed jobs may be retried at once
    row = Row(bench, fns, vaults[vault], bench.emulator.now())
    REMEDIATION_ROWS[fault](row, alerts)
    row.ship()

    assert_swept_once_and_recorded(row, source="Alert")
