"""The Recovery Services backend: vault lookups, protection, backups, jobs and their lifecycles.

State lives in the shared estate (`emulator.estate`); gradual changes (operations and jobs
going from InProgress to their end) are transitions scheduled on `emulator.timeline`.

Choices where the real service is not documented:
- A protected item appears (as IRPending) only when its configure operation succeeds; before
  that GET answers 404, and the VM counts as "being configured" for the duplicate and
  vault-size checks.
- A PUT for a VM the same vault already protects (or is configuring) is an update of the
  policy: a new configure operation and ConfigureBackup job; another vault gets 400. An earlier
  operation it supersedes (say a retry whose first answer was lost) still ends, with its job.
- The on-demand limit counts every Backup job of the item started in the current UTC day.
- Without a time window, `backupJobs` lists every job of the vault.
- With `job_list_lag_s`, a job is missing from `backupJobs` lists for that long after it started,
  while `backupJobs/{id}` finds it at once (as recorded: the id comes from the operation and the
  GET answers). How long real lists trail is not documented; issue 13 asks for the delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator.core.signing import OperationUrlSigner
from emulator.estate import (
    AsyncOperation,
    BackupJob,
    BackupPolicy,
    Estate,
    ProtectedItem,
    Vault,
    VirtualMachine,
)
from emulator.recoveryservices import exceptions as errors
from emulator.recoveryservices.filters import parse_filter, parse_filter_time

if TYPE_CHECKING:
    from emulator.core.app import Emulator

VM_ITEM_TYPE = "microsoft.compute/virtualmachines"
IAAS_VM = "azureiaasvm"

# Messages and recommendations of documented job failure codes (azure-facts §7).
JOB_ERRORS: dict[str, tuple[str, list[str]]] = {
    "UserErrorGuestAgentStatusUnavailable": (
        "VM Agent unable to communicate with Azure Backup",
        ["Ensure the VM agent is installed, up to date and running, then retry the operation."],
    ),
    "GuestAgentSnapshotTaskStatusError": (
        "Could not communicate with the VM agent for snapshot status",
        ["Ensure the VM agent is running and the VM has network connectivity, then retry."],
    ),
    "ExtensionSnapshotFailedNoNetwork": (
        "Snapshot operation failed due to no network connectivity on the virtual machine",
        ["Ensure the VM can reach Azure storage and retry the operation."],
    ),
    "UserErrorVmProvisioningStateFailed": (
        "The VM is in failed provisioning state",
        ["Restart the VM so that its provisioning state is Succeeded, then retry."],
    ),
    "BackUpOperationFailed": (
        "Backup failed with an internal error",
        ["Retry the operation after some time."],
    ),
    "BackUpOperationFailedV2": (
        "Backup failed with an internal error",
        ["Retry the operation after some time."],
    ),
    "UserErrorVmNotFoundV2": ("The virtual machine does not exist", ["Stop protection of the deleted VM."]),
    "UserErrorRpCollectionLimitReached": (
        "The Restore Point collection max limit has reached",
        ["Delete restore points of the VM that are not needed, then retry."],
    ),
    "UserErrorRequestDisallowedByPolicy": (
        "An Azure Policy assignment blocks the snapshot the backup needs",
        ["Exempt the VM's resource group from the policy that denies the snapshot, then retry."],
    ),
    "UserErrorUnsupportedDiskSize": (
        "The VM has a disk size Azure Backup does not support",
        ["Resize or exclude the unsupported disk."],
    ),
    "UserErrorKeyvaultPermissionsNotConfigured": (
        "Azure Backup has no permission on the key vault of the encrypted VM",
        ["Grant the Backup Management Service access to the key vault."],
    ),
}


SETTINGS = {
    "page_size",
    "on_demand_backups_per_day",
    "signed_operation_urls",
    "unscaled_retry_after",
    "job_list_lag_s",
}


@dataclass
class PendingConfiguration:
    """A configure-protection operation that has not ended yet."""

    vault_id: str
    vm: VirtualMachine
    policy_id: str
    op_id: str


def _vault_key(subscription_id: str, resource_group: str, vault_name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.RecoveryServices/vaults/{vault_name}"
    ).lower()


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


class RecoveryServicesBackend:
    """Rules of Recovery Services vaults and Azure Backup for IaaS VMs."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.page_size = 200  # items per page of backupProtectedItems and backupJobs
        self.on_demand_backups_per_day = 9
        # Realism knobs (docs/emulator.md section 7), all off by default.
        self.signed_operation_urls = False  # t, c, s, h on Location / Azure-AsyncOperation URLs
        self.unscaled_retry_after = False  # 202s say timings.retry_after_s as is, whatever the clock scale
        self.job_list_lag_s = 0.0  # a job shows in backupJobs lists this long after it started
        self.signer = OperationUrlSigner()
        self.configuring: dict[str, PendingConfiguration] = {}  # lower VM id -> pending

    scenario_section = "recoveryservices"

    def configure(self, section: dict[str, Any]) -> None:
        """Scenario settings: `page_size`, `on_demand_backups_per_day` and the realism knobs."""
        unknown = set(section) - SETTINGS
        if unknown:
            raise ValueError(
                f"recoveryservices: unknown settings {sorted(unknown)}; known: {sorted(SETTINGS)}"
            )
        for name in ("page_size", "on_demand_backups_per_day"):
            if name in section:
                value = section[name]
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"recoveryservices.{name} must be a positive integer, got {value!r}")
                setattr(self, name, value)
        for name in ("signed_operation_urls", "unscaled_retry_after"):
            if name in section:
                if not isinstance(section[name], bool):
                    raise ValueError(f"recoveryservices.{name} must be true or false, got {section[name]!r}")
                setattr(self, name, section[name])
        if "job_list_lag_s" in section:
            lag = section["job_list_lag_s"]
            if not isinstance(lag, int | float) or isinstance(lag, bool) or lag < 0:
                raise ValueError(f"recoveryservices.job_list_lag_s must be a number >= 0, got {lag!r}")
            self.job_list_lag_s = float(lag)

    @property
    def estate(self) -> Estate:
        return self.emulator.estate

    def now(self) -> datetime:
        return self.emulator.clock.now()

    # --- vaults and policies ----------------------------------------------------------
    def vaults(self, subscription_id: str, resource_group: str | None = None) -> list[Vault]:
        found = [
            vault
            for vault in self.estate.vaults.values()
            if _same(vault.subscription_id, subscription_id)
            and (resource_group is None or _same(vault.resource_group, resource_group))
        ]
        return sorted(found, key=lambda vault: vault.id.lower())

    def vault(self, subscription_id: str, resource_group: str, vault_name: str) -> Vault:
        vault = self.estate.vaults.get(_vault_key(subscription_id, resource_group, vault_name))
        if vault is None:
            raise errors.VaultNotFound(resource_group, vault_name)
        return vault

    def policies(self, vault: Vault, odata_filter: str | None = None) -> list[BackupPolicy]:
        clauses = parse_filter(odata_filter, frozenset({"backupmanagementtype"}))
        if not _is_iaas_vm(clauses):
            return []
        found = [policy for policy in self.estate.policies.values() if _same(policy.vault_id, vault.id)]
        return sorted(found, key=lambda policy: policy.name.lower())

    def policy(self, vault: Vault, policy_name: str) -> BackupPolicy:
        policy = self.estate.policies.get(f"{vault.id}/backupPolicies/{policy_name}".lower())
        if policy is None:
            raise errors.BackupObjectNotFound(
                f"The backup policy '{policy_name}' was not found in the vault."
            )
        return policy

    def items_with_policy(self, policy: BackupPolicy) -> int:
        # a soft-deleted item no longer has a policy (it reads policyId "")
        return sum(
            1
            for item in self.estate.protected_items.values()
            if _same(item.policy_id, policy.id) and item.soft_deleted_at is None
        )

    # --- discovery ----------------------------------------------------------------------
    def protectable_vms(self, vault: Vault, odata_filter: str | None = None) -> list[VirtualMachine]:
        clauses = parse_filter(odata_filter, frozenset({"backupmanagementtype", "workloadtype"}))
        if not _is_iaas_vm(clauses) or clauses.get("workloadtype", "vm").lower() != "vm":
            return []
        discovered = self.estate.discovered.get(vault.id.lower(), set())
        found = [
            vm
            for vm_key, vm in self.estate.vms.items()
            if vm_key in discovered
            and self._fits_vault(vm, vault)
            and vm_key not in self.estate.protected_items
            and vm_key not in self.configuring
        ]
        return sorted(found, key=lambda vm: vm.id.lower())

    def refresh_containers(self, vault: Vault) -> AsyncOperation:
        now = self.now()
        op = AsyncOperation(vault_id=vault.id, kind="refreshContainers", start_time=now)
        self.estate.operations[op.op_id] = op
        due = now + timedelta(seconds=self.estate.timings.refresh_containers_s)
        self.emulator.timeline.at(due, lambda at: self._finish_refresh(op, vault, at))
        return op

    def _finish_refresh(self, op: AsyncOperation, vault: Vault, at: datetime) -> None:
        discovered = self.estate.discovered.setdefault(vault.id.lower(), set())
        discovered.update(key for key, vm in self.estate.vms.items() if self._fits_vault(vm, vault))
        op.status, op.end_time = "Succeeded", at

    @staticmethod
    def _fits_vault(vm: VirtualMachine, vault: Vault) -> bool:
        return _same(vm.subscription_id, vault.subscription_id) and _same(vm.location, vault.location)

    # --- operations ---------------------------------------------------------------------
    def operation(self, vault: Vault, op_id: str, kind: str | None = None) -> AsyncOperation:
        op = self.estate.operations.get(op_id) or self.estate.operations.get(op_id.lower())
        if op is None or not _same(op.vault_id, vault.id) or (kind is not None and op.kind != kind):
            raise errors.BackupObjectNotFound(f"The operation '{op_id}' was not found in the vault.")
        return op

    # --- protection ---------------------------------------------------------------------
    def enable_protection(
        self, vault: Vault, container_name: str, item_name: str, body: dict[str, Any]
    ) -> AsyncOperation:
        vm, policy = self._validate_protection(vault, container_name, item_name, body)
        now = self.now()
        job = self.estate.add_job(
            BackupJob(vault_id=vault.id, vm=vm, operation="ConfigureBackup", start_time=now)
        )
        op = AsyncOperation(vault_id=vault.id, kind="configureProtection", start_time=now, job_id=job.job_id)
        self.estate.operations[op.op_id] = op
        self.configuring[vm.id.lower()] = PendingConfiguration(vault.id, vm, policy.id, op.op_id)
        due = now + timedelta(seconds=self.estate.timings.configure_operation_s)
        self.emulator.timeline.at(due, lambda at: self._finish_configure(op, job, at))
        return op

    def _validate_protection(
        self, vault: Vault, container_name: str, item_name: str, body: dict[str, Any]
    ) -> tuple[VirtualMachine, BackupPolicy]:
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise errors.InvalidBackupRequest("The request body must carry 'properties'.")
        item_type = str(properties.get("protectedItemType") or "")
        if item_type.lower() != VM_ITEM_TYPE:
            raise errors.InvalidBackupRequest(
                f"protectedItemType '{item_type}' is not supported; use 'Microsoft.Compute/virtualMachines'."
            )
        source_id = str(properties.get("sourceResourceId") or "")
        policy_id = str(properties.get("policyId") or "")
        if not source_id or not policy_id:
            raise errors.InvalidBackupRequest("Both sourceResourceId and policyId are required.")
        vm = self.estate.vms.get(source_id.lower())
        if vm is None:
            raise errors.VmNotFound(source_id)
        if not _same(container_name, vm.container_name) or not _same(item_name, vm.item_name):
            raise errors.InvalidBackupRequest(
                f"The container '{container_name}' and item '{item_name}' do not name the virtual machine "
                f"'{vm.name}'; expected '{vm.container_name}' and '{vm.item_name}'."
            )
        if not _same(vm.subscription_id, vault.subscription_id):
            raise errors.VmInDifferentSubscription()
        if not _same(vm.location, vault.location):
            raise errors.VmInDifferentRegion(vm.location, vault.location)
        policy = self.estate.policies.get(policy_id.lower())
        if policy is None or not _same(policy.vault_id, vault.id):
            raise errors.PolicyNotFound(policy_id)
        self._check_not_elsewhere(vm, vault)
        self._check_vault_room(vm, vault)
        return vm, policy

    def _check_not_elsewhere(self, vm: VirtualMachine, vault: Vault) -> None:
        key = vm.id.lower()
        owner = self.estate.protected_items.get(key)
        pending = self.configuring.get(key)
        for vault_id in (owner.vault_id if owner else None, pending.vault_id if pending else None):
            if vault_id is not None and not _same(vault_id, vault.id):
                raise errors.VmAlreadyProtected(vm.name, vault_id)

    def _check_vault_room(self, vm: VirtualMachine, vault: Vault) -> None:
        members = {key for key, item in self.estate.protected_items.items() if _same(item.vault_id, vault.id)}
        members |= {key for key, pending in self.configuring.items() if _same(pending.vault_id, vault.id)}
        if vm.id.lower() not in members and len(members) >= vault.max_items:
            raise errors.VaultItemLimitReached(vault.max_items)

    def _finish_configure(self, op: AsyncOperation, job: BackupJob, at: datetime) -> None:
        key = job.vm.id.lower()
        pending = self.configuring.get(key)
        if pending is None or pending.op_id != op.op_id:
            # Superseded by a later PUT (a retry whose first answer was lost): it still ends.
            job.status, job.end_time = "Completed", at
            op.status, op.end_time = "Succeeded", at
            return
        del self.configuring[key]
        item = self.estate.protected_items.get(key)
        if item is None:
            item = ProtectedItem(
                vault_id=pending.vault_id, vm=job.vm, policy_id=pending.policy_id, configured_at=at
            )
            self.estate.protected_items[key] = item
        else:
            item.policy_id = pending.policy_id
        job.status, job.end_time = "Completed", at
        op.status, op.end_time = "Succeeded", at

    def protected_item(self, vault: Vault, container_name: str, item_name: str) -> ProtectedItem:
        def named(item: ProtectedItem) -> bool:
            return (
                _same(item.vault_id, vault.id)
                and _same(item.vm.container_name, container_name)
                and _same(item.vm.item_name, item_name)
            )

        # items are keyed by VM id, which the item name spells (…;{rg};{vm}, the vault's subscription)
        _, _, rg_and_vm = item_name.lower().rpartition("iaasvmcontainerv2;")
        resource_group, _, vm_name = rg_and_vm.partition(";")
        vm_id = (
            f"/subscriptions/{vault.subscription_id}/resourcegroups/{resource_group}"
            f"/providers/microsoft.compute/virtualmachines/{vm_name}"
        ).lower()
        keyed = self.estate.protected_items.get(vm_id)
        if keyed is not None and named(keyed):
            return keyed
        for item in self.estate.protected_items.values():
            if named(item):
                return item
        raise errors.BackupObjectNotFound(
            f"The protected item '{item_name}' in container '{container_name}' was not found in the vault."
        )

    def protected_items(self, vault: Vault, odata_filter: str | None = None) -> list[ProtectedItem]:
        allowed = frozenset(
            {"backupmanagementtype", "itemtype", "policyname", "protectionstate", "containername"}
        )
        clauses = parse_filter(odata_filter, allowed)
        if not _is_iaas_vm(clauses) or clauses.get("itemtype", "vm").lower() != "vm":
            return []
        found = [
            item
            for item in self.estate.protected_items.values()
            if _same(item.vault_id, vault.id) and _item_matches(item, clauses)
        ]
        return sorted(found, key=lambda item: item.id.lower())

    # --- backups ------------------------------------------------------------------------
    def trigger_backup(
        self, vault: Vault, container_name: str, item_name: str, body: dict[str, Any]
    ) -> AsyncOperation:
        item = self.protected_item(vault, container_name, item_name)
        properties = body.get("properties")
        if not isinstance(properties, dict) or str(properties.get("objectType", "")) != "IaasVMBackupRequest":
            raise errors.InvalidBackupRequest(
                "The backup request must be {'properties': {'objectType': 'IaasVMBackupRequest'}}."
            )
        now = self.now()
        backups = [job for job in self._item_jobs(item) if job.operation == "Backup"]
        if any(job.status == "InProgress" for job in backups):
            raise errors.BackupOperationInProgress()
        today = [job for job in backups if job.start_time.date() == now.date()]
        if len(today) >= self.on_demand_backups_per_day:
            raise errors.OnDemandBackupLimitReached(self.on_demand_backups_per_day)
        job = self.start_backup_job(item, started=now)
        op = AsyncOperation(vault_id=vault.id, kind="backup", start_time=now, job_id=job.job_id)
        self.estate.operations[op.op_id] = op
        due = now + timedelta(seconds=self.estate.timings.backup_operation_s)
        self.emulator.timeline.at(due, lambda at: _succeed(op, at))
        return op

    def start_backup_job(self, item: ProtectedItem, started: datetime) -> BackupJob:
        """A Backup job of `item` running from `started`; it ends after `timings.backup_job_s`."""
        job = self.estate.add_job(
            BackupJob(vault_id=item.vault_id, vm=item.vm, operation="Backup", start_time=started)
        )
        due = started + timedelta(seconds=self.estate.timings.backup_job_s)
        self.emulator.timeline.at(due, lambda at: self._end_backup(job, at))
        return job

    def _item_jobs(self, item: ProtectedItem) -> list[BackupJob]:
        return [
            job
            for job in self.estate.jobs_by_vm.get(item.vm.id.lower(), [])
            if _same(job.vault_id, item.vault_id) and _same(job.vm.id, item.vm.id)
        ]

    def _end_backup(self, job: BackupJob, at: datetime) -> None:
        if job.status != "InProgress":
            return
        plan_key = job.vm.id.lower()
        plan = self.estate.failure_plans.get(plan_key)
        if plan is not None:
            plan.attempts -= 1
            if plan.attempts <= 0:
                del self.estate.failure_plans[plan_key]
            _fail_job(job, plan.error_code, at)
        elif job.vm.vm_agent_status.lower() != "ready":
            # every emulated VM is running, and a running VM's backup goes through its agent (azure-facts §12)
            _fail_job(job, AGENT_UNAVAILABLE, at)
        else:
            job.status, job.end_time = self.estate.timings.job_outcome, at
        item = self.estate.protected_items.get(job.vm.id.lower())
        if item is not None and _same(item.vault_id, job.vault_id):
            _record_backup(item, job, at)

    # --- jobs ---------------------------------------------------------------------------
    def jobs(self, vault: Vault, odata_filter: str | None = None) -> list[BackupJob]:
        allowed = frozenset({"status", "operation", "starttime", "endtime", "backupmanagementtype", "jobid"})
        clauses = parse_filter(odata_filter, allowed)
        window_start = parse_filter_time(clauses["starttime"]) if "starttime" in clauses else None
        window_end = parse_filter_time(clauses["endtime"]) if "endtime" in clauses else None
        if not _is_iaas_vm(clauses):
            return []
        listed_by = self.now() - timedelta(seconds=self.job_list_lag_s)
        found = [
            job
            for job in self.estate.jobs.values()
            if _same(job.vault_id, vault.id)
            and (not self.job_list_lag_s or job.start_time <= listed_by)
            and _job_matches(job, clauses)
            and (window_start is None or job.start_time >= window_start)
            and (window_end is None or job.start_time <= window_end)
        ]
        return sorted(found, key=lambda job: (-job.start_time.timestamp(), job.job_id))

    def job(self, vault: Vault, job_name: str) -> BackupJob:
        job = self.estate.jobs.get(job_name) or self.estate.jobs.get(job_name.lower())
        if job is None or not _same(job.vault_id, vault.id):
            raise errors.BackupObjectNotFound(f"The job '{job_name}' was not found in the vault.")
        return job

    def policy_name_of(self, job: BackupJob) -> str | None:
        """The name of the policy the job's VM is protected (or being protected) with."""
        key = job.vm.id.lower()
        pending, item = self.configuring.get(key), self.estate.protected_items.get(key)
        policy_id = pending.policy_id if pending else (item.policy_id if item else None)
        return policy_id.rstrip("/").rsplit("/", 1)[-1] if policy_id else None

    # --- protection check of one VM -----------------------------------------------------
    def backup_status(
        self, subscription_id: str, body: dict[str, Any]
    ) -> tuple[ProtectedItem | None, Vault | None]:
        resource_id = body.get("resourceId")
        if not isinstance(resource_id, str) or not resource_id:
            raise errors.InvalidBackupRequest("The request body must carry 'resourceId'.")
        resource_type = str(body.get("resourceType") or "VM")
        if resource_type.lower() != "vm":
            raise errors.InvalidBackupRequest(f"resourceType '{resource_type}' is not supported; use 'VM'.")
        item = self.estate.protected_items.get(resource_id.lower())
        if item is None or not _same(item.vm.subscription_id, subscription_id):
            return None, None
        return item, self.estate.vaults.get(item.vault_id.lower())


AGENT_UNAVAILABLE = "UserErrorGuestAgentStatusUnavailable"


def _is_iaas_vm(clauses: dict[str, str]) -> bool:
    return clauses.get("backupmanagementtype", "AzureIaasVM").lower() == IAAS_VM


def _item_matches(item: ProtectedItem, clauses: dict[str, str]) -> bool:
    policy_name = item.policy_id.rstrip("/").rsplit("/", 1)[-1]
    checks = {
        "policyname": policy_name,
        "protectionstate": item.protection_state,
        "containername": item.vm.container_name,
    }
    return all(_same(clauses[name], value) for name, value in checks.items() if name in clauses)


def _job_matches(job: BackupJob, clauses: dict[str, str]) -> bool:
    checks = {"status": job.status, "operation": job.operation, "jobid": job.job_id}
    return all(_same(clauses[name], value) for name, value in checks.items() if name in clauses)


def _succeed(op: AsyncOperation, at: datetime) -> None:
    op.status, op.end_time = "Succeeded", at


def _fail_job(job: BackupJob, error_code: str, at: datetime) -> None:
    message, recommendations = JOB_ERRORS.get(
        error_code, ("The backup operation failed.", ["Retry the operation after some time."])
    )
    job.status, job.end_time = "Failed", at
    job.error_code, job.error_message, job.recommendations = error_code, message, list(recommendations)


def _record_backup(item: ProtectedItem, job: BackupJob, at: datetime) -> None:
    """What a finished backup job changes on its item (azure-facts §1): a successful one leaves it
    Protected and healthy again, whatever error an earlier backup left."""
    if job.status in ("Completed", "CompletedWithWarnings"):
        item.health_status, item.health_details = None, []
        item.protection_state = "Protected"
        item.last_backup_status = job.status
        item.last_backup_time = at
        item.last_recovery_point = at
    elif job.status == "Failed":
        item.last_backup_status = "Failed"
