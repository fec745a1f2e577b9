"""Estate entities as Resource Graph rows.

Row `properties` come from the services' own shapes (`emulator.compute.shapes`,
`emulator.recoveryservices.shapes`), so Resource Graph and the REST APIs describe a VM, an item
or a job identically; ARG adds a few properties of its own. Like ARG, `type` is stored lower-case
while `id`, `name` and `resourceGroup` keep the case ARM gave them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from emulator.compute.shapes import vm_resource
from emulator.estate import (
    NEVER_BACKED_UP,
    BackupJob,
    Estate,
    ProtectedItem,
    Subscription,
    Vault,
    VirtualMachine,
)
from emulator.recoveryservices.shapes import job_resource, protected_item_resource, vault_resource

RESOURCES = "resources"
RECOVERY_SERVICES_RESOURCES = "recoveryservicesresources"
TABLES = (RESOURCES, RECOVERY_SERVICES_RESOURCES)

# ARG's columns, in ARG's order; JSON is Kusto's `dynamic`, VARCHAR its `string`.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "VARCHAR"),
    ("name", "VARCHAR"),
    ("type", "VARCHAR"),
    ("tenantId", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("location", "VARCHAR"),
    ("resourceGroup", "VARCHAR"),
    ("subscriptionId", "VARCHAR"),
    ("managedBy", "VARCHAR"),
    ("sku", "JSON"),
    ("plan", "JSON"),
    ("properties", "JSON"),
    ("tags", "JSON"),
    ("identity", "JSON"),
    ("zones", "JSON"),
    ("extendedLocation", "JSON"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)

# Backup jobs stay in Resource Graph for 14 days (azure-facts §4).
JOB_RETENTION = timedelta(days=14)

VM_TYPE = "Microsoft.Compute/virtualMachines"  # the datasource type of IaaS VM items
DEFAULT_TENANT = Subscription.tenant_id
# ARG's `currentProtectionState` of Recovery Services items uses the Data Protection vocabulary
# (Microsoft's "Query your backups using Azure Resource Graph" filters on ConfiguringProtection,
# ProtectionConfigured, ConfiguringProtectionFailed, ProtectionStopped, SoftDeleted, ProtectionError).
# An item pending its initial backup has its protection configured: `protectionState` (IRPending)
# is what tells the two apart.
CURRENT_PROTECTION_STATE = {
    "IRPending": "ProtectionConfigured",
    "Protected": "ProtectionConfigured",
    "ProtectionError": "ProtectionError",
    "ProtectionStopped": "ProtectionStopped",
    "ProtectionPaused": "ProtectionStopped",
    # Data Protection's CurrentProtectionState has BackupSchedulesSuspended for this case (inferred
    # from the vocabulary: no ARG sample shows a BackupsSuspended item)
    "BackupsSuspended": "BackupSchedulesSuspended",
    "Invalid": "Invalid",
    "NotProtected": "NotProtected",
}


class Tracked(NamedTuple):
    """One estate entity Resource Graph shows, with what decides whether its row changed."""

    kind: str  # "vm", "vault", "item", "job"
    key: str  # the entity's key in the estate
    entity: Any
    fingerprint: tuple[Any, ...]

    @property
    def table(self) -> str:
        return RESOURCES if self.kind in ("vm", "vault") else RECOVERY_SERVICES_RESOURCES

    @property
    def row_key(self) -> str:
        return f"{self.kind}:{self.key}"


def changed_at(entity: object) -> datetime | None:
    """The latest moment the entity records about itself: a job's start or end, an item's
    configuration or last backup, a VM's creation; None for anything else."""
    if isinstance(entity, BackupJob):
        return entity.end_time or entity.start_time
    if isinstance(entity, ProtectedItem):
        moments = [entity.configured_at, entity.last_recovery_point]
        if entity.last_backup_time != NEVER_BACKED_UP:
            moments.append(entity.last_backup_time)
        return max((moment for moment in moments if moment is not None), default=None)
    if isinstance(entity, VirtualMachine):
        return entity.created
    return None


def fingerprint(entity: object) -> tuple[Any, ...]:
    """The entity's field values, plus copies of its dicts and lists so in-place edits show."""
    values = vars(entity)
    mutable = _mutable_fields(type(entity))
    if not mutable:
        return tuple(values.values())
    return (*values.values(), *(_frozen(values[name]) for name in mutable))


_MUTABLE_FIELDS: dict[type, tuple[str, ...]] = {}


def _mutable_fields(cls: type) -> tuple[str, ...]:
    """The fields of a dataclass that hold dicts or lists (those built by a default factory)."""
    if cls not in _MUTABLE_FIELDS:
        _MUTABLE_FIELDS[cls] = tuple(
            f.name for f in dataclasses.fields(cls) if f.default_factory in (dict, list, set)
        )
    return _MUTABLE_FIELDS[cls]


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(value.items())
    if isinstance(value, list | set):
        return tuple(value)
    return value


def estate_entities(estate: Estate, now: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every kind of entity that has rows at `now`, keyed as the estate keys them.

    VMs, vaults, protected items (of known vaults) and the jobs of the last 14 days.
    """
    yield "vm", estate.vms
    yield "vault", estate.vaults
    vaults = estate.vaults
    yield (
        "item",
        {key: item for key, item in estate.protected_items.items() if item.vault_id.lower() in vaults},
    )
    oldest = now - JOB_RETENTION
    yield (
        "job",
        {
            key: job
            for key, job in estate.jobs.items()
            if job.start_time >= oldest and job.vault_id.lower() in vaults
        },
    )


def build_row(tracked: Tracked, estate: Estate, now: datetime) -> dict[str, Any]:
    entity = tracked.entity
    if isinstance(entity, VirtualMachine):
        return vm_row(entity, _tenant(estate, entity.subscription_id))
    if isinstance(entity, Vault):
        return _row(
            vault_resource(entity),
            entity.subscription_id,
            entity.resource_group,
            _tenant(estate, entity.subscription_id),
        )
    vault = estate.vaults[entity.vault_id.lower()]
    tenant = _tenant(estate, vault.subscription_id)
    if isinstance(entity, ProtectedItem):
        return protected_item_row(entity, vault, tenant)
    if isinstance(entity, BackupJob):
        return _row(job_resource(entity, now), vault.subscription_id, vault.resource_group, tenant)
    raise TypeError(f"no Resource Graph row for {type(entity).__name__}")


def _tenant(estate: Estate, subscription_id: str) -> str:
    sub = estate.subscriptions.get(subscription_id.lower())
    return sub.tenant_id if sub is not None else DEFAULT_TENANT


def _row(arm: dict[str, Any], subscription_id: str, resource_group: str, tenant_id: str) -> dict[str, Any]:
    """An ARM resource as ARG stores it: every column present, `type` lower-case."""
    return {
        "id": arm["id"],
        "name": arm["name"],
        "type": arm["type"].lower(),
        "tenantId": tenant_id,
        "kind": arm.get("kind", ""),
        "location": arm.get("location", "").lower().replace(" ", ""),
        "resourceGroup": resource_group,
        "subscriptionId": subscription_id,
        "managedBy": arm.get("managedBy", ""),
        "sku": arm.get("sku"),
        "plan": arm.get("plan"),
        "properties": arm.get("properties"),
        "tags": arm.get("tags"),
        "identity": arm.get("identity"),
        "zones": arm.get("zones"),
        "extendedLocation": arm.get("extendedLocation"),
    }


def vm_row(vm: VirtualMachine, tenant_id: str) -> dict[str, Any]:
    row = _row(vm_resource(vm), vm.subscription_id, vm.resource_group, tenant_id)
    # ARG-only: the instance view's power state, which ARM's plain GET leaves out.
    row["properties"]["extended"] = {
        "instanceView": {
            "powerState": {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"}
        }
    }
    return row


def protected_item_row(item: ProtectedItem, vault: Vault, tenant_id: str) -> dict[str, Any]:
    row = _row(protected_item_resource(item, vault), vault.subscription_id, vault.resource_group, tenant_id)
    properties = row["properties"]
    # ARG-only properties (seen in Microsoft's sample queries over RecoveryServicesResources).
    properties["currentProtectionState"] = (
        "SoftDeleted"
        if item.soft_deleted_at is not None
        else CURRENT_PROTECTION_STATE.get(item.protection_state, item.protection_state)
    )
    properties["dataSourceInfo"] = {
        "resourceID": item.vm.id,
        "resourceLocation": item.vm.location,
        "resourceName": item.vm.name,
        "datasourceType": VM_TYPE,
    }
    properties["protectedPrimaryRegion"] = item.vm.location
    return row
