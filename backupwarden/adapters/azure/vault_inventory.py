"""The scope's protection state read vault by vault, for estates where Resource Graph is not allowed.

Returns the same `ProtectionInventory` as `ProtectionInventoryReader` (protection_inventory.py), from
the ARM APIs only. Per subscription: the compute VM list and the Recovery Services vault list; per
vault: its IaaS VM protected items, and for a vault that holds items its IaaS VM policies and its
backup jobs of the last 14 days (the jobs Resource Graph keeps, azure-facts §4, so both readers see
the same jobs). Each answer is put in the shape of the Resource Graph reader's rows and turned into
facts by that reader's own helpers, so both reads classify alike.

What the vault lists do not carry as Resource Graph does: a VM's power state (no instance view), and
an item's region, taken from its vault's (a VM can only be protected by a vault in its region).

A subscription whose VMs or vaults cannot be listed is reported and left out. A vault whose items or
jobs cannot be listed is reported, and the VMs of its subscription and region are left out with it:
any of them may be protected there, and none must be misreported as unprotected. A vault whose
policies cannot be listed is reported, and its items are classified with the policy unknown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient

from backupwarden.adapters.azure.discovery import CONFIGURE_JOB_LOOKBACK
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.protection_inventory import (
    ProtectionInventory,
    VmKind,
    failed_jobs_by_container,
    item_from_row,
    read_vault_policies,
    vm_from_row,
)
from backupwarden.adapters.azure.recovery_services import IAAS_VM_ITEMS_FILTER, VaultRef, odata_time
from backupwarden.domain.arm_ids import arm_key, resource_group_of
from backupwarden.domain.times import iso_z, parse_optional_time, utc_now

JOB_WINDOW = CONFIGURE_JOB_LOOKBACK  # as far back as Resource Graph keeps jobs


@dataclass(frozen=True)
class _Vault:
    ref: VaultRef
    region: str  # lower-case, as VM regions are kept


class VaultInventoryReader:
    def __init__(
        self,
        compute_client_for: Callable[[str], ComputeManagementClient],
        vaults_client_for: Callable[[str], RecoveryServicesClient],
        backup_client_for: Callable[[str], RecoveryServicesBackupClient],
        now: Callable[[], datetime] = utc_now,
        progress: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self._compute_client_for = compute_client_for
        self._vaults_client_for = vaults_client_for
        self._backup_client_for = backup_client_for
        self._now = now
        self._progress = progress

    def read(self, subscriptions: list[str]) -> ProtectionInventory:
        inventory = ProtectionInventory()
        kinds: dict[VmKind, VmKind] = {}  # most VMs are of a few kinds: one object each
        for subscription in subscriptions:
            self._read_subscription(arm_key(subscription), inventory, kinds)
        self._progress(f"read {len(inventory.vms)} VMs")
        self._progress(f"read {len(inventory.items)} protected items")
        return inventory

    def _read_subscription(
        self, subscription: str, inventory: ProtectionInventory, kinds: dict[VmKind, VmKind]
    ) -> None:
        try:
            vm_rows = self._vm_rows(subscription, inventory)
            vaults = self._vaults(subscription, inventory)
        except AzureCallError as exc:
            inventory.failures.append((f"/subscriptions/{subscription}", exc))
            return
        unread_regions: set[str] = set()
        for vault in vaults:
            try:
                self._read_vault(vault, inventory)
            except AzureCallError as exc:
                inventory.failures.append((arm_key(vault.ref.id), exc))
                unread_regions.add(vault.region)
        for row in vm_rows:
            vm, kind = vm_from_row(row, kinds)
            if vm.region not in unread_regions:
                inventory.vms.append(vm)
                inventory.vm_kinds[sys.intern(arm_key(vm.id))] = kind

    def _vm_rows(self, subscription: str, inventory: ProtectionInventory) -> list[dict[str, Any]]:
        """Each VM in the shape of the Resource Graph reader's VM rows (protection_inventory.VMS_QUERY)."""
        rows = []
        pages = self._compute_client_for(subscription).virtual_machines.list_all().by_page()
        for page in _counted(pages, inventory, "list VMs"):
            for vm in page:
                rows.append(_vm_row(subscription, vm.as_dict()))
        return rows

    def _vaults(self, subscription: str, inventory: ProtectionInventory) -> list[_Vault]:
        pages = self._vaults_client_for(subscription).vaults.list_by_subscription_id().by_page()
        return [
            _Vault(VaultRef.parse(str(vault.id)), arm_key(str(vault.location or "")))
            for page in _counted(pages, inventory, "list vaults")
            for vault in page
        ]

    def _read_vault(self, vault: _Vault, inventory: ProtectionInventory) -> None:
        """The vault's items with their jobs, then its policies; an AzureCallError when the items or
        jobs cannot be listed (nothing of the vault is kept then)."""
        ref = vault.ref
        client = self._backup_client_for(ref.subscription_id)
        list_items = client.backup_protected_items.list(
            ref.name, ref.resource_group, filter=IAAS_VM_ITEMS_FILTER
        )
        items = [
            item.as_dict()
            for page in _counted(list_items.by_page(), inventory, "list protected items")
            for item in page
        ]
        if not items:
            return
        now = self._now()
        window = (
            f"backupManagementType eq 'AzureIaasVM' and startTime eq '{odata_time(now - JOB_WINDOW)}'"
            f" and endTime eq '{odata_time(now)}'"
        )
        list_jobs = client.backup_jobs.list(ref.name, ref.resource_group, filter=window)
        jobs = [
            job.as_dict()
            for page in _counted(list_jobs.by_page(), inventory, "list backup jobs")
            for job in page
        ]
        summary = _job_summary(jobs)
        failed_jobs = failed_jobs_by_container(_failed_backup_rows(jobs, arm_key(ref.id)))
        for item in items:
            row = item_from_row(_item_row(item, vault, summary))
            if row is not None:
                inventory.items.append(row.with_failed_jobs(failed_jobs))
        read_vault_policies(client, ref, inventory)


def _counted(
    pages: Iterable[Iterable[Any]], inventory: ProtectionInventory, action: str
) -> Iterable[Iterable[Any]]:
    """Each page, counted in `inventory.requests`; an SDK error as an AzureCallError of `action`."""
    try:
        for page in pages:
            inventory.requests += 1
            yield page
    except AzureError as exc:
        raise AzureCallError.from_sdk(action, exc) from exc


def _vm_row(subscription: str, vm: dict[str, Any]) -> dict[str, Any]:
    properties = vm.get("properties") or {}
    storage = properties.get("storageProfile") or {}
    os_disk = (storage.get("osDisk") or {}).get("managedDisk") or {}
    vm_id = str(vm.get("id") or "")
    return {
        "id": vm_id,
        "name": vm.get("name"),
        "subscriptionId": subscription,
        "location": vm.get("location"),
        "resourceGroup": resource_group_of(vm_id),
        "tags": vm.get("tags"),
        "timeCreated": properties.get("timeCreated"),
        "securityType": (properties.get("securityProfile") or {}).get("securityType"),
        "osDiskType": os_disk.get("storageAccountType"),
        "dataDisks": storage.get("dataDisks"),
    }


@dataclass
class _ContainerJobs:
    """What the Resource Graph reader's job summary (discovery.ITEM_JOB_SUMMARY) keeps of a container."""

    running_backups: int = 0
    configured_at: datetime | None = None


def _job_summary(jobs: list[dict[str, Any]]) -> dict[str, _ContainerJobs]:
    by_container: dict[str, _ContainerJobs] = {}
    for job in jobs:
        properties = job.get("properties") or {}
        operation, status = (
            str(properties.get("operation", "")).lower(),
            str(properties.get("status", "")).lower(),
        )
        summary = by_container.setdefault(arm_key(str(properties.get("containerName", ""))), _ContainerJobs())
        if operation == "backup" and status == "inprogress":
            summary.running_backups += 1
        ended = parse_optional_time(properties.get("endTime"))
        if operation == "configurebackup" and status == "completed" and ended is not None:
            summary.configured_at = max(ended, summary.configured_at or ended)
    return by_container


def _failed_backup_rows(jobs: list[dict[str, Any]], vault_id: str) -> Iterable[dict[str, Any]]:
    """The failed backups in the shape of protection_inventory.FAILED_BACKUPS_QUERY's rows."""
    for job in jobs:
        properties = job.get("properties") or {}
        if str(properties.get("operation", "")).lower() != "backup":
            continue
        if str(properties.get("status", "")).lower() != "failed":
            continue
        errors = properties.get("errorDetails") or [{}]
        yield {
            "vaultId": vault_id,
            "containerName": arm_key(str(properties.get("containerName", ""))),
            "startTime": properties.get("startTime"),
            "errorCode": errors[0].get("errorCode"),
        }


def _item_row(item: dict[str, Any], vault: _Vault, summary: dict[str, _ContainerJobs]) -> dict[str, Any]:
    """An item in the shape of protection_inventory.ITEMS_QUERY's rows."""
    properties = item.get("properties") or {}
    container = arm_key(str(properties.get("containerName", "")))
    jobs = summary.get(container, _ContainerJobs())
    return {
        "subscriptionId": arm_key(vault.ref.subscription_id),
        "vaultId": arm_key(str(item.get("id", ""))).split("/backupfabrics/")[0],
        "containerName": container,
        "vmId": arm_key(str(properties.get("sourceResourceId") or "")),
        "vmName": properties.get("friendlyName"),
        "location": vault.region,
        "protectionState": properties.get("protectionState"),
        "healthStatus": properties.get("healthStatus"),
        "lastBackupStatus": properties.get("lastBackupStatus"),
        "lastRecoveryPoint": properties.get("lastRecoveryPoint"),
        "policyId": properties.get("policyId"),
        "deferredDelete": properties.get("isScheduledForDeferredDelete"),
        "configuredAt": iso_z(jobs.configured_at) if jobs.configured_at else None,
        "runningBackups": jobs.running_backups,
    }
