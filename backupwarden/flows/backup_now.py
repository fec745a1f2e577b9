"""Acting on a VM through the ledger: the one guarded path "backup now" and "enable protection" share.

`guarded_action` claims (VM, action, day) in the ledger, acts, then settles the claim with what
Azure answered. `backup_now` is that path for "Backup now" (the sweep, the new-VM flow and
remediation trigger through it); the new-VM flow also enables protection through it. A "Backup now"
whose answer was lost is not a failure until the service says so: `trigger_through_lost_answers` asks;
when even the job list cannot tell yet, the trigger is taken as started, unconfirmed, without its job id.
`todays_trigger` reads today's trigger of a VM and the live status of its job (for an unconfirmed
trigger: the job the list shows since, or none past `TRIGGER_CONFIRMATION_WINDOW`);
`settle_todays_trigger` is the write: the job id found goes into the claim, and a trigger whose job
failed or never showed is reopened, so it may be claimed again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.azure.recovery_services import (
    AnswerLost,
    ItemBackupJob,
    RecoveryServices,
    TriggeredBackup,
    VaultRef,
)
from backupwarden.adapters.storage.ledger import (
    CLOCK_SKEW,
    AlreadyClaimed,
    BudgetExhausted,
    Claim,
    Ledger,
    LedgerRecord,
    LedgerStatus,
)
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.records import LedgerView, Result

LEDGER_ACTION = "backup"
IN_PROGRESS_CODE = "UserErrorBackupOperationInProgress"
FAILED_JOB_STATUSES = frozenset({"Failed", "Cancelled"})
LOST_ANSWER_REPEATS = 2  # a repeat whose answer is lost as well is repeated, up to this many in all
# An unconfirmed trigger (its job id unknown) whose job the list has not shown by this long after it
# was settled never started (the request, not only its answer, was lost). Job lists trail the service
# by minutes (the emulator's unkind profile: 2), so this is well past their lag, and short enough for
# a reopened trigger to be retried the same day.
TRIGGER_CONFIRMATION_WINDOW = timedelta(minutes=30)
NOT_CONFIRMED_CODE = "TriggerNotConfirmed"


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
    earlier_attempt_at: datetime | None = None,
) -> BackupNowResult:
    """Trigger "Backup now" through `guarded_action` under (VM, backup, today); every answer is a result.

    `claim`: one the caller already holds for (VM, backup, today). A backup already running is a
    no-op (the claim is released, costing no attempt); one our lost-answer POST started is TRIGGERED.
    `earlier_attempt_at`: `claim` was taken then by an earlier attempt (a delivery that died holding
    it) that may have sent the POST: see `resume_earlier_attempt`.
    """
    guard = LedgerGuard(target.vm_id, LEDGER_ACTION, now.date(), run_id, daily_budget, triggered_by)

    def trigger() -> BackupStarted:
        if earlier_attempt_at is not None:
            return resume_earlier_attempt(recovery, target, expiry, since=earlier_attempt_at, now=now)
        return trigger_through_lost_answers(recovery, target, expiry, sent_at=now)

    try:
        triggered = guarded_action(
            ledger,
            guard,
            trigger,
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
    if triggered.answer_lost:
        return BackupNowResult(Result.TRIGGERED, triggered.answer_lost, job_id=triggered.job_id)
    job = triggered.job_id or f"unknown yet (operation {triggered.operation_id})"
    return BackupNowResult(Result.TRIGGERED, f"backup job {job}", job_id=triggered.job_id)


@dataclass(frozen=True)
class BackupStarted:
    """A "Backup now" the service took: its operation (unknown after a lost answer) and job."""

    operation_id: str
    job_id: str | None
    answer_lost: str = ""  # after a lost answer or an earlier attempt: what showed the POST took effect

    @classmethod
    def answered(cls, triggered: TriggeredBackup) -> BackupStarted:
        return cls(triggered.operation_id, triggered.job_id)


def resume_earlier_attempt(
    recovery: RecoveryServices, target: BackupTarget, expiry: datetime, *, since: datetime, now: datetime
) -> BackupStarted:
    """The POST of a claim an earlier attempt took at `since` and may have sent before it died.

    The newest ad hoc job the list shows started since then (less the clock skew) is that POST's:
    nothing is sent. The newest, as an older one within the skew may be someone else's. Otherwise
    the POST is sent as a repeat after a lost answer: the list trails the service, so a backup the
    earlier attempt started moments ago may not show yet, and an in-progress answer is then ours.
    """
    jobs = recovery.backup_jobs_started(
        target.vault, target.container_name, since - CLOCK_SKEW, now + timedelta(days=1)
    )
    ad_hoc = [job for job in jobs if job.user_triggered is not False]
    if ad_hoc:
        job = ad_hoc[-1]  # the list is oldest first
        return BackupStarted(
            "", job.job_id, f"an earlier delivery triggered it; the service shows backup job {job.job_id}"
        )
    return trigger_through_lost_answers(recovery, target, expiry, sent_at=since, repeat=True)


def trigger_through_lost_answers(
    recovery: RecoveryServices,
    target: BackupTarget,
    expiry: datetime,
    *,
    sent_at: datetime,
    repeat: bool = False,
) -> BackupStarted:
    """POST "Backup now"; when its answer is lost, ask the service whether it took effect.

    The POST is repeated (a repeat cannot start a second backup: the service refuses one while a
    backup of the item runs). Accepted: the lost POST had not taken effect, the repeat did.
    `UserErrorBackupOperationInProgress`: a backup runs, the lost POST's unless the job list shows a
    scheduled one or one started before `sent_at` (then the in-progress error is raised, as for any
    trigger meeting a running backup). The list trails the service, so the job may not show yet: the
    backup is then taken as ours without its job id, and the reason says so. When every answer is
    lost, only the list can tell: a job of ours there is the trigger's; a list showing no job is
    taken as lagging (a lost answer is most often a write that happened): the trigger is started,
    unconfirmed, and `todays_trigger` settles it from the list later. A running job not ours (a
    scheduled one) refused the POST: the first lost answer is raised.

    `repeat`: an earlier attempt may have sent the POST at `sent_at`, so even the first POST is a
    repeat, and its in-progress answer is read as a repeat's is.
    """

    def trigger() -> BackupStarted:
        return BackupStarted.answered(
            recovery.trigger_backup(target.vault, target.container_name, target.item_name, expiry)
        )

    try:
        return trigger()
    except AnswerLost as exc:
        lost = exc
    except AzureCallError as exc:
        if not repeat or exc.code != IN_PROGRESS_CODE:
            raise
        return _repeat_met_running(
            recovery, target, exc, sent_at, "an earlier delivery may have triggered it"
        )
    for _ in range(LOST_ANSWER_REPEATS):
        try:
            return trigger()
        except AnswerLost:
            continue
        except AzureCallError as exc:
            if exc.code != IN_PROGRESS_CODE:
                raise
            return _repeat_met_running(recovery, target, exc, sent_at, "answer lost")
    running = recovery.running_backup_job(target.vault, target.container_name)
    if running is None:
        return BackupStarted(
            "",
            None,
            "every answer lost and the job list shows no job yet; the trigger is unconfirmed, "
            "settled from the job list later",
        )
    if _started_by(running, sent_at):
        return _lost_but_running(running)
    raise lost


def _repeat_met_running(
    recovery: RecoveryServices, target: BackupTarget, refused: AzureCallError, sent_at: datetime, why: str
) -> BackupStarted:
    """A repeated POST refused because a backup runs: the one the first POST started, unless the job
    list shows one that POST cannot have started (then `refused` is raised)."""
    running = recovery.running_backup_job(target.vault, target.container_name)
    if running is None:
        return BackupStarted(
            "",
            None,
            f"{why}; a repeat met a backup in progress, taken as ours "
            "(the job list does not show its job yet)",
        )
    if not _started_by(running, sent_at):
        raise refused
    return _lost_but_running(running, why)


def _started_by(running: ItemBackupJob, sent_at: datetime) -> bool:
    """Whether a running backup can be the one a POST sent at `sent_at` started: not a scheduled
    one, and not started before it was sent."""
    if running.user_triggered is False:
        return False
    return running.started is None or running.started >= sent_at - CLOCK_SKEW


def _lost_but_running(running: ItemBackupJob, why: str = "answer lost") -> BackupStarted:
    reason = f"{why}; the service shows backup job {running.job_id} running"
    return BackupStarted("", running.job_id, reason)


@dataclass(frozen=True)
class TodaysTrigger:
    """Today's "Backup now" of one VM as the ledger holds it, with the live status of its job."""

    record: LedgerRecord | None
    job_status: str | None  # the live status of its job, when it was COMPLETED with one
    failure_code: str | None  # why the trigger or its job failed
    job_found: bool = False  # COMPLETED without its job id, found now in the job list (`record` has it)
    not_confirmed: bool = False  # COMPLETED without a job id, and none shown within the window

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
    """Today's trigger record of the VM, its job's live status and why it failed, if it did. Reads only.

    A trigger completed without its job id (its answer was lost before the job list showed the job)
    is read with the VM's first ad hoc Backup job since the claim, once the list shows one; when
    none shows within `TRIGGER_CONFIRMATION_WINDOW` of its settling, it is read as not confirmed."""
    record = ledger.record(vm_id, LEDGER_ACTION, now.date())
    if record is None:
        return TodaysTrigger(None, None, None)
    if record.status is LedgerStatus.FAILED:
        return TodaysTrigger(record, None, record.reason or None)
    if record.status is not LedgerStatus.COMPLETED:
        return TodaysTrigger(record, None, None)
    if not record.job_id:
        job = _first_job_since_claim(recovery, vault, record, now)
        if job is None:
            if now - record.updated > TRIGGER_CONFIRMATION_WINDOW:
                return TodaysTrigger(record, None, NOT_CONFIRMED_CODE, not_confirmed=True)
            return TodaysTrigger(record, None, None)
        found = replace(record, job_id=job.job_id)
        if job.status not in FAILED_JOB_STATUSES:
            return TodaysTrigger(found, job.status, None, job_found=True)
        return TodaysTrigger(found, job.status, job.error_code or f"Job{job.status}", job_found=True)
    job_status, error_code = recovery.job_status(vault, record.job_id)
    if job_status not in FAILED_JOB_STATUSES:
        return TodaysTrigger(record, job_status, None)
    return TodaysTrigger(record, job_status, error_code or f"Job{job_status}")


def _first_job_since_claim(
    recovery: RecoveryServices, vault: VaultRef, record: LedgerRecord, now: datetime
) -> ItemBackupJob | None:
    """The VM's first ad hoc Backup job started after its claim (`first_seen`: when it was first
    claimed today) that no earlier attempt of the claim started."""
    since = record.first_seen - CLOCK_SKEW
    # the window's end only bounds the list: our clock and the service's may differ by more than a skew
    parts = record.vm_id.strip("/").split("/")  # subscriptions/{s}/resourceGroups/{rg}/…/{vm}
    container, _ = item_names(parts[3], parts[-1])
    jobs = recovery.backup_jobs_started(vault, container, since, now + timedelta(days=1))
    earlier = {arm_key(job.job_id) for job in record.jobs}
    return next(
        (job for job in jobs if job.user_triggered is not False and arm_key(job.job_id) not in earlier),
        None,
    )


def settle_todays_trigger(ledger: Ledger, today: TodaysTrigger) -> None:
    """Write what `todays_trigger` found. An accepted trigger whose job failed, or that was never
    confirmed, is marked FAILED so a retry may claim the key again, within the daily budget; a job id
    found in the job list is written into the claim, so the job is attributed by its id from then on.
    Otherwise nothing is written."""
    record = today.record
    if record is None:
        return
    if today.job_failed or today.not_confirmed:
        ledger.fail(record.as_claim(), today.failure_code or "", job_id=record.job_id or None)
    elif today.job_found:
        ledger.record_found_job(record.as_claim(), record.job_id)
