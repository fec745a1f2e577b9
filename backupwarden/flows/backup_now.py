""" "Backup now" through the ledger: the one trigger path the sweep, the new-VM flow and remediation share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import (
    AlreadyClaimed,
    BudgetExhausted,
    Claim,
    Ledger,
    LedgerRecord,
    LedgerStatus,
)
from backupwarden.domain.records import Result

LEDGER_ACTION = "backup"
IN_PROGRESS_CODE = "UserErrorBackupOperationInProgress"
FAILED_JOB_STATUSES = frozenset({"Failed", "Cancelled"})


@dataclass(frozen=True)
class BackupNowResult:
    result: Result  # TRIGGERED, SKIPPED or FAILED
    reason: str
    job_id: str | None = None
    error: AzureCallError | None = None


@dataclass(frozen=True)
class BackupTarget:
    vm_id: str
    vault: VaultRef
    container_name: str
    item_name: str


def backup_now(
    ledger: Ledger,
    recovery: RecoveryServices,
    target: BackupTarget,
    *,
    run_id: str,
    now: datetime,
    daily_budget: int,
    expiry: datetime,
    triggered_by: str,
    claim: Claim | None = None,
) -> BackupNowResult:
    """Claim (VM, backup, today), trigger, then settle the claim with what Azure answered.

    `claim`: one the caller already holds for (VM, backup, today). A backup already running is a
    no-op (the claim is released, costing no attempt); any other error settles the claim as
    failed, so a later run may retry while under the daily budget.
    """
    if claim is None:
        try:
            claim = ledger.claim(target.vm_id, LEDGER_ACTION, now.date(), run_id, max_attempts=daily_budget)
        except AlreadyClaimed as exc:
            return BackupNowResult(Result.SKIPPED, f"already handled today by the ledger ({exc.reason})")
        except BudgetExhausted as exc:
            return BackupNowResult(
                Result.SKIPPED, f"daily budget spent ({exc.attempts} of {exc.max_attempts})"
            )
    try:
        triggered = recovery.trigger_backup(target.vault, target.container_name, target.item_name, expiry)
    except AzureCallError as exc:
        if exc.code == IN_PROGRESS_CODE:
            ledger.release(claim)
            return BackupNowResult(Result.SKIPPED, "the service reports a backup already in progress")
        ledger.fail(claim, exc.code)
        return BackupNowResult(Result.FAILED, f"{exc.step} failed", error=exc)
    ledger.complete(claim, triggered.job_id or "", triggered.operation_id, triggered_by=triggered_by)
    job = triggered.job_id or f"unknown yet (operation {triggered.operation_id})"
    return BackupNowResult(Result.TRIGGERED, f"backup job {job}", job_id=triggered.job_id)


@dataclass(frozen=True)
class TodaysTrigger:
    record: LedgerRecord | None  # as read, before a failed job reopened it
    job_status: str | None  # the live status of its job, when it was COMPLETED with one
    failure_code: str | None  # why the trigger or its job failed


def reopen_after_failed_job(
    ledger: Ledger,
    recovery: RecoveryServices,
    vault: VaultRef,
    vm_id: str,
    now: datetime,
    *,
    dry_run: bool = False,
) -> TodaysTrigger:
    """Today's trigger record of the VM, its job's live status and why it failed, if it did.

    A trigger the service accepted stays COMPLETED in the ledger; when its job then failed, the key
    is marked FAILED so a retry may claim it again, within the daily budget.
    """
    record = ledger.record(vm_id, LEDGER_ACTION, now.date())
    if record is None:
        return TodaysTrigger(None, None, None)
    if record.status is LedgerStatus.FAILED:
        return TodaysTrigger(record, None, record.reason or None)
    if record.status is not LedgerStatus.COMPLETED or not record.job_id:
        return TodaysTrigger(record, None, None)
    job_status, error_code = recovery.job_status(vault, record.job_id)
    if job_status not in FAILED_JOB_STATUSES:
        return TodaysTrigger(record, job_status, None)
    failure = error_code or f"Job{job_status}"
    if not dry_run:
        ledger.fail(record.as_claim(), failure, job_id=record.job_id)
    return TodaysTrigger(record, job_status, failure)
