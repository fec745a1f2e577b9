"""ARM JSON of Recovery Services entities, as the real service renders them.

Pure functions of estate entities, shared by the REST handlers and by Resource Graph's
`recoveryservicesresources` rows. Shapes follow the 2024-04-01 spec examples and the
recorded real traffic in azure-facts §1 and §3.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.estate import (
    NEVER_BACKED_UP,
    AsyncOperation,
    BackupJob,
    BackupPolicy,
    ProtectedItem,
    Vault,
    VirtualMachine,
)

# The real service writes its own public endpoint into `vaultId`, whatever host the client used.
ARM_ENDPOINT = "https://management.azure.com"
VAULT_TYPE = "Microsoft.RecoveryServices/vaults"
POLICY_TYPE = "Microsoft.RecoveryServices/vaults/backupPolicies"
PROTECTED_ITEM_TYPE = "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems"
PROTECTABLE_ITEM_TYPE = (
    "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectableItems"
)
JOB_TYPE = "Microsoft.RecoveryServices/vaults/backupJobs"
VM_ITEM_TYPE = "Microsoft.Compute/virtualMachines"
# What an operation that has not ended reports as its end (azure-facts §3): .NET's DateTime.MinValue.
NOT_ENDED = "0001-01-01T00:00:00"


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with a trailing Z, microseconds only when present."""
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    return f"{text}Z"


def iso_duration(span: timedelta) -> str:
    """An XML/ISO-8601 duration as .NET's XmlConvert writes it ("PT41M0.5S", "PT0S")."""
    total = max(span.total_seconds(), 0.0)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = ""
    if hours:
        parts += f"{int(hours)}H"
    if minutes:
        parts += f"{int(minutes)}M"
    if seconds or not parts:
        parts += f"{seconds:.7f}".rstrip("0").rstrip(".") + "S"
    return f"PT{parts}"


# --- names as the service spells them -------------------------------------------------
def service_container_name(vm: VirtualMachine) -> str:
    """The container segment of item ids: `IaasVMContainer;iaasvmcontainerv2;rg;vm`."""
    return f"IaasVMContainer;iaasvmcontainerv2;{vm.resource_group.lower()};{vm.name.lower()}"


def service_item_name(vm: VirtualMachine) -> str:
    """The item name as the service returns it: `VM;iaasvmcontainerv2;rg;vm` (azure-facts §1)."""
    return f"VM;iaasvmcontainerv2;{vm.resource_group.lower()};{vm.name.lower()}"


def item_container_property(vm: VirtualMachine) -> str:
    """The `containerName` property of an item: without the `iaasvmcontainer;` prefix."""
    return f"iaasvmcontainerv2;{vm.resource_group.lower()};{vm.name.lower()}"


def protected_item_id(vault: Vault, vm: VirtualMachine) -> str:
    return (
        f"{vault.id}/backupFabrics/Azure/protectionContainers/{service_container_name(vm)}"
        f"/protectedItems/{service_item_name(vm)}"
    )


def _data_id(key: str) -> str:
    """A stable numeric `protectedItemDataId` derived from the item id."""
    return str(int(hashlib.sha256(key.lower().encode()).hexdigest()[:13], 16))


# --- resources ------------------------------------------------------------------------
def vault_resource(vault: Vault) -> dict[str, Any]:
    return {
        "id": vault.id,
        "name": vault.name,
        "type": VAULT_TYPE,
        "location": vault.location,
        "tags": dict(vault.tags),
        "etag": f"W/\"datetime'{_data_id(vault.id)}'\"",
        "sku": {"name": "RS0", "tier": "Standard"},
        "properties": {
            "provisioningState": "Succeeded",
            "privateEndpointStateForBackup": "None",
            "privateEndpointStateForSiteRecovery": "None",
            "publicNetworkAccess": "Enabled",
            "redundancySettings": {
                "standardTierStorageRedundancy": "GeoRedundant",
                "crossRegionRestore": "Disabled",
            },
            "securitySettings": {
                "immutabilitySettings": {"state": "Disabled"},
                "softDeleteSettings": {"softDeleteState": "Enabled", "softDeleteRetentionPeriodInDays": 14},
            },
            "secureScore": "None",
        },
    }


def policy_resource(policy: BackupPolicy, protected_items_count: int = 0) -> dict[str, Any]:
    return {
        "id": policy.id,
        "name": policy.name,
        "type": POLICY_TYPE,
        "properties": {
            "backupManagementType": "AzureIaasVM",
            "policyType": "V1",
            "instantRpRetentionRangeInDays": 2,
            "schedulePolicy": {
                "schedulePolicyType": "SimpleSchedulePolicy",
                "scheduleRunFrequency": "Daily",
                "scheduleRunTimes": list(policy.schedule_run_times),
                "scheduleWeeklyFrequency": 0,
            },
            "retentionPolicy": {
                "retentionPolicyType": "LongTermRetentionPolicy",
                "dailySchedule": {
                    "retentionTimes": list(policy.schedule_run_times),
                    "retentionDuration": {"count": policy.retention_days, "durationType": "Days"},
                },
            },
            "timeZone": policy.time_zone,
            "protectedItemsCount": protected_items_count,
        },
    }


def _health(item: ProtectedItem) -> tuple[str, str]:
    """(protectionStatus, healthStatus) of an item."""
    if item.protection_state == "ProtectionError":
        return "Unhealthy", "ActionRequired"
    return "Healthy", "Passed"


def protected_item_resource(item: ProtectedItem, vault: Vault) -> dict[str, Any]:
    vm = item.vm
    protection_status, health_status = _health(item)
    extended_info: dict[str, Any] = {
        "recoveryPointCount": 1 if item.last_recovery_point else 0,
        "policyInconsistent": False,
    }
    properties: dict[str, Any] = {
        "friendlyName": vm.name,
        "virtualMachineId": vm.id,
        "protectionStatus": protection_status,
        "protectionState": item.protection_state,
        "healthStatus": health_status,
        "kpisHealths": {},
        "lastBackupStatus": item.last_backup_status,
        "lastBackupTime": iso(item.last_backup_time or NEVER_BACKED_UP),
        "protectedItemDataId": _data_id(item.id),
        "extendedInfo": extended_info,
        "protectedItemType": VM_ITEM_TYPE,
        "backupManagementType": "AzureIaasVM",
        "workloadType": "VM",
        "containerName": item_container_property(vm),
        "sourceResourceId": vm.id,
        "policyId": item.policy_id,
        "policyName": item.policy_id.rstrip("/").rsplit("/", 1)[-1],
        "isScheduledForDeferredDelete": False,
        "isArchiveEnabled": False,
        "vaultId": f"{ARM_ENDPOINT}{vault.id}",
    }
    if item.last_recovery_point is not None:
        properties["lastRecoveryPoint"] = iso(item.last_recovery_point)
        extended_info["oldestRecoveryPoint"] = iso(item.last_recovery_point)
    return {
        "id": protected_item_id(vault, vm),
        "name": service_item_name(vm),
        "type": PROTECTED_ITEM_TYPE,
        "properties": properties,
    }


def protectable_item_resource(vm: VirtualMachine, vault: Vault) -> dict[str, Any]:
    return {
        "id": (
            f"{vault.id}/backupFabrics/Azure/protectionContainers/{service_container_name(vm)}"
            f"/protectableItems/{service_item_name(vm)}"
        ),
        "name": service_item_name(vm),
        "type": PROTECTABLE_ITEM_TYPE,
        "properties": {
            "friendlyName": vm.name,
            "virtualMachineId": vm.id,
            "virtualMachineVersion": "Compute",
            "resourceGroup": vm.resource_group,
            "protectionState": "NotProtected",
            "protectableItemType": VM_ITEM_TYPE,
            "backupManagementType": "AzureIaasVM",
            "workloadType": "VM",
        },
    }


def _tasks(job: BackupJob) -> list[dict[str, Any]]:
    if job.operation != "Backup":
        return []
    if job.status == "InProgress":
        states = ("InProgress", "NotStarted")
    elif job.status == "Failed":
        states = ("Failed", "NotStarted")
    else:
        states = (job.status, job.status)
    return [
        {"taskId": "Take Snapshot", "duration": "PT0S", "status": states[0]},
        {"taskId": "Transfer data to vault", "duration": "PT0S", "status": states[1]},
    ]


def job_resource(job: BackupJob, now: datetime | None = None) -> dict[str, Any]:
    """An AzureIaaSVMJob; `now` gives a running job's duration so far (PT0S without it)."""
    until = job.end_time if job.end_time is not None else (now or job.start_time)
    property_bag = {"VM Name": job.vm.name}
    if job.operation == "Backup":
        property_bag["Backup Size"] = "0 MB"
    properties: dict[str, Any] = {
        "jobType": "AzureIaaSVMJob",
        "duration": iso_duration(until - job.start_time),
        "virtualMachineVersion": "Compute",
        "containerName": item_container_property(job.vm),
        "isUserTriggered": True,
        "extendedInfo": {"tasksList": _tasks(job), "propertyBag": property_bag},
        "entityFriendlyName": job.vm.name,
        "backupManagementType": "AzureIaasVM",
        "operation": job.operation,
        "status": job.status,
        "startTime": iso(job.start_time),
        "activityId": _activity_id(job.job_id),
    }
    if job.status == "InProgress" and job.operation == "Backup":
        properties["actionsInfo"] = ["Cancellable"]
    if job.end_time is not None:
        properties["endTime"] = iso(job.end_time)
    if job.status == "Failed":
        properties["errorDetails"] = [
            {
                "errorCode": job.error_code or "BackUpOperationFailed",
                "errorTitle": "",
                "errorString": job.error_message or "Backup failed with an internal error.",
                "recommendations": list(job.recommendations),
            }
        ]
    return {"id": job.id, "name": job.job_id, "type": JOB_TYPE, "properties": properties}


def _activity_id(job_id: str) -> str:
    digest = hashlib.sha256(f"activity:{job_id}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def operation_status(op: AsyncOperation) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": op.op_id,
        "name": op.op_id,
        "status": op.status,
        "startTime": iso(op.start_time),
        "endTime": iso(op.end_time) if op.end_time is not None else NOT_ENDED,
    }
    if op.status == "Succeeded" and op.job_id:
        body["properties"] = {"objectType": "OperationStatusJobExtendedInfo", "jobId": op.job_id}
    if op.status == "Failed":
        body["error"] = {
            "code": op.error_code or "InternalError",
            "message": op.error_message or "The operation failed.",
        }
    return body


def backup_status(item: ProtectedItem | None, vault: Vault | None) -> dict[str, Any]:
    """The answer of `locations/{region}/backupStatus` for one VM."""
    if item is None or vault is None:
        return {
            "protectionStatus": "NotProtected",
            "vaultId": None,
            "fabricName": None,
            "containerName": None,
            "protectedItemName": None,
            "errorCode": None,
            "errorMessage": None,
            "policyName": None,
            "registrationStatus": None,
            "protectedItemsCount": None,
            "acquireStorageAccountLock": None,
        }
    return {
        "protectionStatus": "Protected",
        "vaultId": vault.id,
        "fabricName": "Azure",
        "containerName": item.vm.container_name,
        "protectedItemName": item.vm.item_name,
        "errorCode": None,
        "errorMessage": None,
        "policyName": item.policy_id.rstrip("/").rsplit("/", 1)[-1],
        "registrationStatus": "Registered",
        "protectedItemsCount": None,
        "acquireStorageAccountLock": None,
    }
