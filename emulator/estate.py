"""The emulated Azure estate: plain entities shared by every emulated service.

Services keep their rules in their own `models.py`; this module only says what
exists. Keys are lower-case ARM ids, because ARM ids compare case-insensitively.
"""

from __future__ import annotations

import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The placeholder the service returns for `lastBackupTime` before any backup (azure-facts §1).
NEVER_BACKED_UP = datetime.fromisoformat("2001-01-01T00:00:00+00:00")


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """A-Z lower-cased, every other letter kept: how ARM folds names (str.lower() turns 'İ' into two)."""
    return text.translate(_ASCII_LOWER)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Subscription:
    subscription_id: str
    display_name: str
    tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    state: str = "Enabled"

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}"


@dataclass
class VirtualMachine:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)
    provisioning_state: str = "Succeeded"
    vm_id: str = field(default_factory=new_id)
    created: datetime | None = None
    size: str = "Standard_D2s_v3"
    os_type: str = "Linux"  # or "Windows"
    # securityProfile.securityType: None leaves securityProfile out (what the emulator always sent);
    # "Standard", "TrustedLaunch" or "ConfidentialVM" (compute SecurityTypes)
    security_type: str | None = None
    os_disk_type: str = "Premium_LRS"  # managedDisk.storageAccountType of the OS disk
    data_disk_types: list[str] = field(default_factory=list)  # one storageAccountType per data disk
    vm_agent_status: str = "Ready"  # the instance view's vmAgent displayStatus: "Ready" or "Not Ready"

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{self.name}"
        )

    @property
    def container_name(self) -> str:
        return f"iaasvmcontainer;{self.item_name.removeprefix('vm;')}"

    @property
    def item_name(self) -> str:
        return f"vm;iaasvmcontainerv2;{ascii_lower(self.resource_group)};{ascii_lower(self.name)}"


@dataclass
class Vault:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)
    max_items: int = 1000

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.RecoveryServices/vaults/{self.name}"
        )


@dataclass
class BackupPolicy:
    vault_id: str
    name: str
    schedule_run_times: list[str] = field(default_factory=lambda: ["2026-01-01T22:00:00Z"])
    retention_days: int = 30
    time_zone: str = "UTC"
    policy_type: str = "V1"  # "V1" (Standard) or "V2" (Enhanced)
    schedule_frequency: str = "Daily"  # "Daily", "Weekly" or "Hourly" (Hourly: V2 only)
    schedule_run_days: list[str] = field(default_factory=list)  # Weekly: "Monday", …
    hourly_interval: int = 4  # Hourly: hours between backups (4, 6, 8 or 12)
    hourly_window_hours: int = 12  # Hourly: scheduleWindowDuration, from schedule_run_times[0]

    @property
    def id(self) -> str:
        return f"{self.vault_id}/backupPolicies/{self.name}"


@dataclass
class ProtectedItem:
    vault_id: str
    vm: VirtualMachine
    policy_id: str
    protection_state: str = "IRPending"
    last_backup_status: str = ""
    last_backup_time: datetime = NEVER_BACKED_UP
    last_recovery_point: datetime | None = None
    configured_at: datetime | None = None
    # None: derived from protection_state as before (ProtectionError -> ActionRequired, else Passed)
    health_status: str | None = None
    health_details: list[dict[str, Any]] = field(default_factory=list)  # code, title, message, …
    soft_deleted_at: datetime | None = None  # deferredDeleteTimeInUTC: when protection was deleted

    @property
    def id(self) -> str:
        return (
            f"{self.vault_id}/backupFabrics/Azure/protectionContainers/"
            f"{self.vm.container_name}/protectedItems/{self.vm.item_name}"
        )


@dataclass
class BackupJob:
    vault_id: str
    vm: VirtualMachine
    operation: str  # "Backup" | "ConfigureBackup"
    start_time: datetime
    status: str = "InProgress"
    end_time: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    recommendations: list[str] = field(default_factory=list)
    job_id: str = field(default_factory=new_id)

    @property
    def id(self) -> str:
        return f"{self.vault_id}/backupJobs/{self.job_id}"


@dataclass
class AsyncOperation:
    vault_id: str
    kind: str  # "refreshContainers" | "configureProtection" | "backup"
    start_time: datetime
    status: str = "InProgress"  # "InProgress" | "Succeeded" | "Failed"
    end_time: datetime | None = None
    job_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    op_id: str = field(default_factory=new_id)


@dataclass
class FailurePlan:
    """The next `attempts` backups of a VM fail with `error_code`."""

    error_code: str
    attempts: int


@dataclass
class Timings:
    """Emulated seconds each lifecycle takes; scenarios override them."""

    refresh_containers_s: float = 10
    configure_operation_s: float = 35
    backup_operation_s: float = 0
    backup_job_s: float = 2460
    retry_after_s: int = 60
    job_outcome: str = "Completed"  # or "CompletedWithWarnings" for every job by default


@dataclass
class Estate:
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    vms: dict[str, VirtualMachine] = field(default_factory=dict)
    vaults: dict[str, Vault] = field(default_factory=dict)
    policies: dict[str, BackupPolicy] = field(default_factory=dict)
    # keyed by the lower-case VM id: a VM is protected by at most one vault
    protected_items: dict[str, ProtectedItem] = field(default_factory=dict)
    jobs: dict[str, BackupJob] = field(default_factory=dict)  # keyed by job id
    operations: dict[str, AsyncOperation] = field(default_factory=dict)  # keyed by op id
    failure_plans: dict[str, FailurePlan] = field(default_factory=dict)  # keyed by lower VM id
    # VMs each vault has discovered through refreshContainers: lower vault id -> lower VM ids
    discovered: dict[str, set[str]] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    # lower VM id -> its jobs, kept by add_job: "the item's jobs" without a scan of every job
    jobs_by_vm: dict[str, list[BackupJob]] = field(default_factory=dict, repr=False)

    def add_subscription(self, sub: Subscription) -> Subscription:
        self.subscriptions[sub.subscription_id.lower()] = sub
        return sub

    def add_vm(self, vm: VirtualMachine) -> VirtualMachine:
        self.vms[vm.id.lower()] = vm
        return vm

    def add_vault(self, vault: Vault) -> Vault:
        self.vaults[vault.id.lower()] = vault
        return vault

    def add_policy(self, policy: BackupPolicy) -> BackupPolicy:
        self.policies[policy.id.lower()] = policy
        return policy

    def add_job(self, job: BackupJob) -> BackupJob:
        self.jobs[job.job_id] = job
        self.jobs_by_vm.setdefault(job.vm.id.lower(), []).append(job)
        return job
