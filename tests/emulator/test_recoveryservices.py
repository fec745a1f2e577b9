"""Recovery Services through the real SDK clients: vaults, discovery, protection, backups, jobs.

IaaS VM items come back from azure-mgmt-recoveryservicesbackup 11.x as the base `ProtectedItem`
model (azure-facts §10); every model is a MutableMapping over the raw JSON, so the tests read
item properties as `item.properties["protectionState"]`, exactly as the app's adapter must.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import (
    AzureIaaSComputeVMProtectedItem,
    BackupRequestResource,
    BackupStatusRequest,
    IaasVMBackupRequest,
    ProtectedItemResource,
)

from emulator import Emulator
from emulator.core.throttle import BucketSpec
from emulator.estate import BackupPolicy, FailurePlan, ProtectedItem, Vault, VirtualMachine
from emulator.recoveryservices.models import RecoveryServicesBackend
from tests.emulator.recoveryservices_estate import (
    OTHER_SUB,
    REGION,
    START,
    SUB,
    VAULT_RG,
    VM_RG,
    World,
    build_world,
    frozen_clock,
    last_segment,
    protect_directly,
    response_headers,
    response_status,
)

IAAS_FILTER = "backupManagementType eq 'AzureIaasVM'"
ITEMS_FILTER = "backupManagementType eq 'AzureIaasVM' and itemType eq 'VM'"


@pytest.fixture
def world(emulator: Emulator) -> Iterator[World]:
    with frozen_clock(emulator):
        yield build_world(emulator)


@pytest.fixture
def backup(sdk_kwargs: dict[str, Any]) -> RecoveryServicesBackupClient:
    return RecoveryServicesBackupClient(subscription_id=SUB, **sdk_kwargs)


@pytest.fixture
def vaults(sdk_kwargs: dict[str, Any]) -> RecoveryServicesClient:
    return RecoveryServicesClient(subscription_id=SUB, **sdk_kwargs)


def _vault_args(world: World) -> dict[str, str]:
    return {"vault_name": world.vault.name, "resource_group_name": VAULT_RG}


def _item_args(world: World, vm: VirtualMachine) -> dict[str, str]:
    return {
        **_vault_args(world),
        "fabric_name": "Azure",
        "container_name": vm.container_name,
        "protected_item_name": vm.item_name,
    }


def _protection_body(vm: VirtualMachine, policy_id: str) -> ProtectedItemResource:
    return ProtectedItemResource(
        properties=AzureIaaSComputeVMProtectedItem(source_resource_id=vm.id, policy_id=policy_id)
    )


def _enable(backup: RecoveryServicesBackupClient, world: World, vm: VirtualMachine) -> dict[str, str]:
    """PUT the protected item as `az backup protection enable-for-vm` does; the 202's headers."""
    captured: dict[str, str] = {}

    def keep_headers(pipeline_response: Any) -> None:
        captured.update(pipeline_response.http_response.headers)

    backup.protected_items.begin_create_or_update(
        parameters=_protection_body(vm, world.policy.id),
        polling=False,
        raw_response_hook=keep_headers,
        **_item_args(world, vm),
    )
    return captured


def _trigger(backup: RecoveryServicesBackupClient, world: World, vm: VirtualMachine) -> dict[str, str]:
    body = BackupRequestResource(
        properties=IaasVMBackupRequest(recovery_point_expiry_time_in_utc=START + timedelta(days=30))
    )
    return cast(
        dict[str, str], backup.backups.trigger(parameters=body, cls=response_headers, **_item_args(world, vm))
    )


def _error_code(raised: pytest.ExceptionInfo[HttpResponseError]) -> str:
    assert raised.value.error is not None
    return str(raised.value.error.code)


# --- vaults ------------------------------------------------------------------------------------
def test_vaults_list_by_subscription_and_group_and_get(
    emulator: Emulator, world: World, vaults: RecoveryServicesClient
) -> None:
    with emulator.lock:
        emulator.estate.add_vault(Vault(SUB, "rg-other", "vault-other", "northeurope"))
        emulator.estate.add_vault(Vault(OTHER_SUB, VAULT_RG, "vault-elsewhere", REGION))

    in_subscription = sorted(str(vault.name) for vault in vaults.vaults.list_by_subscription_id())
    in_group = [vault.name for vault in vaults.vaults.list_by_resource_group(VAULT_RG)]
    vault = vaults.vaults.get(VAULT_RG, "VAULT-WEU")

    assert in_subscription == ["vault-other", "vault-weu"]
    assert in_group == ["vault-weu"]
    assert vault.id == world.vault.id
    assert vault.location == REGION
    assert vault.tags == {"env": "prod"}
    assert vault.sku is not None and vault.sku.name == "RS0" and vault.sku.tier == "Standard"
    assert vault.properties is not None and vault.properties.provisioning_state == "Succeeded"


def test_unknown_vault_is_404_resource_not_found(world: World, vaults: RecoveryServicesClient) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        vaults.vaults.get(VAULT_RG, "no-such-vault")
    assert _error_code(raised) == "ResourceNotFound"


# --- policies ----------------------------------------------------------------------------------
def test_backup_policies_list_and_get(world: World, backup: RecoveryServicesBackupClient) -> None:
    listed = list(backup.backup_policies.list(filter=IAAS_FILTER, **_vault_args(world)))
    policy = backup.protection_policies.get(policy_name="defaultpolicy", **_vault_args(world))

    assert [entry.name for entry in listed] == ["DefaultPolicy"]
    assert policy.id == world.policy.id
    assert policy.properties is not None
    assert policy.properties["backupManagementType"] == "AzureIaasVM"
    assert policy.properties["schedulePolicy"]["scheduleRunFrequency"] == "Daily"
    with pytest.raises(ResourceNotFoundError):
        backup.protection_policies.get(policy_name="missing", **_vault_args(world))


# --- discovery ---------------------------------------------------------------------------------
def test_refresh_containers_discovers_vms_of_the_vault_region_and_subscription(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    with emulator.lock:
        emulator.estate.add_vm(VirtualMachine(SUB, VM_RG, "vm-east", "eastus"))
        emulator.estate.add_vm(VirtualMachine(OTHER_SUB, VM_RG, "vm-other-sub", REGION))
    assert list(backup.backup_protectable_items.list(filter=IAAS_FILTER, **_vault_args(world))) == []

    headers = cast(
        dict[str, str],
        backup.protection_containers.refresh(fabric_name="Azure", cls=response_headers, **_vault_args(world)),
    )
    op_id = last_segment(headers["Location"])
    assert f"{world.vault.id}/backupFabrics/Azure/operationResults/{op_id}" in headers["Location"]
    poll = {**_vault_args(world), "fabric_name": "Azure", "operation_id": op_id}
    first = cast(
        dict[str, str],
        backup.protection_container_refresh_operation_results.get(cls=response_headers, **poll),
    )
    assert "Location" in first and "Retry-After" in first
    assert backup.protection_container_refresh_operation_results.get(cls=response_status, **poll) == 202

    emulator.advance(emulator.estate.timings.refresh_containers_s)

    assert backup.protection_container_refresh_operation_results.get(cls=response_status, **poll) == 204
    listed = list(backup.backup_protectable_items.list(filter=IAAS_FILTER, **_vault_args(world)))
    # a protectable item is named like its container, without `vm;` (recorded az backup traffic)
    assert sorted(str(entry.name) for entry in listed) == [
        f"iaasvmcontainerv2;{VM_RG};vm-{index}" for index in range(3)
    ]
    assert all(entry.properties["protectionState"] == "NotProtected" for entry in listed)  # type: ignore[index]


# --- enable protection -------------------------------------------------------------------------
def test_enable_protection_step_by_step_as_recorded(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    vm = world.vms[0]
    with emulator.lock:
        emulator.estate.discovered[world.vault.id.lower()] = {vm.id.lower()}
    protectable = list(backup.backup_protectable_items.list(filter=IAAS_FILTER, **_vault_args(world)))
    assert [entry.properties["virtualMachineId"] for entry in protectable] == [vm.id]  # type: ignore[index]

    headers = _enable(backup, world, vm)
    op_id = last_segment(headers["Location"])
    assert "/protectedItems/" in headers["Location"] and "/operationResults/" in headers["Location"]
    assert headers["Azure-AsyncOperation"].split("?")[0].endswith(f"/operationsStatus/{op_id}")
    assert headers["Retry-After"] == "0"

    running = backup.backup_operation_statuses.get(operation_id=op_id, **_vault_args(world))
    assert running.status == "InProgress"
    assert running["endTime"] == "0001-01-01T00:00:00"
    assert "properties" not in running
    with pytest.raises(ResourceNotFoundError):
        backup.protected_items.get(**_item_args(world, vm))
    result_args = {**_item_args(world, vm), "operation_id": op_id}
    assert backup.protected_item_operation_results.get(cls=response_status, **result_args) == 202

    emulator.advance(emulator.estate.timings.configure_operation_s)

    done = backup.backup_operation_statuses.get(operation_id=op_id, **_vault_args(world))
    assert done.status == "Succeeded"
    assert done["properties"]["objectType"] == "OperationStatusJobExtendedInfo"
    job = backup.job_details.get(job_name=done["properties"]["jobId"], **_vault_args(world))
    assert job.properties is not None
    assert job.properties["jobType"] == "AzureIaaSVMJob"
    assert job.properties["operation"] == "ConfigureBackup"
    assert job.properties["status"] == "Completed"
    assert "endTime" in job.properties

    item = backup.protected_items.get(**_item_args(world, vm))
    assert item.name == f"VM;iaasvmcontainerv2;{VM_RG};{vm.name}"
    _assert_initial_backup_pending(item.properties)
    assert item.properties["vaultId"] == f"https://management.azure.com{world.vault.id}"  # type: ignore[index]
    from_result = backup.protected_item_operation_results.get(**result_args)
    assert from_result is not None and from_result.id == item.id
    assert list(backup.backup_protectable_items.list(filter=IAAS_FILTER, **_vault_args(world))) == []


def _assert_initial_backup_pending(properties: Any) -> None:
    """The state this project exists for (azure-facts §1, first column)."""
    assert properties["protectionState"] == "IRPending"
    assert properties["protectionStatus"] == "Healthy"
    assert properties["healthStatus"] == "Passed"
    assert properties["lastBackupStatus"] == ""
    assert properties["lastBackupTime"] == "2001-01-01T00:00:00Z"
    assert "lastRecoveryPoint" not in properties
    assert properties["protectedItemType"] == "Microsoft.Compute/virtualMachines"


def test_enable_protection_through_the_sdk_poller(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    emulator.estate.timings.configure_operation_s = 0
    vm = world.vms[1]

    poller = backup.protected_items.begin_create_or_update(
        parameters=_protection_body(vm, world.policy.id), polling_interval=0, **_item_args(world, vm)
    )
    item = poller.result(timeout=10)

    assert item.properties is not None
    _assert_initial_backup_pending(item.properties)
    assert item.properties["policyName"] == "DefaultPolicy"


def test_same_vault_put_updates_the_policy(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    vm = world.vms[0]
    protect_directly(emulator, world, vm)
    with emulator.lock:
        enhanced = emulator.estate.add_policy(BackupPolicy(world.vault.id, "Enhanced"))

    backup.protected_items.begin_create_or_update(
        parameters=_protection_body(vm, enhanced.id), polling=False, **_item_args(world, vm)
    )
    emulator.advance(emulator.estate.timings.configure_operation_s)

    item = backup.protected_items.get(**_item_args(world, vm))
    assert item.properties["policyName"] == "Enhanced"  # type: ignore[index]
    assert item.properties["protectionState"] == "IRPending"  # type: ignore[index]


@pytest.mark.parametrize(
    ("vm_factory", "code"),
    [
        (lambda: VirtualMachine(SUB, VM_RG, "vm-east", "eastus"), "UserErrorVmAndVaultInDifferentRegion"),
        (
            lambda: VirtualMachine(OTHER_SUB, VM_RG, "vm-sub", REGION),
            "UserErrorVmAndVaultInDifferentSubscription",
        ),
    ],
)
def test_enable_protection_rejects_vm_outside_vault_region_or_subscription(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient, vm_factory: Any, code: str
) -> None:
    with emulator.lock:
        vm = emulator.estate.add_vm(vm_factory())

    with pytest.raises(HttpResponseError) as raised:
        _enable(backup, world, vm)

    assert raised.value.status_code == 400
    assert _error_code(raised) == code
    assert emulator.estate.jobs == {}


def test_enable_protection_rejects_vm_protected_by_another_vault(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    vm = world.vms[0]
    with emulator.lock:
        other = emulator.estate.add_vault(Vault(SUB, VAULT_RG, "vault-second", REGION))
        emulator.estate.protected_items[vm.id.lower()] = _item_in(other, vm, world)

    with pytest.raises(HttpResponseError) as raised:
        _enable(backup, world, vm)

    assert raised.value.status_code == 400
    assert _error_code(raised) == "BMSUserErrorProtectedItemAlreadyProtected"
    assert "vault-second" in str(raised.value)


def _item_in(vault: Vault, vm: VirtualMachine, world: World) -> ProtectedItem:
    return ProtectedItem(vault_id=vault.id, vm=vm, policy_id=f"{vault.id}/backupPolicies/DefaultPolicy")


def test_enable_protection_rejects_vm_being_configured_by_another_vault(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    vm = world.vms[0]
    with emulator.lock:
        other = emulator.estate.add_vault(Vault(SUB, VAULT_RG, "vault-second", REGION))
        emulator.estate.add_policy(BackupPolicy(other.id, "DefaultPolicy"))
    other_world = World(
        other, emulator.estate.policies[f"{other.id}/backupPolicies/defaultpolicy".lower()], [vm]
    )
    _enable(backup, other_world, vm)

    with pytest.raises(HttpResponseError) as raised:
        _enable(backup, world, vm)

    assert _error_code(raised) == "BMSUserErrorProtectedItemAlreadyProtected"


def test_enable_protection_rejects_a_full_vault(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    world.vault.max_items = 2
    protect_directly(emulator, world, world.vms[0])
    _enable(backup, world, world.vms[1])  # still configuring: counts towards the limit

    with pytest.raises(HttpResponseError) as raised:
        _enable(backup, world, world.vms[2])

    assert raised.value.status_code == 400
    assert _error_code(raised) == "BMSUserErrorProtectedItemsLimitReached"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (
            {
                "policyId": "/subscriptions/x/resourceGroups/y/providers/Microsoft.RecoveryServices/vaults/z/"
                "backupPolicies/none"
            },
            "BMSUserErrorPolicyNotFound",
        ),
        (
            {
                "sourceResourceId": f"/subscriptions/{SUB}/resourceGroups/{VM_RG}/providers/"
                "Microsoft.Compute/virtualMachines/ghost"
            },
            "BMSUserErrorInvalidSourceResourceId",
        ),
        ({"protectedItemType": "AzureFileShareProtectedItem"}, "BMSUserErrorInvalidInput"),
    ],
)
def test_enable_protection_rejects_bad_bodies(
    world: World, backup: RecoveryServicesBackupClient, change: dict[str, str], code: str
) -> None:
    vm = world.vms[0]
    properties = {
        "protectedItemType": "Microsoft.Compute/virtualMachines",
        "sourceResourceId": vm.id,
        "policyId": world.policy.id,
        **change,
    }
    body = ProtectedItemResource({"properties": properties})

    with pytest.raises(HttpResponseError) as raised:
        backup.protected_items.begin_create_or_update(parameters=body, polling=False, **_item_args(world, vm))

    assert raised.value.status_code == 400
    assert _error_code(raised) == code


def test_enable_protection_rejects_names_that_do_not_match_the_vm(
    world: World, backup: RecoveryServicesBackupClient
) -> None:
    args = {**_item_args(world, world.vms[0]), "protected_item_name": world.vms[1].item_name}

    with pytest.raises(HttpResponseError) as raised:
        backup.protected_items.begin_create_or_update(
            parameters=_protection_body(world.vms[0], world.policy.id), polling=False, **args
        )

    assert _error_code(raised) == "BMSUserErrorInvalidInput"


# --- backup now --------------------------------------------------------------------------------
def test_backup_now_step_by_step_as_recorded(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    vm = world.vms[0]
    protect_directly(emulator, world, vm)

    headers = _trigger(backup, world, vm)
    op_id = last_segment(headers["Location"])
    assert headers["Azure-AsyncOperation"].split("?")[0].endswith(f"/operationsStatus/{op_id}")
    assert "Retry-After" in headers

    status = backup.backup_operation_statuses.get(operation_id=op_id, **_vault_args(world))
    assert status.status == "Succeeded"
    job_id = status["properties"]["jobId"]
    job = backup.job_details.get(job_name=job_id, **_vault_args(world))
    assert job.properties is not None
    assert job.properties["status"] == "InProgress"
    assert job.properties["operation"] == "Backup"
    assert "endTime" not in job.properties
    tasks = [task["taskId"] for task in job.properties["extendedInfo"]["tasksList"]]
    assert tasks == ["Take Snapshot", "Transfer data to vault"]
    item = backup.protected_items.get(**_item_args(world, vm))
    _assert_initial_backup_pending(item.properties)

    emulator.advance(emulator.estate.timings.backup_job_s)

    finished = backup.job_details.get(job_name=job_id, **_vault_args(world))
    assert finished.properties is not None
    assert finished.properties["status"] == "Completed"
    assert finished.properties["duration"] == "PT41M"
    assert "errorDetails" not in finished.properties
    item = backup.protected_items.get(**_item_args(world, vm))
    properties = item.properties
    assert properties is not None
    assert properties["protectionState"] == "Protected"
    assert properties["protectionStatus"] == "Healthy"
    assert properties["healthStatus"] == "Passed"
    assert properties["lastBackupStatus"] == "Completed"
    assert properties["lastBackupTime"] == finished.properties["endTime"]
    assert properties["lastRecoveryPoint"] == finished.properties["endTime"]
    op_args = {**_item_args(world, vm), "operation_id": op_id}
    assert backup.protected_item_operation_results.get(cls=response_status, **op_args) == 204
    assert backup.protected_item_operation_statuses.get(**op_args).status == "Succeeded"


def test_backup_while_one_runs_is_rejected_as_in_progress(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    vm = world.vms[0]
    protect_directly(emulator, world, vm)
    _trigger(backup, world, vm)

    with pytest.raises(HttpResponseError) as raised:
        _trigger(backup, world, vm)

    assert raised.value.status_code == 400
    assert _error_code(raised) == "UserErrorBackupOperationInProgress"
    assert "another backup operation is currently in progress" in str(raised.value)


def test_tenth_on_demand_backup_in_a_utc_day_is_rejected(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    emulator.estate.timings.backup_job_s = 60
    vm = world.vms[0]
    protect_directly(emulator, world, vm)
    for _ in range(9):
        _trigger(backup, world, vm)
        emulator.advance(61)

    with pytest.raises(HttpResponseError) as raised:
        _trigger(backup, world, vm)
    assert raised.value.status_code == 400
    assert _error_code(raised) == "UserErrorMaxOnDemandBackupsReached"

    emulator.advance(24 * 3600)
    assert "Location" in _trigger(backup, world, vm)


def test_failure_plan_fails_the_backup_with_error_details(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    vm = world.vms[0]
    protect_directly(emulator, world, vm)
    emulator.estate.failure_plans[vm.id.lower()] = FailurePlan(
        "UserErrorGuestAgentStatusUnavailable", attempts=1
    )

    job_id = _job_of(backup, world, _trigger(backup, world, vm))
    emulator.advance(emulator.estate.timings.backup_job_s)

    job = backup.job_details.get(job_name=job_id, **_vault_args(world))
    assert job.properties is not None
    assert job.properties["status"] == "Failed"
    [error] = job.properties["errorDetails"]
    assert error["errorCode"] == "UserErrorGuestAgentStatusUnavailable"
    assert error["errorString"] and error["recommendations"]
    item = backup.protected_items.get(**_item_args(world, vm))
    assert item.properties["protectionState"] == "IRPending"  # type: ignore[index]
    assert item.properties["lastBackupStatus"] == "Failed"  # type: ignore[index]
    assert item.properties["lastBackupTime"] == "2001-01-01T00:00:00Z"  # type: ignore[index]
    assert vm.id.lower() not in emulator.estate.failure_plans

    _trigger(backup, world, vm)
    emulator.advance(emulator.estate.timings.backup_job_s)
    assert backup.protected_items.get(**_item_args(world, vm)).properties["protectionState"] == "Protected"  # type: ignore[index]


def _job_of(backup: RecoveryServicesBackupClient, world: World, headers: dict[str, str]) -> str:
    status = backup.backup_operation_statuses.get(
        operation_id=last_segment(headers["Location"]), **_vault_args(world)
    )
    return str(status["properties"]["jobId"])


def test_backup_of_an_unknown_item_is_404(world: World, backup: RecoveryServicesBackupClient) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        _trigger(backup, world, world.vms[2])
    assert _error_code(raised) == "BMSUserErrorObjectNotFound"


# --- lists and paging --------------------------------------------------------------------------
def test_protected_items_page_through_next_links(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    with emulator.lock:
        extra = [
            emulator.estate.add_vm(VirtualMachine(SUB, VM_RG, f"vm-x{index}", REGION)) for index in range(2)
        ]
    for vm in [*world.vms, *extra]:
        protect_directly(emulator, world, vm)
    emulator.backend(RecoveryServicesBackend).page_size = 2

    pages = [
        list(page)
        for page in backup.backup_protected_items.list(filter=ITEMS_FILTER, **_vault_args(world)).by_page()
    ]

    assert [len(page) for page in pages] == [2, 2, 1]
    names = [item.name for page in pages for item in page]
    assert len(set(names)) == 5
    assert all(item.properties["protectionState"] == "IRPending" for page in pages for item in page)  # type: ignore[index]


def test_protected_items_filters(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    protect_directly(emulator, world, world.vms[0])
    protect_directly(emulator, world, world.vms[1]).protection_state = "Protected"

    def names(odata_filter: str) -> list[str]:
        return [
            str(item.name)
            for item in backup.backup_protected_items.list(filter=odata_filter, **_vault_args(world))
        ]

    assert len(names(ITEMS_FILTER)) == 2
    assert names(f"{ITEMS_FILTER} and protectionState eq 'IRPending'") == [
        f"VM;iaasvmcontainerv2;{VM_RG};vm-0"
    ]
    assert len(names(f"{ITEMS_FILTER} and policyName eq 'DefaultPolicy'")) == 2
    assert names("backupManagementType eq 'AzureStorage'") == []


def test_jobs_page_and_filter_by_status_operation_and_time(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    emulator.estate.timings.backup_job_s = 60
    for vm in world.vms:
        protect_directly(emulator, world, vm)
        _trigger(backup, world, vm)
        emulator.advance(120)
    _trigger(backup, world, world.vms[0])  # the only one still running
    emulator.backend(RecoveryServicesBackend).page_size = 1

    pages = [list(page) for page in backup.backup_jobs.list(**_vault_args(world)).by_page()]
    running = list(
        backup.backup_jobs.list(
            filter="status eq 'InProgress' and operation eq 'Backup'", **_vault_args(world)
        )
    )
    window = "startTime eq '2026-11-25 10:01:00 AM' and endTime eq '2026-11-25 10:05:00 AM'"
    in_window = list(backup.backup_jobs.list(filter=f"{IAAS_FILTER} and {window}", **_vault_args(world)))

    assert len(pages) == 4 and all(len(page) == 1 for page in pages)
    assert [job.properties["entityFriendlyName"] for job in running] == ["vm-0"]  # type: ignore[index]
    assert sorted(job.properties["entityFriendlyName"] for job in in_window) == ["vm-1", "vm-2"]  # type: ignore[index]


@pytest.mark.parametrize(
    "odata_filter",
    [
        "status = 'InProgress'",
        "status eq 'InProgress' or operation eq 'Backup'",
        "colour eq 'blue'",
        "startTime eq 'yesterday'",
    ],
)
def test_malformed_job_filter_is_400(
    world: World, backup: RecoveryServicesBackupClient, odata_filter: str
) -> None:
    with pytest.raises(HttpResponseError) as raised:
        list(backup.backup_jobs.list(filter=odata_filter, **_vault_args(world)))
    assert raised.value.status_code == 400
    assert "$filter" in str(raised.value)


def test_unknown_job_and_operation_are_404(world: World, backup: RecoveryServicesBackupClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        backup.job_details.get(job_name="00000000-0000-0000-0000-000000000000", **_vault_args(world))
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ResourceNotFoundError):
        backup.backup_operation_statuses.get(operation_id=unknown, **_vault_args(world))


# --- protection check --------------------------------------------------------------------------
def test_backup_status_reports_protected_and_not_protected(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    protect_directly(emulator, world, world.vms[0])

    protected = backup.backup_status.get(
        REGION, BackupStatusRequest(resource_type="VM", resource_id=world.vms[0].id)
    )
    unprotected = backup.backup_status.get(
        REGION, BackupStatusRequest(resource_type="VM", resource_id=world.vms[1].id)
    )

    assert protected.protection_status == "Protected"
    assert protected.vault_id == world.vault.id
    assert protected.container_name == world.vms[0].container_name
    assert protected.protected_item_name == world.vms[0].item_name
    assert protected.policy_name == "DefaultPolicy"
    assert unprotected.protection_status == "NotProtected"
    assert unprotected.vault_id is None


# --- throttling --------------------------------------------------------------------------------
def test_sdk_retries_through_a_429_from_the_read_bucket(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    original = dict(emulator.throttle.specs)
    emulator.throttle.specs["read"] = BucketSpec(capacity=1, refill_per_s=2)
    emulator.clock.set(START, scale=1.0)  # the bucket refills only while time passes
    try:
        names = [
            backup.protection_policies.get(policy_name="DefaultPolicy", **_vault_args(world)).name
            for _ in range(2)
        ]
    finally:
        emulator.throttle.specs.clear()
        emulator.throttle.specs.update(original)

    assert names == ["DefaultPolicy"] * 2
    assert emulator.requests.summary()["throttled_429"] >= 1


def test_default_retry_after_is_the_recorded_sixty_seconds(
    emulator: Emulator, world: World, backup: RecoveryServicesBackupClient
) -> None:
    emulator.estate.timings.retry_after_s = 60
    emulator.clock.set(START, scale=1.0)
    protect_directly(emulator, world, world.vms[0])

    assert _trigger(backup, world, world.vms[0])["Retry-After"] == "60"
