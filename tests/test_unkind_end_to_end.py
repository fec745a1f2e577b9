"""The four flows end to end under the emulator's `unkind` profile (issue 13).

Through the functions as the host calls them, the real SDK clients over HTTPS against the emulator,
and Azurite: the sweep fanned out through its queue, new VMs from their Event Grid events, outcomes
shipped to Log Analytics, and remediation of a failed job's alert. The profile throws 429 storms,
5xx bursts and lost answers (the service did the work, the connection dropped) at random with a
fixed seed; each stage also loses the answer of one chosen write, so the case is there whatever the
draws. Every count is read from the service's own state (the jobs it started, the requests it
served) or from Log Analytics through its query API, never from what the app believes.

One estate per module: each stage is a module fixture that runs its flow once, and its test checks
the result; the stages run in the order the loop does (sweep, new VMs, outcomes, remediation).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from backupwarden.domain.alert_rules import BACKUP_FAILED
from backupwarden.domain.kql import load_kql
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, FINISHED_JOB_STATUSES, JOB_OUTCOMES
from backupwarden.domain.times import utc_now
from backupwarden.flows.outcomes.collector import FIRST_RUN_LOOKBACK
from backupwarden.settings import Settings
from emulator import EmulatorServer
from tests.alert_webhook_fixtures import http_request
from tests.new_vm_fixtures import PROTECT_PUT, grid_event
from tests.remediation_fixtures import dimensions, with_new_alert_id
from tests.sweep_fixtures import BACKUP_POST, vm_name
from tests.unkind_fixtures import DrainResult, Function, QueueDrain, UnkindBench, functions, unkind_bench

RESOURCE_GRAPH_LAG_S = 180  # the profile's resource_graph.lag_s
INGESTION_LAG_MAX_S = 300  # the profile's monitor.ingestion_delay_max_s
NEW_VMS = [f"new-{i:02d}" for i in range(6)]
LOST_SWEEP_POST = "web-02"  # its "Backup now" is performed, the answer lost
LOST_PROTECT_PUT = "new-01"
LOST_NEW_VM_POST = "new-02"
LOST_RETRY_POST = "db-02"  # remediation's retry of its failed job


def timer() -> TimerRequest:
    return TimerRequest(past_due=False)


def accepted_backup_posts(bench: UnkindBench, since: datetime) -> Counter[str]:
    """VM name -> "Backup now" POSTs answered 202. A lost answer is logged 0 whether the service performed
    the write or refused it (a repeat meeting the running job), so the jobs count what was performed."""
    return Counter(
        match["vm"]
        for entry in bench.requests()
        if entry.at >= since
        and entry.method == "POST"
        and entry.status == 202
        and (match := BACKUP_POST.search(entry.path))
    )


def at_most_once(counted: Counter[str]) -> bool:
    return all(n == 1 for n in counted.values())


def backup_job_of(bench: UnkindBench, vm: str, since: datetime) -> str:
    """The id of the one backup job the service started for the VM since `since`."""
    with bench.emulator.lock:
        jobs = list(bench.emulator.estate.jobs.values())
    [job_id] = [
        j.job_id for j in jobs if j.vm.name == vm and j.operation == "Backup" and j.start_time >= since
    ]
    return job_id.lower()


def decisions_of(rows: list[dict[str, Any]], vm: str) -> Counter[str]:
    """The results the flows recorded for one VM (de-duplicated automation actions)."""
    return Counter(str(r["Result"]) for r in rows if r["VmId"] and vm_name(str(r["VmId"])) == vm)


def triggered_by(bench: UnkindBench, job_id: str) -> str:
    [row] = [r for r in bench.query(load_kql("dedupe_job_outcomes")) if str(r["JobId"]).lower() == job_id]
    return str(row["TriggeredBy"])


@pytest.fixture(scope="module")
def bench(emulator_server: EmulatorServer, azurite: str) -> Iterator[UnkindBench]:
    with unkind_bench(emulator_server, azurite) as opened:
        yield opened


@pytest.fixture(scope="module")
def fns() -> Iterator[dict[str, Function]]:
    yield functions()
    import function_app

    importlib.reload(function_app)  # a fresh app for whoever indexes it next


# --- 1. the sweep, fanned out ------------------------------------------------------------------
@dataclass
class Swept:
    started: datetime
    expected: set[str]
    drains: list[DrainResult]


@pytest.fixture(scope="module")
def swept(bench: UnkindBench, fns: dict[str, Function]) -> Swept:
    started = bench.emulator.now()
    expected = bench.expected_triggers()
    bench.lose_answers(rf"/protectedItems/[^/]*;{LOST_SWEEP_POST}/backup$", "POST")
    drain = QueueDrain(bench.storage, bench.sweep_queue, fns["sweep_worker"], fns["sweep_worker_poison"])

    fns["sweep"](timer())  # two overlapping timer runs plan the same estate
    fns["sweep"](timer())
    drains = [drain.drain()]
    fns["sweep"](timer())  # a later run, while Resource Graph still shows every item pending
    drains.append(drain.drain())
    return Swept(started, expected, drains)


def test_sweep_triggers_every_stuck_vm_exactly_once(bench: UnkindBench, swept: Swept) -> None:
    assert len(swept.expected) > 40
    assert all(drained.settled for drained in swept.drains), "every run fanned out through the queue"
    jobs = bench.jobs_of("Backup", swept.started)
    assert jobs == Counter(dict.fromkeys(swept.expected, 1)), "one backup job per stuck VM, no other"
    accepted = accepted_backup_posts(bench, swept.started)
    assert set(accepted) <= swept.expected and at_most_once(accepted)

    statuses = bench.statuses()
    lost = [e for e in bench.requests() if e.status == 0 and BACKUP_POST.search(e.path)]
    assert len(lost) > 1, "the chosen lost answer and the profile's"
    assert statuses[429] > 0 and statuses[503] > 0, "storms and bursts happened"


# --- 2. new VMs --------------------------------------------------------------------------------
@dataclass
class Protected:
    started: datetime
    vm_ids: dict[str, str]  # name -> id
    drained: DrainResult


@pytest.fixture(scope="module")
def new_vms(bench: UnkindBench, fns: dict[str, Function], swept: Swept) -> Protected:
    started = bench.emulator.now()
    bench.lose_answers(r"/backupFabrics/Azure/refreshContainers$", "POST")
    bench.lose_answers(rf"/protectedItems/[^/]*;{LOST_PROTECT_PUT}$", "PUT")
    bench.lose_answers(rf"/protectedItems/[^/]*;{LOST_NEW_VM_POST}/backup$", "POST")
    vm_ids = {name: bench.create_vm(name) for name in NEW_VMS}
    events = [event for vm_id in vm_ids.values() for event in bench.events_for(vm_id)]
    assert len(events) == 2 * len(NEW_VMS), "a VM's creation publishes two write events"

    for event in [*events, *events[:4]]:  # and Event Grid delivers some of them again
        fns["vm_written"](grid_event(event))
    drain = QueueDrain(bench.storage, bench.protect_queue, fns["protect_vm"], fns["protect_vm_poison"])
    return Protected(started, vm_ids, drain.drain())


def test_new_vms_are_protected_once_and_backed_up_once(bench: UnkindBench, new_vms: Protected) -> None:
    with bench.emulator.lock:
        items = bench.emulator.estate.protected_items
        vaults = {
            name: items[vm_id].vault_id.lower() for name, vm_id in new_vms.vm_ids.items() if vm_id in items
        }
    assert set(vaults) == set(NEW_VMS), "every new VM is protected"
    assert new_vms.drained.poisoned == 0

    assert bench.jobs_of("Backup", new_vms.started) == Counter(dict.fromkeys(NEW_VMS, 1))
    accepted = accepted_backup_posts(bench, new_vms.started)
    assert set(accepted) <= set(NEW_VMS) and at_most_once(accepted)
    for name, vm_id in new_vms.vm_ids.items():
        served = [e.status for e in bench.calls(PROTECT_PUT, vm_id) if e.status in (202, 0)]
        # a PUT whose answer was lost is repeated by azure-core at once, and the service takes the
        # repeat of the same protection as the same write: one protection (the item above), never a
        # second one accepted after an answered one. Every answer may be lost (the profile's random
        # losses come on top of the chosen one); the redelivery then finds the VM protected.
        assert served and served.count(202) <= 1 and 202 not in served[:-1], (name, served)
    lost_first = [e.status for e in bench.calls(PROTECT_PUT, new_vms.vm_ids[LOST_PROTECT_PUT])]
    assert lost_first[0] == 0, "the chosen protection PUT lost its answer"
    refreshes = [
        e.status
        for e in bench.requests()
        if e.at >= new_vms.started and "refreshcontainers" in e.path.lower()
    ]
    assert 0 in refreshes, "the chosen refresh lost its answer"


# --- 3. outcomes in Log Analytics ----------------------------------------------------------------
@dataclass
class Shipped:
    actions: set[str]  # the decisions' record ids the flows put in the outbox
    jobs: set[str]  # the finished jobs' ids, from the service's state


def finished_jobs(bench: UnkindBench, since: datetime) -> set[str]:
    with bench.emulator.lock:
        jobs = list(bench.emulator.estate.jobs.values())
    return {
        job.job_id.lower()
        for job in jobs
        if job.status in FINISHED_JOB_STATUSES and job.end_time is not None and job.end_time > since
    }


def ship(fns: dict[str, Function], times: int = 1) -> None:
    for _ in range(times):
        fns["ship_outcomes"](timer())


@pytest.fixture(scope="module")
def shipped(bench: UnkindBench, fns: dict[str, Function], new_vms: Protected) -> Shipped:
    waiting = {p.record_id for p in bench.outbox().pending(AUTOMATION_ACTIONS.stream)}
    since = first_run_since()
    bench.emulator.advance(bench.emulator.estate.timings.backup_job_s + 1)  # every job has ended
    for stream in (JOB_OUTCOMES.stream, AUTOMATION_ACTIONS.stream):
        bench.lose_answers(rf"^/dataCollectionRules/[^/]+/streams/{stream}$", "POST")
    ship(fns)  # Resource Graph does not show the jobs' ends yet
    bench.emulator.advance(RESOURCE_GRAPH_LAG_S + 1)
    ship(fns, times=3)  # a run whose upload answer was lost stops; the next sends again
    bench.emulator.advance(INGESTION_LAG_MAX_S + 1)
    return Shipped(waiting, finished_jobs(bench, since))


def first_run_since() -> datetime:
    """How far back the first outcomes run reads (the app's wall clock, its default overlap)."""
    return utc_now() - FIRST_RUN_LOOKBACK - Settings.from_env().jobs_overlap


def record_ids(bench: UnkindBench, kql_name: str) -> Counter[str]:
    return Counter(str(row["RecordId"]) for row in bench.query(load_kql(kql_name)))


def test_every_decision_and_job_outcome_is_in_log_analytics_once(
    bench: UnkindBench, swept: Swept, new_vms: Protected, shipped: Shipped
) -> None:
    assert len(shipped.actions) > 50 and len(shipped.jobs) > 50
    actions = record_ids(bench, "dedupe_automation_actions")
    jobs = record_ids(bench, "dedupe_job_outcomes")
    assert set(actions) >= shipped.actions, "no decision lost"
    assert set(jobs) == shipped.jobs, "every finished job, none lost"
    assert max(actions.values()) == max(jobs.values()) == 1

    raw = len(bench.landed(JOB_OUTCOMES.table)) + len(bench.landed(AUTOMATION_ACTIONS.table))
    assert raw > len(actions) + len(jobs), "lost upload answers were sent again: the views count them once"

    # a backup whose answer was lost is the flow's: decided once as started, its job attributed to it
    decisions = bench.query(load_kql("dedupe_automation_actions"))
    assert decisions_of(decisions, LOST_SWEEP_POST)["triggered"] == 1
    assert decisions_of(decisions, LOST_NEW_VM_POST)["protected"] == 1  # duplicate events: already_protected
    assert triggered_by(bench, backup_job_of(bench, LOST_SWEEP_POST, swept.started)) == "Sweep"
    assert triggered_by(bench, backup_job_of(bench, LOST_NEW_VM_POST, new_vms.started)) == "NewVm"


# --- 4. remediation --------------------------------------------------------------------------------
@dataclass
class Remediated:
    started: datetime
    fired: dict[str, str]  # VM name -> error code of its alert


@pytest.fixture(scope="module")
def remediated(bench: UnkindBench, fns: dict[str, Function], shipped: Shipped) -> Remediated:
    started = bench.emulator.now()
    bench.add_rules(None, BACKUP_FAILED)
    bench.evaluate()
    payloads = bench.notifications(BACKUP_FAILED.name)
    bench.lose_answers(rf"/protectedItems/[^/]*;{LOST_RETRY_POST}/backup$", "POST")

    statuses = []
    for payload in payloads:  # the action group retries a delivery; the rule may fire again
        for delivery in (payload, payload, with_new_alert_id(payload)):
            response = fns["alert_webhook"](http_request(delivery))
            statuses.append(response.status_code)
    assert set(statuses) == {202}
    QueueDrain(bench.storage, bench.remediation_queue, fns["remediate"], fns["remediate_poison"]).drain()
    ship(fns, times=2)
    bench.emulator.advance(bench.emulator.estate.timings.backup_job_s + RESOURCE_GRAPH_LAG_S + 1)
    ship(fns)  # the retries' jobs have ended
    bench.emulator.advance(INGESTION_LAG_MAX_S + 1)
    fired = {vm_name(dimensions(p)["VmId"]): dimensions(p)["ErrorCode"] for p in payloads}
    return Remediated(started, fired)


def test_an_alert_on_a_failed_job_leads_to_one_retry_and_escalations_are_recorded(
    bench: UnkindBench, remediated: Remediated
) -> None:
    assert remediated.fired == {
        "db-01": "BackUpOperationFailedV2",  # its failure of 4 hours ago, before its backup succeeded
        "api-03": "BackUpOperationFailed",
        "db-02": "UserErrorGuestAgentStatusUnavailable",
        "pay-01": "UserErrorRequestDisallowedByPolicy",
        "dev-04": "UserErrorVmNotFoundV2",
    }
    assert bench.jobs_of("Backup", remediated.started) == Counter({"api-03": 1, "db-02": 1})
    accepted = accepted_backup_posts(bench, remediated.started)
    assert set(accepted) <= {"api-03", "db-02"} and at_most_once(accepted)

    rows = bench.query(f"{load_kql('dedupe_automation_actions')} | where Source == 'Alert'")
    escalated = Counter(vm_name(r["VmId"]) for r in rows if r["Result"] == "escalated" and r["VmId"])
    # each firing is its own remediation run and decision; the action group's repeated delivery of
    # one notification is answered `duplicate` and decides nothing
    assert escalated == Counter({"pay-01": 2, "dev-04": 2})
    lost = [e for e in bench.requests() if e.at >= remediated.started and e.status == 0]
    lost_vms = {m["vm"] for e in lost if (m := BACKUP_POST.search(e.path))}
    assert LOST_RETRY_POST in lost_vms, "the chosen retry lost its answer"
    retried = decisions_of(rows, LOST_RETRY_POST)
    assert retried["triggered"] == 1 and "failed" not in retried, retried
    assert triggered_by(bench, backup_job_of(bench, LOST_RETRY_POST, remediated.started)) == "Remediation"
