"""Protection (backupwarden/adapters/azure/protection.py) against real Azure answers.

Recordings: `az backup protection enable-for-vm` (Azure CLI, api 2023-04-01) and Cloud Custodian's
backupStatus reads (tests/recordings/README.md). The CLI recorder lower-cased every response header
name, as HTTP/2 and proxies do: the operation URLs arrive as `location` / `azure-asyncoperation`.
"""

from __future__ import annotations

import pytest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.azure.pacing import RESYNC_MARGIN, BucketRate, Pacer
from backupwarden.adapters.azure.protection import EnabledProtection, Protection, ProtectionStatus
from backupwarden.adapters.azure.recovery_services import RecoveryServices
from backupwarden.settings import Settings
from tests.contract.recorded import (
    C7N_SUBSCRIPTION,
    CLI_RESOURCE_GROUP,
    CLI_VAULT,
    CLI_VM,
    CLI_VM_ID,
)
from tests.replay import ReplayServer, load

REFRESH_OPERATION = "0cbfb857-20bd-4e2b-91a9-d9dc432fdca0"
CONFIGURE_OPERATION = "280ee077-d84c-4013-bf1f-1693c8a5c8fa"
CONFIGURE_JOB = "ca2a6718-97be-4fac-8663-d1f5fe670d73"
C7N_GROUPS = f"/subscriptions/{C7N_SUBSCRIPTION}/resourceGroups"


@pytest.fixture
def protection(replay_clients: AzureClients, recovery: RecoveryServices) -> Protection:
    settings = replay_clients.settings
    return Protection(
        replay_clients.backup,
        recovery,
        poll_timeout_s=settings.operation_poll_timeout_s,
        poll_interval_s=settings.operation_poll_interval_s,
    )


def test_enable_refreshes_containers_polls_the_location_and_follows_the_put(
    replay: ReplayServer, protection: Protection, recovery: RecoveryServices
) -> None:
    """The VM is not protectable yet: refreshContainers 202, its `location` polled 202, 202, 204; the
    VM is then listed; the PUT's operation (6 x InProgress, then Succeeded) names the job."""
    replay.play(load("azure-cli/enable_for_vm.yaml"))

    enabled = protection.enable(CLI_VAULT, CLI_VM_ID, CLI_RESOURCE_GROUP, CLI_VM, "DefaultPolicy")

    assert enabled == EnabledProtection(CONFIGURE_OPERATION, CONFIGURE_JOB)
    polls = [
        exchange.target.split("?")[0]
        for exchange in replay.exchanges
        if "/operationResults/" in exchange.target
    ]
    assert [path.rsplit("/", 1)[-1] for path in polls] == [REFRESH_OPERATION] * 3
    assert recovery.job_status(CLI_VAULT, CONFIGURE_JOB) == ("Completed", None)
    assert replay.unused() == []


def test_backup_status_reads_protected_and_not_protected(
    replay: ReplayServer, protection: Protection
) -> None:
    """POST …/locations/{location}/backupStatus, answered Protected (with the vault) then NotProtected."""
    replay.play(load("c7n-azure/VMTest.test_vm_backup_status_protected.json"))
    protected_vm = (
        f"{C7N_GROUPS}/TEST_DISK_TYPE_MODIFY/providers/Microsoft.Compute/virtualMachines/c7n-test-vm"
    )
    unprotected_vm = f"{C7N_GROUPS}/TEST_VM/providers/Microsoft.Compute/virtualMachines/cctestvm"

    first = protection.status(C7N_SUBSCRIPTION, "southcentralus", protected_vm)
    second = protection.status(C7N_SUBSCRIPTION, "southcentralus", unprotected_vm)

    assert first == ProtectionStatus(
        True, f"{C7N_GROUPS}/TEST_VM/providers/Microsoft.RecoveryServices/vaults/vault935"
    )
    assert second == ProtectionStatus(False, None)


def test_the_pacer_resyncs_to_the_recorded_remaining_writes(
    replay: ReplayServer, replay_settings: Settings
) -> None:
    """The backupStatus answers carry `x-ms-ratelimit-remaining-subscription-writes: 199` (lower-case as
    recorded): a local write bucket holding more resyncs down to it, less the margin."""
    replay.play(load("c7n-azure/VMTest.test_vm_backup_status_protected.json"))
    writes = BucketRate(1000, 10)
    pacer = Pacer(writes=writes, clock=lambda: 0.0)  # a frozen clock: no refill between the calls
    vm_id = f"{C7N_GROUPS}/TEST_VM/providers/Microsoft.Compute/virtualMachines/cctestvm"

    with AzureClients(replay_settings, pacer=pacer) as clients:
        protection = Protection(clients.backup, RecoveryServices(clients.backup))
        protection.status(C7N_SUBSCRIPTION, "southcentralus", vm_id)
        protection.status(C7N_SUBSCRIPTION, "southcentralus", vm_id)

    # 1000 - 1 taken, resynced to 199 - margin; then one more taken (199 stays above the bucket)
    expected = 199 - RESYNC_MARGIN * writes.capacity - 1
    assert pacer.bucket(C7N_SUBSCRIPTION, "write").tokens == pytest.approx(expected)
