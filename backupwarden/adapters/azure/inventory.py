"""Reads of what exists: a VM (compute) and the vaults of a subscription (Recovery Services)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservices import RecoveryServicesClient

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.vault_selection import VaultFacts


@dataclass(frozen=True)
class VmRecord:
    vm_id: str
    location: str
    tags: dict[str, str]
    provisioning_state: str


class Inventory:
    def __init__(
        self,
        compute_for: Callable[[str], ComputeManagementClient],
        vaults_for: Callable[[str], RecoveryServicesClient],
    ) -> None:
        self._compute_for = compute_for
        self._vaults_for = vaults_for

    def vm(self, subscription_id: str, resource_group: str, name: str) -> VmRecord | None:
        """The VM, or None when it no longer exists."""
        try:
            vm = self._compute_for(subscription_id).virtual_machines.get(resource_group, name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise AzureCallError.from_sdk("read VM", exc) from exc
        return VmRecord(
            vm_id=arm_key(str(vm.id)),
            location=str(vm.location),
            tags=dict(vm.tags or {}),
            provisioning_state=str((vm.properties.provisioning_state if vm.properties else None) or ""),
        )

    def vaults(self, subscription_id: str) -> list[VaultFacts]:
        try:
            found = list(self._vaults_for(subscription_id).vaults.list_by_subscription_id())
        except AzureError as exc:
            raise AzureCallError.from_sdk("list vaults", exc) from exc
        return [VaultFacts(str(v.id), str(v.name), arm_key(subscription_id), str(v.location)) for v in found]
