"""Enable protection of one VM, as `az backup protection enable-for-vm` does (azure-facts §3)."""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from azure.core.exceptions import AzureError
from azure.core.utils import case_insensitive_dict
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup.models import (
    AzureIaaSComputeVMProtectedItem,
    BackupStatusRequest,
    ProtectedItemResource,
)

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.recovery_services import (
    DEFAULT_POLL_INTERVAL_S,
    FABRIC,
    RecoveryServices,
    VaultRef,
    operation_id,
    poll_delay_s,
    response_headers,
    retry_after_hint_s,
)
from backupwarden.domain.arm_ids import arm_key, same_arm_id

IAAS_VM_FILTER = "backupManagementType eq 'AzureIaasVM'"


@dataclass(frozen=True)
class ProtectionStatus:
    protected: bool
    vault_id: str | None


@dataclass(frozen=True)
class EnabledProtection:
    operation_id: str
    job_id: str | None  # the ConfigureBackup job; None if the operation outlived the poll timeout


def item_names(vm_resource_group: str, vm_name: str) -> tuple[str, str]:
    """(container, item) names of an IaaS VM, lower-case (A-Z only: `arm_key`) as the CLI sends them."""
    suffix = f"iaasvmcontainerv2;{arm_key(vm_resource_group)};{arm_key(vm_name)}"
    return f"iaasvmcontainer;{suffix}", f"vm;{suffix}"


class Protection:
    def __init__(
        self,
        client_for: Callable[[str], RecoveryServicesBackupClient],
        recovery: RecoveryServices,
        *,
        poll_timeout_s: float = 300,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client_for = client_for
        self._recovery = recovery
        self._poll_timeout_s = poll_timeout_s
        self._poll_interval_s = poll_interval_s
        self._sleep = sleep

    def status(self, subscription_id: str, location: str, vm_id: str) -> ProtectionStatus:
        """The service's own answer to "is this VM protected, by any vault?"."""
        client = self._client_for(subscription_id)
        try:
            answer = client.backup_status.get(
                location, BackupStatusRequest(resource_type="VM", resource_id=vm_id)
            )
        except AzureError as exc:
            raise AzureCallError.from_sdk("read backup status", exc) from exc
        return ProtectionStatus(answer.protection_status == "Protected", answer.vault_id)

    def enable(
        self, vault: VaultRef, vm_id: str, vm_resource_group: str, vm_name: str, policy: str
    ) -> EnabledProtection:
        """Discover the VM if the vault does not list it yet, PUT the protected item, follow the operation."""
        client = self._client_for(vault.subscription_id)
        if not self._protectable(client, vault, vm_id):
            self._refresh_containers(client, vault)
            if not self._protectable(client, vault, vm_id):
                raise AzureCallError(
                    "discover VM",
                    "VmNotProtectable",
                    f"vault {vault.name} does not list {vm_id} as protectable",
                )
        container, item = item_names(vm_resource_group, vm_name)
        body = ProtectedItemResource(
            properties=AzureIaaSComputeVMProtectedItem(
                source_resource_id=vm_id, policy_id=f"{vault.id}/backupPolicies/{policy}"
            )
        )
        captured: MutableMapping[str, str] = case_insensitive_dict()  # the 202's headers
        try:
            client.protected_items.begin_create_or_update(
                vault.name,
                vault.resource_group,
                FABRIC,
                container,
                item,
                body,
                polling=False,
                raw_response_hook=lambda response: captured.update(response.http_response.headers),
            )
        except AzureError as exc:
            raise AzureCallError.from_sdk("enable protection", exc) from exc
        operation = operation_id(captured, "enable protection")
        job_id = self._recovery.wait_for_job_id(vault, operation, retry_after_hint_s(captured))
        return EnabledProtection(operation, job_id)

    def _protectable(self, client: RecoveryServicesBackupClient, vault: VaultRef, vm_id: str) -> bool:
        try:
            for entry in client.backup_protectable_items.list(
                vault.name, vault.resource_group, filter=IAAS_VM_FILTER
            ):
                properties: Any = entry.properties
                if properties is not None and same_arm_id(str(properties.get("virtualMachineId", "")), vm_id):
                    return True
        except AzureError as exc:
            raise AzureCallError.from_sdk("list protectable items", exc) from exc
        return False

    def _refresh_containers(self, client: RecoveryServicesBackupClient, vault: VaultRef) -> None:
        """POST refreshContainers, then poll its operation result until 204 (bounded by the poll timeout)."""
        try:
            headers: MutableMapping[str, str] = cast(Any, client.protection_containers.refresh)(
                vault.name,
                vault.resource_group,
                FABRIC,
                cls=lambda response, _body, _headers: response_headers(response),
            )
        except AzureError as exc:
            raise AzureCallError.from_sdk("refresh containers", exc) from exc
        operation = operation_id(headers, "refresh containers")
        deadline = time.monotonic() + self._poll_timeout_s
        while True:
            try:
                answer: tuple[int, MutableMapping[str, str]] = cast(
                    Any, client.protection_container_refresh_operation_results.get
                )(
                    vault.name,
                    vault.resource_group,
                    FABRIC,
                    operation,
                    cls=lambda response, _body, _headers: (
                        response.http_response.status_code,
                        response_headers(response),
                    ),
                )
            except AzureError as exc:
                raise AzureCallError.from_sdk("poll refresh containers", exc) from exc
            status, poll_headers = answer
            if status != 202:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AzureCallError(
                    "refresh containers", "PollTimeout", "container refresh did not finish in time"
                )
            retry_after_s = retry_after_hint_s(poll_headers)
            self._sleep(min(poll_delay_s(retry_after_s, self._poll_interval_s), remaining))
