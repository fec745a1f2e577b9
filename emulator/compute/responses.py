"""Thin handlers: the compute ARM surface (VM get/list) and the admin VM lifecycle API."""

from __future__ import annotations

from typing import Any

from emulator.compute.exceptions import InvalidVmInput
from emulator.compute.models import ComputeBackend
from emulator.compute.shapes import vm_instance_view, vm_resource
from emulator.core.app import Call, Reply
from emulator.core.paging import next_link, skip_token

_CREATE_FIELDS: dict[str, type] = {
    "subscription_id": str,
    "resource_group": str,
    "name": str,
    "location": str,
    "tags": dict,
    "provisioning_state": str,
    "duplicate_event": bool,
    "size": str,
    "os_type": str,
}
_REQUIRED = ("subscription_id", "resource_group", "name", "location")
_UPDATE_FIELDS: dict[str, type] = {"tags": dict, "provisioning_state": str}


# --- ARM ------------------------------------------------------------------------
def get_vm(call: Call) -> Reply:
    p = call.params
    vm = call.backend(ComputeBackend).get_vm(p["subscriptionId"], p["resourceGroupName"], p["vmName"])
    return Reply(200, vm_resource(vm))


def get_vm_instance_view(call: Call) -> Reply:
    p = call.params
    backend = call.backend(ComputeBackend)
    vm = backend.get_vm(p["subscriptionId"], p["resourceGroupName"], p["vmName"])
    return Reply(200, vm_instance_view(vm, backend.emulator.clock.now()))


def list_vms_in_group(call: Call) -> Reply:
    return _vm_page(call, call.params["resourceGroupName"])


def list_vms_in_subscription(call: Call) -> Reply:
    return _vm_page(call, None)


def _vm_page(call: Call, resource_group: str | None) -> Reply:
    backend = call.backend(ComputeBackend)
    vms, token = backend.list_vms(call.params["subscriptionId"], resource_group, skip_token(call.query))
    body: dict[str, Any] = {"value": [vm_resource(vm) for vm in vms]}
    link = next_link(call.base_url, call.path, call.query, token)
    if link:
        body["nextLink"] = link
    return Reply(200, body)


# --- admin ----------------------------------------------------------------------
def admin_create_vm(call: Call) -> Reply:
    body = _fields(call.json_object(), _CREATE_FIELDS)
    missing = [name for name in _REQUIRED if name not in body]
    if missing:
        raise InvalidVmInput(f"'{missing[0]}' is required (required: {', '.join(_REQUIRED)}).")
    optional = {k: body[k] for k in ("tags", "provisioning_state", "size", "os_type") if k in body}
    vm = call.backend(ComputeBackend).create_vm(
        body["subscription_id"],
        body["resource_group"],
        body["name"],
        body["location"],
        duplicate_event=body.get("duplicate_event"),
        **optional,
    )
    return Reply(201, vm_resource(vm))


def admin_update_vm(call: Call) -> Reply:
    body = _fields(call.json_object(), _UPDATE_FIELDS)
    vm = call.backend(ComputeBackend).update_vm(_admin_vm_id(call), **body)
    return Reply(200, vm_resource(vm))


def admin_delete_vm(call: Call) -> Reply:
    call.backend(ComputeBackend).delete_vm(_admin_vm_id(call))
    return Reply(204)


def _admin_vm_id(call: Call) -> str:
    p = call.params
    return (
        f"/subscriptions/{p['subscriptionId']}/resourceGroups/{p['resourceGroup']}"
        f"/providers/Microsoft.Compute/virtualMachines/{p['name']}"
    )


def _fields(body: dict[str, Any], allowed: dict[str, type]) -> dict[str, Any]:
    for name, value in body.items():
        if name not in allowed:
            raise InvalidVmInput(
                f"'{name}' is not a field of this request; fields: {', '.join(sorted(allowed))}."
            )
        expected = allowed[name]
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise InvalidVmInput(f"'{name}' must be a JSON {_json_type(expected)}, not {_json_repr(value)}.")
    return body


def _json_type(python_type: type) -> str:
    return {str: "string", dict: "object", bool: "boolean"}.get(python_type, python_type.__name__)


def _json_repr(value: Any) -> str:
    return "null" if value is None else repr(value)
