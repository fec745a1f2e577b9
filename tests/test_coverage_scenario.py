"""emulator/scenarios/coverage.yaml: one VM in each protection state (backupwarden/domain/
protection_states.py, VmState) and the unprotected VMs enrolment pre-flight must refuse, read back
through the real SDK clients as the reconciler will read them. These are the raw facts only; which
state they add up to is the reconciler's decision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import (
    AzureIaaSComputeVMProtectedItem,
    ProtectedItemResource,
)

from backupwarden.adapters.azure.policy_restrictions import PolicyRestrictionsCheck
from backupwarden.domain.preflight import PreflightCheck, backup_pending_resources, check_enrolment
from backupwarden.domain.protection_states import VmState
from backupwarden.domain.sweep_rules import opted_out
from emulator import Emulator
from emulator.scenario import load_scenario_file
from tests.preflight_fixtures import ENHANCED, HEALTHY_VM, ROOMY_VAULT

PROD = "c0ffee00-0000-4000-8000-000000000001"
DEV = "c0ffee00-0000-4000-8000-000000000002"
START = datetime.fromisoformat("2026-11-25T08:00:00+00:00")
NEVER = "2001-01-01T00:00:00Z"
ITEMS_FILTER = "backupManagementType eq 'AzureIaasVM' and itemType eq 'VM'"
VAULTS = {
    "rsv-cov-weu": (PROD, "rg-backup-weu"),
    "rsv-cov-neu": (PROD, "rg-backup-neu"),
    "rsv-cov-dev-weu": (DEV, "rg-backup-dev"),
    "rsv-cov-dev-neu": (DEV, "rg-backup-dev"),
}
# the VM the scenario puts in each state: every state, each once
STATE_OF = {
    VmState.EXCLUDED: "cov-excluded",
    VmState.NEW: "cov-new",
    VmState.UNPROTECTED: "cov-unprotected",
    VmState.PENDING_FIRST_BACKUP: "cov-pending",
    VmState.PROTECTED_CURRENT: "cov-current",
    VmState.STALE: "cov-stale",
    VmState.FAILING: "cov-failing",
    VmState.STOPPED: "cov-stopped",
    VmState.SOFT_DELETED: "cov-soft-deleted",
    VmState.ORPHANED: "cov-orphaned",
}


@pytest.fixture
def coverage(emulator: Emulator) -> Iterator[Emulator]:
    scenario = load_scenario_file("coverage")
    scenario["clock"]["scale"] = 0  # frozen: the ages below are exact
    emulator.load_scenario(scenario)
    yield emulator
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)


@pytest.fixture
def compute(sdk_kwargs: dict[str, Any]) -> dict[str, ComputeManagementClient]:
    return {sub: ComputeManagementClient(subscription_id=sub, **sdk_kwargs) for sub in (PROD, DEV)}


@pytest.fixture
def backup(sdk_kwargs: dict[str, Any]) -> dict[str, RecoveryServicesBackupClient]:
    return {sub: RecoveryServicesBackupClient(subscription_id=sub, **sdk_kwargs) for sub in (PROD, DEV)}


def items(backup: dict[str, RecoveryServicesBackupClient]) -> dict[str, dict[str, Any]]:
    """Every VM item of every vault, by VM name, as the items list answers."""
    found: dict[str, dict[str, Any]] = {}
    for vault, (sub, group) in VAULTS.items():
        for item in backup[sub].backup_protected_items.list(vault, group, filter=ITEMS_FILTER):
            properties = json_of(item.properties)
            found[str(properties["friendlyName"])] = {**properties, "vault": vault}
    return found


def json_of(model: Any) -> dict[str, Any]:
    """An SDK model as the JSON it was read from (the models are MutableMappings over it)."""
    assert model is not None
    return dict(model)


def vms(compute: dict[str, ComputeManagementClient]) -> dict[str, Any]:
    return {str(vm.name): vm for client in compute.values() for vm in client.virtual_machines.list_all()}


def age(timestamp: str) -> timedelta:
    return START - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def test_every_state_has_exactly_one_vm() -> None:
    assert set(STATE_OF) == set(VmState)
    assert len(set(STATE_OF.values())) == len(VmState)


def test_items_carry_each_states_raw_facts(
    coverage: Emulator, backup: dict[str, RecoveryServicesBackupClient]
) -> None:
    listed = items(backup)

    assert set(listed) == {"cov-pending", "cov-current", "cov-stale", "cov-failing", "cov-stopped"} | {
        "cov-soft-deleted",
        "cov-orphaned",
    }
    pending = listed["cov-pending"]
    assert (pending["protectionState"], pending["lastBackupTime"]) == ("IRPending", NEVER)
    assert "lastRecoveryPoint" not in pending
    current = listed["cov-current"]
    assert (current["protectionState"], current["policyName"]) == ("Protected", "EnhancedDaily")
    assert age(current["lastRecoveryPoint"]) == timedelta(hours=6)
    stale = listed["cov-stale"]
    assert (stale["protectionState"], stale["policyName"]) == ("Protected", "DefaultPolicy")
    assert age(stale["lastRecoveryPoint"]) == timedelta(days=3)  # a daily policy: two runs missed
    failing = listed["cov-failing"]
    assert (failing["protectionState"], failing["healthStatus"]) == ("ProtectionError", "ActionRequired")
    assert [d["title"] for d in failing["healthDetails"]] == ["UserErrorGuestAgentStatusUnavailable"]
    stopped, soft_deleted = listed["cov-stopped"], listed["cov-soft-deleted"]
    assert (stopped["protectionState"], stopped["isScheduledForDeferredDelete"]) == (
        "ProtectionStopped",
        False,
    )
    assert age(stopped["lastRecoveryPoint"]) == timedelta(days=10)
    assert soft_deleted["protectionState"] == "ProtectionStopped"
    assert soft_deleted["isScheduledForDeferredDelete"] is True
    assert age(soft_deleted["deferredDeleteTimeInUTC"]) == timedelta(days=2)


def test_the_failing_item_has_a_failed_backup_job_with_its_error(
    coverage: Emulator, backup: dict[str, RecoveryServicesBackupClient]
) -> None:
    jobs = backup[PROD].backup_jobs.list("rsv-cov-weu", "rg-backup-weu", filter="status eq 'Failed'")

    failed = [json_of(job.properties) for job in jobs]

    assert [(job["entityFriendlyName"], [e["errorCode"] for e in job["errorDetails"]]) for job in failed] == [
        ("cov-failing", ["UserErrorGuestAgentStatusUnavailable"])
    ]


def test_the_orphaned_items_vm_is_gone(
    coverage: Emulator,
    backup: dict[str, RecoveryServicesBackupClient],
    compute: dict[str, ComputeManagementClient],
) -> None:
    orphan = items(backup)["cov-orphaned"]

    assert orphan["protectionState"] == "Protected"
    assert orphan["virtualMachineId"].lower().endswith("/virtualmachines/cov-orphaned")
    with pytest.raises(ResourceNotFoundError):
        compute[DEV].virtual_machines.get("rg-app", "cov-orphaned")


def test_vms_without_items_read_as_excluded_new_or_unprotected(
    coverage: Emulator,
    backup: dict[str, RecoveryServicesBackupClient],
    compute: dict[str, ComputeManagementClient],
) -> None:
    found = vms(compute)
    protected = set(items(backup))

    assert "cov-orphaned" not in found
    unprotected = set(found) - protected
    assert unprotected == {
        "cov-excluded",
        "cov-new",
        "cov-unprotected",
        "cov-ultra",
        "cov-denied",
        "cov-agent-not-ready",
        "cov-vault-full",
    }
    assert [name for name in unprotected if opted_out(dict(found[name].tags or {}))] == ["cov-excluded"]
    assert START - found["cov-new"].time_created == timedelta(minutes=20)  # inside the 1-hour grace period
    assert START - found["cov-unprotected"].time_created == timedelta(days=30)


def test_the_ultra_disk_vm_has_only_a_standard_policy_in_its_region(
    coverage: Emulator,
    backup: dict[str, RecoveryServicesBackupClient],
    compute: dict[str, ComputeManagementClient],
) -> None:
    vm = compute[PROD].virtual_machines.get("rg-app", "cov-ultra")
    policies = backup[PROD].backup_policies.list(
        "rsv-cov-neu", "rg-backup-neu", filter="backupManagementType eq 'AzureIaasVM'"
    )

    assert vm.location == "northeurope"
    assert [d.managed_disk.storage_account_type for d in vm.storage_profile.data_disks] == ["UltraSSD_LRS"]
    # policyType absent or V1: Standard (protection_states / preflight PolicyType)
    assert [json_of(p.properties).get("policyType", "V1") for p in policies] == ["V1"]


def test_the_denied_groups_vm_is_refused_by_pre_flight(
    coverage: Emulator, compute: dict[str, ComputeManagementClient]
) -> None:
    check = PolicyRestrictionsCheck(lambda subscription_id: compute[subscription_id])
    denied = compute[PROD].virtual_machines.get("rg-locked", "cov-denied")
    allowed = compute[PROD].virtual_machines.get("rg-app", "cov-unprotected")

    refusals = {
        vm.name: check_enrolment(
            HEALTHY_VM,
            ENHANCED,
            ROOMY_VAULT,
            [check.check(PROD, backup_pending_resources(str(vm.id), vm.location)[1], group)],
        )
        for vm, group in ((denied, "rg-locked"), (allowed, "rg-app"))
    }

    assert [r.check for r in refusals["cov-denied"]] == [PreflightCheck.DENIED_BY_POLICY]
    assert "policyAssignments/deny-restore-points" in refusals["cov-denied"][0].reason
    assert refusals["cov-unprotected"] == []


def test_the_agent_not_ready_vm_reports_it(
    coverage: Emulator, compute: dict[str, ComputeManagementClient]
) -> None:
    view = compute[PROD].virtual_machines.instance_view("rg-app", "cov-agent-not-ready")
    healthy = compute[PROD].virtual_machines.instance_view("rg-app", "cov-unprotected")

    assert [s["displayStatus"] for s in json_of(view)["vmAgent"]["statuses"]] == ["Not Ready"]
    assert [s["displayStatus"] for s in json_of(healthy)["vmAgent"]["statuses"]] == ["Ready"]


def test_the_full_vault_refuses_one_more_vm(
    coverage: Emulator,
    backup: dict[str, RecoveryServicesBackupClient],
    compute: dict[str, ComputeManagementClient],
) -> None:
    vm = compute[DEV].virtual_machines.get("rg-app", "cov-vault-full")
    vault = f"/subscriptions/{DEV}/resourceGroups/rg-backup-dev/providers/Microsoft.RecoveryServices/vaults"
    body = ProtectedItemResource(
        properties=AzureIaaSComputeVMProtectedItem(
            source_resource_id=vm.id, policy_id=f"{vault}/rsv-cov-dev-weu/backupPolicies/DefaultPolicy"
        )
    )

    with pytest.raises(HttpResponseError) as raised:
        backup[DEV].protected_items.begin_create_or_update(
            "rsv-cov-dev-weu",
            "rg-backup-dev",
            "Azure",
            "iaasvmcontainer;iaasvmcontainerv2;rg-app;cov-vault-full",
            "vm;iaasvmcontainerv2;rg-app;cov-vault-full",
            body,
            polling=False,
        )

    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "BMSUserErrorProtectedItemsLimitReached"
