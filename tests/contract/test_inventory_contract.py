"""Inventory (backupwarden/adapters/azure/inventory.py) against real Azure answers.

Recordings: the Azure CLI's VM read (compute api 2023-09-01, with `$expand=instanceView`, which the
replay ignores like the api-version) and Cloud Custodian's vault list (api 2023-01-01).
"""

from __future__ import annotations

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.inventory import Inventory, VmRecord
from backupwarden.domain.vault_selection import VaultFacts
from tests.contract.recorded import C7N_SUBSCRIPTION, CLI_RESOURCE_GROUP, CLI_SUBSCRIPTION, CLI_VM, CLI_VM_ID
from tests.replay import ReplayServer, load


def inventory(clients: AzureClients) -> Inventory:
    return Inventory(clients.compute, clients.recovery_services)


def test_vm_reads_location_tags_and_provisioning_state(
    replay: ReplayServer, replay_clients: AzureClients
) -> None:
    replay.play(load("azure-cli/vm_get.yaml"))

    vm = inventory(replay_clients).vm(CLI_SUBSCRIPTION, CLI_RESOURCE_GROUP, CLI_VM)

    assert vm == VmRecord(
        vm_id=CLI_VM_ID.lower(),
        location="centraluseuap",
        tags={
            "MabUsed": "Yes",
            "Owner": "sisi",
            "Purpose": "CLITest",
            "DeleteBy": "12-2099",
            "AutoShutdown": "No",
        },
        provisioning_state="Succeeded",
    )


def test_vaults_of_a_subscription(replay: ReplayServer, replay_clients: AzureClients) -> None:
    replay.play(load("c7n-azure/RecoveryServicesTest.test_find_by_name.json"))

    vaults = inventory(replay_clients).vaults(C7N_SUBSCRIPTION)

    vault_id = (
        f"/subscriptions/{C7N_SUBSCRIPTION}/resourceGroups/test_recoveryservices"
        "/providers/Microsoft.RecoveryServices/vaults/cfbukqrkhntars655e53akvrc4k"
    )
    assert vaults == [VaultFacts(vault_id, "cfbukqrkhntars655e53akvrc4k", C7N_SUBSCRIPTION, "eastus")]
