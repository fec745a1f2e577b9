"""The ledger-guarded act path on real Azurite: claim, act, settle, whichever action it guards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from azure.data.tables import TableClient

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.protection import EnabledProtection
from backupwarden.adapters.azure.recovery_services import TriggeredBackup
from backupwarden.adapters.storage.ledger import AlreadyClaimed, BudgetExhausted, Ledger, LedgerStatus
from backupwarden.flows.backup_now import LedgerGuard, guarded_action

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-01"
DAY = date(2026, 3, 14)
NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
IN_PROGRESS = "UserErrorBackupOperationInProgress"


@pytest.fixture
def ledger(azurite: str) -> Iterator[Ledger]:
    table = TableClient.from_connection_string(azurite, table_name=f"guard{uuid.uuid4().hex[:12]}")
    ledger = Ledger(table, clock=lambda: NOW)
    ledger.ensure_table()
    yield ledger
    table.delete_table()
    table.close()


def guard(action: str = "backup", max_attempts: int = 3) -> LedgerGuard:
    return LedgerGuard(VM, action, DAY, "run-1", max_attempts, "Sweep")


def refused(code: str) -> AzureCallError:
    return AzureCallError("trigger backup", code, "refused", 409)


def test_an_action_azure_accepted_completes_its_claim_with_the_job(ledger: Ledger) -> None:
    started = guarded_action(ledger, guard(), lambda: TriggeredBackup("op-1", "job-1"))

    record = ledger.record(VM, "backup", DAY)
    assert started == TriggeredBackup("op-1", "job-1")
    assert record is not None
    assert (record.status, record.job_id, record.op_id, record.attempts) == (
        LedgerStatus.COMPLETED,
        "job-1",
        "op-1",
        1,
    )
    assert [(job.job_id, job.triggered_by) for job in record.jobs] == [("job-1", "Sweep")]


def test_enabling_protection_goes_through_the_same_path(ledger: Ledger) -> None:
    guarded_action(ledger, guard("protect"), lambda: EnabledProtection("op-2", None))

    record = ledger.record(VM, "protect", DAY)
    assert record is not None
    assert (record.status, record.job_id, record.op_id) == (LedgerStatus.COMPLETED, "", "op-2")


def test_a_failed_action_fails_its_claim_and_raises(ledger: Ledger) -> None:
    def act() -> TriggeredBackup:
        raise refused("UserErrorGuestAgentStatusUnavailable")

    with pytest.raises(AzureCallError):
        guarded_action(ledger, guard(), act, release_on=(IN_PROGRESS,))

    record = ledger.record(VM, "backup", DAY)
    assert record is not None
    assert (record.status, record.reason, record.attempts) == (
        LedgerStatus.FAILED,
        "UserErrorGuestAgentStatusUnavailable",
        1,
    )


def test_an_error_that_is_no_attempt_releases_the_claim(ledger: Ledger) -> None:
    def act() -> TriggeredBackup:
        raise refused(IN_PROGRESS)

    with pytest.raises(AzureCallError):
        guarded_action(ledger, guard(), act, release_on=(IN_PROGRESS,))

    assert ledger.record(VM, "backup", DAY) is None  # the first claim of the day, undone


def test_nothing_is_done_when_the_key_is_taken_or_spent(ledger: Ledger) -> None:
    acted: list[str] = []

    def act() -> TriggeredBackup:
        acted.append("act")
        return TriggeredBackup("op", "job")

    guarded_action(ledger, guard(max_attempts=1), act)
    with pytest.raises(AlreadyClaimed):
        guarded_action(ledger, guard(max_attempts=1), act)

    def fail() -> TriggeredBackup:
        raise refused("BackUpOperationFailed")

    with pytest.raises(AzureCallError):
        guarded_action(ledger, guard("other", max_attempts=1), fail)
    with pytest.raises(BudgetExhausted):
        guarded_action(ledger, guard("other", max_attempts=1), act)
    assert acted == ["act"]


def test_a_claim_the_caller_holds_is_settled_without_claiming_again(ledger: Ledger) -> None:
    claim = ledger.claim(VM, "backup", DAY, "run-1", max_attempts=1)

    guarded_action(ledger, guard(max_attempts=1), lambda: TriggeredBackup("op-3", "job-3"), claim=claim)

    record = ledger.record(VM, "backup", DAY)
    assert record is not None
    assert (record.status, record.job_id, record.attempts) == (LedgerStatus.COMPLETED, "job-3", 1)
