"""A "Backup now" whose job id is unknown is settled from the job list (issue 15).

A trigger whose answer was lost before the job list showed its job is completed without a job id.
A later read of the VM's trigger (the sweep's, remediation's) settles it: the job the list shows is
written into the claim, so outcomes are attributed by its id; a trigger whose job never showed
within `TRIGGER_CONFIRMATION_WINDOW` (the request itself was lost) is reopened as failed, so a later
run may trigger again within the daily budget; one whose job failed is retried once.

Through the real SDK clients against the emulator and Azurite, on a clock that stands still
(`remediation_scenario`) and moves only when a test advances it.
"""

from __future__ import annotations

from backupwarden.adapters.storage.ledger import JobAttribution, LedgerStatus
from backupwarden.domain.records import Result
from backupwarden.flows.backup_now import LEDGER_ACTION, NOT_CONFIRMED_CODE, TRIGGER_CONFIRMATION_WINDOW
from emulator.core.realism import Fault
from tests.remediation_fixtures import RemediationBench, remediation_scenario
from tests.sweep_fixtures import by_vm_name
from tests.test_lost_backup_answer import (
    API_03,
    WEB_01,
    backup_claim,
    backup_jobs,
    backup_post_of,
    lose_answer,
    post_statuses,
)

JOB_LIST_LAG_S = 120
RESOURCE_GRAPH_LAG_S = 180  # the unkind profile's lags: the sweep's candidates trail the job list


def load_with_lagging_job_list(bench: RemediationBench, vm: str, resource_graph_lag_s: int = 0) -> None:
    scenario = remediation_scenario(vm)
    scenario["recoveryservices"] = {"job_list_lag_s": JOB_LIST_LAG_S}
    scenario["resource_graph"] = {"lag_s": resource_graph_lag_s}
    bench.load(scenario)


def listed_but_not_in_resource_graph(bench: RemediationBench) -> None:
    """Far enough that the job list shows the jobs started now, not so far that the sweep's candidates
    (Resource Graph) show them running."""
    bench.emulator.advance((JOB_LIST_LAG_S + RESOURCE_GRAPH_LAG_S) / 2)


def past_jobs_as_the_sweep_sees_them(bench: RemediationBench) -> None:
    bench.advance_past_jobs()
    bench.emulator.advance(RESOURCE_GRAPH_LAG_S)


def attributed_to(bench: RemediationBench, job_id: str) -> JobAttribution | None:
    """The claim of web-01 the outcomes collector credits with this ad hoc backup job."""
    started = bench.jobs()[job_id].start_time
    return bench.ledger().job_attribution(job_id, WEB_01, started, unknown_job_action=LEDGER_ACTION)


def test_the_job_the_list_shows_later_is_written_into_the_claim(remediation_bench: RemediationBench) -> None:
    """The next sweep still sees web-01 unbacked (Resource Graph trails the job list) and reads its
    claim with the job the list shows. Once written, a later "Backup now" from the portal is no
    longer taken for the claim's job."""
    bench = remediation_bench
    load_with_lagging_job_list(bench, "web-01", resource_graph_lag_s=RESOURCE_GRAPH_LAG_S)
    lose_answer(bench, "web-01")
    assert by_vm_name(bench.sweep_and_record().outcomes)["web-01"].job_id is None
    [job_id] = backup_jobs(bench, "web-01")
    listed_but_not_in_resource_graph(bench)

    outcome = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]

    assert outcome.result is Result.SKIPPED and f"backup job {job_id}" in outcome.reason, outcome
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.job_id, claim.attempts) == (LedgerStatus.COMPLETED, job_id, 1)
    bench.advance_past_jobs()
    bench.backup_now(WEB_01)  # someone's, from the portal
    [portal_job] = [job for job in backup_jobs(bench, "web-01") if job != job_id]
    assert attributed_to(bench, portal_job) is None
    ours = attributed_to(bench, job_id)
    assert ours is not None and ours.triggered_by == "Sweep"


def test_a_trigger_whose_job_never_shows_is_reopened_and_triggered_again(
    remediation_bench: RemediationBench,
) -> None:
    """The POST and its repeats never reached the service: no job, yet the trigger is unconfirmed, not
    failed. Within the confirmation window it holds the VM; past it, the sweep triggers again."""
    bench = remediation_bench
    load_with_lagging_job_list(bench, "web-01")
    fault = Fault(backup_post_of("web-01"), method="POST", status=0, remaining=3)
    with bench.emulator.lock:
        bench.emulator.faults.set([fault])
    first = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]
    assert (first.result, first.job_id) == (Result.TRIGGERED, None), first
    assert backup_jobs(bench, "web-01") == []

    bench.emulator.advance(TRIGGER_CONFIRMATION_WINDOW.total_seconds() / 2)
    held = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]
    assert held.result is Result.SKIPPED and "already handled today" in held.reason, held
    assert len(post_statuses(bench, "web-01")) == 3, "no POST while the trigger may still show"

    bench.emulator.advance(TRIGGER_CONFIRMATION_WINDOW.total_seconds() / 2 + 1)
    again = by_vm_name(bench.sweep_and_record().outcomes)["web-01"]

    [job_id] = backup_jobs(bench, "web-01")
    # the sweep sends the POST alone: the retry is unconfirmed again, until the list shows its job
    assert (again.result, again.job_id) == (Result.TRIGGERED, None), again
    assert post_statuses(bench, "web-01") == [0, 0, 0, 202]
    claim = backup_claim(bench, WEB_01)
    assert (claim.status, claim.job_id, claim.attempts) == (LedgerStatus.COMPLETED, "", 2)
    assert claim.reason == ""
    ours = attributed_to(bench, job_id)
    assert ours is not None and ours.triggered_by == "Sweep" and ours.attempt == 2, ours
    reopened = bench.ledger().record(WEB_01, LEDGER_ACTION, bench.emulator.now().date())
    assert reopened is not None and NOT_CONFIRMED_CODE not in reopened.reason


def test_a_failed_job_whose_id_the_trigger_never_learnt_is_retried_once_by_the_sweep(
    remediation_bench: RemediationBench,
) -> None:
    """api-03's first job fails; its trigger never learnt its id. The next sweep finds the job in the
    list, reopens the claim and retries once; the retry loses its answer too, and the sweep after
    finds the retry's job (not the failed one again) and writes it into the claim: no third trigger."""
    bench = remediation_bench
    load_with_lagging_job_list(bench, "api-03", resource_graph_lag_s=RESOURCE_GRAPH_LAG_S)
    lose_answer(bench, "api-03")
    assert by_vm_name(bench.sweep_and_record().outcomes)["api-03"].job_id is None
    [failed_job] = backup_jobs(bench, "api-03")
    past_jobs_as_the_sweep_sees_them(bench)
    lose_answer(bench, "api-03")

    retry = by_vm_name(bench.sweep_and_record().outcomes)["api-03"]

    assert (retry.result, retry.job_id) == (Result.TRIGGERED, None), retry
    [retry_job] = [job for job in backup_jobs(bench, "api-03") if job != failed_job]
    claim = backup_claim(bench, API_03)
    assert (claim.status, claim.job_id, claim.attempts) == (LedgerStatus.COMPLETED, "", 2)
    assert [job.job_id for job in claim.jobs] == [failed_job]
    listed_but_not_in_resource_graph(bench)

    later = by_vm_name(bench.sweep_and_record().outcomes)["api-03"]

    assert later.result is Result.SKIPPED and f"backup job {retry_job}" in later.reason, later
    claim = backup_claim(bench, API_03)
    assert (claim.status, claim.job_id, claim.attempts) == (LedgerStatus.COMPLETED, retry_job, 2)
    past_jobs_as_the_sweep_sees_them(bench)
    bench.sweep_and_record()
    assert len(backup_jobs(bench, "api-03")) == 2, "one retry, no more"
