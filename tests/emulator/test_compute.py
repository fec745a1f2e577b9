"""Subscriptions and virtual machines through the real SDK clients, and the admin VM lifecycle API."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from emulator import Emulator, EmulatorServer
from emulator.compute.models import ComputeBackend
from emulator.estate import ProtectedItem, Subscription, VirtualMachine
from emulator.subscriptions.models import SubscriptionsBackend

SUB = "11111111-1111-4111-8111-111111111111"
OTHER_SUB = "22222222-2222-4222-8222-222222222222"
TENANT = "33333333-3333-4333-8333-333333333333"
VMS = "/providers/Microsoft.Compute/virtualMachines"
VM_LIST_IN_GROUP = f"GET /subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}{VMS}"
VM_LIST_ALL = f"GET /subscriptions/{{subscriptionId}}{VMS}"


def compute(sdk_kwargs: dict[str, Any], subscription_id: str = SUB) -> ComputeManagementClient:
    return ComputeManagementClient(subscription_id=subscription_id, **sdk_kwargs)


def add_subscription(emulator: Emulator, subscription_id: str, name: str) -> None:
    with emulator.lock:
        emulator.estate.add_subscription(Subscription(subscription_id, name, tenant_id=TENANT))


def create_vms(emulator: Emulator, resource_group: str, names: list[str], subscription_id: str = SUB) -> None:
    backend = emulator.backend(ComputeBackend)
    for name in names:
        backend.create_vm(subscription_id, resource_group, name, "westeurope", emit_events=False)


# --- subscriptions ------------------------------------------------------------------
def test_subscription_client_lists_declared_and_implicit_subscriptions(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    add_subscription(emulator, SUB, "contoso-prod")
    create_vms(emulator, "rg-app", ["vm-1"], subscription_id=OTHER_SUB)

    listed = {s.subscription_id: s for s in SubscriptionClient(**sdk_kwargs).subscriptions.list()}

    assert set(listed) == {SUB, OTHER_SUB}
    prod = listed[SUB]
    assert (prod.id, prod.display_name, prod.state, prod.tenant_id) == (
        f"/subscriptions/{SUB}",
        "contoso-prod",
        "Enabled",
        TENANT,
    )
    assert prod.authorization_source == "RoleBased"
    assert prod.subscription_policies is not None
    assert prod.subscription_policies.spending_limit == "Off"
    assert prod.subscription_policies.quota_id and prod.subscription_policies.location_placement_id


def test_subscription_client_gets_one_subscription(emulator: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    add_subscription(emulator, SUB, "contoso-prod")

    got = SubscriptionClient(**sdk_kwargs).subscriptions.get(SUB)

    assert (got.subscription_id, got.display_name, got.tenant_id) == (SUB, "contoso-prod", TENANT)


def test_subscription_list_follows_next_links(emulator: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    for index in range(5):
        add_subscription(emulator, f"0000000{index}-0000-4000-8000-000000000000", f"sub-{index}")
    emulator.backend(SubscriptionsBackend).page_size = 2

    listed = [str(s.display_name) for s in SubscriptionClient(**sdk_kwargs).subscriptions.list()]

    assert sorted(listed) == [f"sub-{i}" for i in range(5)]
    assert emulator.requests.counts()["GET /subscriptions"] == 3


def test_unknown_subscription_is_subscription_not_found(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        SubscriptionClient(**sdk_kwargs).subscriptions.get(OTHER_SUB)

    assert caught.value.status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "SubscriptionNotFound"


# --- virtual machines ---------------------------------------------------------------
def test_vm_get_has_the_shape_of_a_real_vm(emulator: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    created = emulator.backend(ComputeBackend).create_vm(
        SUB, "rg-web", "web-01", "westeurope", tags={"env": "prod"}, emit_events=False
    )

    vm = compute(sdk_kwargs).virtual_machines.get("rg-web", "web-01")

    assert vm.id == created.id
    assert (vm.name, vm.type, vm.location, vm.tags) == (
        "web-01",
        "Microsoft.Compute/virtualMachines",
        "westeurope",
        {"env": "prod"},
    )
    assert vm.vm_id == created.vm_id
    assert vm.provisioning_state == "Succeeded"
    assert vm.hardware_profile is not None and vm.hardware_profile.vm_size == "Standard_D2s_v3"
    assert vm.storage_profile is not None and vm.storage_profile.os_disk is not None
    assert vm.storage_profile.os_disk.os_type == "Linux"
    assert vm.os_profile is not None and vm.os_profile.computer_name == "web-01"
    assert vm.time_created == emulator.estate.vms[created.id.lower()].created


def test_vm_get_is_case_insensitive_and_accepts_older_api_versions(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    create_vms(emulator, "rg-web", ["web-01"])

    vm = compute(sdk_kwargs).virtual_machines.get("RG-WEB", "WEB-01", api_version="2024-07-01")

    assert vm.name == "web-01"


def test_unsupported_api_version_is_rejected(emulator: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    create_vms(emulator, "rg-web", ["web-01"])

    with pytest.raises(HttpResponseError) as caught:
        compute(sdk_kwargs).virtual_machines.get("rg-web", "web-01", api_version="2015-01-01")

    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "InvalidApiVersionParameter"


def test_unknown_vm_is_resource_not_found(emulator: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    create_vms(emulator, "rg-web", ["web-01"])

    with pytest.raises(ResourceNotFoundError) as caught:
        compute(sdk_kwargs).virtual_machines.get("rg-web", "ghost")

    assert caught.value.status_code == 404
    assert caught.value.error is not None
    assert caught.value.error.code == "ResourceNotFound"
    assert str(caught.value.error.message).startswith(
        "The Resource 'Microsoft.Compute/virtualMachines/ghost' under resource group 'rg-web' was not found."
    )


def test_unknown_resource_group_is_resource_group_not_found(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    create_vms(emulator, "rg-web", ["web-01"])

    with pytest.raises(ResourceNotFoundError) as caught:
        list(compute(sdk_kwargs).virtual_machines.list("rg-nowhere"))

    assert caught.value.error is not None and caught.value.error.code == "ResourceGroupNotFound"


def test_list_by_resource_group_pages_through_next_links(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    create_vms(emulator, "rg-web", [f"web-{i:02d}" for i in range(5)])
    create_vms(emulator, "rg-api", ["api-01"])
    emulator.backend(ComputeBackend).page_size = 2

    names = [vm.name for vm in compute(sdk_kwargs).virtual_machines.list("rg-web")]

    assert names == [f"web-{i:02d}" for i in range(5)]
    assert emulator.requests.counts()[VM_LIST_IN_GROUP] == 3


def test_list_all_pages_across_resource_groups_of_one_subscription(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    create_vms(emulator, "rg-web", ["web-01", "web-02", "web-03"])
    create_vms(emulator, "rg-api", ["api-01", "api-02"])
    create_vms(emulator, "rg-web", ["elsewhere"], subscription_id=OTHER_SUB)
    emulator.backend(ComputeBackend).page_size = 2

    ids = [str(vm.id) for vm in compute(sdk_kwargs).virtual_machines.list_all()]

    assert len(ids) == 5 and all(i.startswith(f"/subscriptions/{SUB}/") for i in ids)
    assert emulator.requests.counts()[VM_LIST_ALL] == 3


def test_vm_deleted_while_paging_is_skipped(emulator: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    create_vms(emulator, "rg-web", ["web-01", "web-02", "web-03", "web-04"])
    backend = emulator.backend(ComputeBackend)
    backend.page_size = 2
    pages = compute(sdk_kwargs).virtual_machines.list("rg-web").by_page()

    first = [vm.name for vm in next(pages)]
    backend.delete_vm(
        f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/web-04"
    )
    rest = [vm.name for page in pages for vm in page]

    assert first == ["web-01", "web-02"]
    assert rest == ["web-03"]


def test_vms_of_an_unknown_subscription_are_subscription_not_found(
    emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        list(compute(sdk_kwargs, OTHER_SUB).virtual_machines.list_all())

    assert caught.value.error is not None and caught.value.error.code == "SubscriptionNotFound"


# --- admin VM lifecycle over HTTPS ------------------------------------------------------
def admin(
    server: EmulatorServer, method: str, path: str, body: dict[str, Any] | None = None
) -> requests.Response:
    return requests.request(
        method, f"{server.endpoint}{path}", json=body, verify=server.ca_bundle, timeout=10
    )


def test_admin_creates_updates_and_deletes_a_vm(
    emulator_server: EmulatorServer, emulator: Emulator, sdk_kwargs: dict[str, Any]
) -> None:
    client = compute(sdk_kwargs)
    created = admin(
        emulator_server,
        "POST",
        "/_emulator/vms",
        {
            "subscription_id": SUB,
            "resource_group": "rg-web",
            "name": "web-01",
            "location": "westeurope",
            "tags": {"env": "prod"},
            "provisioning_state": "Creating",
        },
    )
    assert created.status_code == 201
    assert created.json()["properties"]["provisioningState"] == "Creating"
    assert client.virtual_machines.get("rg-web", "web-01").provisioning_state == "Creating"

    path = f"/_emulator/vms/{SUB}/rg-web/web-01"
    updated = admin(
        emulator_server, "PATCH", path, {"tags": {"backup": "daily"}, "provisioning_state": "Succeeded"}
    )
    assert updated.status_code == 200
    vm = client.virtual_machines.get("rg-web", "web-01")
    assert (vm.tags, vm.provisioning_state) == ({"backup": "daily"}, "Succeeded")

    assert admin(emulator_server, "DELETE", path).status_code == 204
    with pytest.raises(ResourceNotFoundError):
        client.virtual_machines.get("rg-web", "web-01")
    assert [v.name for v in client.virtual_machines.list("rg-web")] == []


def test_deleting_a_vm_leaves_its_protected_item(emulator_server: EmulatorServer, emulator: Emulator) -> None:
    vm = emulator.backend(ComputeBackend).create_vm(SUB, "rg-web", "web-01", "westeurope", emit_events=False)
    vault_id = (
        f"/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.RecoveryServices/vaults/rsv"
    )
    with emulator.lock:
        emulator.estate.protected_items[vm.id.lower()] = ProtectedItem(
            vault_id, vm, f"{vault_id}/backupPolicies/p"
        )

    assert admin(emulator_server, "DELETE", f"/_emulator/vms/{SUB}/rg-web/web-01").status_code == 204

    assert vm.id.lower() not in emulator.estate.vms
    assert emulator.estate.protected_items[vm.id.lower()].vm.name == "web-01"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resource_group": "rg", "name": "vm", "location": "westeurope"}, "subscription_id"),
        ({"subscription_id": SUB, "resource_group": "rg", "name": "vm"}, "location"),
        (
            {"subscription_id": SUB, "resource_group": "rg", "name": "bad name!", "location": "westeurope"},
            "name",
        ),
        (
            {"subscription_id": SUB, "resource_group": "rg.", "name": "vm", "location": "westeurope"},
            "resource_group",
        ),
        (
            {
                "subscription_id": SUB,
                "resource_group": "rg",
                "name": "vm",
                "location": "westeurope",
                "tags": {"env": 1},
            },
            "tags",
        ),
        (
            {
                "subscription_id": SUB,
                "resource_group": "rg",
                "name": "vm",
                "location": "westeurope",
                "provisioning_state": "Sleeping",
            },
            "provisioning_state",
        ),
        (
            {
                "subscription_id": SUB,
                "resource_group": "rg",
                "name": "vm",
                "location": "westeurope",
                "duplicate_event": "yes",
            },
            "duplicate_event",
        ),
        (
            {
                "subscription_id": SUB,
                "resource_group": "rg",
                "name": "vm",
                "location": "westeurope",
                "colour": "blue",
            },
            "colour",
        ),
    ],
)
def test_admin_create_rejects_bad_input_naming_the_field(
    emulator_server: EmulatorServer, emulator: Emulator, body: dict[str, Any], field: str
) -> None:
    answer = admin(emulator_server, "POST", "/_emulator/vms", body)

    assert answer.status_code == 400
    assert f"'{field}'" in answer.json()["error"]["message"]
    assert emulator.estate.vms == {}


def test_admin_create_of_an_existing_vm_is_a_conflict(
    emulator_server: EmulatorServer, emulator: Emulator
) -> None:
    create_vms(emulator, "rg-web", ["web-01"])

    answer = admin(
        emulator_server,
        "POST",
        "/_emulator/vms",
        {
            "subscription_id": SUB,
            "resource_group": "RG-WEB",
            "name": "WEB-01",
            "location": "westeurope",
        },
    )

    assert answer.status_code == 409


def test_admin_update_of_an_unknown_vm_is_not_found(
    emulator_server: EmulatorServer, emulator: Emulator
) -> None:
    answer = admin(emulator_server, "PATCH", f"/_emulator/vms/{SUB}/rg-web/ghost", {"tags": {}})

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "ResourceNotFound"


def test_admin_update_rejects_a_non_object_tags_field(
    emulator_server: EmulatorServer, emulator: Emulator
) -> None:
    create_vms(emulator, "rg-web", ["web-01"])

    answer = admin(emulator_server, "PATCH", f"/_emulator/vms/{SUB}/rg-web/web-01", {"tags": ["a"]})

    assert answer.status_code == 400
    assert "'tags'" in answer.json()["error"]["message"]


def test_vm_entity_defaults_serve_scenario_vms(emulator: Emulator, sdk_kwargs: dict[str, Any]) -> None:
    """VMs a scenario adds straight to the estate (no `created`, no resource group record) are served too."""
    with emulator.lock:
        emulator.estate.add_vm(VirtualMachine(SUB, "rg-legacy", "old-01", "northeurope", os_type="Windows"))

    vm = compute(sdk_kwargs).virtual_machines.get("rg-legacy", "old-01")

    assert vm.storage_profile is not None and vm.storage_profile.os_disk is not None
    assert vm.storage_profile.os_disk.os_type == "Windows"
    assert vm.time_created is None
