"""A "Backup now" whose answer was lost is recorded as what it was (issue 13).

The emulator performs the POST and drops the connection before the answer (`lose_answer`); azure-core
does not repeat a POST, so the trigger raises. Each flow must then learn from the service that its
backup runs: its decision `triggered` with the job, the ledger claim completed (not failed), one
backup job, and the job's outcome in Log Analytics attributed to the flow that started it.

Through the real SDK clients against the emulator and Azurite; the clock stands still
(`remediation_scenario`), so each test is a handful of requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backupwarden.adapters.storage.ledger import LedgerRecord, LedgerStatus
from backupwarden.domain.alert_rules import BACKUP_FAILED
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.backup_now import LEDGER_ACTION
from emulator.core.realism import Fault
from tests.alert_webhook_fixtures import handlers_fixture  # noqa: F401
from tests.new_vm_fixtures import PROD, vm_id_of
from tests.remediation_fixtures import RemediationBench, remediation_scenario
from tests.sweep_fixtures import BACKUP_POST, by_vm_name

Functions = dict[str, Callable[..., Any]]  # the functions function_app registers, by name

WEB_01 = vm_id_of(PROD, "rg-web", "web-01").lower()
API_03 = vm_id_of(PROD, "rg-api", "api-03").lower()


def backup_post_of(name: str) -> str:
    return rf"/protectedItems/[^/]*;{name}/backup$"


def lose_answer(bench: RemediationBench, vm: str, times: int = 1) -> None:
    """The VM's next `times` "Backup now" POSTs are performed (or refused) and their answers lost."""
    fault = Fault(backup_post_of(vm), method="POST", lose_answer=True, remaining=times)
    with bench.emulator.lock:
        bench.emulator.faults.set([fault, *bench.emulator.faults.list()])


def backup_jobs(bench: RemediationBench, vm: str) -> list[str]:
    return [job.job_id for job in bench.jobs().values() if job.vm.name == vm and job.operation == "Backup"]


def post_statuses(bench: RemediationBench, vm: str) -> list[int]:
    """The answers the service gave the VM's "Backup now" POSTs (0: performed, answer lost)."""
    return [
        e.status
        for e in bench.requests()
        if e.method == "POST" and (m := BACKUP_POST.search(e.path)) and m["vm"] == vm
    ]


def backup_claim(bench: RemediationBench, vm_id: str) -> LedgerRecord:
    record = bench.ledger_record(vm_id, LEDGER_ACTION)
    assert record is not None
    return record


def shipped_job(bench: RemediationBench, job_id: str) -> dict[str, object]:
    """The job's outcome as it landed in Log Analytics, once it ended and the outcomes were shipped."""
    bench.advance_past_jobs()
    bench.ship()
    [row] = [r for r in bench.landed(JOB_OUTCOMES.table) if str(r["JobId"]).lower() == job_id.lower()]
    return row


def shipped_decision(bench: RemediationBench, vm_id: str, source: str) -> dict[str, object]:
    [row] = [
        r for r in bench.landed(AUTOMATION_ACTIONS.table) if r["Source"] == source and r["VmId"] == vm_id
    ]
    return row


def assert_answer_lost_and_one_job(bench: RemediationBench, vm: str, outcome: Outcome) -> str:
    [job_id] = backup_jobs(bench, vm)
    assert post_statuses(bench, vm)[0] == 0, "the chosen POST lost its answer"
    assert outcome.job_id == job_id, outcome
    assert f"answer lost; the service shows backup job {job_id} running" in outcome.reason
    return job_id


def test_the_sweep_records_a_lost_answer_backup_as_triggered_with_its_job(
    remediation_bench: RemediationBench,
) -> None:
    bench = remediation_bench
    bench.load(remediation_scenario("web-01"))
    lose_answer(bench, "web-01")

    outcome = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]

    assert outcome.result is Result.TRIGGERED, outcome
    job_id = assert_answer_lost_and_one_job(bench, "web-01", outcome)
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.job_id, claim.attempts) == (LedgerStatus.COMPLETED, job_id, 1)
    assert shipped_job(bench, job_id)["TriggeredBy"] == "Sweep"
    decision = shipped_decision(bench, WEB_01, "Timer")
    assert (decision["Result"], decision["JobId"]) == ("triggered", job_id)


def test_a_new_vm_whose_backup_answer_was_lost_is_protected_with_its_job(
    remediation_bench: RemediationBench,
) -> None:
    bench = remediation_bench
    vm = bench.create_vm("web-09")
    lose_answer(bench, "web-09")

    outcome = bench.worker().handle(bench.work_item(vm))

    assert outcome.result is Result.PROTECTED, outcome
    job_id = assert_answer_lost_and_one_job(bench, "web-09", outcome)
    claim = backup_claim(bench, vm)
    assert (claim.status, claim.job_id) == (LedgerStatus.COMPLETED, job_id)
    assert shipped_job(bench, job_id)["TriggeredBy"] == "NewVm"


def test_a_remediation_retry_whose_answer_was_lost_is_triggered_with_its_job(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    bench = remediation_bench
    payload = bench.failure_alert(API_03)  # someone's backup of api-03 failed; the rule fired
    [failed_job] = backup_jobs(bench, "api-03")
    bench.deliver(handlers["alert_webhook"], payload)
    lose_answer(bench, "api-03")

    [outcome] = bench.drain()

    assert outcome.result is Result.TRIGGERED, outcome
    [retry_job] = [job for job in backup_jobs(bench, "api-03") if job != failed_job]
    assert outcome.job_id == retry_job
    assert post_statuses(bench, "api-03")[1:] == [0, 400], "the retry lost its answer; its repeat met it"
    assert f"answer lost; the service shows backup job {retry_job} running" in outcome.reason
    claim = backup_claim(bench, API_03)
    assert (claim.status, claim.job_id) == (LedgerStatus.COMPLETED, retry_job)
    assert shipped_job(bench, retry_job)["TriggeredBy"] == "Remediation"


def test_a_job_the_list_does_not_show_yet_is_taken_as_ours_and_its_outcome_attributed_later(
    remediation_bench: RemediationBench,
) -> None:
    """Job lists trail the service (`job_list_lag_s`): the job id is not known when the flow settles."""
    bench = remediation_bench
    scenario = remediation_scenario("web-01")
    scenario["recoveryservices"] = {"job_list_lag_s": 120}
    bench.load(scenario)
    lose_answer(bench, "web-01")

    outcome = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]

    [job_id] = backup_jobs(bench, "web-01")
    assert (outcome.result, outcome.job_id) == (Result.TRIGGERED, None), outcome
    assert "taken as ours (the job list does not show its job yet)" in outcome.reason
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.job_id) == (LedgerStatus.COMPLETED, "")
    shipped = shipped_job(bench, job_id)
    assert (shipped["TriggeredBy"], shipped["Attempt"]) == ("Sweep", 1)


def test_a_trigger_whose_every_answer_was_lost_before_the_list_shows_its_job_is_triggered_unconfirmed(
    remediation_bench: RemediationBench,
) -> None:
    """The POST and both its repeats lose their answers, and the list lags: the backup runs, so the
    trigger is not a failure; it is completed without its job id, to be settled from the list."""
    bench = remediation_bench
    scenario = remediation_scenario("web-01")
    scenario["recoveryservices"] = {"job_list_lag_s": 120}
    bench.load(scenario)
    lose_answer(bench, "web-01", times=3)

    outcome = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]

    [job_id] = backup_jobs(bench, "web-01")
    assert post_statuses(bench, "web-01") == [0, 0, 0]
    assert (outcome.result, outcome.job_id) == (Result.TRIGGERED, None), outcome
    assert "the trigger is unconfirmed" in outcome.reason
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.job_id, claim.attempts) == (LedgerStatus.COMPLETED, "", 1)
    shipped = shipped_job(bench, job_id)
    assert (shipped["TriggeredBy"], shipped["Attempt"]) == ("Sweep", 1)


def test_a_post_the_service_never_received_is_sent_again_and_accepted(
    remediation_bench: RemediationBench,
) -> None:
    """A connection dropped before the service acted: the repeat is the one accepted."""
    bench = remediation_bench
    bench.load(remediation_scenario("web-01"))
    fault = Fault(backup_post_of("web-01"), method="POST", status=0, remaining=1)
    with bench.emulator.lock:
        bench.emulator.faults.set([fault])

    outcome = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]

    [job_id] = backup_jobs(bench, "web-01")
    # the sweep sends the POST alone: the accepted repeat carries no job id, the list attributes it
    assert (outcome.result, outcome.job_id) == (Result.TRIGGERED, None), outcome
    assert post_statuses(bench, "web-01") == [0, 202]
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.job_id, claim.attempts) == (LedgerStatus.COMPLETED, "", 1)
    shipped = shipped_job(bench, job_id)
    assert (shipped["TriggeredBy"], shipped["Attempt"]) == ("Sweep", 1)


def test_a_failed_job_whose_id_the_trigger_never_learnt_is_still_retried(
    remediation_bench: RemediationBench, handlers: Functions
) -> None:
    """The sweep's trigger of api-03 lost its answer before the list showed the job; the job fails:
    remediation finds that job from the list to reopen the claim, and retries once."""
    bench = remediation_bench
    scenario = remediation_scenario("api-03")
    scenario["recoveryservices"] = {"job_list_lag_s": 120}
    bench.load(scenario)
    lose_answer(bench, "api-03")
    assert by_vm_name(bench.sweep_and_record().outcomes)["api-03"].job_id is None
    [failed_job] = backup_jobs(bench, "api-03")
    bench.advance_past_jobs()
    bench.ship()
    bench.add_rules(None, BACKUP_FAILED)
    bench.evaluate()
    [payload] = bench.notifications(BACKUP_FAILED.name, vm="api-03")
    bench.deliver(handlers["alert_webhook"], payload)

    [outcome] = bench.drain()

    assert outcome.result is Result.TRIGGERED, outcome
    assert len(backup_jobs(bench, "api-03")) == 2
    claim = backup_claim(bench, API_03)
    assert claim.attempts == 2 and [job.job_id for job in claim.jobs][:1] == [failed_job]
