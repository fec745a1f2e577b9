"""Pre-flight before enrolling a VM (backupwarden/domain/preflight.py): each refusal and its absence.

Sources: "Support matrix for Azure VM backups" (learn.microsoft.com/azure/backup/backup-support-matrix-iaas,
"iaas matrix" below), "Support matrix for Azure Backup" (backup-support-matrix, "Vault support") and the
checkPolicyRestrictions REST spec (Microsoft.PolicyInsights 2024-10-01).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backupwarden.domain.preflight import (
    MAX_DISKS_PER_VM,
    MAX_ITEMS_PER_VAULT,
    MAX_VMS_PER_VAULT,
    AgentFacts,
    DiskFacts,
    EnrolmentPolicy,
    EnrolmentVm,
    FieldRestriction,
    PolicyEvaluation,
    PolicyRestrictions,
    PreflightCheck,
    PreflightRefusal,
    backup_pending_resources,
    check_agent,
    check_enrolment,
)
from tests.preflight_fixtures import ENHANCED, HEALTHY_VM, ROOMY_VAULT, STANDARD, SUBSCRIPTION, VM_ID

ASSIGNMENT = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/policyAssignments/deny-rpc"
DEFINITION = "/providers/Microsoft.Authorization/policyDefinitions/deny-rpc"
COLLECTION = backup_pending_resources(VM_ID, "westeurope")[1]


def checks(refusals: Sequence[PreflightRefusal]) -> list[PreflightCheck]:
    return [r.check for r in refusals]


def with_disks(*disks: DiskFacts) -> EnrolmentVm:
    return replace(HEALTHY_VM, disks=(DiskFacts("vm1-os", "Premium_LRS", is_os_disk=True), *disks))


def no_restrictions() -> list[PolicyRestrictions]:
    return [
        PolicyRestrictions(resource, (), ()) for resource in backup_pending_resources(VM_ID, "westeurope")
    ]


def test_a_healthy_vm_with_a_standard_policy_in_a_roomy_vault_may_enrol() -> None:
    assert check_enrolment(HEALTHY_VM, STANDARD, ROOMY_VAULT, no_restrictions()) == []


# --- the policy fits the VM ------------------------------------------------------------------------


@pytest.mark.parametrize("disk_type", ["UltraSSD_LRS", "PremiumV2_LRS", "ultrassd_lrs"])
def test_ultra_and_premium_ssd_v2_disks_refuse_a_standard_policy(disk_type: str) -> None:
    """iaas matrix, VM storage support: 'Ultra disks | Supported with Enhanced policy',
    'Premium SSD v2 | Supported with Enhanced policy'."""
    vm = with_disks(DiskFacts("fast", disk_type))

    refusals = check_enrolment(vm, STANDARD, ROOMY_VAULT, [])

    assert checks(refusals) == [PreflightCheck.DISK_TYPE_NEEDS_ENHANCED_POLICY]
    assert "fast" in refusals[0].reason
    assert "Enhanced" in refusals[0].fix


@pytest.mark.parametrize("disk_type", ["UltraSSD_LRS", "PremiumV2_LRS"])
def test_ultra_and_premium_ssd_v2_disks_enrol_with_an_enhanced_policy(disk_type: str) -> None:
    """iaas matrix, VM storage support (as above)."""
    assert check_enrolment(with_disks(DiskFacts("fast", disk_type)), ENHANCED, ROOMY_VAULT, []) == []


@pytest.mark.parametrize("policy", [STANDARD, ENHANCED])
def test_trusted_launch_vms_enrol_with_either_policy_type(policy: EnrolmentPolicy) -> None:
    """iaas matrix, VM compute support, 'Back up trusted launch VMs': supported via Enhanced and Standard
    policy (Standard from REST API 2025-01-01; the app's backup SDK sends 2026-10-01)."""
    vm = replace(HEALTHY_VM, security_type="TrustedLaunch")

    assert check_enrolment(vm, policy, ROOMY_VAULT, []) == []


@pytest.mark.parametrize("policy", [STANDARD, ENHANCED])
def test_confidential_vms_are_refused_whatever_the_policy(policy: EnrolmentPolicy) -> None:
    """iaas matrix, VM compute support, 'Back up confidential VMs | Unsupported' (preview discontinued)."""
    vm = replace(HEALTHY_VM, security_type="ConfidentialVM")

    refusals = check_enrolment(vm, policy, ROOMY_VAULT, [])

    assert checks(refusals) == [PreflightCheck.CONFIDENTIAL_VM]


@pytest.mark.parametrize(
    "security_type", ["TrustedLaunch", "ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey"]
)
def test_a_data_disk_with_a_security_type_is_refused(security_type: str) -> None:
    """iaas matrix, 'Back up trusted launch VMs': 'Backup of a VM with Data disks having Security Type
    TrustedLaunch or ConfidentialVM is not supported'."""
    vm = with_disks(DiskFacts("old-os-disk", "Premium_LRS", security_type=security_type))

    refusals = check_enrolment(vm, ENHANCED, ROOMY_VAULT, [])

    assert checks(refusals) == [PreflightCheck.DATA_DISK_SECURITY_TYPE]
    assert "old-os-disk" in refusals[0].reason


def test_a_trusted_launch_os_disk_is_not_a_data_disk_refusal() -> None:
    """The rule is about data disks only (iaas matrix, as above)."""
    vm = replace(
        HEALTHY_VM,
        security_type="TrustedLaunch",
        disks=(DiskFacts("vm1-os", "Premium_LRS", is_os_disk=True, security_type="TrustedLaunch"),),
    )

    assert check_enrolment(vm, ENHANCED, ROOMY_VAULT, []) == []


@settings(max_examples=200, deadline=None)
@given(data_disks=st.integers(min_value=0, max_value=64), policy=st.sampled_from([STANDARD, ENHANCED]))
def test_up_to_32_data_disks_enrol_with_either_policy_and_more_are_refused(
    data_disks: int, policy: EnrolmentPolicy
) -> None:
    """iaas matrix, VM storage support: 'Support for backup of Azure VMs is up to 32 disks'."""
    vm = with_disks(*(DiskFacts(f"d{i}", "Premium_LRS") for i in range(data_disks)))

    refusals = check_enrolment(vm, policy, ROOMY_VAULT, [])

    expected = [PreflightCheck.TOO_MANY_DISKS] if data_disks > MAX_DISKS_PER_VM else []
    assert checks(refusals) == expected


# --- the vault has room -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(vms=st.integers(min_value=0, max_value=1500), others=st.integers(min_value=0, max_value=1500))
def test_a_vault_refuses_at_1000_vms_or_2000_items(vms: int, others: int) -> None:
    """backup-support-matrix, Vault support: 'Up to 1,000 Azure VMs in a single vault', 'Up to 2000
    datasources across all workloads'; azure-facts §2."""
    vault = replace(ROOMY_VAULT, protected_vms=vms, protected_items=vms + others)

    refusals = check_enrolment(HEALTHY_VM, STANDARD, vault, [])

    full = vms >= MAX_VMS_PER_VAULT or vms + others >= MAX_ITEMS_PER_VAULT
    assert checks(refusals) == ([PreflightCheck.VAULT_FULL] if full else [])


def test_the_999th_vm_still_fits_and_the_1000th_does_not() -> None:
    """backup-support-matrix, Vault support (1,000 VMs: the new one would be the 1,001st)."""
    assert check_enrolment(HEALTHY_VM, STANDARD, replace(ROOMY_VAULT, protected_vms=999), []) == []
    refusals = check_enrolment(HEALTHY_VM, STANDARD, replace(ROOMY_VAULT, protected_vms=1000), [])
    assert checks(refusals) == [PreflightCheck.VAULT_FULL]
    assert ROOMY_VAULT.vault_id in refusals[0].reason


# --- no policy denies what the backup creates -----------------------------------------------------


def field(result: str, effect: str = "Deny", name: str = "location") -> FieldRestriction:
    return FieldRestriction(name, result, effect, ASSIGNMENT, f"{name} is restricted")


def evaluation(result: str = "NonCompliant", effect: str = "Deny") -> PolicyEvaluation:
    return PolicyEvaluation(result, effect, ASSIGNMENT, DEFINITION)


def test_a_non_compliant_deny_evaluation_on_the_restore_point_collection_is_refused() -> None:
    """checkPolicyRestrictions spec: contentEvaluationResult.policyEvaluations, evaluationResult
    NonCompliant with effectDetails.policyEffect Deny: the content 'will be denied as-is'."""
    answer = PolicyRestrictions(COLLECTION, (), (evaluation(),))

    refusals = check_enrolment(HEALTHY_VM, STANDARD, ROOMY_VAULT, [answer])

    assert checks(refusals) == [PreflightCheck.DENIED_BY_POLICY]
    assert ASSIGNMENT in refusals[0].reason
    assert "Microsoft.Compute/restorePointCollections" in refusals[0].reason
    assert "exemption" in refusals[0].fix


@pytest.mark.parametrize("effect", ["Audit", "AuditIfNotExists", "Modify"])
def test_a_non_compliant_evaluation_without_deny_does_not_refuse(effect: str) -> None:
    """checkPolicyRestrictions spec (includeAuditEffect): audit results only report."""
    answer = PolicyRestrictions(COLLECTION, (), (evaluation(effect=effect),))

    assert check_enrolment(HEALTHY_VM, STANDARD, ROOMY_VAULT, [answer]) == []


def test_a_denied_field_on_the_backup_resource_group_is_refused() -> None:
    """checkPolicyRestrictions spec: FieldRestriction result Deny ('will be denied by policy'); the
    backup's resource group is AzureBackupRG_<region>_1 (Instant Restore capability)."""
    group = backup_pending_resources(VM_ID, "westeurope")[0]

    refusals = check_enrolment(
        HEALTHY_VM, STANDARD, ROOMY_VAULT, [PolicyRestrictions(group, (field("Deny"),), ())]
    )

    assert checks(refusals) == [PreflightCheck.DENIED_BY_POLICY]
    assert "AzureBackupRG_westeurope_1" in refusals[0].reason


def test_a_tag_required_by_a_deny_policy_is_refused_and_one_required_by_audit_is_not() -> None:
    """checkPolicyRestrictions spec: result Required with policyEffect Deny (the spec's example: 'tags.newtag
    is required'); Azure Backup sets no tags on what it creates."""
    required_by_deny = PolicyRestrictions(COLLECTION, (field("Required", "Deny", "tags.owner"),), ())
    required_by_audit = PolicyRestrictions(COLLECTION, (field("Required", "Audit", "tags.owner"),), ())

    assert checks(check_enrolment(HEALTHY_VM, STANDARD, ROOMY_VAULT, [required_by_deny])) == [
        PreflightCheck.DENIED_BY_POLICY
    ]
    assert check_enrolment(HEALTHY_VM, STANDARD, ROOMY_VAULT, [required_by_audit]) == []


@pytest.mark.parametrize("result", ["Audit", "Removed"])
def test_audit_and_removed_field_restrictions_do_not_refuse(result: str) -> None:
    """checkPolicyRestrictions spec, FieldRestrictionResult: Audit is only audited, Removed is removed."""
    answer = PolicyRestrictions(COLLECTION, (field(result, effect=result),), ())

    assert check_enrolment(HEALTHY_VM, STANDARD, ROOMY_VAULT, [answer]) == []


def test_every_failing_check_is_reported_at_once() -> None:
    """An operator fixes everything in one go: each check reports independently."""
    vm = replace(HEALTHY_VM, security_type="ConfidentialVM", disks=(DiskFacts("u", "UltraSSD_LRS"),))
    full = replace(ROOMY_VAULT, protected_vms=MAX_VMS_PER_VAULT)
    denied = PolicyRestrictions(COLLECTION, (), (evaluation(),))

    assert checks(check_enrolment(vm, STANDARD, full, [denied])) == [
        PreflightCheck.CONFIDENTIAL_VM,
        PreflightCheck.DISK_TYPE_NEEDS_ENHANCED_POLICY,
        PreflightCheck.VAULT_FULL,
        PreflightCheck.DENIED_BY_POLICY,
    ]


# --- the VM agent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Not Ready", None])
def test_a_running_vm_whose_agent_is_not_ready_gets_a_warning(status: str | None) -> None:
    """iaas matrix: agent-based backup runs through an extension of the VM agent; failures show as
    UserErrorGuestAgentStatusUnavailable (azure-facts §7). A warning: enabling protection does not need it."""
    warning = check_agent(AgentFacts("running", status))

    assert warning is not None
    assert warning.check is PreflightCheck.AGENT_NOT_READY
    assert "agent" in warning.fix


@pytest.mark.parametrize(
    ("power_state", "status"),
    [("running", "Ready"), ("running", "ready"), ("deallocated", None), ("stopped", None)],
)
def test_a_ready_agent_or_a_stopped_vm_gets_no_warning(power_state: str, status: str | None) -> None:
    """iaas matrix: a VM that is shut down is backed up crash-consistent, with no agent answering."""
    assert check_agent(AgentFacts(power_state, status)) is None
