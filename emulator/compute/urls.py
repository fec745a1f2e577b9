"""Routes of the compute API (virtual machines) and of the admin VM lifecycle API."""

from __future__ import annotations

from emulator.compute import responses as r
from emulator.core.router import Route

# azure-mgmt-compute 39.0.0 sends 2026-04-01 for virtual_machines.get/list/list_all;
# older clients send the rest.
API_VERSIONS = frozenset(
    {
        "2022-08-01",
        "2022-11-01",
        "2023-03-01",
        "2023-07-01",
        "2023-09-01",
        "2024-03-01",
        "2024-07-01",
        "2024-11-01",
        "2025-04-01",
        "2026-04-01",
    }
)
_GROUP = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
_ADMIN_VM = "/_emulator/vms/{subscriptionId}/{resourceGroup}/{name}"


def routes() -> list[Route]:
    return [
        Route(
            "GET", f"{_GROUP}/providers/Microsoft.Compute/virtualMachines/{{vmName}}", r.get_vm, API_VERSIONS
        ),
        Route(
            "GET",
            f"{_GROUP}/providers/Microsoft.Compute/virtualMachines/{{vmName}}/instanceView",
            r.get_vm_instance_view,
            API_VERSIONS,
        ),
        Route(
            "GET", f"{_GROUP}/providers/Microsoft.Compute/virtualMachines", r.list_vms_in_group, API_VERSIONS
        ),
        Route(
            "GET",
            "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/virtualMachines",
            r.list_vms_in_subscription,
            API_VERSIONS,
        ),
        Route("POST", "/_emulator/vms", r.admin_create_vm, kind="none", auth=False),
        Route("PATCH", _ADMIN_VM, r.admin_update_vm, kind="none", auth=False),
        Route("DELETE", _ADMIN_VM, r.admin_delete_vm, kind="none", auth=False),
    ]
