"""The sweep end to end: the app's real SDK clients against the emulator over HTTPS, the ledger on Azurite.

Expectations come from the scenario's own words (state, `since`, tags, running backups,
failure plans), never from the code under test.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

import pytest
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import (
    AzureIaaSVMJob,
    BackupRequestResource,
    IaasVMBackupRequest,
)

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.recovery_services import RecoveryServices
from backupwarden.app import build_discovery, build_subscription_scope
from backupwarden.domain.records import Candidate, Outcome, Result
from backupwarden.flows.run_report import RunReport
from emulator.core.realism import Fault
from emulator.core.throttle import BucketSpec
from tests.sweep_fixtures import (
    REASON_GRACE,
    REASON_JOB_RUNNING,
    REASON_OPTED_OUT,
    SweepBench,
    by_vm_name,
    demo_scenario,
    expected_outcomes,
    failure_plans,
    names_with,
    triggered_names,
    vm_name,
)

SUB = "33333333-3333-4333-8333-333333333333"
VAULT = "rsv-test"


# --- small inline estates ------------------------------------------------------------------------
def small_scenario(*vms: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """One subscription, one vault in westeurope, the given VMs; jobs take 10 emulated minutes."""
    return {
        "clock": {"start": "2026-11-25T08:00:00Z"},
        "timings": {"backup_job_s": 600, "retry_after_s": 0},
        "subscriptions": [
            {
                "id": SUB,
                "name": "sweep-tests",
                "vaults": [{"name": VAULT, "resource_group": "rg-backup", "location": "westeurope"}],
                "vms": list(vms),
            }
        ],
        **sections,
    }


def stuck_vm(
    name: str, since: str = "-3h", tags: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    protection: dict[str, Any] = {"vault": VAULT, "state": "IRPending", "since": since}
    if extra.pop("running_backup", False):
        protection["running_backup"] = True
    return {
        "name": name,
        "location": "westeurope",
        "resource_group": "rg-app",
        "tags": tags or {},
        "protection": protection,
        **extra,
    }


# --- reading results back through the SDK -----------------------------------------------------------
def item_names(resource_group: str, name: str) -> tuple[str, str]:
    """(container, protected item) names of an Azure VM, as the Backup API spells them."""
    rg, vm = resource_group.lower(), name.lower()
    return f"iaasvmcontainer;iaasvmcontainerv2;{rg};{vm}", f"vm;iaasvmcontainerv2;{rg};{vm}"


def vault_parts(vault_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, vault name) of a vault id."""
    parts = vault_id.strip("/").split("/")
    return parts[1], parts[3], parts[-1]


def backup_client(clients: AzureClients, vault_id: str) -> RecoveryServicesBackupClient:
    return clients.backup(vault_parts(vault_id)[0])


def read_item_state(clients: AzureClients, outcome: Outcome) -> str:
    _, resource_group, vault = vault_parts(outcome.vault_id)
    container, item = item_names(
        outcome.vm_id.lower().split("/resourcegroups/")[1].split("/")[0], vm_name(outcome.vm_id)
    )
    found = backup_client(clients, outcome.vault_id).protected_items.get(
        vault, resource_group, "Azure", container, item
    )
    # the SDK leaves IaaS VM item properties in the raw mapping (azure-facts §10)
    return str(found.as_dict()["properties"]["protectionState"])


def read_job(clients: AzureClients, outcome: Outcome, job_id: str) -> tuple[str, str | None]:
    """(status, first error code) of one backup job of an outcome's vault."""
    _, resource_group, vault = vault_parts(outcome.vault_id)
    job = backup_client(clients, outcome.vault_id).job_details.get(vault, resource_group, job_id).properties
    assert isinstance(job, AzureIaaSVMJob), f"not an IaaS VM job: {job!r}"
    errors = job.error_details or []
    # the spec types errorCode int32; the service sends the code's name, and the SDK passes it through
    return str(job.status), (str(errors[0].error_code) if errors else None)


def ad_hoc_backup_jobs(clients: AzureClients, outcome: Outcome, since: datetime) -> list[str]:
    """The ids of the outcome VM's ad hoc ("Backup now") Backup jobs started since `since`, oldest
    first, as the vault's job list shows them: the sweep sends the POST alone, so its outcome carries
    no job id."""
    _, resource_group, vault = vault_parts(outcome.vault_id)
    container, _ = item_names(
        outcome.vm_id.lower().split("/resourcegroups/")[1].split("/")[0], vm_name(outcome.vm_id)
    )
    listed = backup_client(clients, outcome.vault_id).backup_jobs.list(
        vault, resource_group, filter="operation eq 'Backup'"
    )
    wanted = container.removeprefix("iaasvmcontainer;")
    mine = sorted(
        (job.properties.start_time, str(job.name))
        for job in listed
        if isinstance(job.properties, AzureIaaSVMJob)
        and str(job.properties.container_name).lower() == wanted
        and job.properties.is_user_triggered
        and job.properties.start_time is not None
        and job.properties.start_time >= since
    )
    return [name for _, name in mine]


def read_triggered_job(clients: AzureClients, outcome: Outcome, since: datetime) -> tuple[str, str | None]:
    """(status, first error code) of the one backup job a triggered outcome started (since `since`)."""
    jobs = ad_hoc_backup_jobs(clients, outcome, since)
    assert len(jobs) == 1, f"{vm_name(outcome.vm_id)}: ad hoc backup jobs {jobs}"
    return read_job(clients, outcome, jobs[0])


def assert_every_vm_handled_once(report: RunReport) -> None:
    named = by_vm_name(report.outcomes)  # fails on duplicates
    assert len(named) == report.candidates == len(report.outcomes)


class Found(NamedTuple):
    """Everything discovery says about one candidate, comparable across strategies."""

    vm_id: str
    vault_id: str
    container_name: str
    item_name: str
    configured_at: datetime | None
    job_in_progress: bool
    subscription_id: str
    vm_name: str
    vm_tags: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, candidate: Candidate) -> Found:
        return cls(
            candidate.vm_id,
            candidate.vault_id,
            candidate.container_name,
            candidate.item_name,
            candidate.configured_at,
            candidate.job_in_progress,
            candidate.subscription_id,
            candidate.vm_name,
            tuple(sorted(candidate.vm_tags.items())),
        )


def discovered(bench: SweepBench, strategy: str) -> set[Found]:
    settings = bench.settings(BACKUPWARDEN_DISCOVERY=strategy)
    clients = bench.clients(settings)
    discovery = build_discovery(settings, clients, RecoveryServices(clients.backup), now=bench.emulator.now)
    found = discovery.find_stuck_initial_backups(build_subscription_scope(settings, clients)())
    assert found.failures == []
    keys = {Found.of(c) for c in found.candidates}
    assert len(keys) == len(found.candidates), f"{strategy}: duplicate candidates"
    return keys


# --- 1. the demo estate end to end ----------------------------------------------------------------
def test_demo_sweep_triggers_exactly_the_stuck_eligible_vms_and_they_become_protected(
    demo_bench: SweepBench,
) -> None:
    scenario = demo_scenario()
    expected = expected_outcomes(scenario)
    plans = failure_plans(scenario)
    # the demo exercises every rule, so none of the checks below is vacuous
    assert {reason for _, reason in expected.values()} >= {REASON_OPTED_OUT, REASON_JOB_RUNNING, REASON_GRACE}
    assert set(plans) & triggered_names(scenario)

    started = demo_bench.emulator.now()
    report = demo_bench.run()

    outcomes = by_vm_name(report.outcomes)
    assert set(outcomes) == set(expected), "exactly the VMs pending their initial backup get an outcome"
    for name, (result, reason) in expected.items():
        assert outcomes[name].result is result, f"{name}: {outcomes[name]}"
        assert reason in outcomes[name].reason, f"{name}: {outcomes[name].reason!r}"
    assert report.candidates == len(expected)
    assert sorted(demo_bench.backup_post_vms()) == sorted(triggered_names(scenario)), (
        "one Backup now per triggered VM, none for the others"
    )
    # "Backup now" sends the POST alone: the job is learnt from the job list later, never from the answer
    assert all(o.job_id is None for o in report.outcomes if o.result is Result.TRIGGERED)

    demo_bench.emulator.advance(demo_bench.emulator.estate.timings.backup_job_s + 60)
    clients = demo_bench.clients(demo_bench.settings())
    for name in triggered_names(scenario):
        status, error_code = read_triggered_job(clients, outcomes[name], started)
        if name in plans:
            assert (status, error_code) == ("Failed", plans[name])
            assert read_item_state(clients, outcomes[name]) == "IRPending"
        else:
            assert (status, error_code) == ("Completed", None)
            assert read_item_state(clients, outcomes[name]) == "Protected"


def test_per_run_cap_limits_triggers_and_names_the_rest(demo_bench: SweepBench) -> None:
    report = demo_bench.run(BACKUPWARDEN_MAX_TRIGGERS_PER_RUN="3")

    assert len(names_with(report.outcomes, Result.TRIGGERED)) == 3
    assert len(demo_bench.backup_posts()) == 3
    capped = [o for o in report.outcomes if "per-run cap reached (3 triggers)" in o.reason]
    assert len(capped) == len(triggered_names(demo_scenario())) - 3
    assert all(o.result is Result.SKIPPED for o in capped)


# --- 2. both discovery strategies find the same candidates --------------------------------------
def test_discovery_strategies_agree_on_the_demo_estate(demo_bench: SweepBench) -> None:
    by_graph = discovered(demo_bench, "resource-graph")
    assert {vm_name(found.vm_id) for found in by_graph} == set(expected_outcomes(demo_scenario()))
    assert by_graph == discovered(demo_bench, "vaults")


def test_discovery_strategies_agree_on_configure_jobs_older_than_resource_graph_keeps(
    sweep_bench: SweepBench,
) -> None:
    """Resource Graph keeps jobs 14 days; the vaults strategy must not know more about older configures."""
    sweep_bench.load(
        small_scenario(
            stuck_vm("old-01", since="-20d"),
            stuck_vm("recent-01", since="-13d"),
            stuck_vm("busy-01", since="-10d", running_backup=True),
        )
    )
    by_graph = discovery_by_name(discovered(sweep_bench, "resource-graph"))
    assert by_graph["old-01"].configured_at is None and by_graph["recent-01"].configured_at is not None
    assert by_graph["busy-01"].job_in_progress is True
    assert discovery_by_name(discovered(sweep_bench, "vaults")) == by_graph


def test_discovery_strategies_agree_beyond_one_page(sweep_bench: SweepBench) -> None:
    """1,040 candidates: more than a Resource Graph page (1,000) and many backupProtectedItems pages (200)."""
    sweep_bench.load(
        {
            "clock": {"start": "2026-11-25T08:00:00Z"},
            "generate": {"vaults_per_subscription": 2, "vms_per_vault": 650, "stuck_percent": 80},
        }
    )
    by_graph = discovered(sweep_bench, "resource-graph")
    assert len(by_graph) == 1040
    assert by_graph == discovered(sweep_bench, "vaults")


def discovery_by_name(found: set[Found]) -> dict[str, Found]:
    return {vm_name(candidate.vm_id): candidate for candidate in found}


# --- 3. and 4. never twice ---------------------------------------------------------------------------
def test_concurrent_sweeps_trigger_each_vm_once(demo_bench: SweepBench) -> None:
    start = threading.Barrier(2)
    reports: list[RunReport] = []

    def run_one() -> None:
        sweep = demo_bench.sweep()  # its own AzureClients, like a second function instance
        start.wait(timeout=30)
        reports.append(sweep.run())

    threads = [threading.Thread(target=run_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(reports) == 2, "a sweep thread failed"

    eligible = triggered_names(demo_scenario())
    posts = Counter(demo_bench.backup_post_vms())
    assert posts == Counter(dict.fromkeys(eligible, 1)), "each eligible VM gets exactly one Backup now"
    triggered = Counter(vm_name(o.vm_id) for r in reports for o in r.outcomes if o.result is Result.TRIGGERED)
    assert triggered == Counter(dict.fromkeys(eligible, 1))
    for name in eligible:  # the other run skipped it, saying why
        results = sorted(by_vm_name(r.outcomes)[name].result.value for r in reports)
        assert results == ["skipped", "triggered"], name
    assert not [o for r in reports for o in r.outcomes if o.result is Result.FAILED]


@pytest.mark.parametrize(
    ("graph_lag_s", "reason"),
    [
        # Resource Graph already shows the running jobs: discovery flags them
        (0, REASON_JOB_RUNNING),
        # Resource Graph lags: the ledger's record and the job's live status stop the trigger
        (3600, "triggered earlier today is still running"),
    ],
    ids=["graph-current", "graph-lagging"],
)
def test_rerun_in_the_same_window_triggers_nothing_new(
    sweep_bench: SweepBench, graph_lag_s: int, reason: str
) -> None:
    scenario = demo_scenario()
    scenario["resource_graph"] = {"lag_s": graph_lag_s}
    sweep_bench.load(scenario)
    first = sweep_bench.run()
    triggered = names_with(first.outcomes, Result.TRIGGERED)
    assert triggered == triggered_names(scenario)
    posts_after_first = len(sweep_bench.backup_posts())

    sweep_bench.emulator.advance(300)  # five minutes later: the jobs are still running
    second = sweep_bench.run()

    assert len(sweep_bench.backup_posts()) == posts_after_first, "the re-run sent a Backup now"
    rerun = by_vm_name(second.outcomes)
    for name in triggered:
        assert rerun[name].result is Result.SKIPPED
        assert reason in rerun[name].reason, f"{name}: {rerun[name].reason!r}"


# --- 5. running job, opt-out, daily budget -----------------------------------------------------------
@pytest.mark.parametrize("strategy", ["resource-graph", "vaults"])
def test_vm_with_a_running_job_or_opt_out_tag_is_skipped_with_its_reason(
    sweep_bench: SweepBench, strategy: str
) -> None:
    sweep_bench.load(
        small_scenario(
            stuck_vm("busy-01", running_backup=True),
            stuck_vm("quiet-01", tags={"env": "prod", "BackupWarden:Skip": "True"}),
            stuck_vm("stuck-01"),
        )
    )
    report = sweep_bench.run(BACKUPWARDEN_DISCOVERY=strategy)

    outcomes = by_vm_name(report.outcomes)
    assert (outcomes["busy-01"].result, outcomes["busy-01"].reason) == (Result.SKIPPED, REASON_JOB_RUNNING)
    assert (outcomes["quiet-01"].result, outcomes["quiet-01"].reason) == (Result.SKIPPED, REASON_OPTED_OUT)
    assert outcomes["stuck-01"].result is Result.TRIGGERED
    assert sweep_bench.backup_post_vms() == ["stuck-01"]


def test_backup_already_running_at_the_service_is_a_no_op(sweep_bench: SweepBench) -> None:
    """An operator clicked Backup now after Resource Graph's last refresh: the service answers
    UserErrorBackupOperationInProgress, which the sweep reports as a skip, not a failure."""
    sweep_bench.load(small_scenario(stuck_vm("stuck-01"), resource_graph={"lag_s": 3600}))
    sweep_bench.run(dry_run=True)  # Resource Graph has now seen the estate without a running job
    clients = sweep_bench.clients(sweep_bench.settings())
    container, item = item_names("rg-app", "stuck-01")
    operator_click = BackupRequestResource(properties=IaasVMBackupRequest())
    clients.backup(SUB).backups.trigger(VAULT, "rg-backup", "Azure", container, item, operator_click)

    outcome = by_vm_name(sweep_bench.run().outcomes)["stuck-01"]

    assert (outcome.result, outcome.reason) == (
        Result.SKIPPED,
        "the service reports a backup already in progress",
    )
    assert len(sweep_bench.backup_posts()) == 2  # the operator's and the sweep's attempt


def failing_vm_scenario() -> dict[str, Any]:
    return small_scenario(
        stuck_vm("flaky-01", fail_next={"code": "UserErrorGuestAgentStatusUnavailable", "attempts": 1})
    )


def test_daily_budget_spent_after_a_failed_job_blocks_the_retry(sweep_bench: SweepBench) -> None:
    sweep_bench.load(failing_vm_scenario())
    started = sweep_bench.emulator.now()
    first = by_vm_name(sweep_bench.run(BACKUPWARDEN_DAILY_BUDGET="1").outcomes)["flaky-01"]
    assert first.result is Result.TRIGGERED
    sweep_bench.emulator.advance(600 + 60)  # the job has failed
    clients = sweep_bench.clients(sweep_bench.settings())
    assert read_triggered_job(clients, first, started) == ("Failed", "UserErrorGuestAgentStatusUnavailable")

    again = by_vm_name(sweep_bench.run(BACKUPWARDEN_DAILY_BUDGET="1").outcomes)["flaky-01"]

    assert again.result is Result.SKIPPED
    assert "daily budget spent" in again.reason
    assert len(sweep_bench.backup_posts()) == 1


def test_failed_job_is_retried_while_under_the_daily_budget(sweep_bench: SweepBench) -> None:
    sweep_bench.load(failing_vm_scenario())
    started = sweep_bench.emulator.now()
    first = by_vm_name(sweep_bench.run(BACKUPWARDEN_DAILY_BUDGET="2").outcomes)["flaky-01"]
    sweep_bench.emulator.advance(600 + 60)

    retry = by_vm_name(sweep_bench.run(BACKUPWARDEN_DAILY_BUDGET="2").outcomes)["flaky-01"]

    assert retry.result is Result.TRIGGERED, retry.reason
    assert len(sweep_bench.backup_posts()) == 2
    sweep_bench.emulator.advance(600 + 60)  # the failure plan held one attempt: the retry succeeds
    clients = sweep_bench.clients(sweep_bench.settings())
    first_job, retry_job = ad_hoc_backup_jobs(clients, first, started)  # one job per trigger, two triggers
    assert read_job(clients, first, first_job) == ("Failed", "UserErrorGuestAgentStatusUnavailable")
    assert read_job(clients, retry, retry_job) == ("Completed", None)
    assert read_item_state(clients, retry) == "Protected"
    third = sweep_bench.run(BACKUPWARDEN_DAILY_BUDGET="2")
    assert third.outcomes == [] and len(sweep_bench.backup_posts()) == 2


@pytest.mark.parametrize(
    ("code", "classes", "retried"),
    [
        ("UserErrorRequestDisallowedByPolicy", "", False),  # escalate_config by default
        ("UserErrorGuestAgentStatusUnavailable", "", True),  # retry_capped: under the daily budget
        (
            "UserErrorGuestAgentStatusUnavailable",
            '{"UserErrorGuestAgentStatusUnavailable": "escalate_permanent"}',
            False,
        ),
    ],
)
def test_failed_job_is_retried_only_when_a_retry_can_fix_it(
    sweep_bench: SweepBench, code: str, classes: str, retried: bool
) -> None:
    sweep_bench.load(small_scenario(stuck_vm("blocked-01", fail_next={"code": code, "attempts": 5})))

    def run() -> Outcome:
        report = sweep_bench.run(BACKUPWARDEN_DAILY_BUDGET="3", BACKUPWARDEN_FAILURE_CLASSES=classes)
        return by_vm_name(report.outcomes)["blocked-01"]

    first = run()
    sweep_bench.emulator.advance(600 + 60)  # the job has failed

    again = run()
    later = run()

    assert first.result is Result.TRIGGERED
    if retried:
        assert again.result is Result.TRIGGERED and len(sweep_bench.backup_posts()) == 2
    else:
        assert again.result is Result.SKIPPED and again.reason.startswith(
            f"today's backup failed with {code}"
        )
        assert later.reason == again.reason, "the failure stays recorded in the ledger"
        assert len(sweep_bench.backup_posts()) == 1


# --- 6. and 7. throttling and a failing vault ----------------------------------------------------------
def test_throttled_run_still_handles_every_vm(demo_bench: SweepBench) -> None:
    throttle = demo_bench.emulator.throttle
    throttle.specs["read"] = BucketSpec(capacity=8, refill_per_s=4)
    throttle.specs["write"] = BucketSpec(capacity=4, refill_per_s=4)
    # the client paces itself from the x-ms-ratelimit-remaining headers, so the buckets alone rarely
    # run dry any more: 429s with Retry-After on the trigger route make sure the retry path is taken
    demo_bench.emulator.faults.add(
        Fault(path_regex=r"/backup$", status=429, method="POST", remaining=3, retry_after_s=1)
    )

    report = demo_bench.run(BACKUPWARDEN_HTTP_RETRY_TOTAL="10")

    statuses = Counter(entry.status for entry in demo_bench.requests())
    assert statuses[429] > 0, "the buckets were meant to run dry"
    assert_every_vm_handled_once(report)
    assert names_with(report.outcomes, Result.FAILED) == set()
    assert names_with(report.outcomes, Result.TRIGGERED) == triggered_names(demo_scenario())


def test_one_vault_answering_500_fails_only_its_vms(demo_bench: SweepBench) -> None:
    demo_bench.emulator.faults.add(Fault(path_regex="vaults/rsv-dev-eus/", status=500))

    report = demo_bench.run(BACKUPWARDEN_HTTP_RETRY_TOTAL="1")

    scenario = demo_scenario()
    dev_vms = {vm["name"] for vm in scenario["subscriptions"][1]["vms"]} & set(expected_outcomes(scenario))
    failed = [o for o in report.outcomes if o.result is Result.FAILED]
    assert {vm_name(o.vm_id) for o in failed} == dev_vms
    assert all(o.error_code == "InternalServerError" and o.vault_id.endswith("/rsv-dev-eus") for o in failed)
    assert names_with(report.outcomes, Result.TRIGGERED) == triggered_names(scenario) - dev_vms
    assert_every_vm_handled_once(report)


def test_one_vault_answering_500_fails_only_its_scope_with_vault_discovery(demo_bench: SweepBench) -> None:
    demo_bench.emulator.faults.add(Fault(path_regex="vaults/rsv-dev-eus/", status=500))

    report = demo_bench.run(BACKUPWARDEN_DISCOVERY="vaults", BACKUPWARDEN_HTTP_RETRY_TOTAL="1")

    scenario = demo_scenario()
    dev_vms = {vm["name"] for vm in scenario["subscriptions"][1]["vms"]}
    failed = [o for o in report.outcomes if o.result is Result.FAILED]
    assert len(failed) == 1 and failed[0].vm_id == "", "one failure, for the vault scope"
    assert (
        failed[0].vault_id.endswith("/vaults/rsv-dev-eus") and failed[0].error_code == "InternalServerError"
    )
    assert names_with(report.outcomes, Result.TRIGGERED) == triggered_names(scenario) - dev_vms


# --- 8. dry run ---------------------------------------------------------------------------------------
def test_dry_run_sends_no_write_and_reports_what_it_would_trigger(demo_bench: SweepBench) -> None:
    report = demo_bench.run(BACKUPWARDEN_DRY_RUN="true")

    entries = demo_bench.requests()
    assert entries, "the dry run read the estate"
    assert [e for e in entries if e.kind == "write"] == []
    assert [e for e in entries if e.method in ("PUT", "PATCH", "DELETE")] == []
    assert {e.route for e in entries if e.method == "POST"} == {
        "/providers/Microsoft.ResourceGraph/resources"
    }
    scenario = demo_scenario()
    assert report.dry_run is True
    assert names_with(report.outcomes, Result.DRY_RUN) == triggered_names(scenario)
    assert all(o.reason.startswith("would trigger") for o in report.outcomes if o.result is Result.DRY_RUN)
    skipped = {name for name, (result, _) in expected_outcomes(scenario).items() if result is Result.SKIPPED}
    assert names_with(report.outcomes, Result.SKIPPED) == skipped
    with demo_bench.emulator.lock:
        states = {
            item.vm.name: item.protection_state
            for item in demo_bench.emulator.estate.protected_items.values()
        }
    assert {states[name] for name in triggered_names(scenario)} == {"IRPending"}
