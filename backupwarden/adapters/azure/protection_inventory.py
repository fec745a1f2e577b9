"""The whole scope's protection state in bulk: VMs, protected items with their jobs, item policies.

Reads, per run, independent of the number of VMs:
- Resource Graph `resources`: every VM (one paged query per batch of subscriptions);
- Resource Graph `recoveryservicesresources`: every IaaS VM protected item, joined with a summary of
  its jobs (running backups, when protection was configured), and the failed backup jobs of the
  last 14 days (Resource Graph keeps jobs 14 days, azure-facts §4);
- Recovery Services `backupPolicies` list (IaaS VM policies), once per vault that holds an item.

Item properties are the 2024-04-01 `bms.json` AzureIaaSVMProtectedItem's (`protectionState`,
`healthStatus`, `lastBackupStatus`, `lastRecoveryPoint`, `policyId`, `sourceResourceId`,
`isScheduledForDeferredDelete`); Resource Graph rows carry an item's REST `properties` as they are
(emulator/resourcegraph/rows.py). VM properties follow the compute `VirtualMachine` model
(`timeCreated`, `securityProfile.securityType`, `storageProfile` disks) and ARG's
`properties.extended.instanceView.powerState`.

A subscription whose reads fail (a 403, throttling beyond retries) is reported as a failure of that
subscription and left out entirely, so none of its VMs is misreported as unprotected; a vault whose
policies cannot be listed is reported, and its items are classified with the policy unknown.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from azure.core.exceptions import AzureError
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.resourcegraph import ResourceGraphClient

from backupwarden.adapters.azure.discovery import ITEM_JOB_SUMMARY
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.recovery_services import VaultRef
from backupwarden.adapters.azure.resource_graph import PAGE_SIZE, SUBSCRIPTIONS_PER_QUERY, query_rows
from backupwarden.domain.arm_ids import arm_key, subscription_of
from backupwarden.domain.protection_states import (
    BackupSchedule,
    JobFacts,
    ProtectedItemFacts,
    VmFacts,
    schedule_from_policy,
)
from backupwarden.domain.times import parse_optional_time

POLICIES_FILTER = "backupManagementType eq 'AzureIaasVM'"

VMS_QUERY = """
resources
| where type =~ 'microsoft.compute/virtualmachines'
| project id, name, subscriptionId, location, resourceGroup, tags,
          timeCreated = tostring(properties.timeCreated),
          securityType = tostring(properties.securityProfile.securityType),
          osDiskType = tostring(properties.storageProfile.osDisk.managedDisk.storageAccountType),
          dataDisks = properties.storageProfile.dataDisks,
          powerState = tostring(properties.extended.instanceView.powerState.code)
| order by id asc
"""

ITEMS_QUERY = (
    """
recoveryservicesresources
| where type =~ 'microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems'
| where tostring(properties.backupManagementType) =~ 'AzureIaasVM'
| extend vaultId = tostring(split(tolower(id), '/backupfabrics/')[0]),
         containerName = tolower(tostring(properties.containerName))
"""
    + ITEM_JOB_SUMMARY
    + """| project id, subscriptionId, vaultId, containerName,
          vmId = tolower(tostring(properties.sourceResourceId)),
          vmName = tostring(properties.friendlyName),
          location = tostring(properties.dataSourceInfo.resourceLocation),
          protectionState = tostring(properties.protectionState),
          healthStatus = tostring(properties.healthStatus),
          lastBackupStatus = tostring(properties.lastBackupStatus),
          lastRecoveryPoint = tostring(properties.lastRecoveryPoint),
          policyId = tostring(properties.policyId),
          deferredDelete = tostring(properties.isScheduledForDeferredDelete),
          configuredAt, runningBackups
| order by id asc
"""
)

FAILED_BACKUPS_QUERY = """
recoveryservicesresources
| where type =~ 'microsoft.recoveryservices/vaults/backupjobs'
| where tostring(properties.operation) =~ 'Backup' and tostring(properties.status) =~ 'Failed'
| project id, vaultId = tostring(split(tolower(id), '/backupjobs/')[0]),
          containerName = tolower(tostring(properties.containerName)),
          startTime = tostring(properties.startTime),
          errorCode = tostring(properties.errorDetails[0].errorCode)
| order by id asc
"""


@dataclass(frozen=True)
class VmKind:
    """What pre-flight needs of a VM beyond VmFacts (security and disk types)."""

    security_type: str = ""
    os_disk_type: str = ""
    data_disk_types: tuple[str, ...] = ()


T = TypeVar("T")


@dataclass(frozen=True)
class ItemRecord:
    """One protected item: its facts, its VM and what its jobs show. (Not its own id: nothing reads
    it, and at 100,000 items the ids alone take about 25 MB.)"""

    vm_id: str  # lower-case
    vm_name: str
    subscription_id: str
    region: str
    facts: ProtectedItemFacts
    jobs: tuple[JobFacts, ...]


@dataclass
class ProtectionInventory:
    vms: list[VmFacts] = field(default_factory=list)
    vm_kinds: dict[str, VmKind] = field(default_factory=dict)  # by lower-case VM id
    items: list[ItemRecord] = field(default_factory=list)
    schedules: dict[str, BackupSchedule] = field(default_factory=dict)  # by lower-case policy id
    # scopes (subscription or vault ids) that could not be read, with the error
    failures: list[tuple[str, AzureCallError]] = field(default_factory=list)
    requests: int = 0  # Resource Graph pages and policy list pages asked for


class ProtectionInventoryReader:
    def __init__(
        self,
        graph: ResourceGraphClient,
        backup_client_for: Callable[[str], RecoveryServicesBackupClient],
        progress: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self._graph = graph
        self._backup_client_for = backup_client_for
        self._progress = progress

    def read(self, subscriptions: list[str]) -> ProtectionInventory:
        # Rows become facts as each page comes in: at 100,000 VMs the rows themselves (dicts of
        # strings) would take several times the memory of the facts made of them.
        inventory = ProtectionInventory()
        kinds: dict[VmKind, VmKind] = {}  # most VMs are of a few kinds: one object each
        vms = self._rows(VMS_QUERY, subscriptions, inventory, lambda row: vm_from_row(row, kinds))
        items = self._rows(ITEMS_QUERY, subscriptions, inventory, item_from_row)
        failed_rows = self._rows(FAILED_BACKUPS_QUERY, subscriptions, inventory, lambda row: row)
        unread = {scope.rsplit("/", 1)[-1] for scope, _ in inventory.failures}
        for vm, kind in vms:
            if vm.subscription_id not in unread:
                inventory.vms.append(vm)
                inventory.vm_kinds[_shared(arm_key(vm.id))] = kind  # the copy its item's vm_id shares
        self._progress(f"read {len(inventory.vms)} VMs")
        failed_jobs = failed_jobs_by_container(failed_rows)
        for item in items:
            if item is not None and item.subscription not in unread:
                inventory.items.append(item.with_failed_jobs(failed_jobs))
        self._progress(f"read {len(inventory.items)} protected items")
        self._read_policies(inventory)
        return inventory

    def _rows(
        self,
        query: str,
        subscriptions: list[str],
        inventory: ProtectionInventory,
        convert: Callable[[dict[str, Any]], T],
    ) -> list[T]:
        """Every row over `subscriptions`, converted; a batch that fails is read again subscription by
        subscription, so only the subscriptions that fail on their own are left out."""
        failed = {scope for scope, _ in inventory.failures}
        wanted = [s for s in subscriptions if f"/subscriptions/{arm_key(s)}" not in failed]
        rows: list[T] = []
        for start in range(0, len(wanted), SUBSCRIPTIONS_PER_QUERY):
            batch = wanted[start : start + SUBSCRIPTIONS_PER_QUERY]
            if len(batch) > 1:
                try:
                    rows.extend(self._query(query, batch, inventory, convert))
                    continue
                except AzureCallError:
                    pass  # read again one by one: only the subscriptions that fail alone are left out
            for subscription in batch:
                try:
                    rows.extend(self._query(query, [subscription], inventory, convert))
                except AzureCallError as exc:
                    inventory.failures.append((f"/subscriptions/{arm_key(subscription)}", exc))
        return rows

    def _query(
        self,
        query: str,
        subscriptions: list[str],
        inventory: ProtectionInventory,
        convert: Callable[[dict[str, Any]], T],
    ) -> list[T]:
        converted: list[T] = []
        rows = 0
        for row in query_rows(self._graph, query, subscriptions):
            rows += 1
            converted.append(convert(row))
        # one page per PAGE_SIZE rows (the page size asked for), and one for an empty answer
        inventory.requests += max(1, math.ceil(rows / PAGE_SIZE))
        return converted

    def _read_policies(self, inventory: ProtectionInventory) -> None:
        vault_ids = sorted({arm_key(record.facts.vault_id) for record in inventory.items})
        for vault_id in vault_ids:
            vault = VaultRef.parse(vault_id)
            read_vault_policies(self._backup_client_for(vault.subscription_id), vault, inventory)
        self._progress(f"read the policies of {len(vault_ids)} vaults")


def read_vault_policies(
    client: RecoveryServicesBackupClient, vault: VaultRef, inventory: ProtectionInventory
) -> None:
    """The vault's policy schedules into `inventory` (each page counted); a failed list into its failures."""
    try:
        policies = client.backup_policies.list(vault.name, vault.resource_group, filter=POLICIES_FILTER)
        for page in policies.by_page():
            inventory.requests += 1
            for policy in page:
                schedule = policy_schedule(policy.as_dict())
                if schedule is not None and policy.id:
                    inventory.schedules[arm_key(str(policy.id))] = schedule
    except AzureError as exc:
        inventory.failures.append((arm_key(vault.id), AzureCallError.from_sdk("list backup policies", exc)))


def vm_from_row(row: dict[str, Any], kinds: dict[VmKind, VmKind]) -> tuple[VmFacts, VmKind]:
    vm = VmFacts(
        id=str(row["id"]),
        name=str(row["name"]),
        subscription_id=_shared(arm_key(str(row["subscriptionId"]))),
        region=_shared(arm_key(str(row.get("location") or ""))),
        resource_group=_shared(str(row.get("resourceGroup") or "")),
        tags=_tags(row.get("tags")),
        created_at=parse_optional_time(row.get("timeCreated") or None),
        power_state=_shared(str(row.get("powerState") or "").removeprefix("PowerState/")),
    )
    disks = _json(row.get("dataDisks"))
    kind = VmKind(
        security_type=str(row.get("securityType") or ""),
        os_disk_type=str(row.get("osDiskType") or ""),
        data_disk_types=tuple(
            str((disk.get("managedDisk") or {}).get("storageAccountType", ""))
            for disk in (disks if isinstance(disks, list) else [])
            if isinstance(disk, dict)
        ),
    )
    return vm, kinds.setdefault(kind, kind)


@dataclass(frozen=True)
class _ItemRow:
    """An item read, before the failed jobs (read after it) are joined to it by vault and container."""

    subscription: str  # the row's (the vault's) subscription, lower-case
    container: str
    record: ItemRecord

    def with_failed_jobs(self, failed_jobs: dict[tuple[str, str], list[JobFacts]]) -> ItemRecord:
        failed = failed_jobs.get((self.record.facts.vault_id, self.container))
        return replace(self.record, jobs=(*self.record.jobs, *failed)) if failed else self.record


def item_from_row(row: dict[str, Any]) -> _ItemRow | None:
    """None for an item that names no VM."""
    if not row.get("vmId"):
        return None
    vault_id = _shared(arm_key(str(row["vaultId"])))
    container = str(row.get("containerName") or "")
    running = int(row.get("runningBackups") or 0)
    jobs = tuple(JobFacts("Backup", "InProgress") for _ in range(min(running, 1)))
    facts = ProtectedItemFacts(
        vault_id=vault_id,
        protection_state=_shared(str(row.get("protectionState") or "")),
        health_status=_shared(str(row.get("healthStatus") or "Passed")),
        last_backup_status=_shared(str(row.get("lastBackupStatus") or "")),
        last_recovery_point=parse_optional_time(row.get("lastRecoveryPoint") or None),
        policy_id=_shared(str(row.get("policyId") or "")),
        protected_since=parse_optional_time(row.get("configuredAt") or None),
        is_scheduled_for_deferred_delete=str(row.get("deferredDelete")).lower() == "true",
    )
    vm_id = _shared(arm_key(str(row["vmId"])))
    record = ItemRecord(
        vm_id=vm_id,
        vm_name=str(row.get("vmName") or vm_id.rsplit("/", 1)[-1]),
        subscription_id=_shared(subscription_of(vm_id) or arm_key(str(row["subscriptionId"]))),
        region=_shared(arm_key(str(row.get("location") or ""))),
        facts=facts,
        jobs=jobs,
    )
    return _ItemRow(_shared(arm_key(str(row["subscriptionId"]))), container, record)


def failed_jobs_by_container(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[JobFacts]]:
    by_container: dict[tuple[str, str], list[JobFacts]] = {}
    for row in rows:
        key = (arm_key(str(row["vaultId"])), str(row.get("containerName") or ""))
        by_container.setdefault(key, []).append(
            JobFacts(
                operation="Backup",
                status="Failed",
                start_time=parse_optional_time(row.get("startTime") or None),
                error_code=str(row.get("errorCode") or ""),
            )
        )
    return by_container


def policy_schedule(policy: dict[str, Any]) -> BackupSchedule | None:
    """The schedule of an IaaS VM policy (`AzureIaaSVMProtectionPolicy.schedulePolicy`), None without one."""
    properties = policy.get("properties") or {}
    schedule = properties.get("schedulePolicy")
    if not isinstance(schedule, dict):
        return None
    return schedule_from_policy(schedule)


def _shared(text: str) -> str:
    """One copy of a string many rows repeat (a subscription, region, vault, policy or state) or two
    records hold (a VM's id, by its VM and by its item): at 100,000 VMs a copy each costs tens of
    megabytes."""
    return sys.intern(text)


def _json(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None
    return raw


def _tags(raw: Any) -> dict[str, str]:
    parsed = _json(raw)
    return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
