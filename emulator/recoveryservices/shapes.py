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
    ascii_lower,
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
# What an operation or a job's task that has not ended (or started) reports as its time (azure-facts
# §3, and the tasks of the recorded running job): .NET's DateTime.MinValue.
NOT_ENDED = "0001-01-01T00:00:00"
# The recorded 41-minute job spent its first 7.5 minutes on "Take Snapshot", the rest on the transfer.
SNAPSHOT_SHARE = 0.18
# The expiry azure-cli's backup-now gives an on-demand recovery point by default: 30 days, at midnight UTC.
ON_DEMAND_RETENTION = timedelta(days=30)
# The health detail of an item whose backup pre-check passed (recorded Protected item).
HEALTH_GREEN = {
    "code": 400239,
    "title": "IaasVmHealthGreenDefault",
    "message": "Backup pre-check status of this virtual machine is OK.",
    "recommendations": [],
}


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
    return f"IaasVMContainer;iaasvmcontainerv2;{ascii_lower(vm.resource_group)};{ascii_lower(vm.name)}"


def service_item_name(vm: VirtualMachine) -> str:
    """The item name as the service returns it: `VM;iaasvmcontainerv2;rg;vm` (azure-facts §1)."""
    return f"VM;iaasvmcontainerv2;{ascii_lower(vm.resource_group)};{ascii_lower(vm.name)}"


def item_container_property(vm: VirtualMachine) -> str:
    """The `containerName` property of an item: without the `iaasvmcontainer;` prefix."""
    return f"iaasvmcontainerv2;{ascii_lower(vm.resource_group)};{ascii_lower(vm.name)}"


def protected_item_id(vault: Vault, vm: VirtualMachine) -> str:
    return (
        f"{vault.id}/backupFabrics/Azure/protectionContainers/{service_container_name(vm)}"
        f"/protectedItems/{service_item_name(vm)}"
    )


def dotnet_time(moment: datetime) -> str:
    """A UTC time as .NET's en-US general format writes it in job property bags: "1/20/2024 12:00:00 AM"."""
    moment = moment.astimezone(UTC)
    hour = moment.hour % 12 or 12
    meridiem = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment:%M:%S} {meridiem}"


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
                "softDeleteSettings": {
                    "softDeleteState": "Enabled",
                    "softDeleteRetentionPeriodInDays": 14,
                    "enhancedSecurityState": "Enabled",
                },
                "multiUserAuthorization": "Disabled",
            },
            "secureScore": "None",
            # the defaults a new vault reads with (recorded vault GET, api 2023-04-01)
            "monitoringSettings": {
                "azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"},
                "classicAlertSettings": {"alertsForCriticalOperations": "Enabled"},
            },
            "backupStorageVersion": "Unassigned",
            "restoreSettings": {
                "crossSubscriptionRestoreSettings": {"crossSubscriptionRestoreState": "Enabled"}
            },
        },
    }


def policy_resource(policy: BackupPolicy, protected_items_count: int = 0) -> dict[str, Any]:
    return {
        "id": policy.id,
        "name": policy.name,
        "type": POLICY_TYPE,
        "properties": {
            "backupManagementType": "AzureIaasVM",
            "policyType": policy.policy_type,
            "instantRPDetails": {},
            # the portal's defaults: 2 days for Standard, 7 for Enhanced (which allows 1 to 30)
            "instantRpRetentionRangeInDays": 7 if policy.policy_type == "V2" else 2,
            "schedulePolicy": schedule_policy(policy),
            "retentionPolicy": _retention_policy(policy),
            "timeZone": policy.time_zone,
            "protectedItemsCount": protected_items_count,
        },
    }


def schedule_policy(policy: BackupPolicy) -> dict[str, Any]:
    """`schedulePolicy` as the 2024-04-01 spec examples spell it: SimpleSchedulePolicy for V1
    (ProtectionPolicies_CreateOrUpdate_Complex.json: Weekly with scheduleRunDays), and
    SimpleSchedulePolicyV2 for V2 with a dailySchedule, weeklySchedule or hourlySchedule
    (V2Policy/IaaS_v2_daily.json, IaaS_v2_hourly.json)."""
    times = list(policy.schedule_run_times)
    frequency = policy.schedule_frequency
    if policy.policy_type != "V2":
        v1: dict[str, Any] = {"schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": frequency}
        if frequency == "Weekly":
            v1["scheduleRunDays"] = list(policy.schedule_run_days)
        v1.update(scheduleRunTimes=times, scheduleWeeklyFrequency=0)
        return v1
    v2: dict[str, Any] = {"schedulePolicyType": "SimpleSchedulePolicyV2", "scheduleRunFrequency": frequency}
    if frequency == "Hourly":
        v2["hourlySchedule"] = {
            "interval": policy.hourly_interval,
            "scheduleWindowStartTime": times[0],
            "scheduleWindowDuration": policy.hourly_window_hours,
        }
    elif frequency == "Weekly":
        v2["weeklySchedule"] = {"scheduleRunDays": list(policy.schedule_run_days), "scheduleRunTimes": times}
    else:
        v2["dailySchedule"] = {"scheduleRunTimes": times}
    return v2


def _retention_policy(policy: BackupPolicy) -> dict[str, Any]:
    """Daily retention, or weekly retention on the run days for a weekly schedule (a weekly
    schedule cannot keep daily points: ProtectionPolicies_CreateOrUpdate_Complex.json)."""
    times = list(
        policy.schedule_run_times[:1] if policy.schedule_frequency == "Hourly" else policy.schedule_run_times
    )
    if policy.schedule_frequency == "Weekly":
        weeks = max(1, -(-policy.retention_days // 7))
        return {
            "retentionPolicyType": "LongTermRetentionPolicy",
            "weeklySchedule": {
                "daysOfTheWeek": list(policy.schedule_run_days),
                "retentionTimes": times,
                "retentionDuration": {"count": weeks, "durationType": "Weeks"},
            },
        }
    return {
        "retentionPolicyType": "LongTermRetentionPolicy",
        "dailySchedule": {
            "retentionTimes": times,
            "retentionDuration": {"count": policy.retention_days, "durationType": "Days"},
        },
    }


def _health(item: ProtectedItem) -> tuple[str, str]:
    """(protectionStatus, healthStatus) of an item."""
    if item.health_status is not None:
        # ActionSuggested is a warning: backups still run, so the item stays Healthy (emulator choice)
        return ("Unhealthy" if item.health_status == "ActionRequired" else "Healthy"), item.health_status
    if item.protection_state == "ProtectionError":
        return "Unhealthy", "ActionRequired"
    return "Healthy", "Passed"


# Days a soft-deleted item is kept: the vault's softDeleteRetentionPeriodInDays (vault_resource).
SOFT_DELETE_RETENTION = timedelta(days=14)


def dotnet_timespan(span: timedelta) -> str:
    """A span as .NET's TimeSpan.ToString() writes it: "13.23:59:43.5751125", "05:00:00"."""
    ticks = max(round(span.total_seconds() * 10_000_000), 0)
    seconds, fraction = divmod(ticks, 10_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    if days:
        text = f"{days}.{text}"
    if fraction:
        text += f".{fraction:07d}"
    return text


def _soft_deleted(properties: dict[str, Any], deleted_at: datetime, now: datetime | None) -> None:
    """A soft-deleted item as recorded (azure-cli test_backup_softdelete.yaml): no policy,
    deferredDeleteTimeInUTC (when protection was deleted), the time left before it is purged,
    and the vault's retention in days."""
    properties.update(policyId="", policyName="")
    properties["deferredDeleteTimeInUTC"] = iso(deleted_at)
    properties["isScheduledForDeferredDelete"] = True
    if now is not None:
        properties["deferredDeleteTimeRemaining"] = dotnet_timespan(deleted_at + SOFT_DELETE_RETENTION - now)
    properties["softDeleteRetentionPeriod"] = SOFT_DELETE_RETENTION.days


def protected_item_resource(item: ProtectedItem, vault: Vault, now: datetime | None = None) -> dict[str, Any]:
    """An AzureIaaSComputeVMProtectedItem; `now` gives a soft-deleted item its time remaining."""
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
        "softDeleteRetentionPeriod": 0,
    }
    if item.health_details:
        properties["healthDetails"] = [dict(detail) for detail in item.health_details]
    elif item.protection_state == "Protected" and health_status == "Passed":
        # present once a backup ran; an item pending its first backup has no healthDetails
        properties["healthDetails"] = [dict(HEALTH_GREEN, recommendations=[])]
    if item.soft_deleted_at is not None:
        _soft_deleted(properties, item.soft_deleted_at, now)
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
    # Recorded (2023): the id ends in the lower-case `vm;…` item name and `name` is the container
    # property without any `vm;` prefix; the spec's (classic-era) example shows `VM;…` in both.
    return {
        "id": (
            f"{vault.id}/backupFabrics/Azure/protectionContainers/{service_container_name(vm)}"
            f"/protectableItems/{vm.item_name}"
        ),
        "name": item_container_property(vm),
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


def _task(
    task_id: str, status: str, start: datetime | None, end: datetime | None, now: datetime | None
) -> dict[str, Any]:
    """One entry of a job's task list; a time not reached yet reads NOT_ENDED (recorded running job)."""
    duration = (end or now or start) - start if start is not None else timedelta(0)
    return {
        "taskId": task_id,
        "startTime": iso(start) if start is not None else NOT_ENDED,
        "endTime": iso(end) if end is not None else NOT_ENDED,
        "duration": iso_duration(duration),
        "status": status,
    }


def _tasks(job: BackupJob, now: datetime | None) -> list[dict[str, Any]]:
    """A backup job's two tasks; other jobs have none (recorded ConfigureBackup job)."""
    if job.operation != "Backup":
        return []
    snapshot, transfer = "Take Snapshot", "Transfer data to vault"
    if job.end_time is None:
        return [
            _task(snapshot, job.status, job.start_time, None, now),
            _task(transfer, "NotStarted", None, None, now),
        ]
    if job.status == "Failed":
        return [
            _task(snapshot, "Failed", job.start_time, job.end_time, now),
            _task(transfer, "NotStarted", None, None, now),
        ]
    split = job.start_time + (job.end_time - job.start_time) * SNAPSHOT_SHARE
    return [
        _task(snapshot, job.status, job.start_time, split, now),
        _task(transfer, job.status, split, job.end_time, now),
    ]


def _extended_info(job: BackupJob, now: datetime | None, policy_name: str | None) -> dict[str, Any]:
    """The tasks and property bags a job GET carries (recorded ConfigureBackup and Backup jobs)."""
    property_bag = {"VM Name": job.vm.name}
    info: dict[str, Any] = {"tasksList": _tasks(job, now), "propertyBag": property_bag}
    if job.operation == "ConfigureBackup" and policy_name:
        property_bag["Policy Name"] = policy_name
    if job.operation == "Backup":
        expiry = datetime.combine((job.start_time + ON_DEMAND_RETENTION).date(), datetime.min.time(), UTC)
        property_bag["Recovery Point Expiry Time in UTC"] = dotnet_time(expiry)
        if job.status in ("Completed", "CompletedWithWarnings"):
            property_bag["Backup Size"] = "0 MB"
        info["internalPropertyBag"] = {"IsInstantRpJob": "True"}
    return info


def job_resource(
    job: BackupJob, now: datetime | None = None, *, policy_name: str | None = None, listed: bool = False
) -> dict[str, Any]:
    """An AzureIaaSVMJob; `now` gives a running job's duration so far (PT0S without it).

    A job list (`listed`) carries no `extendedInfo`: only the job's own GET has its task list and
    property bags (recorded job list and ListJobs.json alike).
    """
    until = job.end_time if job.end_time is not None else (now or job.start_time)
    properties: dict[str, Any] = {
        "jobType": "AzureIaaSVMJob",
        "duration": iso_duration(until - job.start_time),
        "virtualMachineVersion": "Compute",
        "containerName": item_container_property(job.vm),
        "isUserTriggered": True,
        "entityFriendlyName": job.vm.name,
        "backupManagementType": "AzureIaasVM",
        "operation": job.operation,
        "status": job.status,
        "startTime": iso(job.start_time),
        "activityId": _activity_id(job.job_id),
    }
    if not listed:
        properties["extendedInfo"] = _extended_info(job, now, policy_name)
    if job.operation == "Backup" and job.status in ("InProgress", "Completed", "CompletedWithWarnings"):
        # recorded: a backup job lists "Cancellable" while it runs and still after it completed
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


def backup_status(resource_id: str, item: ProtectedItem | None, vault: Vault | None) -> dict[str, Any]:
    """The answer of `locations/{region}/backupStatus` for one VM, with the keys the service sends.

    Recorded (c7n, 2025): a protected VM names its vault and policy; an unprotected one omits both
    but still names the container and item it would have; `protectedItemsCount` is 0 in both.
    """
    parts = resource_id.rstrip("/").split("/")
    resource_group, name = (parts[4], parts[-1]) if len(parts) >= 9 else ("", parts[-1])
    suffix = f"iaasvmcontainerv2;{ascii_lower(resource_group)};{ascii_lower(name)}"
    body: dict[str, Any] = {
        "protectionStatus": "NotProtected",
        "fabricName": "Azure",
        "containerName": "iaasvmcontainer;" + suffix,
        "protectedItemName": "vm;" + suffix,
        "protectedItemsCount": 0,
    }
    if item is not None and vault is not None:
        body.update(
            protectionStatus="Protected",
            containerName=item.vm.container_name,
            protectedItemName=item.vm.item_name,
            vaultId=vault.id,
            policyName=item.policy_id.rstrip("/").rsplit("/", 1)[-1],
        )
    body["objectType"] = "BackupStatusResponse"
    return body
