"""Acting on a VM through the ledger: the one guarded path "backup now" and "enable protection" share.

`guarded_action` claims (VM, action, day) in the ledger, acts, then settles the claim with what
Azure answered. `backup_now` is that path for "Backup now" (the sweep, the new-VM flow and
remediation trigger through it); the new-VM flow also enables protection through it.
`todays_trigger` reads today's trigger of a VM and the live status of its job; `reopen_failed_trigger`
is the write that lets a trigger whose job failed be claimed again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, TypeVar

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
from backupwarden.domain.records import LedgerView, Result

LEDGER_ACTION = "backup"
IN_PROGRESS_CODE = "UserErrorBackupOperationInProgress"
FAILED_JOB_STATUSES = frozenset({"Failed", "Cancelled"})


class Started(Protocol):
    """What Azure answered an action it accepted: its long-running operation and, once known, its job."""

    @property
    def operation_id(self) -> str: ...

    @property
    def job_id(self) -> str | None: ...


StartedT = TypeVar("StartedT", bound=Started)


@dataclass(frozen=True)
class LedgerGuard:
    """The ledger key one action is claimed under, how many attempts a day it may take, and who acts."""

    vm_id: str
    action: str
    day: date
    run_id: str
    max_attempts: int
    triggered_by: str  # Sweep, NewVm, Remediation: recorded with the job for attribution


def guarded_action(
    ledger: Ledger,
    guard: LedgerGuard,
    act: Callable[[], StartedT],
    *,
    claim: Claim | None = None,
    release_on: Collection[str] = (),
) -> StartedT:
    """Claim the guard's key, act, settle the claim: completed with what `act` started, or else failed.

    `claim`: one the caller already holds for the key. Raises AlreadyClaimed or BudgetExhausted when
    the key cannot be claimed (nothing is done), and the AzureCallError of a failed act after
    settling: released (costing no attempt) when its code is in `release_on`, else failed, so a
    later run may retry within the daily attempts.
    """
    if claim is None:
        claim = ledger.claim(
            guard.vm_id, guard.action, guard.day, guard.run_id, max_attempts=guard.max_attempts
        )
    try:
        started = act()
    except AzureCallError as exc:
        if exc.code in release_on:
            ledger.release(claim)
        else:
            ledger.fail(claim, exc.code)
        raise
    ledger.complete(claim, started.job_id or "", started.operation_id, triggered_by=guard.triggered_by)
    return started


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
    """Trigger "Backup now" through `guarded_action` under (VM, backup, today); every answer is a result.

    `claim`: one the caller already holds for (VM, backup, today). A backup already running is a
    no-op (the claim is released, costing no attempt).
    """
    guard = LedgerGuard(target.vm_id, LEDGER_ACTION, now.date(), run_id, daily_budget, triggered_by)
    try:
        triggered = guarded_action(
            ledger,
            guard,
            lambda: recovery.trigger_backup(target.vault, target.container_name, target.item_name, expiry),
            claim=claim,
            release_on=(IN_PROGRESS_CODE,),
        )
    except AlreadyClaimed as exc:
        return BackupNowResult(Result.SKIPPED, f"already handled today by the ledger ({exc.reason})")
    except BudgetExhausted as exc:
        return BackupNowResult(Result.SKIPPED, f"daily budget spent ({exc.attempts} of {exc.max_attempts})")
    except AzureCallError as exc:
        if exc.code == IN_PROGRESS_CODE:
            return BackupNowResult(Result.SKIPPED, "the service reports a backup already in progress")
        return BackupNowResult(Result.FAILED, f"{exc.step} failed", error=exc)
    job = triggered.job_id or f"unknown yet (operation {triggered.operation_id})"
    return BackupNowResult(Result.TRIGGERED, f"backup job {job}", job_id=triggered.job_id)


@dataclass(frozen=True)
class TodaysTrigger:
    """Today's "Backup now" of one VM as the ledger holds it, with the live status of its job."""

    record: LedgerRecord | None
    job_status: str | None  # the live status of its job, when it was COMPLETED with one
    failure_code: str | None  # why the trigger or its job failed

    @property
    def job_failed(self) -> bool:
        """The service accepted the trigger (COMPLETED in the ledger) but its job then failed."""
        return (
            self.record is not None
            and self.record.status is LedgerStatus.COMPLETED
            and self.job_status in FAILED_JOB_STATUSES
        )

    def ledger_view(self, *, first_seen: datetime | None, now: datetime) -> LedgerView:
        """What the sweep's decision reads of it."""
        record = self.record
        if record is None:
            return LedgerView(first_seen=first_seen)
        return LedgerView(
            attempts_today=record.attempts,
            last_job_id=record.job_id or None,
            last_job_status=self.job_status,
            claimed_by_other_run=record.status is LedgerStatus.IN_PROGRESS and record.expires > now,
            first_seen=first_seen,
            last_failure_code=self.failure_code,
        )


def todays_trigger(
    ledger: Ledger, recovery: RecoveryServices, vault: VaultRef, vm_id: str, now: datetime
) -> TodaysTrigger:
    """Today's trigger record of the VM, its job's live status and why it failed, if it did. Reads only."""
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
    return TodaysTrigger(record, job_status, error_code or f"Job{job_status}")


def reopen_failed_trigger(ledger: Ledger, today: TodaysTrigger) -> None:
    """When today's accepted trigger saw its job fail, mark it FAILED so a retry may claim the key
    again, within the daily budget; otherwise write nothing."""
    if today.job_failed and today.record is not None:
        ledger.fail(today.record.as_claim(), today.failure_code or "", job_id=today.record.job_id)
