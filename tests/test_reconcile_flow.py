"""The reconciler against the emulator (HTTPS, real SDK clients) and Azurite (ledger and outbox): each
proposed action of the coverage read taken once per day through the ledger, and recorded."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.mgmt.recoveryservicesbackup.models import (
    BackupRequestResource,
    BackupStatusRequest,
    IaasVMBackupRequest,
)

from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.azure.resource_graph import query_rows
from backupwarden.adapters.storage.ledger import Ledger, LedgerStatus
from backupwarden.adapters.storage.outbox import Outbox, OutboxUnavailable
from backupwarden.app import build_action_recorder, build_reconciler, build_sweep
from backupwarden.cli.main import main
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, COVERAGE, JOB_OUTCOMES
from backupwarden.domain.records import Outcome, Result
from backupwarden.flows.backup_now import LEDGER_ACTION
from backupwarden.flows.outcomes.collector import JobOutcomeCollector
from backupwarden.flows.reconcile import (
    BACKUP_ACTION,
    ENROLL_ACTION,
    ESCALATE_ACTION,
    RUN_ACTION,
    ReconcileResult,
)
from tests.sweep_fixtures import BACKUP_POST, SweepBench, vm_name

SUB = "11111111-1111-4111-8111-111111111111"
TO_BACK_UP = {"pendingold", "stale", "agentdown"}
TO_ESCALATE = {"denied", "stopped", "gone"}
NOTHING_TO_DO = {"current", "plain", "newvm", "pendingyoung"}
TO_ENROL = {"optin"}  # tagged for enrolment (ENROLL_EXISTING=tagged): protected, then backed up
BACKUP_POSTS = Counter(TO_BACK_UP | TO_ENROL)


def protected(state: str, **extra: Any) -> dict[str, Any]:
    return {"vault": "v1", "state": state, **extra}


VMS: dict[str, dict[str, Any]] = {
    "pendingold": {"protection": protected("IRPending", since="-3h")},
    "pendingyoung": {"protection": protected("IRPending", since="-20m")},
    "stale": {"protection": protected("Protected", last_backup="-3d")},
    "agentdown": {
        "protection": protected(
            "ProtectionError",
            since="-20d",
            last_recovery_point="-3d",
            last_backup_failed={"code": "UserErrorGuestAgentStatusUnavailable"},
        )
    },
    "denied": {
        "protection": protected(
            "ProtectionError",
            since="-20d",
            last_recovery_point="-2h",
            last_backup_failed={"code": "UserErrorRequestDisallowedByPolicy"},
        )
    },
    "stopped": {"protection": protected("ProtectionStopped", since="-30d", last_recovery_point="-10d")},
    "gone": {"deleted": True, "protection": protected("Protected")},
    "current": {"protection": protected("Protected", last_backup="-6h")},
    "newvm": {"created": "-10m"},
    "plain": {},
    "optin": {"tags": {"backupwarden:enroll": "true"}},
}


def scenario(backup_job_s: int = 3 * 3600, start: datetime | None = None) -> dict[str, Any]:
    # by default noon of today at real speed: the ledger's day is the emulator clock's, far from midnight
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return {
        "clock": {"start": (start or noon).isoformat(), "scale": 1.0},
        # enrolment's protection completes at once: its poll would otherwise wait in real time
        "timings": {
            "retry_after_s": 0,
            "backup_job_s": backup_job_s,
            "refresh_containers_s": 0,
            "configure_operation_s": 0,
        },
        "subscriptions": [
            {
                "id": SUB,
                "vaults": [{"name": "v1", "resource_group": "rg-v", "location": "westeurope"}],
                "vms": [
                    {"name": name, "location": "westeurope", "resource_group": "rg-a", **vm}
                    for name, vm in VMS.items()
                ],
            }
        ],
    }


class Reconciling:
    """The bench with its own outbox table; the reconciler built from settings as the CLI builds it."""

    def __init__(self, bench: SweepBench) -> None:
        self.bench = bench
        self.outbox_table = f"outbox{uuid.uuid4().hex[:12]}"

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "BACKUPWARDEN_SUBSCRIPTIONS": SUB,
            "BACKUPWARDEN_OUTBOX_TABLE": self.outbox_table,
            "BACKUPWARDEN_ENROLL_EXISTING": "tagged",
            **overrides,
        }

    def run(self, **overrides: str) -> ReconcileResult:
        settings = self.bench.settings(**self.env(**overrides))
        clients = self.bench.clients(settings)
        now = self.bench.emulator.now
        recorder = build_action_recorder(settings, clients, now=now)

        def record(outcomes: list[Outcome]) -> None:
            recorder.record(outcomes, source="Cli", dry_run=settings.dry_run)

        return build_reconciler(settings, clients, now=now).run(record)

    def records(self) -> list[dict[str, Any]]:
        """Every row the outbox holds, in the order written; none when nothing created the outbox."""
        settings = self.bench.settings(**self.env())
        outbox = Outbox(self.bench.clients(settings).outbox_table())
        try:
            rows = [p.row for p in outbox.pending(AUTOMATION_ACTIONS.stream)]
        except OutboxUnavailable as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                return []
            raise
        return sorted(rows, key=lambda r: r["TimeGenerated"])

    def coverage_rows(self) -> list[dict[str, Any]]:
        """The BackupCoverage_CL rows the outbox holds."""
        settings = self.bench.settings(**self.env())
        outbox = Outbox(self.bench.clients(settings).outbox_table())
        return [p.row for p in outbox.pending(COVERAGE.stream)]

    def accepted_posts(self) -> Counter[str]:
        return Counter(
            match["vm"]
            for entry in self.bench.requests()
            if entry.method == "POST" and entry.status == 202 and (match := BACKUP_POST.search(entry.path))
        )

    def close(self) -> None:
        service = TableServiceClient.from_connection_string(self.bench.storage)
        with service, contextlib.suppress(ResourceNotFoundError):
            service.delete_table(self.outbox_table)


@pytest.fixture
def reconciling(sweep_bench: SweepBench) -> Iterator[Reconciling]:
    sweep_bench.load(scenario())
    bench = Reconciling(sweep_bench)
    yield bench
    bench.close()


def per_vm(rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """VM name -> (action, result) of each of its records."""
    found: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        if row["VmId"]:
            found.setdefault(vm_name(row["VmId"]), []).append((row["Action"], row["Result"]))
    return found


def test_each_state_gets_its_action_exactly_once_and_recorded(reconciling: Reconciling) -> None:
    result = reconciling.run()

    rows = reconciling.records()
    assert per_vm(rows) == {
        **{name: [(BACKUP_ACTION, "triggered")] for name in TO_BACK_UP},
        **{name: [(ESCALATE_ACTION, "escalated")] for name in TO_ESCALATE},
        "optin": [(ENROLL_ACTION, "protected")],
    }
    assert not NOTHING_TO_DO & set(per_vm(rows))
    assert reconciling.accepted_posts() == BACKUP_POSTS
    by_name = {vm_name(o.vm_id): o for o in result.report.outcomes}
    assert "recommendation: " in by_name["denied"].reason and "UserErrorRequestDisallowedByPolicy" in (
        by_name["denied"].reason
    )
    assert "no longer exists" in by_name["gone"].reason
    assert "protected in vault v1, policy DefaultPolicy" in by_name["optin"].reason
    # one request per Backup now: its job is learnt from the job list later, not from its operation
    assert all("backup job unknown yet (operation " in by_name[name].reason for name in TO_BACK_UP | TO_ENROL)
    operation_reads = [e for e in reconciling.bench.requests() if "/backupOperations/" in e.path]
    assert len(operation_reads) == len(TO_ENROL)  # enabling protection's, for its ConfigureBackup job
    # the run's own record comes last, after every decision
    assert (rows[-1]["Action"], rows[-1]["Result"], rows[-1]["VmId"]) == (RUN_ACTION, "completed", "")
    assert "3 triggered" in rows[-1]["Reason"] and "3 escalated" in rows[-1]["Reason"]


def test_the_jobs_of_the_triggers_are_attributed_to_the_run_when_they_finish(
    reconciling: Reconciling,
) -> None:
    """Triggered without reading their operations: the outcomes collector finds each job in the
    finished-jobs read and credits it to this run's claim (the first ad hoc job after it)."""
    result = reconciling.run()
    reconciling.bench.emulator.advance(3 * 3600 + 60)  # the backups have finished
    settings = reconciling.bench.settings(**reconciling.env())
    clients = reconciling.bench.clients(settings)
    now = reconciling.bench.emulator.now
    outbox = Outbox(clients.outbox_table())
    collector = JobOutcomeCollector(
        functools.partial(query_rows, clients.resource_graph()),
        Ledger(clients.ledger_table(), clock=now),
        outbox,
        lambda: [SUB],
        now=now,
    )

    collector.collect(None)

    backups = [p.row for p in outbox.pending(JOB_OUTCOMES.stream) if p.row["Operation"] == "Backup"]
    credited = {vm_name(r["VmId"]): (r["TriggeredBy"], r["AutomationRunId"]) for r in backups}
    run_id = result.report.run_id
    ours = {name: by for name, by in credited.items() if by[0] != "Schedule"}  # the policy's own backups
    assert ours == {name: ("Reconcile", run_id) for name in TO_BACK_UP | TO_ENROL}


def test_a_second_run_the_same_day_sends_no_post_and_records_no_escalation(
    reconciling: Reconciling,
) -> None:
    reconciling.run()
    first = reconciling.accepted_posts()

    second = reconciling.run()

    assert reconciling.accepted_posts() == first == BACKUP_POSTS
    results = {(vm_name(o.vm_id), o.action, o.result) for o in second.report.outcomes}
    assert not {r for r in results if r[2] in (Result.TRIGGERED, Result.ESCALATED)}, results
    escalations = [r for r in reconciling.records() if r["Action"] == ESCALATE_ACTION]
    assert sorted(vm_name(r["VmId"]) for r in escalations) == sorted(TO_ESCALATE)


def sweep_today(reconciling: Reconciling) -> None:
    settings = reconciling.bench.settings(**reconciling.env())
    sweep = build_sweep(settings, reconciling.bench.clients(settings), now=reconciling.bench.emulator.now)
    swept = sweep.run()
    assert {vm_name(o.vm_id) for o in swept.outcomes if o.result is Result.TRIGGERED} == {"pendingold"}


def test_a_vm_the_sweep_triggered_today_is_not_triggered_again(reconciling: Reconciling) -> None:
    sweep_today(reconciling)

    result = reconciling.run()

    assert reconciling.accepted_posts() == BACKUP_POSTS  # pendingold once: the sweep's
    # the coverage read shows the sweep's backup running: nothing to do
    assert "pendingold" not in {vm_name(o.vm_id) for o in result.report.outcomes}


@contextlib.contextmanager
def sweep_job_failed_today(sweep_bench: SweepBench) -> Iterator[Reconciling]:
    """The sweep triggered pendingold today and its job failed with a retryable error; the coverage
    read proposes Backup now again."""
    estate = scenario(backup_job_s=60)
    estate["subscriptions"][0]["vms"][0]["fail_next"] = {"code": "UserErrorGuestAgentStatusUnavailable"}
    assert estate["subscriptions"][0]["vms"][0]["name"] == "pendingold"
    sweep_bench.load(estate)
    reconciling = Reconciling(sweep_bench)
    try:
        sweep_today(reconciling)
        sweep_bench.emulator.advance(5 * 60)  # the sweep's job has failed
        yield reconciling
    finally:
        reconciling.close()


def pendingold_outcomes(result: ReconcileResult) -> list[tuple[str, Result]]:
    return [(o.action, o.result) for o in result.report.outcomes if vm_name(o.vm_id) == "pendingold"]


def test_a_trigger_whose_job_failed_today_is_reopened_and_retried_once(sweep_bench: SweepBench) -> None:
    with sweep_job_failed_today(sweep_bench) as reconciling:
        retried = reconciling.run()

        assert pendingold_outcomes(retried) == [(BACKUP_ACTION, Result.TRIGGERED)]
        assert reconciling.accepted_posts()["pendingold"] == 2  # the sweep's and this retry
        sweep_bench.emulator.advance(5 * 60)  # the retry's job completed

        again = reconciling.run()

        assert (BACKUP_ACTION, Result.TRIGGERED) not in pendingold_outcomes(again)
        assert reconciling.accepted_posts()["pendingold"] == 2


def test_its_own_trigger_whose_job_failed_is_found_in_the_job_list_and_retried(
    sweep_bench: SweepBench,
) -> None:
    """The reconciler's trigger carries no job id (its operation is not read): the next run finds the
    failed job in the VM's job list, reopens the trigger and retries once."""
    estate = scenario(backup_job_s=60)
    estate["subscriptions"][0]["vms"][0]["fail_next"] = {"code": "UserErrorGuestAgentStatusUnavailable"}
    sweep_bench.load(estate)
    reconciling = Reconciling(sweep_bench)
    try:
        first = reconciling.run()
        assert pendingold_outcomes(first) == [(BACKUP_ACTION, Result.TRIGGERED)]
        sweep_bench.emulator.advance(5 * 60)  # its job has failed

        retried = reconciling.run()

        assert pendingold_outcomes(retried) == [(BACKUP_ACTION, Result.TRIGGERED)]
        assert reconciling.accepted_posts()["pendingold"] == 2
    finally:
        reconciling.close()


def test_a_failed_job_is_not_retried_past_the_daily_budget(sweep_bench: SweepBench) -> None:
    with sweep_job_failed_today(sweep_bench) as reconciling:
        result = reconciling.run(BACKUPWARDEN_DAILY_BUDGET="1")

        assert pendingold_outcomes(result) == [(BACKUP_ACTION, Result.SKIPPED)]
        reason = next(o.reason for o in result.report.outcomes if vm_name(o.vm_id) == "pendingold")
        assert "daily budget spent (1 of 1)" in reason
        assert reconciling.accepted_posts()["pendingold"] == 1


def test_a_dead_run_s_expired_claim_is_resumed_from_the_job_list_not_sent_again(
    sweep_bench: SweepBench,
) -> None:
    """A run claimed pendingold's backup, sent the POST and died before settling. An hour on, the
    claim has expired and Resource Graph (two hours behind) still shows no job: the reconciler takes
    the claim over and finds the dead run's job in the vault's job list instead of sending again."""
    estate = scenario()
    estate["resource_graph"] = {"lag_s": 2 * 3600}
    sweep_bench.load(estate)
    reconciling = Reconciling(sweep_bench)
    try:
        settings = sweep_bench.settings(**reconciling.env())
        clients = sweep_bench.clients(settings)
        now = sweep_bench.emulator.now
        vm_id = next(v.id for v in sweep_bench.emulator.estate.vms.values() if v.name == "pendingold")
        Ledger(clients.ledger_table(), clock=now).claim(vm_id, LEDGER_ACTION, now().date(), "dead-run", 3)
        vault = next(iter(sweep_bench.emulator.estate.vaults.values()))
        container, item = item_names("rg-a", "pendingold")
        clients.backup(SUB).backups.trigger(
            vault.name,
            vault.resource_group,
            "Azure",
            container,
            item,
            BackupRequestResource(
                properties=IaasVMBackupRequest(recovery_point_expiry_time_in_utc=now() + timedelta(days=30))
            ),
        )
        sweep_bench.emulator.advance(65 * 60)  # past the claim's hour

        result = reconciling.run()

        outcome = next(o for o in result.report.outcomes if vm_name(o.vm_id) == "pendingold")
        assert (outcome.action, outcome.result) == (BACKUP_ACTION, Result.TRIGGERED)
        assert "an earlier delivery triggered it" in outcome.reason
        assert reconciling.accepted_posts()["pendingold"] == 1
        record = Ledger(clients.ledger_table(), clock=now).record(vm_id, LEDGER_ACTION, now().date())
        assert record is not None and (record.status, record.job_id) == (
            LedgerStatus.COMPLETED,
            outcome.job_id,
        )
    finally:
        reconciling.close()


def test_the_per_run_cap_holds(reconciling: Reconciling) -> None:
    """Backups and enrolments (each starts a first backup) share the cap."""
    result = reconciling.run(BACKUPWARDEN_MAX_TRIGGERS_PER_RUN="2")

    assert sum(reconciling.accepted_posts().values()) == 2
    acting = [o for o in result.report.outcomes if o.action in (BACKUP_ACTION, ENROLL_ACTION)]
    assert len(acting) == len(TO_BACK_UP | TO_ENROL)
    assert sum(o.result in (Result.TRIGGERED, Result.PROTECTED) for o in acting) == 2
    capped = [o for o in acting if o.result is Result.SKIPPED]
    assert len(capped) == 2 and all("per-run cap reached (2 triggers)" in o.reason for o in capped)


def test_a_dry_run_claims_nothing_and_sends_nothing(reconciling: Reconciling) -> None:
    dry = reconciling.run(BACKUPWARDEN_DRY_RUN="true")

    assert reconciling.accepted_posts() == Counter()
    assert {vm_name(o.vm_id) for o in dry.report.outcomes if o.result is Result.DRY_RUN} == (
        TO_BACK_UP | TO_ESCALATE | TO_ENROL
    )
    acted = reconciling.run()  # nothing was claimed: the real run acts on every VM
    assert reconciling.accepted_posts() == BACKUP_POSTS
    assert sum(o.result is Result.ESCALATED for o in acted.report.outcomes) == len(TO_ESCALATE)


def test_the_coverage_command_acts_only_when_asked(
    sweep_bench: SweepBench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_bench.load(scenario(start=datetime.now(UTC)))  # the CLI reads the wall clock
    reconciling = Reconciling(sweep_bench)
    for name in list(os.environ):
        if name.startswith(("BACKUPWARDEN_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    for name, value in sweep_bench.env(**reconciling.env()).items():
        monkeypatch.setenv(name, value)
    try:
        assert main(["coverage", "--output", "json"]) == 0
        assert reconciling.accepted_posts() == Counter() and reconciling.records() == []
        capsys.readouterr()

        assert main(["coverage", "--act", "--dry-run", "--output", "json"]) == 0
        proposed = json.loads(capsys.readouterr().out)["actions"]["outcomes"]
        assert {vm_name(o["vm_id"]) for o in proposed if o["result"] == "dry_run"} == (
            TO_BACK_UP | TO_ESCALATE | TO_ENROL
        )
        assert reconciling.accepted_posts() == Counter()  # proposed, recorded as dry run, nothing sent
        assert {r["DryRun"] for r in reconciling.records()} == {True}

        assert main(["coverage", "--act", "--output", "json"]) == 0

        printed = json.loads(capsys.readouterr().out)
        assert {vm["vm_name"] for vm in printed["coverage"]["vms"]} == set(VMS)
        triggered = {
            vm_name(o["vm_id"]) for o in printed["actions"]["outcomes"] if o["result"] == "triggered"
        }
        assert triggered == TO_BACK_UP
        assert reconciling.accepted_posts() == BACKUP_POSTS
        acted = [r for r in reconciling.records() if not r["DryRun"]]
        assert set(per_vm(acted)) == TO_BACK_UP | TO_ESCALATE | {"optin"}
    finally:
        reconciling.close()


ENROL_TAG = {"backupwarden:enroll": "true"}
PROTECT_PUT = re.compile(r"/protectedItems/[^/]*;(?P<vm>[^/;]+)$", re.IGNORECASE)
POLICY_CHECK = "/providers/Microsoft.PolicyInsights/checkPolicyRestrictions"


def preflight_scenario() -> dict[str, Any]:
    """Unprotected VMs to enrol (docs/emulator.md, section 6; as emulator/scenarios/coverage.yaml): one
    that fits, one whose agent is not ready (a warning), an Ultra disk VM whose region's vault has only
    a Standard policy, one in a resource group whose deny policy forbids restore point collections, and
    one without the enrolment tag."""
    estate = scenario()
    estate["subscriptions"][0]["vaults"] = [
        {
            "name": "v1",
            "resource_group": "rg-v",
            "location": "westeurope",
            "policies": [{"name": "DefaultPolicy"}, {"name": "EnhancedDaily", "policy_type": "V2"}],
        },
        {"name": "vneu", "resource_group": "rg-v", "location": "northeurope"},  # DefaultPolicy only
    ]
    vm = {"location": "westeurope", "resource_group": "rg-a", "created": "-30d", "tags": ENROL_TAG}
    estate["subscriptions"][0]["vms"] = [
        {**vm, "name": "fits"},
        {**vm, "name": "agentless", "vm_agent": "Not Ready"},
        {**vm, "name": "ultra", "location": "northeurope", "data_disk_types": ["UltraSSD_LRS"]},
        {**vm, "name": "locked", "resource_group": "rg-locked"},
        {**vm, "name": "untagged", "tags": {}},
    ]
    estate["deny_policies"] = [
        {
            "scope": f"/subscriptions/{SUB}/resourceGroups/rg-locked",
            "resource_type": "Microsoft.Compute/restorePointCollections",
            "name": "deny-restore-points",
        }
    ]
    return estate


@pytest.fixture
def enrolling(sweep_bench: SweepBench) -> Iterator[Reconciling]:
    sweep_bench.load(preflight_scenario())
    bench = Reconciling(sweep_bench)
    yield bench
    bench.close()


def protect_puts(reconciling: Reconciling) -> Counter[str]:
    return Counter(
        match["vm"]
        for entry in reconciling.bench.requests()
        if entry.method == "PUT" and (match := PROTECT_PUT.search(entry.path))
    )


def enrolments(result: ReconcileResult) -> dict[str, Outcome]:
    return {vm_name(o.vm_id): o for o in result.report.outcomes if o.action == ENROLL_ACTION}


def test_pre_flight_enrols_the_vms_that_fit_once_and_escalates_each_refusal(enrolling: Reconciling) -> None:
    result = enrolling.run()

    outcomes = enrolments(result)
    assert {name: o.result for name, o in outcomes.items()} == {
        "fits": Result.PROTECTED,
        "agentless": Result.PROTECTED,
        "ultra": Result.ESCALATED,
        "locked": Result.ESCALATED,
    }
    assert enrolling.accepted_posts() == Counter({"fits", "agentless"})
    assert protect_puts(enrolling) == Counter({"fits", "agentless"})  # refused VMs see no write
    assert "protected in vault v1, policy DefaultPolicy" in outcomes["fits"].reason
    assert "initial backup: backup job unknown yet (operation " in outcomes["fits"].reason
    assert "warning" not in outcomes["fits"].reason
    assert "warning: agent-not-ready" in outcomes["agentless"].reason and "'Not Ready'" in (
        outcomes["agentless"].reason
    )
    ultra = outcomes["ultra"].reason
    assert "disk-type-needs-enhanced-policy" in ultra and "only an Enhanced policy backs up" in ultra
    assert "vault vneu, policy DefaultPolicy" in ultra and "fix: choose an Enhanced" in ultra
    locked = outcomes["locked"].reason
    assert "denied-by-policy" in locked and "policyAssignments/deny-restore-points" in locked
    assert "fix: exempt Azure Backup's resource group" in locked
    recorded = {
        (vm_name(r["VmId"]), r["Result"]) for r in enrolling.records() if r["Action"] == ENROLL_ACTION
    }
    assert recorded == {
        ("fits", "protected"),
        ("agentless", "protected"),
        ("ultra", "escalated"),
        ("locked", "escalated"),
    }
    backup = enrolling.bench.clients(enrolling.bench.settings()).backup(SUB)
    asked = BackupStatusRequest(resource_type="VM", resource_id=outcomes["fits"].vm_id)
    assert backup.backup_status.get("westeurope", asked).protection_status == "Protected"

    second = enrolling.run()

    assert enrolling.accepted_posts() == Counter({"fits", "agentless"})
    assert protect_puts(enrolling) == Counter({"fits", "agentless"})
    assert not {
        (name, o.result)
        for name, o in enrolments(second).items()
        if o.result in (Result.PROTECTED, Result.ESCALATED)
    }


def test_pre_flight_reads_what_does_not_depend_on_the_vm_once_a_run(enrolling: Reconciling) -> None:
    """4 VMs to enrol, 3 in westeurope (vault v1, DefaultPolicy) and 1 in northeurope (vneu): a policy's
    type is read once per vault and policy, a region's backup resource group checked once; the restore
    point collection is checked per VM (its content names the VM), twice: at the VM's group and at the
    backup's group, which does not exist here (404)."""
    enrolling.run()

    requests = enrolling.bench.requests()
    policy_reads = [e for e in requests if e.method == "GET" and "/backuppolicies/" in e.path.lower()]
    checks = [e for e in requests if POLICY_CHECK.lower() in e.path.lower()]
    at_subscription = [e for e in checks if "/resourcegroups/" not in e.path.lower()]
    assert len(policy_reads) == 2
    assert len(at_subscription) == 2
    assert len(checks) - len(at_subscription) == 2 * 4


def test_enroll_existing_off_enrols_nothing_and_checks_nothing(enrolling: Reconciling) -> None:
    result = enrolling.run(BACKUPWARDEN_ENROLL_EXISTING="off")

    assert enrolments(result) == {}
    assert enrolling.accepted_posts() == Counter() and protect_puts(enrolling) == Counter()
    assert not [e for e in enrolling.bench.requests() if POLICY_CHECK.lower() in e.path.lower()]


def test_enroll_existing_all_enrols_untagged_vms_too(enrolling: Reconciling) -> None:
    result = enrolling.run(BACKUPWARDEN_ENROLL_EXISTING="all")

    assert enrolments(result)["untagged"].result is Result.PROTECTED
    assert enrolling.accepted_posts() == Counter({"fits", "agentless", "untagged"})


def test_a_deny_policy_on_an_existing_backup_resource_group_refuses_enrolment(
    sweep_bench: SweepBench,
) -> None:
    """Azure Backup puts a region's restore point collections in AzureBackupRG_<region>_1; once that
    group exists (an earlier backup made it; here a VM lives in it), a deny policy assigned to it blocks
    the first backup, and pre-flight must see it. Where the group does not exist yet, nothing is checked
    there and the VM is enrolled."""
    estate = preflight_scenario()
    marker = {"name": "marker", "location": "westeurope", "resource_group": "AzureBackupRG_westeurope_1"}
    estate["subscriptions"][0]["vms"].append(marker)  # the group exists: something lives in it
    estate["deny_policies"] = [
        {
            "scope": f"/subscriptions/{SUB}/resourceGroups/AzureBackupRG_westeurope_1",
            "resource_type": "Microsoft.Compute/restorePointCollections",
            "name": "deny-backup-rg",
        },
        {  # a northeurope group that does not exist: checked nowhere, and no error
            "scope": f"/subscriptions/{SUB}/resourceGroups/AzureBackupRG_northeurope_1",
            "resource_type": "Microsoft.Compute/restorePointCollections",
            "name": "deny-missing-rg",
        },
    ]
    sweep_bench.load(estate)
    reconciling = Reconciling(sweep_bench)
    try:
        outcomes = enrolments(reconciling.run())

        assert outcomes["fits"].result is Result.ESCALATED
        assert "denied-by-policy" in outcomes["fits"].reason and "deny-backup-rg" in outcomes["fits"].reason
        assert "fits" not in protect_puts(reconciling)
        assert "deny-missing-rg" not in outcomes["ultra"].reason  # refused for its disk only
    finally:
        reconciling.close()
