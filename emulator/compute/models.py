"""Virtual machines: lookups and paged listings for the ARM surface, and their lifecycle for tests.

Resource groups have no state of their own here: one exists while a VM or vault is in it,
or once a VM was created in it through this backend (deleting its last VM keeps it).
Creates and updates publish `ResourceWriteSuccess` to the Event Grid backend; deletes publish
`ResourceDeleteSuccess` and leave any protected item behind, as Azure does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from emulator.compute.exceptions import InvalidVmInput, ResourceGroupNotFound, VmAlreadyExists, VmNotFound
from emulator.core.paging import SnapshotPager
from emulator.estate import VirtualMachine
from emulator.eventgrid.models import EventGridBackend
from emulator.subscriptions.models import declare_subscription, require_subscription, resource_scopes

if TYPE_CHECKING:
    from emulator.core.app import Emulator

DEFAULT_PAGE_SIZE = 100
VM_WRITE = "Microsoft.Compute/virtualMachines/write"
VM_DELETE = "Microsoft.Compute/virtualMachines/delete"
PROVISIONING_STATES = frozenset(
    {"Creating", "Updating", "Deleting", "Succeeded", "Failed", "Canceled", "Migrating"}
)
OS_TYPES = frozenset({"Linux", "Windows"})
_VM_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")


def vm_key(subscription_id: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourcegroups/{resource_group}"
        f"/providers/microsoft.compute/virtualmachines/{name}"
    ).lower()


class ComputeBackend:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.page_size = DEFAULT_PAGE_SIZE
        self._pager = SnapshotPager()
        self._groups_seen: set[tuple[str, str]] = set()

    # --- ARM reads ---------------------------------------------------------------
    def get_vm(self, subscription_id: str, resource_group: str, name: str) -> VirtualMachine:
        with self.emulator.lock:
            vm = self.emulator.estate.vms.get(vm_key(subscription_id, resource_group, name))
            if vm is None:
                self._require_group(subscription_id, resource_group)
                raise VmNotFound(resource_group, name)
            return vm

    def list_vms(
        self, subscription_id: str, resource_group: str | None, token: str | None
    ) -> tuple[list[VirtualMachine], str | None]:
        """One page of VMs in a subscription (or one of its resource groups), by id, and the next token."""
        with self.emulator.lock:
            if token is None:
                if resource_group is None:
                    require_subscription(self.emulator.estate, subscription_id)
                else:
                    self._require_group(subscription_id, resource_group)
            prefix = (
                vm_key(subscription_id, resource_group, "")
                if resource_group
                else f"/subscriptions/{subscription_id}/".lower()
            )
            vms = self.emulator.estate.vms
            page = self._pager.page(lambda: [k for k in vms if k.startswith(prefix)], token, self.page_size)
            return [vms[k] for k in page.keys if k in vms], page.next_token

    # --- lifecycle (tests, scenarios, admin API) ---------------------------------
    def create_vm(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        location: str,
        tags: dict[str, str] | None = None,
        provisioning_state: str = "Succeeded",
        emit_events: bool = True,
        *,
        size: str = VirtualMachine.size,
        os_type: str = VirtualMachine.os_type,
        duplicate_event: bool | None = None,
    ) -> VirtualMachine:
        """A new VM; `duplicate_event` overrides Event Grid's `duplicate_creates` for this create."""
        _check_names(subscription_id, resource_group, name, os_type)
        _check_location(location)
        _check_state(provisioning_state)
        _check_tags(tags)
        with self.emulator.lock:
            key = vm_key(subscription_id, resource_group, name)
            if key in self.emulator.estate.vms:
                raise VmAlreadyExists(self.emulator.estate.vms[key].id)
            declare_subscription(self.emulator.estate, subscription_id)
            vm = self.emulator.estate.add_vm(
                VirtualMachine(
                    subscription_id,
                    resource_group,
                    name,
                    location,
                    dict(tags or {}),
                    provisioning_state,
                    created=self.emulator.now(),
                    size=size,
                    os_type=os_type,
                )
            )
            self._groups_seen.add((subscription_id.lower(), resource_group.lower()))
            if emit_events:
                self._events().publish_write(
                    vm.id,
                    VM_WRITE,
                    created=True,
                    succeeded=provisioning_state != "Failed",
                    duplicate=duplicate_event,
                )
            return vm

    def update_vm(
        self,
        vm_id: str,
        *,
        tags: dict[str, str] | None = None,
        provisioning_state: str | None = None,
        emit_events: bool = True,
    ) -> VirtualMachine:
        """Replace the tags and/or provisioning state, as a PATCH on the VM would."""
        if provisioning_state is not None:
            _check_state(provisioning_state)
        _check_tags(tags)
        with self.emulator.lock:
            vm = self.find_vm(vm_id)
            if tags is not None:
                vm.tags = dict(tags)
            if provisioning_state is not None:
                vm.provisioning_state = provisioning_state
            if emit_events:
                self._events().publish_write(
                    vm.id, VM_WRITE, created=False, succeeded=vm.provisioning_state != "Failed"
                )
            return vm

    def delete_vm(self, vm_id: str, *, emit_events: bool = True) -> VirtualMachine:
        """Remove the VM from the estate; its protected item (if any) stays, as in Azure."""
        with self.emulator.lock:
            vm = self.find_vm(vm_id)
            del self.emulator.estate.vms[vm.id.lower()]
            self._groups_seen.add((vm.subscription_id.lower(), vm.resource_group.lower()))
            if emit_events:
                self._events().publish_delete(vm.id, VM_DELETE)
            return vm

    def find_vm(self, vm_id: str) -> VirtualMachine:
        with self.emulator.lock:
            vm = self.emulator.estate.vms.get(vm_id.lower())
            if vm is None:
                parts = vm_id.split("/")
                resource_group, name = (parts[4], parts[-1]) if len(parts) == 9 else ("", vm_id)
                raise VmNotFound(resource_group, name)
            return vm

    # --- internals ---------------------------------------------------------------
    def _require_group(self, subscription_id: str, resource_group: str) -> None:
        require_subscription(self.emulator.estate, subscription_id)
        wanted = (subscription_id.lower(), resource_group.lower())
        if wanted in self._groups_seen:
            return
        if any((s.lower(), g.lower()) == wanted for s, g in resource_scopes(self.emulator.estate)):
            return
        raise ResourceGroupNotFound(resource_group)

    def _events(self) -> EventGridBackend:
        return self.emulator.backend(EventGridBackend)


def _check_names(subscription_id: str, resource_group: str, name: str, os_type: str) -> None:
    if not isinstance(subscription_id, str) or not re.fullmatch(r"[0-9A-Za-z-]{1,64}", subscription_id):
        raise InvalidVmInput(
            f"'subscription_id' must be a subscription id (a GUID), not {subscription_id!r}."
        )
    if not isinstance(resource_group, str) or not _RESOURCE_GROUP.fullmatch(resource_group):
        raise InvalidVmInput(
            f"'resource_group' must be 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'; "
            f"got {resource_group!r}."
        )
    if os_type not in OS_TYPES:
        raise InvalidVmInput(f"'os_type' must be one of {sorted(OS_TYPES)}, not {os_type!r}.")
    limit = 15 if os_type == "Windows" else 64
    if not isinstance(name, str) or not _VM_NAME.fullmatch(name) or len(name) > limit:
        raise InvalidVmInput(
            f"'name' must be 1-{limit} letters, digits, '-', '_' or '.', starting with a letter or digit "
            f"and not ending in '-' or '.'; got {name!r}."
        )


def _check_location(location: str) -> None:
    if not isinstance(location, str) or not re.fullmatch(r"[A-Za-z0-9]+", location):
        raise InvalidVmInput(f"'location' must be a region name such as 'westeurope', not {location!r}.")


def _check_state(state: str) -> None:
    if state not in PROVISIONING_STATES:
        raise InvalidVmInput(
            f"'provisioning_state' must be one of {sorted(PROVISIONING_STATES)}, not {state!r}."
        )


def _check_tags(tags: dict[str, str] | None) -> None:
    if tags is None:
        return
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidVmInput("'tags' must be an object of string names to string values.")
    if len(tags) > 50:
        raise InvalidVmInput(f"'tags' holds {len(tags)} tags; a resource takes at most 50.")
