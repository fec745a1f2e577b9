"""The reconciler under the emulator's `unkind` profile (lower-case headers, 429 storms, 5xx bursts,
lost answers, Retry-After 60, job-list and Resource Graph lag), with real SDK clients and Azurite:
each VM to back up gets exactly one accepted "Backup now", and every decision is recorded, however
often the service throttles, fails or loses its answers, over two runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from backupwarden.app import forget_shared_pacers
from backupwarden.domain.records import Result
from backupwarden.flows.reconcile import BACKUP_ACTION, ESCALATE_ACTION, RUN_ACTION
from emulator.core.realism import Faults
from tests.sweep_fixtures import SweepBench, vm_name
from tests.test_reconcile_flow import BACKUP_POSTS, TO_ESCALATE, Reconciling, per_vm, scenario

SEED = 1717


@pytest.fixture
def unkind(sweep_bench: SweepBench) -> Iterator[Reconciling]:
    estate = scenario(start=datetime.now(UTC))
    estate["realism"] = {"profile": "unkind"}
    sweep_bench.load(estate)
    with sweep_bench.emulator.lock:  # the profile's faults, drawn the same way whatever ran before
        faults = sweep_bench.emulator.faults.list()
        sweep_bench.emulator.faults = Faults(SEED)
        sweep_bench.emulator.faults.set(faults)
    forget_shared_pacers()
    bench = Reconciling(sweep_bench)
    yield bench
    bench.close()


def backups_started_since(unkind: Reconciling, since: datetime) -> Counter[str]:
    with unkind.bench.emulator.lock:
        jobs = [job for jobs in unkind.bench.emulator.estate.jobs_by_vm.values() for job in jobs]
    return Counter(job.vm.name for job in jobs if job.operation == "Backup" and job.start_time >= since)


def test_two_runs_under_unkind_faults_trigger_each_vm_once_and_record_every_decision(
    unkind: Reconciling,
) -> None:
    overrides = {"BACKUPWARDEN_HTTP_RETRY_TOTAL": "5", "BACKUPWARDEN_RETRY_AFTER_MAX": "2s"}
    started = unkind.bench.emulator.now()
    first = unkind.run(**overrides)
    second = unkind.run(**overrides)

    # one backup each, though answers were lost and requests repeated (the job list, not the 202s:
    # a POST whose answer was lost started its job all the same)
    assert backups_started_since(unkind, started) == BACKUP_POSTS
    rows = unkind.records()
    decided = per_vm(rows)
    for name in BACKUP_POSTS:
        assert (BACKUP_ACTION, "triggered") in decided[name] or name == "optin", (name, decided.get(name))
    escalated = Counter(vm_name(r["VmId"]) for r in rows if r["Action"] == ESCALATE_ACTION)
    assert escalated == Counter(TO_ESCALATE)  # once a day, however many runs
    runs = [r for r in rows if r["Action"] == RUN_ACTION]
    assert {r["RunId"] for r in runs} == {first.report.run_id, second.report.run_id}
    assert not [o for o in first.report.outcomes + second.report.outcomes if o.result is Result.FAILED]
    statuses = Counter(entry.status for entry in unkind.bench.requests())
    assert statuses[429] and sum(n for status, n in statuses.items() if status >= 500), (
        statuses
    )  # it was unkind
