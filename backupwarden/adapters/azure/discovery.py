"""Two ways to find items stuck in initial-backup-pending, behind one interface.

Items with a backup job in progress come back flagged (`job_in_progress`) so the sweep reports
them as skipped without spending a verification read on them.

`resource-graph` asks one paged query; `vaults` walks every vault for estates where Resource
Graph is not permitted. On the same estate both return the same candidates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.resourcegraph import ResourceGraphClient

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef, odata_time
from backupwarden.adapters.azure.resource_graph import query_rows
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.records import Candidate
from backupwarden.domain.times import parse_optional_time, utc_now

PROTECTED_ITEM_TYPE = "microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems"
# Resource Graph keeps backup jobs 14 days (azure-facts §4); the vaults strategy looks back no further
# for ConfigureBackup jobs, so both strategies know the same configure times.
CONFIGURE_JOB_LOOKBACK = timedelta(days=14)

# Per item (vault, container): its running backups and when protection was configured; the
# protected-items queries join it (here and adapters/azure/protection_inventory.py).
ITEM_JOB_SUMMARY = """\
| join kind=leftouter (
    recoveryservicesresources
    | where type =~ 'microsoft.recoveryservices/vaults/backupjobs'
    | extend operation = tostring(properties.operation), status = tostring(properties.status)
    | summarize runningBackups = countif(operation =~ 'Backup' and status =~ 'InProgress'),
                configuredAt = max(iff(operation =~ 'ConfigureBackup' and status =~ 'Completed',
                                       todatetime(properties.endTime), datetime(null)))
        by vaultId = tostring(split(tolower(id), '/backupjobs/')[0]),
           containerName = tolower(tostring(properties.containerName))
  ) on vaultId, containerName
"""

STUCK_ITEMS_QUERY = (
    """
recoveryservicesresources
| where type =~ 'microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems'
| where tostring(properties.backupManagementType) =~ 'AzureIaasVM'
| where tostring(properties.protectionState) =~ 'IRPending'
| extend vaultId = tostring(split(tolower(id), '/backupfabrics/')[0]),
         containerName = tolower(tostring(properties.containerName)),
         vmId = tolower(tostring(properties.sourceResourceId))
"""
    + ITEM_JOB_SUMMARY
    + """| join kind=leftouter (
    resources
    | where type =~ 'microsoft.compute/virtualmachines'
    | project vmId = tolower(id), vmTags = tags
  ) on vmId
| project id, subscriptionId, vaultId, containerName, itemName = name, vmId,
          vmName = tostring(properties.friendlyName), configuredAt, runningBackups, vmTags
| order by id asc
"""
)


@dataclass
class DiscoveryResult:
    candidates: list[Candidate] = field(default_factory=list)
    # scopes (vault or subscription ids) that could not be read, with the error
    failures: list[tuple[str, AzureCallError]] = field(default_factory=list)


class Discovery(Protocol):
    def find_stuck_initial_backups(self, subscriptions: list[str]) -> DiscoveryResult: ...


class ResourceGraphDiscovery:
    def __init__(self, client: ResourceGraphClient) -> None:
        self._client = client

    def find_stuck_initial_backups(self, subscriptions: list[str]) -> DiscoveryResult:
        result = DiscoveryResult()
        for row in query_rows(self._client, STUCK_ITEMS_QUERY, subscriptions):
            result.candidates.append(
                Candidate(
                    subscription_id=arm_key(str(row["subscriptionId"])),
                    vault_id=arm_key(str(row["vaultId"])),
                    container_name=f"iaasvmcontainer;{row['containerName']}",
                    item_name=str(row["itemName"]),
                    vm_id=arm_key(str(row["vmId"])),
                    vm_name=str(row.get("vmName") or ""),
                    configured_at=parse_optional_time(row.get("configuredAt")),
                    vm_tags=_tags(row.get("vmTags")),
                    job_in_progress=int(row.get("runningBackups") or 0) > 0,
                )
            )
        return result


class VaultsDiscovery:
    """Vault by vault: list vaults, then each vault's items and jobs (paged)."""

    def __init__(
        self,
        vaults_client_for: Callable[[str], RecoveryServicesClient],
        compute_client_for: Callable[[str], ComputeManagementClient],
        recovery: RecoveryServices,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._vaults_client_for = vaults_client_for
        self._compute_client_for = compute_client_for
        self._recovery = recovery
        self._now = now

    def find_stuck_initial_backups(self, subscriptions: list[str]) -> DiscoveryResult:
        result = DiscoveryResult()
        for subscription in subscriptions:
            try:
                vaults = [
                    VaultRef.parse(str(v.id))
                    for v in self._vaults_client_for(subscription).vaults.list_by_subscription_id()
                ]
                tags = self._vm_tags(subscription)
            except AzureError as exc:
                result.failures.append(
                    (f"/subscriptions/{subscription}", AzureCallError.from_sdk("list vaults", exc))
                )
                continue
            for vault in vaults:
                try:
                    result.candidates.extend(self._vault_candidates(vault, tags))
                except AzureCallError as exc:
                    result.failures.append((arm_key(vault.id), exc))
        result.candidates.sort(key=lambda c: (c.vault_id, c.container_name))
        return result

    def _vm_tags(self, subscription: str) -> dict[str, dict[str, str]]:
        return {
            arm_key(str(vm.id)): dict(vm.tags or {})
            for vm in self._compute_client_for(subscription).virtual_machines.list_all()
        }

    def _vault_candidates(self, vault: VaultRef, tags: dict[str, dict[str, str]]) -> Iterable[Candidate]:
        pending = [
            item
            for item in self._recovery.protected_items(vault)
            if str(item["properties"].get("protectionState", "")).lower() == "irpending"
        ]
        if not pending:
            return []
        running = {
            _container(job)
            for job in self._recovery.jobs(vault, "status eq 'InProgress' and operation eq 'Backup'")
        }
        configured = self._configured_times(vault)
        candidates = []
        for item in pending:
            props = item["properties"]
            container = arm_key(str(props.get("containerName", "")))
            vm_id = arm_key(str(props.get("sourceResourceId", "")))
            candidates.append(
                Candidate(
                    subscription_id=arm_key(vault.subscription_id),
                    vault_id=arm_key(vault.id),
                    container_name=f"iaasvmcontainer;{container}",
                    item_name=str(item["name"]),
                    vm_id=vm_id,
                    vm_name=str(props.get("friendlyName", "")),
                    configured_at=configured.get(container),
                    vm_tags=tags.get(vm_id, {}),
                    job_in_progress=container in running,
                )
            )
        return candidates

    def _configured_times(self, vault: VaultRef) -> dict[str, datetime]:
        now = self._now()
        since = odata_time(now - CONFIGURE_JOB_LOOKBACK)
        window = (
            "operation eq 'ConfigureBackup' and status eq 'Completed'"
            f" and startTime eq '{since}' and endTime eq '{odata_time(now)}'"
        )
        configured: dict[str, datetime] = {}
        for job in self._recovery.jobs(vault, window):
            ended = parse_optional_time(job["properties"].get("endTime"))
            container = _container(job)
            if ended is not None and (container not in configured or ended > configured[container]):
                configured[container] = ended
        return configured


def _container(job: dict[str, Any]) -> str:
    return arm_key(str(job["properties"].get("containerName", "")))


def _tags(raw: Any) -> dict[str, str]:
    if isinstance(raw, str):
        raw = json.loads(raw) if raw else {}
    return {str(k): str(v) for k, v in (raw or {}).items()}
