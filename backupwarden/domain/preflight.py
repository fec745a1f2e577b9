"""Pre-flight before enrolling a VM: what would make enabling protection fail, decided beforehand.

Each refusal names the check, the reason and the fix an operator applies; a VM with no refusal may be
enrolled. Sources (Microsoft Learn, read 2026-12):
- "Support matrix for Azure VM backups" (learn.microsoft.com/azure/backup/backup-support-matrix-iaas,
  MicrosoftDocs/azure-docs articles/backup/backup-support-matrix-iaas.md), rows cited per rule below;
- "Support matrix for Azure Backup" (learn.microsoft.com/azure/backup/backup-support-matrix), "Vault
  support": up to 1,000 Azure VMs and up to 2,000 datasources across all workloads in one vault
  (also ../shared/reference/azure-facts.md §2);
- Azure Policy's checkPolicyRestrictions (REST spec Microsoft.PolicyInsights 2024-10-01,
  checkPolicyRestrictions.json): `fieldRestrictions[].restrictions[].result` is Required, Removed,
  Deny or Audit; `contentEvaluationResult.policyEvaluations[]` lists the policies the partial content
  is non-compliant with, with `effectDetails.policyEffect`.

What the matrix no longer restricts, so no rule here refuses it:
- Trusted Launch VMs: "Supported via Enhanced policy and Standard policy"; Standard only for REST API
  version 2025-01-01 and later, and the backup SDK this app uses sends a later one (requirements.txt,
  azure-mgmt-recoveryservicesbackup 11.2: api-version 2026-10-01);
- data disk count: "Support for backup of Azure VMs is up to 32 disks", whatever the policy type
  (the 16-disk limit of older versions of the page applied to unmanaged disks and classic VMs).

The VM agent is a warning, not a refusal (`check_agent`): enabling protection does not need the agent,
and the matrix supports backing up a VM that is shut down (crash-consistent, no agent answering) and
agentless crash-consistent backups; without a ready agent on a running VM the agent-based backups fail
with `UserErrorGuestAgentStatusUnavailable` (azure-facts §7), which the reconciler then sees and escalates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

MAX_VMS_PER_VAULT = 1000  # "Up to 1,000 Azure VMs in a single vault" (backup-support-matrix, Vault support)
MAX_ITEMS_PER_VAULT = 2000  # "Up to 2000 datasources across all workloads ... in a single vault" (same row)
MAX_DISKS_PER_VM = 32  # "Support for backup of Azure VMs is up to 32 disks" (iaas matrix, VM storage support)

# managedDisk.storageAccountType values of the disks only an Enhanced policy backs up (iaas matrix,
# VM storage support: "Ultra disks | Supported with Enhanced policy", "Premium SSD v2 | Supported with
# Enhanced policy")
ENHANCED_ONLY_DISK_TYPES = frozenset({"ultrassd_lrs", "premiumv2_lrs"})
CONFIDENTIAL_VM = "confidentialvm"  # securityProfile.securityType of a Confidential VM (compute API)
DISK_SECURITY_TYPES_REFUSED = ("trustedlaunch", "confidentialvm")  # prefixes of a disk's securityType

AGENT_READY = "ready"  # instance view vmAgent.statuses[].displayStatus of an agent that answers


class PolicyType(Enum):
    """A backup policy's `policyType` (AzureIaaSVMProtectionPolicy); absent means Standard."""

    STANDARD = "V1"
    ENHANCED = "V2"


class PreflightCheck(Enum):
    DISK_TYPE_NEEDS_ENHANCED_POLICY = "disk-type-needs-enhanced-policy"
    CONFIDENTIAL_VM = "confidential-vm"
    DATA_DISK_SECURITY_TYPE = "data-disk-security-type"
    TOO_MANY_DISKS = "too-many-disks"
    VAULT_FULL = "vault-full"
    DENIED_BY_POLICY = "denied-by-policy"
    AGENT_NOT_READY = "agent-not-ready"


@dataclass(frozen=True)
class PreflightRefusal:
    check: PreflightCheck
    reason: str
    fix: str


@dataclass(frozen=True)
class PreflightWarning:
    check: PreflightCheck
    reason: str
    fix: str


@dataclass(frozen=True)
class DiskFacts:
    name: str
    storage_account_type: str  # managedDisk.storageAccountType, e.g. Premium_LRS, PremiumV2_LRS, UltraSSD_LRS
    is_os_disk: bool = False
    security_type: str = ""  # the disk resource's securityProfile.securityType; "" when none


@dataclass(frozen=True)
class EnrolmentVm:
    vm_id: str
    security_type: str  # securityProfile.securityType: "", TrustedLaunch or ConfidentialVM
    disks: tuple[DiskFacts, ...]  # the OS disk and the data disks


@dataclass(frozen=True)
class EnrolmentPolicy:
    policy_id: str
    policy_type: PolicyType


@dataclass(frozen=True)
class VaultLoad:
    vault_id: str
    protected_vms: int  # Azure VM items in the vault (any protection state but deleted)
    protected_items: int  # items of every workload in the vault


@dataclass(frozen=True)
class FieldRestriction:
    """One entry of `fieldRestrictions[].restrictions[]`, with its field."""

    field: str
    result: str  # Required, Removed, Deny or Audit
    policy_effect: str
    policy_assignment_id: str
    reason: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyEvaluation:
    """One entry of `contentEvaluationResult.policyEvaluations[]`."""

    evaluation_result: str  # typically NonCompliant
    policy_effect: str
    policy_assignment_id: str
    policy_definition_id: str


@dataclass(frozen=True)
class PendingResource:
    """A resource Azure Backup creates when it backs the VM up, as checkPolicyRestrictions takes it."""

    resource_type: str
    location: str
    name: str | None = None
    api_version: str | None = None
    properties: tuple[tuple[str, str], ...] = ()  # flat properties: ("source.id", VM id)


@dataclass(frozen=True)
class PolicyRestrictions:
    """What Azure Policy answered for one pending resource."""

    resource: PendingResource
    field_restrictions: tuple[FieldRestriction, ...]
    policy_evaluations: tuple[PolicyEvaluation, ...]


@dataclass(frozen=True)
class AgentFacts:
    """The VM's instance view: its power state and its VM agent's status."""

    power_state: str  # e.g. "running", "deallocated" (PowerState/<x> of the instance view)
    agent_status: str | None  # vmAgent.statuses[0].displayStatus, e.g. "Ready", "Not Ready"; None if absent


# Instant Restore keeps its snapshots as a restore point collection in a resource group Azure Backup
# creates, named AzureBackupRG_<Geo>_<number> unless the policy sets a prefix ("Instant Restore
# capability", learn.microsoft.com/azure/backup/backup-instant-restore-capability). A deny on either
# fails the backup with UserErrorRequestDisallowedByPolicy (azure-facts §12).
RESTORE_POINT_COLLECTION_TYPE = "Microsoft.Compute/restorePointCollections"
RESOURCE_GROUP_TYPE = "Microsoft.Resources/resourceGroups"
BACKUP_RESOURCE_GROUP_PREFIX = "AzureBackupRG"


def backup_pending_resources(
    vm_id: str, location: str, rg_prefix: str | None = None
) -> list[PendingResource]:
    """The resources a VM's first backup creates, for Azure Policy to check: the backup's resource
    group and the restore point collection of the VM's snapshots."""
    group = f"{rg_prefix or BACKUP_RESOURCE_GROUP_PREFIX}_{location}_1"
    return [
        PendingResource(RESOURCE_GROUP_TYPE, location, name=group),
        PendingResource(RESTORE_POINT_COLLECTION_TYPE, location, properties=(("source.id", vm_id),)),
    ]


def check_enrolment(
    vm: EnrolmentVm,
    policy: EnrolmentPolicy,
    vault: VaultLoad,
    restrictions: Sequence[PolicyRestrictions],
) -> list[PreflightRefusal]:
    """Every reason enabling protection of `vm` with `policy` in `vault` would fail; empty: may enrol."""
    return [
        *_policy_fits_vm(vm, policy),
        *_vault_has_room(vault),
        *(refusal for answer in restrictions for refusal in _policy_denials(answer)),
    ]


def check_agent(agent: AgentFacts) -> PreflightWarning | None:
    """A warning when the VM runs but its agent does not report ready; a stopped VM has no agent answering
    and is backed up crash-consistent, so it gets none."""
    if agent.power_state.lower() != "running":
        return None
    status = agent.agent_status
    if status is not None and status.lower() == AGENT_READY:
        return None
    seen = "no VM agent status" if status is None else f"VM agent status {status!r}"
    return PreflightWarning(
        PreflightCheck.AGENT_NOT_READY,
        f"the VM is running with {seen}: backups will fail with UserErrorGuestAgentStatusUnavailable"
        " until the agent reports ready",
        "install or repair the Azure VM agent (Windows: WindowsAzureGuestAgent service; Linux: waagent)"
        " and let it reach the Azure endpoints (168.63.129.16)",
    )


def _policy_fits_vm(vm: EnrolmentVm, policy: EnrolmentPolicy) -> list[PreflightRefusal]:
    refusals: list[PreflightRefusal] = []
    if vm.security_type.lower() == CONFIDENTIAL_VM:
        refusals.append(
            PreflightRefusal(
                PreflightCheck.CONFIDENTIAL_VM,
                "Azure Backup does not back up Confidential VMs (support matrix: 'Back up confidential VMs:"
                " Unsupported'; the limited preview is discontinued)",
                "exclude the VM from backupwarden's scope (tag) and protect its data another way,"
                " e.g. application-level backups",
            )
        )
    enhanced_only = [d.name for d in vm.disks if d.storage_account_type.lower() in ENHANCED_ONLY_DISK_TYPES]
    if enhanced_only and policy.policy_type is not PolicyType.ENHANCED:
        refusals.append(
            PreflightRefusal(
                PreflightCheck.DISK_TYPE_NEEDS_ENHANCED_POLICY,
                f"disks {', '.join(enhanced_only)} are Ultra or Premium SSD v2, which only an Enhanced"
                f" policy backs up; {policy.policy_id} is a Standard policy",
                "choose an Enhanced (policyType V2) policy for this VM"
                " (backupwarden:policy tag or a mapping rule)",
            )
        )
    secured_data_disks = [
        d.name
        for d in vm.disks
        if not d.is_os_disk and d.security_type.lower().startswith(DISK_SECURITY_TYPES_REFUSED)
    ]
    if secured_data_disks:
        refusals.append(
            PreflightRefusal(
                PreflightCheck.DATA_DISK_SECURITY_TYPE,
                f"data disks {', '.join(secured_data_disks)} have security type TrustedLaunch or"
                " ConfidentialVM (an OS disk attached as a data disk), which Azure Backup does not back up",
                "detach those disks or exclude them with selective disk backup",
            )
        )
    data_disks = sum(1 for d in vm.disks if not d.is_os_disk)
    if data_disks > MAX_DISKS_PER_VM:
        refusals.append(
            PreflightRefusal(
                PreflightCheck.TOO_MANY_DISKS,
                f"the VM has {data_disks} data disks;"
                f" Azure Backup backs up VMs with up to {MAX_DISKS_PER_VM}",
                f"exclude disks with selective disk backup so at most {MAX_DISKS_PER_VM} remain",
            )
        )
    return refusals


def _vault_has_room(vault: VaultLoad) -> list[PreflightRefusal]:
    if vault.protected_vms >= MAX_VMS_PER_VAULT:
        reason = f"the vault protects {vault.protected_vms} Azure VMs, its limit is {MAX_VMS_PER_VAULT}"
    elif vault.protected_items >= MAX_ITEMS_PER_VAULT:
        reason = f"the vault protects {vault.protected_items} items, its limit is {MAX_ITEMS_PER_VAULT}"
    else:
        return []
    return [
        PreflightRefusal(
            PreflightCheck.VAULT_FULL,
            f"{reason} ({vault.vault_id})",
            "route VMs of this region to another vault (a mapping rule)"
            " or stop protecting items no longer needed",
        )
    ]


def _policy_denials(answer: PolicyRestrictions) -> list[PreflightRefusal]:
    """A restriction blocks when policy denies a field's value, or requires a field with a deny effect
    (Azure Backup sets neither tags nor other fields on what it creates); a non-compliant evaluation
    blocks when its effect is deny. Audit and Removed restrictions do not block."""
    what = answer.resource.name or answer.resource.resource_type
    refusals = [
        PreflightRefusal(
            PreflightCheck.DENIED_BY_POLICY,
            f"policy {r.policy_assignment_id} would deny {what}: {r.field}: {r.reason or r.result}",
            _POLICY_FIX,
        )
        for r in answer.field_restrictions
        if r.result.lower() == "deny"
        or (r.result.lower() == "required" and r.policy_effect.lower() == "deny")
    ]
    refusals += [
        PreflightRefusal(
            PreflightCheck.DENIED_BY_POLICY,
            f"policy {e.policy_assignment_id} ({e.policy_definition_id}) would deny {what}:"
            f" {e.evaluation_result}",
            _POLICY_FIX,
        )
        for e in answer.policy_evaluations
        if e.evaluation_result.lower() == "noncompliant" and e.policy_effect.lower() == "deny"
    ]
    return refusals


_POLICY_FIX = (
    "exempt Azure Backup's resource group and restore point collections from the assignment"
    " (a policy exemption), or create the AzureBackupRG_<region>_1 resource group beforehand as the policy"
    " requires"
)
