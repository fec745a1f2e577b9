"""Routes of Recovery Services vaults and Azure Backup (IaaS VM paths)."""

from __future__ import annotations

from emulator.core.router import Handler, Route
from emulator.recoveryservices import responses

# The spec's version, what azure-mgmt-recoveryservicesbackup 11.2.0 sends, and recent stable ones.
BACKUP_API_VERSIONS = frozenset(
    {
        "2016-12-01",
        "2023-04-01",
        "2023-06-01",
        "2023-08-01",
        "2024-01-01",
        "2024-04-01",
        "2024-10-01",
        "2025-02-01",
        "2026-10-01",
    }
)
# What azure-mgmt-recoveryservices 4.3.0 sends, and recent stable ones.
VAULT_API_VERSIONS = frozenset(
    {
        "2023-04-01",
        "2023-06-01",
        "2023-08-01",
        "2024-01-01",
        "2024-02-01",
        "2024-04-01",
        "2024-10-01",
        "2025-02-01",
        "2026-11-01",
    }
)

SUBSCRIPTION = "/subscriptions/{subscriptionId}"
VAULTS = f"{SUBSCRIPTION}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.RecoveryServices/vaults"
VAULT = f"{VAULTS}/{{vaultName}}"
FABRIC = f"{VAULT}/backupFabrics/Azure"
ITEM = f"{FABRIC}/protectionContainers/{{containerName}}/protectedItems/{{protectedItemName}}"


def _backup(method: str, template: str, handler: Handler, kind: str = "read") -> Route:
    return Route(method, template, handler, api_versions=BACKUP_API_VERSIONS, kind=kind)


def _vaults(template: str, handler: Handler) -> Route:
    return Route("GET", template, handler, api_versions=VAULT_API_VERSIONS, kind="read")


def routes() -> list[Route]:
    return [
        _vaults(
            f"{SUBSCRIPTION}/providers/Microsoft.RecoveryServices/vaults",
            responses.list_vaults_in_subscription,
        ),
        _vaults(VAULTS, responses.list_vaults_in_group),
        _vaults(VAULT, responses.get_vault),
        _backup("GET", f"{VAULT}/backupPolicies", responses.list_policies),
        _backup("GET", f"{VAULT}/backupPolicies/{{policyName}}", responses.get_policy),
        _backup("GET", f"{VAULT}/backupProtectableItems", responses.list_protectable_items),
        _backup("POST", f"{FABRIC}/refreshContainers", responses.refresh_containers, kind="write"),
        _backup("GET", f"{FABRIC}/operationResults/{{operationId}}", responses.refresh_containers_result),
        _backup("PUT", ITEM, responses.put_protected_item, kind="write"),
        _backup("GET", ITEM, responses.get_protected_item),
        _backup("POST", f"{ITEM}/backup", responses.trigger_backup, kind="write"),
        _backup("GET", f"{ITEM}/operationResults/{{operationId}}", responses.item_operation_result),
        _backup("GET", f"{ITEM}/operationsStatus/{{operationId}}", responses.item_operation_status),
        _backup("GET", f"{VAULT}/backupProtectedItems", responses.list_protected_items),
        _backup("GET", f"{VAULT}/backupOperations/{{operationId}}", responses.get_backup_operation),
        _backup("GET", f"{VAULT}/backupJobs", responses.list_jobs),
        _backup("GET", f"{VAULT}/backupJobs/{{jobName}}", responses.get_job),
        _backup(
            "POST",
            f"{SUBSCRIPTION}/providers/Microsoft.RecoveryServices/locations/{{azureRegion}}/backupStatus",
            responses.backup_status,
            kind="write",
        ),
    ]
