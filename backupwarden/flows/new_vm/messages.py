"""The new-VM work item: what the Event Grid trigger puts on the protect queue and the worker takes off it.

One item per VM write worth acting on. The JSON holds the item's fields, keys sorted; the worker
re-enqueues a still-provisioning VM as the same item with one more `provisioning_waits`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from backupwarden.domain.arm_ids import same_arm_id
from backupwarden.domain.vm_events import VmWritten, parse_vm_id


class InvalidNewVmWorkItem(ValueError):
    """A queue message that is not a new-VM work item: reported, never retried."""


@dataclass(frozen=True)
class NewVmWorkItem:
    vm_id: str
    subscription_id: str
    resource_group: str
    vm_name: str
    event_id: str
    correlation_id: str = ""
    provisioning_waits: int = 0

    @classmethod
    def from_event(cls, event: VmWritten) -> NewVmWorkItem:
        return cls(
            event.vm_id,
            event.subscription_id,
            event.resource_group,
            event.vm_name,
            event.event_id,
            event.correlation_id,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NewVmWorkItem:
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also an integer too long, nesting too deep
            raise InvalidNewVmWorkItem(f"not JSON: {str(exc)[:200]}") from None
        if not isinstance(raw, dict):
            raise InvalidNewVmWorkItem("a work item must be a JSON object")
        try:
            item = cls(**{key: raw[key] for key in raw if key in cls.__dataclass_fields__})
        except TypeError as exc:
            raise InvalidNewVmWorkItem(f"missing fields: {exc}") from exc
        strings = ("vm_id", "subscription_id", "resource_group", "vm_name", "event_id", "correlation_id")
        if any(not isinstance(getattr(item, name), str) for name in strings):
            raise InvalidNewVmWorkItem(
                "vm_id, subscription_id, resource_group, vm_name and event_id must be strings"
            )
        waits = item.provisioning_waits
        if not isinstance(waits, int) or isinstance(waits, bool) or waits < 0:
            raise InvalidNewVmWorkItem("provisioning_waits must be a non-negative integer")
        parts = parse_vm_id(item.vm_id)
        named = (item.subscription_id, item.resource_group, item.vm_name)
        if parts is None or not all(same_arm_id(p, n) for p, n in zip(parts, named, strict=True)):
            # the worker reads the VM by its parts and protects it by its id: they must agree
            raise InvalidNewVmWorkItem(f"vm_id {item.vm_id[:200]!r} is not the id of the VM the item names")
        return item

    def waited_once_more(self) -> NewVmWorkItem:
        return replace(self, provisioning_waits=self.provisioning_waits + 1)
