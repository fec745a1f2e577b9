"""The ids the recordings carry (tests/recordings/README.md): the adapters are asked for exactly these."""

from __future__ import annotations

from backupwarden.adapters.azure.recovery_services import VaultRef

# Azure CLI backup recordings (subscription zeroed by the recorder)
CLI_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
CLI_RESOURCE_GROUP = "clitest.rg000001"
CLI_VAULT = VaultRef(CLI_SUBSCRIPTION, CLI_RESOURCE_GROUP, "clitest-vault000002")
CLI_VM = "clitest-vm000003"
CLI_VM_ID = (
    f"/subscriptions/{CLI_SUBSCRIPTION}/resourceGroups/{CLI_RESOURCE_GROUP}"
    f"/providers/Microsoft.Compute/virtualMachines/{CLI_VM}"
)
# as discovery hands them on: the container with its `iaasvmcontainer;` prefix, the item as listed
CLI_CONTAINER = f"iaasvmcontainer;iaasvmcontainerv2;{CLI_RESOURCE_GROUP};{CLI_VM}"
CLI_ITEM = f"VM;iaasvmcontainerv2;{CLI_RESOURCE_GROUP};{CLI_VM}"

# Cloud Custodian cassettes
C7N_SUBSCRIPTION = "ea42f556-5106-4743-99b0-c129bfa71a47"

# Azure SDK monitor recordings (DCR immutable id and workspace id zeroed by the recorder)
ZEROED_ID = "00000000-0000-0000-0000-000000000000"
