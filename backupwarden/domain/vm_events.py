"""Resource write events (Event Grid or CloudEvents schema) reduced to "this VM may be new"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from backupwarden.domain.arm_ids import arm_key, same_arm_id

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
VM_WRITE = "Microsoft.Compute/virtualMachines/write"
MAX_EVENT_BYTES = 1024 * 1024  # Event Grid's own limit per event
_VM_ID = re.compile(
    # ARM ignores case for ASCII letters only: (?ai:...) keeps 'ſ' and the Kelvin sign from matching
    # 's' and 'k' as IGNORECASE would, while names keep their Unicode letters (\w).
    # ARM names never end in '.', which keeps '.' and '..' (path segments) out of the URLs built from them
    r"^(?ai:/subscriptions/)(?P<sub>[0-9a-fA-F-]{36})(?ai:/resourceGroups/)(?P<rg>[-\w.()]{0,89}[-\w()])"
    r"(?ai:/providers/Microsoft\.Compute/virtualMachines/)(?P<name>[-\w.]{0,63}[-\w])$"
)


class InvalidEvent(ValueError):
    """The event cannot be handled; the message says why. Never retried."""


@dataclass(frozen=True)
class VmWritten:
    """A VM write: the VM may be new. Its key collapses duplicates of the same write."""

    vm_id: str  # ARM id, ASCII letters lower-cased (arm_key)
    subscription_id: str
    resource_group: str
    vm_name: str
    event_id: str
    correlation_id: str

    @property
    def dedup_key(self) -> str:
        return f"{self.vm_id}|{self.correlation_id or self.event_id}"


@dataclass(frozen=True)
class Ignored:
    """A well-formed event that is not a VM write: acknowledged, with the reason logged."""

    event_id: str
    reason: str


def read_vm_write(event: Any) -> VmWritten | Ignored:
    """One event in either schema; raises InvalidEvent when it is malformed."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {type(event).__name__}")
    event_id = _text(event, "id")
    event_type = event.get("eventType", event.get("type"))
    if not isinstance(event_type, str) or not event_type:
        raise InvalidEvent(f"event {event_id}: missing eventType (Event Grid) or type (CloudEvents)")
    if event_type != WRITE_SUCCESS:
        return Ignored(event_id, f"event type {event_type} is not {WRITE_SUCCESS}")
    data = event.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent(f"event {event_id}: 'data' must be an object")
    operation = data.get("operationName")
    if not isinstance(operation, str):
        raise InvalidEvent(f"event {event_id}: data.operationName must be a string")
    if not same_arm_id(operation, VM_WRITE):
        return Ignored(event_id, f"operation {operation} is not {VM_WRITE}")
    resource_uri = data.get("resourceUri")
    if not isinstance(resource_uri, str):
        raise InvalidEvent(f"event {event_id}: data.resourceUri must be a string")
    parts = parse_vm_id(resource_uri)
    if parts is None:
        raise InvalidEvent(
            f"event {event_id}: data.resourceUri {resource_uri[:200]!r} is not a virtual machine id"
        )
    correlation_id = data.get("correlationId", "")
    if not isinstance(correlation_id, str):
        raise InvalidEvent(f"event {event_id}: data.correlationId must be a string")
    return VmWritten(
        vm_id=arm_key(resource_uri.strip()),
        subscription_id=parts[0],
        resource_group=parts[1],
        vm_name=parts[2],
        event_id=event_id,
        correlation_id=correlation_id,
    )


def parse_vm_id(resource_id: str) -> tuple[str, str, str] | None:
    """(lower-case subscription id, resource group, name) of a VM's ARM id; None when it is not one."""
    found = _VM_ID.match(resource_id.strip())
    if found is None:
        return None
    return arm_key(found.group("sub")), found.group("rg"), found.group("name")


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"event is missing its '{key}'")
    return value
