"""Errors of the compute API, shaped as ARM and the compute resource provider answer them."""

from __future__ import annotations

from emulator.core.errors import BadRequest, Conflict, NotFound


class VmNotFound(NotFound):
    code = "ResourceNotFound"

    def __init__(self, resource_group: str, name: str) -> None:
        super().__init__(
            f"The Resource 'Microsoft.Compute/virtualMachines/{name}' "
            f"under resource group '{resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        )


class ResourceGroupNotFound(NotFound):
    code = "ResourceGroupNotFound"

    def __init__(self, resource_group: str) -> None:
        super().__init__(f"Resource group '{resource_group}' could not be found.")


class VmAlreadyExists(Conflict):
    code = "VirtualMachineAlreadyExists"

    def __init__(self, vm_id: str) -> None:
        super().__init__(f"The virtual machine '{vm_id}' already exists; update or delete it instead.")


class InvalidVmInput(BadRequest):
    """A bad field in an admin request or backend call; the message names the field."""

    code = "InvalidParameter"
