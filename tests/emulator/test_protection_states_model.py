"""Every protection state the reconciler must see, read back through the real SDK clients.

Expected shapes: the 2024-04-01 Recovery Services Backup spec examples (Compute_ProtectedItem_Get,
ProtectionPolicies_CreateOrUpdate_Complex, V2Policy/IaaS_v2_daily and IaaS_v2_hourly), the azure-cli
soft-delete recording (../shared/recordings/azure-cli-backup/test_backup_softdelete.yaml) and
azure-mgmt-compute's VirtualMachine / VirtualMachineInstanceView models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import BackupRequestResource, IaasVMBackupRequest
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator import Emulator
from emulator.recoveryservices.shapes import dotnet_timespan
from emulator.resourcegraph.models import ResourceGraphBackend
from emulator.scenario import ScenarioError

SUB = "11111111-1111-4111-8111-111111111111"
VAULT = {"vault_name": "v1", "resource_group_name": "rg-v"}
VM_RG = "rg-a"
START = "2026-11-25T10:00:00Z"
ITEMS_FILTER = "backupManagementType eq 'AzureIaasVM' and itemType eq 'VM'"
NEVER = "2001-01-01T00:00:00Z"
ITEM_TYPE = "microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems"

FAILING_DETAILS = [
    {
        "code": 400097,
        "title": "UserErrorGuestAgentStatusUnavailable",
        "message": "VM Agent unable to communicate with Azure Backup",
        "recommendations": ["Ensure the VM agent is installed, up to date and running."],
    }
]
WARNING_DETAILS = [
    {
        "code": 400230,
        "title": "IaasVmHealthYellow",
        "message": "Backup pre-check has warnings.",
        "recommendations": [],
    }
]
POLICIES = [
    {"name": "DefaultPolicy"},
    {
        "name": "WeeklyStandard",
        "schedule": {"frequency": "Weekly", "time": "21:30", "days": ["Monday", "Thursday"]},
    },
    {"name": "DailyEnhanced", "policy_type": "V2", "schedule": {"frequency": "Daily", "time": "02:00"}},
    {
        "name": "HourlyEnhanced",
        "policy_type": "V2",
        "schedule": {"frequency": "Hourly", "time": "08:00", "interval": 6, "window_hours": 16},
    },
]


def protected(state: str, **extra: Any) -> dict[str, Any]:
    return {"vault": "v1", "state": state, **extra}


VMS: list[dict[str, Any]] = [
    {"name": "pending", "protection": protected("IRPending")},
    {"name": "current", "protection": protected("Protected", policy="DailyEnhanced", last_backup="-6h")},
    {
        "name": "failing",
        "protection": protected(
            "ProtectionError",
            since="-20d",
            last_recovery_point="-3d",
            health_status="ActionRequired",
            health_details=FAILING_DETAILS,
        ),
    },
    {
        "name": "warned",
        "protection": protected("Protected", health_status="ActionSuggested", health_details=WARNING_DETAILS),
    },
    {
        "name": "stopped",
        "protection": protected("ProtectionStopped", since="-30d", last_recovery_point="-10d"),
    },
    {
        "name": "suspended",
        "protection": protected("BackupsSuspended", since="-30d", last_recovery_point="-2d"),
    },
    {"name": "softdel", "protection": protected("ProtectionStopped", since="-30d", soft_deleted_at="-2d")},
    {"name": "gone", "deleted": True, "protection": protected("Protected", policy="HourlyEnhanced")},
    {
        "name": "trusted",
        "security_type": "TrustedLaunch",
        "data_disk_types": ["PremiumV2_LRS", "UltraSSD_LRS"],
        "vm_agent": "Not Ready",
    },
    {"name": "confidential", "security_type": "ConfidentialVM", "os_disk_type": "StandardSSD_LRS"},
    {"name": "plain"},
]


def scenario(vms: list[dict[str, Any]], policies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    vault = {
        "name": "v1",
        "resource_group": "rg-v",
        "location": "westeurope",
        "policies": policies or POLICIES,
    }
    located = [{"location": "westeurope", "resource_group": VM_RG, **vm} for vm in vms]
    return {
        "clock": {"start": START, "scale": 0},
        "subscriptions": [{"id": SUB, "vaults": [vault], "vms": located}],
    }


@pytest.fixture
def estate(emulator: Emulator) -> Iterator[Emulator]:
    emulator.load_scenario(scenario(VMS))
    emulator.backend(ResourceGraphBackend).quota_per_5s = 1000
    yield emulator
    with emulator.lock:
        emulator.clock.set(emulator.clock.now(), scale=1.0)


@pytest.fixture
def backup(sdk_kwargs: dict[str, Any]) -> RecoveryServicesBackupClient:
    return RecoveryServicesBackupClient(subscription_id=SUB, **sdk_kwargs)


@pytest.fixture
def compute(sdk_kwargs: dict[str, Any]) -> ComputeManagementClient:
    return ComputeManagementClient(subscription_id=SUB, **sdk_kwargs)


def item_names(vm: str) -> dict[str, str]:
    suffix = f"iaasvmcontainerv2;{VM_RG};{vm}"
    return {"container_name": f"iaasvmcontainer;{suffix}", "protected_item_name": f"vm;{suffix}"}


def properties_of(resource: Any) -> dict[str, Any]:
    """An SDK model's `properties` as plain JSON (the models are MutableMappings over it)."""
    assert resource.properties is not None
    return dict(resource.properties)


def get_item(backup: RecoveryServicesBackupClient, vm: str) -> dict[str, Any]:
    return properties_of(backup.protected_items.get(fabric_name="Azure", **VAULT, **item_names(vm)))


def listed_items(backup: RecoveryServicesBackupClient) -> dict[str, dict[str, Any]]:
    items = backup.backup_protected_items.list(**VAULT, filter=ITEMS_FILTER)
    listed = [properties_of(item) for item in items]
    return {str(properties["friendlyName"]): properties for properties in listed}


def graph_items(sdk_kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    request = QueryRequest(
        subscriptions=[SUB], query=f"recoveryservicesresources | where type == '{ITEM_TYPE}'"
    )
    rows = cast(list[dict[str, Any]], ResourceGraphClient(**sdk_kwargs).resources(request).data)
    return {row["properties"]["friendlyName"]: row["properties"] for row in rows}


# --- protected items ------------------------------------------------------------------------------
STATES = {
    "pending": ("IRPending", "Healthy", "Passed"),
    "current": ("Protected", "Healthy", "Passed"),
    "failing": ("ProtectionError", "Unhealthy", "ActionRequired"),
    "warned": ("Protected", "Healthy", "ActionSuggested"),
    "stopped": ("ProtectionStopped", "Healthy", "Passed"),
    "suspended": ("BackupsSuspended", "Healthy", "Passed"),
    "softdel": ("ProtectionStopped", "Healthy", "Passed"),
    "gone": ("Protected", "Healthy", "Passed"),
}


def test_each_state_reads_the_same_in_get_and_list(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    listed = listed_items(backup)

    assert set(listed) == set(STATES)
    for vm, (state, protection_status, health) in STATES.items():
        got = get_item(backup, vm)
        assert (got["protectionState"], got["protectionStatus"], got["healthStatus"]) == (
            state,
            protection_status,
            health,
        ), vm
        assert listed[vm]["protectionState"] == state
        assert listed[vm]["healthStatus"] == health


def test_recovery_points_show_for_items_that_had_a_backup(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    listed = listed_items(backup)

    assert listed["current"]["lastRecoveryPoint"] == "2026-11-25T04:00:00Z"
    assert listed["failing"]["lastRecoveryPoint"] == "2026-11-22T10:00:00Z"
    assert listed["stopped"]["lastRecoveryPoint"] == "2026-11-15T10:00:00Z"
    assert listed["suspended"]["lastRecoveryPoint"] == "2026-11-23T10:00:00Z"
    assert listed["suspended"]["lastBackupTime"] == "2026-11-23T10:00:00Z"
    for vm in ("pending", "softdel"):
        assert "lastRecoveryPoint" not in listed[vm]
        assert listed[vm]["lastBackupTime"] == NEVER


def test_health_details_read_as_the_scenario_gave_them(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    assert get_item(backup, "failing")["healthDetails"] == FAILING_DETAILS
    assert get_item(backup, "warned")["healthDetails"] == WARNING_DETAILS
    # a healthy backed-up item keeps the recorded green detail
    assert [d["title"] for d in get_item(backup, "current")["healthDetails"]] == ["IaasVmHealthGreenDefault"]


def test_a_soft_deleted_item_reads_as_recorded(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    got = get_item(backup, "softdel")

    assert got["isScheduledForDeferredDelete"] is True
    assert got["deferredDeleteTimeInUTC"] == "2026-11-23T10:00:00Z"
    assert got["deferredDeleteTimeRemaining"] == "12.00:00:00"  # 14 days after deletion
    assert (got["policyId"], got["policyName"], got["softDeleteRetentionPeriod"]) == ("", "", 14)
    others = get_item(backup, "stopped")
    assert others["isScheduledForDeferredDelete"] is False
    assert "deferredDeleteTimeInUTC" not in others and others["policyName"] == "DefaultPolicy"


def test_time_remaining_counts_down_with_the_clock(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    estate.advance(timedelta(days=3, hours=1, minutes=30).total_seconds())

    assert get_item(backup, "softdel")["deferredDeleteTimeRemaining"] == "8.22:30:00"


def test_a_soft_deleted_item_does_not_count_for_its_old_policy(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    policy = policy_properties(backup, "DefaultPolicy")

    # pending, failing, warned, stopped, suspended: not softdel
    assert policy["protectedItemsCount"] == 5


def test_an_orphaned_item_outlives_its_vm(
    estate: Emulator, backup: RecoveryServicesBackupClient, compute: ComputeManagementClient
) -> None:
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.get(VM_RG, "gone")

    got = get_item(backup, "gone")
    assert got["sourceResourceId"].endswith(
        "/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/gone"
    )
    assert got["policyName"] == "HourlyEnhanced"
    assert "gone" not in {vm.name for vm in compute.virtual_machines.list(VM_RG)}


def test_resource_graph_carries_the_states_the_items_carry(
    estate: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    rows = graph_items(sdk_kwargs)

    assert set(rows) == set(STATES)  # the orphaned item included
    for vm, (state, _, health) in STATES.items():
        assert (rows[vm]["protectionState"], rows[vm]["healthStatus"]) == (state, health), vm
    assert rows["failing"]["healthDetails"] == FAILING_DETAILS
    assert rows["failing"]["lastRecoveryPoint"] == "2026-11-22T10:00:00Z"
    assert rows["softdel"]["isScheduledForDeferredDelete"] is True
    assert rows["softdel"]["deferredDeleteTimeInUTC"] == "2026-11-23T10:00:00Z"
    current = {
        vm: rows[vm]["currentProtectionState"]
        for vm in ("pending", "failing", "stopped", "suspended", "softdel")
    }
    assert current == {
        "pending": "ProtectionConfigured",
        "failing": "ProtectionError",
        "stopped": "ProtectionStopped",
        "suspended": "BackupSchedulesSuspended",
        "softdel": "SoftDeleted",
    }


def test_an_item_without_the_new_keys_reads_exactly_as_before(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    got = get_item(backup, "pending")

    vm_id = f"/subscriptions/{SUB}/resourceGroups/{VM_RG}/providers/Microsoft.Compute/virtualMachines/pending"
    vault_id = f"/subscriptions/{SUB}/resourceGroups/rg-v/providers/Microsoft.RecoveryServices/vaults/v1"
    got.pop("protectedItemDataId")
    assert got == {
        "friendlyName": "pending",
        "virtualMachineId": vm_id,
        "protectionStatus": "Healthy",
        "protectionState": "IRPending",
        "healthStatus": "Passed",
        "kpisHealths": {},
        "lastBackupStatus": "",
        "lastBackupTime": NEVER,
        "extendedInfo": {"recoveryPointCount": 0, "policyInconsistent": False},
        "protectedItemType": "Microsoft.Compute/virtualMachines",
        "backupManagementType": "AzureIaasVM",
        "workloadType": "VM",
        "containerName": f"iaasvmcontainerv2;{VM_RG};pending",
        "sourceResourceId": vm_id,
        "policyId": f"{vault_id}/backupPolicies/DefaultPolicy",
        "policyName": "DefaultPolicy",
        "isScheduledForDeferredDelete": False,
        "isArchiveEnabled": False,
        "vaultId": f"https://management.azure.com{vault_id}",
        "softDeleteRetentionPeriod": 0,
    }


# --- policies ------------------------------------------------------------------------------------------
def policy_properties(backup: RecoveryServicesBackupClient, name: str) -> dict[str, Any]:
    return properties_of(backup.protection_policies.get(policy_name=name, **VAULT))


def test_the_default_policy_reads_as_before(estate: Emulator, backup: RecoveryServicesBackupClient) -> None:
    got = policy_properties(backup, "DefaultPolicy")

    assert (got["policyType"], got["instantRpRetentionRangeInDays"]) == ("V1", 2)
    assert got["schedulePolicy"] == {
        "schedulePolicyType": "SimpleSchedulePolicy",
        "scheduleRunFrequency": "Daily",
        "scheduleRunTimes": ["2026-01-01T22:00:00Z"],
        "scheduleWeeklyFrequency": 0,
    }
    assert got["retentionPolicy"]["dailySchedule"]["retentionDuration"] == {
        "count": 30,
        "durationType": "Days",
    }


def test_a_weekly_standard_policy_has_run_days_and_weekly_retention(
    estate: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    got = policy_properties(backup, "WeeklyStandard")

    assert got["policyType"] == "V1"
    assert got["schedulePolicy"] == {
        "schedulePolicyType": "SimpleSchedulePolicy",
        "scheduleRunFrequency": "Weekly",
        "scheduleRunDays": ["Monday", "Thursday"],
        "scheduleRunTimes": ["2026-01-01T21:30:00Z"],
        "scheduleWeeklyFrequency": 0,
    }
    assert got["retentionPolicy"] == {
        "retentionPolicyType": "LongTermRetentionPolicy",
        "weeklySchedule": {
            "daysOfTheWeek": ["Monday", "Thursday"],
            "retentionTimes": ["2026-01-01T21:30:00Z"],
            "retentionDuration": {"count": 5, "durationType": "Weeks"},
        },
    }


def test_enhanced_policies_have_v2_schedules(estate: Emulator, backup: RecoveryServicesBackupClient) -> None:
    daily = policy_properties(backup, "DailyEnhanced")
    hourly = policy_properties(backup, "HourlyEnhanced")

    assert (daily["policyType"], daily["instantRpRetentionRangeInDays"]) == ("V2", 7)
    assert daily["schedulePolicy"] == {
        "schedulePolicyType": "SimpleSchedulePolicyV2",
        "scheduleRunFrequency": "Daily",
        "dailySchedule": {"scheduleRunTimes": ["2026-01-01T02:00:00Z"]},
    }
    assert hourly["schedulePolicy"] == {
        "schedulePolicyType": "SimpleSchedulePolicyV2",
        "scheduleRunFrequency": "Hourly",
        "hourlySchedule": {
            "interval": 6,
            "scheduleWindowStartTime": "2026-01-01T08:00:00Z",
            "scheduleWindowDuration": 16,
        },
    }
    assert hourly["retentionPolicy"]["dailySchedule"]["retentionTimes"] == ["2026-01-01T08:00:00Z"]


def test_a_weekly_enhanced_policy_nests_its_days_in_weekly_schedule(
    emulator: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    weekly = {"name": "W2", "policy_type": "V2", "schedule": {"frequency": "Weekly", "days": ["Sunday"]}}
    emulator.load_scenario(scenario([], policies=[weekly]))

    got = policy_properties(backup, "W2")["schedulePolicy"]

    assert got == {
        "schedulePolicyType": "SimpleSchedulePolicyV2",
        "scheduleRunFrequency": "Weekly",
        "weeklySchedule": {"scheduleRunDays": ["Sunday"], "scheduleRunTimes": ["2026-01-01T22:00:00Z"]},
    }


# --- unprotected VMs of every kind -----------------------------------------------------------------------
def test_vm_security_type_and_disk_types_read_through_the_compute_client(
    estate: Emulator, compute: ComputeManagementClient
) -> None:
    trusted = compute.virtual_machines.get(VM_RG, "trusted")
    confidential = compute.virtual_machines.get(VM_RG, "confidential")
    plain = compute.virtual_machines.get(VM_RG, "plain")

    assert trusted.security_profile is not None and trusted.security_profile.security_type == "TrustedLaunch"
    assert trusted.security_profile.uefi_settings is not None
    assert trusted.security_profile.uefi_settings.secure_boot_enabled is True
    assert trusted.storage_profile is not None and trusted.storage_profile.data_disks is not None
    disks = trusted.storage_profile.data_disks
    assert [(d.lun, d.managed_disk.storage_account_type) for d in disks if d.managed_disk] == [
        (0, "PremiumV2_LRS"),
        (1, "UltraSSD_LRS"),
    ]
    assert trusted.additional_capabilities is not None and trusted.additional_capabilities.ultra_ssd_enabled
    assert confidential.security_profile is not None
    assert confidential.security_profile.security_type == "ConfidentialVM"
    assert confidential.storage_profile is not None and confidential.storage_profile.os_disk is not None
    os_disk = confidential.storage_profile.os_disk
    assert os_disk.managed_disk is not None and os_disk.managed_disk.storage_account_type == "StandardSSD_LRS"
    # defaults unchanged: no securityProfile, a Premium_LRS OS disk, no data disks
    assert plain.security_profile is None and plain.additional_capabilities is None
    assert plain.storage_profile is not None and plain.storage_profile.os_disk is not None
    assert plain.storage_profile.os_disk.managed_disk is not None
    assert plain.storage_profile.os_disk.managed_disk.storage_account_type == "Premium_LRS"
    assert plain.storage_profile.data_disks == []


def test_instance_view_reports_the_vm_agent_ready_or_not(
    estate: Emulator, compute: ComputeManagementClient
) -> None:
    not_ready = compute.virtual_machines.instance_view(VM_RG, "trusted")
    ready = compute.virtual_machines.instance_view(VM_RG, "plain")

    assert not_ready.vm_agent is not None and not_ready.vm_agent.statuses is not None
    (status,) = not_ready.vm_agent.statuses
    assert (status.code, status.level, status.display_status, status.message) == (
        "ProvisioningState/Unavailable",
        "Warning",
        "Not Ready",
        "VM Agent is unresponsive.",
    )
    assert not_ready.vm_agent.vm_agent_version == "Unknown"
    assert not_ready.hyper_v_generation == "V2"
    assert ready.vm_agent is not None and ready.vm_agent.statuses is not None
    assert [(s.code, s.display_status) for s in ready.vm_agent.statuses] == [
        ("ProvisioningState/succeeded", "Ready")
    ]
    assert ready.statuses is not None
    assert [s.code for s in ready.statuses] == ["ProvisioningState/succeeded", "PowerState/running"]
    assert ready.disks is not None and len(ready.disks) == 1


def test_instance_view_of_a_missing_vm_is_not_found(
    estate: Emulator, compute: ComputeManagementClient
) -> None:
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.instance_view(VM_RG, "gone")


def test_resource_graph_vm_rows_carry_security_and_disk_types(
    estate: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    request = QueryRequest(
        subscriptions=[SUB],
        query="resources | where type =~ 'Microsoft.Compute/virtualMachines' and name == 'trusted'",
    )
    rows = cast(list[dict[str, Any]], ResourceGraphClient(**sdk_kwargs).resources(request).data)
    (row,) = rows

    properties = row["properties"]
    assert properties["securityProfile"]["securityType"] == "TrustedLaunch"
    assert [d["managedDisk"]["storageAccountType"] for d in properties["storageProfile"]["dataDisks"]] == [
        "PremiumV2_LRS",
        "UltraSSD_LRS",
    ]


# --- refusals -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vms", "policies", "message"),
    [
        ([], [{"name": "H", "schedule": {"frequency": "Hourly"}}], "Hourly needs policy_type V2"),
        (
            [],
            [{"name": "H", "policy_type": "V2", "schedule": {"frequency": "Hourly", "interval": 5}}],
            "interval",
        ),
        ([], [{"name": "W", "schedule": {"frequency": "Weekly"}}], "days"),
        ([], [{"name": "D", "schedule": {"frequency": "Daily", "interval": 4}}], "Hourly schedule only"),
        ([], [{"name": "D", "schedule": {"time": "25:00"}}], "time of day"),
        ([], [{"name": "X", "policy_type": "V3"}], "policy_type"),
        ([{"name": "a", "os_disk_type": "PremiumV2_LRS"}], None, "os_disk_type"),
        ([{"name": "a", "data_disk_types": ["Fast_LRS"]}], None, "data_disk_types[0]"),
        ([{"name": "a", "security_type": "Shielded"}], None, "security_type"),
        ([{"name": "a", "vm_agent": "Unknown"}], None, "vm_agent"),
        ([{"name": "a", "deleted": True}], None, "deleted"),
        (
            [{"name": "a", "protection": protected("Protected", soft_deleted_at="-1d")}],
            None,
            "soft_deleted_at",
        ),
        ([{"name": "a", "protection": protected("IRPending", last_recovery_point="-1d")}], None, "IRPending"),
        ([{"name": "a", "protection": protected("Protected", health_status="Bad")}], None, "health_status"),
        (
            [{"name": "a", "protection": protected("Protected", health_details=[{"code": "x"}])}],
            None,
            "health_details[0].code",
        ),
    ],
)
def test_a_scenario_with_an_impossible_kind_is_refused(
    emulator: Emulator, vms: list[dict[str, Any]], policies: list[dict[str, Any]] | None, message: str
) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        emulator.load_scenario(scenario(vms, policies))


# --- .NET TimeSpan text -----------------------------------------------------------------------------------
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{2}):(\d{2}):(\d{2})(?:\.(\d{7}))?$")


@settings(max_examples=250, deadline=None)
@given(st.integers(min_value=0, max_value=30 * 86_400 * 10_000_000))
def test_timespans_read_back_to_the_same_ticks(ticks: int) -> None:
    text = dotnet_timespan(timedelta(microseconds=ticks // 10))

    match = _TIMESPAN.match(text)
    assert match is not None, text
    days, hours, minutes, seconds, fraction = (int(part or 0) for part in match.groups())
    assert hours < 24 and minutes < 60 and seconds < 60
    total = (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 10_000_000 + fraction
    assert total == (ticks // 10) * 10


# --- what a backup changes ------------------------------------------------------------------------
def trigger_backup(backup: RecoveryServicesBackupClient, vm: str) -> None:
    request = BackupRequestResource(
        properties=IaasVMBackupRequest(recovery_point_expiry_time_in_utc=datetime(2027, 1, 1, tzinfo=UTC))
    )
    backup.backups.trigger(fabric_name="Azure", **VAULT, **item_names(vm), parameters=request)


def latest_backup_job(backup: RecoveryServicesBackupClient, vm: str) -> dict[str, Any]:
    jobs = [properties_of(job) for job in backup.backup_jobs.list(**VAULT)]
    return next(j for j in jobs if j["entityFriendlyName"] == vm and j["operation"] == "Backup")


def test_a_successful_backup_leaves_a_failing_item_protected_and_healthy(
    emulator: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    failing = next(vm for vm in VMS if vm["name"] == "failing")
    emulator.load_scenario(scenario([failing]))
    trigger_backup(backup, "failing")
    emulator.advance(emulator.estate.timings.backup_job_s + 60)

    item = get_item(backup, "failing")
    assert (item["protectionState"], item["protectionStatus"], item["healthStatus"]) == (
        "Protected",
        "Healthy",
        "Passed",
    )
    assert [d["title"] for d in item.get("healthDetails") or []] == ["IaasVmHealthGreenDefault"]
    assert latest_backup_job(backup, "failing")["status"] == "Completed"


def test_a_backup_of_a_vm_whose_agent_is_not_ready_fails_as_the_service_s_does(
    emulator: Emulator, backup: RecoveryServicesBackupClient
) -> None:
    emulator.load_scenario(
        scenario([{"name": "agentless", "vm_agent": "Not Ready", "protection": protected("IRPending")}])
    )
    trigger_backup(backup, "agentless")
    emulator.advance(emulator.estate.timings.backup_job_s + 60)

    job = latest_backup_job(backup, "agentless")
    assert job["status"] == "Failed"
    assert [e["errorCode"] for e in job["errorDetails"]] == ["UserErrorGuestAgentStatusUnavailable"]
    item = get_item(backup, "agentless")
    assert (item["protectionState"], item["lastBackupStatus"]) == ("IRPending", "Failed")
