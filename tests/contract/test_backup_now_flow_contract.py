"""The "Backup now" flow (backupwarden/flows/backup_now.py) over recorded Azure answers and a real ledger.

The adapter under it is thin (one POST, one operation read), so the contract that matters is the
flow's: what it records in the ledger from Azure's real answers, and how it reads today's trigger
back. Recording: `az backup protection backup-now` (Azure CLI, api 2023-04-01); ledger: Azurite.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from backupwarden.adapters.azure.clients import AzureClients
from backupwarden.adapters.storage.ledger import LedgerStatus
from backupwarden.app import ensured_ledger
from backupwarden.domain.records import Result
from backupwarden.flows.backup_now import LEDGER_ACTION, BackupTarget, backup_now, todays_trigger
from backupwarden.settings import Settings
from tests.contract.conftest import recovery_services, replay_env
from tests.contract.recorded import CLI_CONTAINER, CLI_ITEM, CLI_VAULT, CLI_VM_ID
from tests.replay import ReplayServer, load

BACKUP_OPERATION = "3761f02b-3b58-4f14-a3b2-f643ea10214a"
BACKUP_JOB = "544e29b4-eeaf-494b-8a2e-84122436b065"
NOW = datetime(2023, 12, 21, 4, 56, 54, tzinfo=UTC)  # when the CLI recorded it


@pytest.fixture(scope="module")
def ledger_clients(replay_server: ReplayServer, azurite: str) -> Iterator[AzureClients]:
    table = f"contract{uuid.uuid4().hex[:12]}"
    env = {**replay_env(replay_server, storage=azurite), "BACKUPWARDEN_LEDGER_TABLE": table}
    with AzureClients(Settings.from_env(env)) as clients:
        yield clients


def test_backup_now_records_the_operation_and_job_and_reads_the_job_back(
    replay: ReplayServer, ledger_clients: AzureClients
) -> None:
    replay.play(load("azure-cli/backup_now.yaml"))
    settings = ledger_clients.settings
    ledger = ensured_ledger(settings, ledger_clients, lambda: NOW)
    recovery = recovery_services(ledger_clients)

    result = backup_now(
        ledger,
        recovery,
        BackupTarget(CLI_VM_ID.lower(), CLI_VAULT, CLI_CONTAINER, CLI_ITEM),
        run_id="contract-run",
        now=NOW,
        daily_budget=2,
        expiry=NOW + timedelta(days=30),
        triggered_by="Sweep",
    )

    assert (result.result, result.job_id) == (Result.TRIGGERED, BACKUP_JOB)
    record = ledger.record(CLI_VM_ID.lower(), LEDGER_ACTION, NOW.date())
    assert record is not None
    assert (record.status, record.job_id, record.op_id, record.attempts) == (
        LedgerStatus.COMPLETED,
        BACKUP_JOB,
        BACKUP_OPERATION,
        1,
    )
    today = todays_trigger(ledger, recovery, CLI_VAULT, CLI_VM_ID.lower(), NOW)
    assert (today.job_status, today.failure_code, today.job_failed) == ("InProgress", None, False)
    assert replay.unused() == []
