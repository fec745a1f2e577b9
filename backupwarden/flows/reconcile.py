"""The reconciler: read the scope's coverage, then take each VM's proposed action through the ledger.

One run reads through the coverage flow (bulk reads, every VM in one state; docs/coverage.md) and
then, VM by VM:
- `backup_now` (pending first backup past the grace period, stale, failing with a retryable error):
  "Backup now" through `backup_now`, the guarded path every flow triggers through, so the ledger
  keeps it to the daily budget across the sweep, the new-VM flow, remediation and this flow. The
  day's first claim is the ledger insert; a trigger of today whose job failed or never showed is
  reopened and retried within the budget, a dead run's expired claim resumed from the job list, any
  other trigger of today left alone with the ledger's reason. The POST is the only request: the
  trigger's job is learnt from the job list later (app.build_reconciler). At most
  `max_triggers_per_run` triggers per run, enrolments' first backups included;
- `enroll` (unprotected, per ENROLL_EXISTING): the vault, policy and pre-flight's verdict from
  flows/enrolment_preflight.py. A refusal is escalated once per VM and
  day with each reason and its fix; otherwise the new-VM flow's protect step (`ProtectStep`) enables
  protection and starts the first backup under the ledger (one protection per VM and day, the shared
  daily backup budget), triggered by Reconcile;
- `escalate`: an `escalated` record with the reason and the recommendation, once per VM and day
  (the ledger's ESCALATE_LEDGER_ACTION key, so a second run the same day records nothing again);
- `none`: nothing per VM.
Each decision goes to `record` as soon as it is made, as the sweep's do, so a run killed part-way
keeps the record of what it did; the run's own record (`reconcile_run`) comes last.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.azure.protection_inventory import ProtectionInventory
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import (
    AlreadyClaimed,
    BudgetExhausted,
    Claim,
    Ledger,
    LedgerError,
    LedgerStatus,
)
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.protection_states import (
    Action,
    Classification,
    StateRules,
)
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import Deadline, utc_now
from backupwarden.flows.backup_now import (
    LEDGER_ACTION,
    BackupTarget,
    backup_now,
    settle_todays_trigger,
    todays_trigger,
)
from backupwarden.flows.coverage import Coverage, CoverageScan, InventoryReader
from backupwarden.flows.enrolment_preflight import Enrolment, EnrolmentPreflight, NoVault
from backupwarden.flows.new_vm.worker import ProtectTarget
from backupwarden.flows.run_report import RunReport, action_outcome

logger = logging.getLogger(__name__)

BACKUP_ACTION = "reconcile_backup_now"
ENROLL_ACTION = "reconcile_enroll"
ESCALATE_ACTION = "reconcile_escalate"
RUN_ACTION = "reconcile_run"  # one record per run: its health (completed, partial, failed)
ESCALATE_LEDGER_ACTION = "escalate"  # the ledger key that keeps an escalation to once per VM and day
# a run that died between claiming an escalation and recording it leaves the claim in progress: once
# it expires, a later run takes it over (the second attempt) and records the escalation
ESCALATE_ATTEMPTS = 2
TRIGGERED_BY = "Reconcile"

RecordDecisions = Callable[[list[Outcome]], None]


@dataclass(frozen=True)
class ReconcileConfig:
    daily_budget: int  # "Backup now" attempts per VM and day, shared with every flow (the ledger's)
    max_triggers_per_run: int
    recovery_point_expiry: timedelta
    dry_run: bool = False  # decide and record what would be done; nothing is claimed or sent
    # with a Deadline: no VM is started with less than one call's retries left (settings' call_timeout)
    call_timeout: timedelta = timedelta(minutes=1)
    workers: int = 8  # VMs acted on at a time


@dataclass(frozen=True)
class ReconcileResult:
    report: RunReport
    scan: CoverageScan | None  # None when not even the subscriptions could be read

    def vaults_acted_in(self) -> dict[str, str]:
        """VM id -> the vault this run backed up or enrolled it in (an enrolled VM had none before)."""
        return {o.vm_id: o.vault_id for o in self.report.outcomes if o.vm_id and o.vault_id}


class _TriggerSlots:
    """The per-run cap on triggers, shared by the workers: a slot is taken before a trigger and given
    back when none was made."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._taken >= self.cap:
                return False
            self._taken += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._taken -= 1


@dataclass(frozen=True)
class _TodaysClaim:
    """What today's ledger lets a reconciler's "Backup now" do."""

    claim: Claim | None = None  # the day's first claim, taken
    earlier_attempt_at: datetime | None = None  # a dead run's expired claim, claimed then: resume it
    refusal: str = ""  # why not today


class _LastRead:
    """The inventory reader that keeps what it last read: pre-flight takes a VM's disk and security
    types and a vault's item count from the same read the coverage flow classified by."""

    def __init__(self, reader: InventoryReader) -> None:
        self._reader = reader
        self.inventory = ProtectionInventory()
        self.items_per_vault: Counter[str] = Counter()

    def read(self, subscriptions: list[str]) -> ProtectionInventory:
        self.inventory = self._reader.read(subscriptions)
        # counted once a run: pre-flight asks for each VM it enrols
        self.items_per_vault = Counter(arm_key(record.facts.vault_id) for record in self.inventory.items)
        return self.inventory


class Reconciler:
    def __init__(
        self,
        reader: InventoryReader,
        subscriptions: Callable[[], list[str]],
        rules: StateRules,
        recovery: RecoveryServices,
        ledger: Ledger,
        config: ReconcileConfig,
        enrolment: Enrolment,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._read = _LastRead(reader)
        self._coverage = Coverage(self._read, subscriptions, rules, now=now)
        self._recovery = recovery
        self._enrolment = enrolment
        self._ledger = ledger
        self._config = config
        self._now = now

    def run(
        self, record: RecordDecisions, run_id: str | None = None, deadline: Deadline | None = None
    ) -> ReconcileResult:
        """One pass over the scope. Given a `deadline`, no VM is started near its end: the VMs left are
        counted in the run's record and the next run, which reads the scope afresh, takes them."""
        report = RunReport(run_id or str(uuid.uuid4()), self._config.dry_run, self._now())
        try:
            scan = self._coverage.run()
        except AzureCallError as exc:
            report.failure = action_outcome(
                report.run_id,
                "",
                "",
                RUN_ACTION,
                Result.FAILED,
                f"coverage read failed at {exc.step}",
                error=exc,
            )
            report.finished = self._now()
            record([report.run_record(RUN_ACTION, "nothing read")])
            return ReconcileResult(report, None)
        for failure in scan.failures:
            outcome = action_outcome(
                report.run_id, "", failure.scope, RUN_ACTION, Result.FAILED, f"not read: {failure.error}"
            )
            self._decided(report, record, outcome)
        preflight = EnrolmentPreflight(self._enrolment)  # what it reads once holds for this run only
        slots = _TriggerSlots(self._config.max_triggers_per_run)
        to_act = [c for c in scan.classifications if c.action is not Action.NONE]

        def act(c: Classification) -> bool:
            """False when not started: the run's time budget is nearly spent."""
            if deadline is not None and deadline.near_end(self._config.call_timeout):
                return False
            if c.action is Action.BACKUP_NOW:
                self._decided(report, record, self._backup_now(report.run_id, c, slots))
            elif c.action is Action.ENROLL:
                self._enroll(report, record, c, slots, preflight)
            else:
                self._escalate(report, record, c)
            return True

        # VMs are independent (each its own ledger keys): several at a time, as the sweep's drain does
        with ThreadPoolExecutor(max_workers=self._config.workers) as pool:
            futures = [pool.submit(act, c) for c in to_act]
            try:
                started = sum(future.result() for future in futures)
            except BaseException:
                pool.shutdown(cancel_futures=True)  # storage down, say: start nothing more
                raise
        report.candidates = started
        not_started = len(to_act) - started
        report.finished = self._now()
        summary = _summary(scan, report)
        if not_started:
            summary += f"; {not_started} VMs not started (time budget nearly spent): the next run takes them"
        record([report.run_record(RUN_ACTION, summary)])
        logger.info("reconcile finished", extra={"run_id": report.run_id, **report.summary()})
        return ReconcileResult(report, scan)

    def _decided(self, report: RunReport, record: RecordDecisions, outcome: Outcome) -> None:
        record([outcome])
        report.outcomes.append(outcome)

    def _backup_now(self, run_id: str, c: Classification, slots: _TriggerSlots) -> Outcome:
        """Within the per-run cap: a slot is taken before and given back unless a trigger was made."""
        if not slots.take():
            reason = f"{c.state.value}: {c.reason}; per-run cap reached ({slots.cap} triggers)"
            return self._outcome(run_id, c, BACKUP_ACTION, Result.SKIPPED, reason, c.vault_id)
        outcome = self._trigger(run_id, c)
        if outcome.result not in (Result.TRIGGERED, Result.DRY_RUN):
            slots.give_back()
        return outcome

    def _trigger(self, run_id: str, c: Classification) -> Outcome:
        vault_id = c.vault_id  # Backup now is proposed only by an active item's state: its vault
        why = f"{c.state.value}: {c.reason}"
        if self._config.dry_run:
            return self._outcome(run_id, c, BACKUP_ACTION, Result.DRY_RUN, f"would trigger: {why}", vault_id)
        container, item = item_names(c.vm.resource_group, c.vm.name)
        target = BackupTarget(c.vm.id, VaultRef.parse(vault_id), container, item)
        now = self._now()
        try:
            todays = self._todays_claim(target, run_id, now)
            if todays.refusal:
                reason = f"{why}; {todays.refusal}"
                return self._outcome(run_id, c, BACKUP_ACTION, Result.SKIPPED, reason, vault_id)
            done = backup_now(
                self._ledger,
                self._recovery,
                target,
                run_id=run_id,
                now=now,
                daily_budget=self._config.daily_budget,
                expiry=now + self._config.recovery_point_expiry,
                triggered_by=TRIGGERED_BY,
                claim=todays.claim,
                earlier_attempt_at=todays.earlier_attempt_at,
            )
        except AzureCallError as exc:  # the job read behind today's trigger
            return self._outcome(
                run_id, c, BACKUP_ACTION, Result.FAILED, f"{why}; {exc.step} failed", vault_id, error=exc
            )
        except LedgerError as exc:
            error = AzureCallError("ledger", type(exc).__name__, str(exc))
            return self._outcome(
                run_id, c, BACKUP_ACTION, Result.FAILED, f"ledger: {exc}", vault_id, error=error
            )
        return action_outcome(
            run_id,
            c.vm.id,
            vault_id,
            BACKUP_ACTION,
            done.result,
            f"{why}; {done.reason}",
            error=done.error,
            job_id=done.job_id,
        )

    def _todays_claim(self, target: BackupTarget, run_id: str, now: datetime) -> _TodaysClaim:
        """The day's first claim of the VM's backup: one round trip, the common case. When today
        already has a record (any flow's), it is read with its job (`todays_trigger`): a trigger whose
        job failed or never showed is reopened (`settle_todays_trigger`) and claimed again by
        `backup_now` within the daily budget, as is a failed one; a dead run's expired claim is taken
        over and resumed from the job list (its POST may have been sent); anything else is a refusal."""
        claim = self._ledger.claim_if_new(target.vm_id, LEDGER_ACTION, now.date(), run_id)
        if claim is not None:
            return _TodaysClaim(claim=claim)
        today = todays_trigger(self._ledger, self._recovery, target.vault, target.vm_id, now)
        settle_todays_trigger(self._ledger, today)
        record = today.record
        if record is None or today.job_failed or today.not_confirmed or record.status is LedgerStatus.FAILED:
            return _TodaysClaim()
        if record.status is LedgerStatus.IN_PROGRESS and record.expires <= now:
            return _TodaysClaim(earlier_attempt_at=record.updated)
        job = f", job {record.job_id} {today.job_status or ''}".rstrip() if record.job_id else ""
        held = f"{record.status.value.lower()} by run {record.run_id}{job}"
        return _TodaysClaim(refusal=f"already handled today by the ledger ({held})")

    def _enroll(
        self,
        report: RunReport,
        record: RecordDecisions,
        c: Classification,
        slots: _TriggerSlots,
        preflight: EnrolmentPreflight,
    ) -> None:
        """Choose the vault and policy, run pre-flight, then protect and back up, or escalate the refusals.
        The first backup counts against the per-run cap: a slot is taken after pre-flight and given back
        unless a backup was started (or would have been, in a dry run)."""
        run_id, why = report.run_id, f"{c.state.value}: {c.reason}"
        try:
            placed = preflight.place(c.vm, self._read.inventory.vm_kinds, self._read.items_per_vault)
        except AzureCallError as exc:
            reason = f"{why}; pre-flight: {exc.step} failed"
            self._decided(
                report, record, self._outcome(run_id, c, ENROLL_ACTION, Result.FAILED, reason, error=exc)
            )
            return
        if isinstance(placed, NoVault):
            outcome = self._outcome(run_id, c, ENROLL_ACTION, Result.NO_VAULT, f"{why}; {placed.reason}")
            self._decided(report, record, outcome)
            return
        vault, where, warning = placed.vault, placed.where, placed.warning
        if placed.refusals:
            reason = f"{why}; pre-flight refused enrolment in {where}: {'; '.join(placed.refusals)}"
            self._escalate_once(report, record, c, ENROLL_ACTION, reason)
            return
        warned = f"; warning: {warning}" if warning else ""
        if not slots.take():
            reason = f"{why}; per-run cap reached ({slots.cap} triggers)"
            outcome = self._outcome(run_id, c, ENROLL_ACTION, Result.SKIPPED, reason, arm_key(vault.id))
            self._decided(report, record, outcome)
            return
        outcome, started = self._protect(run_id, c, vault, placed.policy, where, warned)
        if not started:
            slots.give_back()
        self._decided(report, record, outcome)

    def _protect(
        self, run_id: str, c: Classification, vault: VaultRef, policy: str, where: str, warned: str
    ) -> tuple[Outcome, bool]:
        """Enable protection and start the first backup (ProtectStep); the outcome, and whether a
        backup was started (or would have been, in a dry run)."""
        why, vault_id = f"{c.state.value}: {c.reason}", arm_key(vault.id)
        if self._config.dry_run:
            reason = f"{why}; would enrol in {where}{warned}"
            return self._outcome(run_id, c, ENROLL_ACTION, Result.DRY_RUN, reason, vault_id), True
        target = ProtectTarget(c.vm.id, c.vm.resource_group, c.vm.name)
        try:
            done = self._enrolment.step.protect(target, vault, policy, where, run_id)
        except AzureCallError as exc:
            reason = f"{why}; enabling protection in {where}: {exc.step} failed"
            return self._outcome(run_id, c, ENROLL_ACTION, Result.FAILED, reason, vault_id, error=exc), False
        except LedgerError as exc:
            error = AzureCallError("ledger", type(exc).__name__, str(exc))
            reason = f"ledger: {exc}"
            return self._outcome(
                run_id, c, ENROLL_ACTION, Result.FAILED, reason, vault_id, error=error
            ), False
        outcome = action_outcome(
            run_id,
            c.vm.id,
            vault_id,
            ENROLL_ACTION,
            done.result,
            f"{why}; {done.reason}{warned}",
            error=done.error,
            job_id=done.job_id,
        )
        return outcome, done.backup_started

    def _escalate(self, report: RunReport, record: RecordDecisions, c: Classification) -> None:
        reason = f"{c.state.value}: {c.reason}" + (
            f"; recommendation: {c.recommendation}" if c.recommendation else ""
        )
        self._escalate_once(report, record, c, ESCALATE_ACTION, reason)

    def _escalate_once(
        self, report: RunReport, record: RecordDecisions, c: Classification, action: str, reason: str
    ) -> None:
        """Claimed under (VM, escalate, today) before it is recorded and settled after: a second run
        the same day finds the claim and records nothing; a record that could not be written releases
        the claim, so the next run escalates again."""
        if self._config.dry_run:
            self._decided(
                report,
                record,
                self._outcome(report.run_id, c, action, Result.DRY_RUN, f"would escalate: {reason}"),
            )
            return
        try:
            claim = self._ledger.claim(
                c.vm.id,
                ESCALATE_LEDGER_ACTION,
                self._now().date(),
                report.run_id,
                max_attempts=ESCALATE_ATTEMPTS,
            )
        except (AlreadyClaimed, BudgetExhausted):
            return  # escalated earlier today
        except LedgerError as exc:
            error = AzureCallError("ledger", type(exc).__name__, str(exc))
            outcome = self._outcome(report.run_id, c, action, Result.FAILED, f"ledger: {exc}", error=error)
            self._decided(report, record, outcome)
            return
        outcome = self._outcome(report.run_id, c, action, Result.ESCALATED, reason)
        try:
            self._decided(report, record, outcome)
        except BaseException:
            self._ledger.release(claim)
            raise
        self._ledger.complete(claim, "", triggered_by=TRIGGERED_BY)

    def _outcome(
        self,
        run_id: str,
        c: Classification,
        action: str,
        result: Result,
        reason: str,
        vault_id: str = "",
        *,
        error: AzureCallError | None = None,
    ) -> Outcome:
        return action_outcome(run_id, c.vm.id, vault_id, action, result, reason, error=error)


def _summary(scan: CoverageScan, report: RunReport) -> str:
    percent = scan.report.total.percent
    covered = "-" if percent is None else f"{percent:.1f}%"
    return (
        f"{len(scan.classifications)} VMs, {report.candidates} to act on: {report.counts()}, "
        f"{sum(o.result is Result.ESCALATED for o in report.outcomes)} escalated; coverage {covered}"
    )
