"""RecoveryServices (backupwarden/adapters/azure/recovery_services.py) against real Azure answers.

Recordings: Azure CLI backup tests, api-version 2023-04-01 (tests/recordings/README.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backupwarden.adapters.azure.recovery_services import RecoveryServices, TriggeredBackup
from backupwarden.domain.times import parse_optional_time
from tests.contract.recorded import CLI_CONTAINER, CLI_ITEM, CLI_VAULT, CLI_VM, CLI_VM_ID
from tests.replay import ReplayServer, load

ENABLED_JOB = "ca2a6718-97be-4fac-8663-d1f5fe670d73"  # the ConfigureBackup job of enable_for_vm.yaml
BACKUP_OPERATION = "3761f02b-3b58-4f14-a3b2-f643ea10214a"
BACKUP_JOB = "544e29b4-eeaf-494b-8a2e-84122436b065"
RESTORE_JOB = "120a8c6f-086e-424a-89b6-306dcc6ab43b"


def test_protected_items_list_reads_an_item_pending_its_first_backup(
    replay: ReplayServer, recovery: RecoveryServices
) -> None:
    """What the vaults discovery reads of each listed item (discovery.py `_vault_candidates`)."""
    replay.play(load("azure-cli/protected_items.yaml"))

    items = list(recovery.protected_items(CLI_VAULT))

    assert len(items) == 1
    item = items[0]
    properties = item["properties"]
    assert item["name"] == CLI_ITEM  # the service's upper-case `VM;`
    assert properties["protectionState"] == "IRPending"
    assert properties["containerName"] == f"iaasvmcontainerv2;clitest.rg000001;{CLI_VM}"
    assert properties["sourceResourceId"].lower() == CLI_VM_ID.lower()
    assert properties["friendlyName"] == CLI_VM
    # a first backup not taken yet: an empty status and a placeholder time, no recovery point
    assert properties["lastBackupStatus"] == ""
    assert parse_optional_time(properties["lastBackupTime"]) == datetime(2001, 1, 1, tzinfo=UTC)
    assert "lastRecoveryPoint" not in properties
    assert "healthDetails" not in properties


def test_backup_now_follows_the_operation_to_the_job(
    replay: ReplayServer, recovery: RecoveryServices
) -> None:
    """POST …/backup 202 (lower-case `location` / `azure-asyncoperation`), backupOperations already
    Succeeded with the job id, the job then InProgress."""
    replay.play(load("azure-cli/backup_now.yaml"))

    triggered = recovery.trigger_backup(CLI_VAULT, CLI_CONTAINER, CLI_ITEM, datetime(2024, 1, 20, tzinfo=UTC))

    assert triggered == TriggeredBackup(BACKUP_OPERATION, BACKUP_JOB)
    assert recovery.job_status(CLI_VAULT, BACKUP_JOB) == ("InProgress", None)
    assert replay.unused() == []


def test_job_status_survives_a_recorded_500_and_reads_completion(
    replay: ReplayServer, recovery: RecoveryServices
) -> None:
    """The service once answered a job read with 500 CloudStorageUnexpectedError; the read is retried."""
    replay.play(load("azure-cli/job_reads.yaml"))

    assert recovery.job_status(CLI_VAULT, BACKUP_JOB) == ("InProgress", None)
    assert recovery.job_status(CLI_VAULT, BACKUP_JOB) == ("Completed", None)
    assert [exchange.interaction.status for exchange in replay.exchanges if exchange.interaction] == [
        500,
        200,
        200,
    ]


@pytest.mark.parametrize(
    "odata_filter",
    [
        "status eq 'InProgress'",
        "operation eq 'Restore'",
        "operation eq 'Restore' and status eq 'InProgress'",
    ],
)
def test_job_lists_send_the_filter_and_read_a_running_job(
    replay: ReplayServer, recovery: RecoveryServices, odata_filter: str
) -> None:
    """Each recorded list is served only to a request carrying its `$filter`."""
    replay.play(load("azure-cli/job_lists.yaml"))

    jobs = list(recovery.jobs(CLI_VAULT, odata_filter))

    assert [job["name"] for job in jobs] == [RESTORE_JOB]
    properties = jobs[0]["properties"]
    assert (properties["operation"], properties["status"]) == ("Restore", "InProgress")
    assert properties["containerName"] == f"iaasvmcontainerv2;clitest.rg000001;{CLI_VM}"
    assert parse_optional_time(properties.get("endTime")) is None  # a running job has no endTime
    assert parse_optional_time(properties["startTime"]) == datetime(2023, 12, 21, 5, 39, 46, 171539, UTC)
