"""The reconciler: read the scope's coverage, then take each VM's proposed action through the ledger.

One run reads through the coverage flow (bulk reads, every VM in one state; docs/coverage.md) and
then, VM by VM:
- `backup_now` (pending first backup past the grace period, stale, failing with a retryable error):
  "Backup now" through `backup_now`, the guarded path every flow triggers through, so the ledger
  keeps it to the daily budget across the sweep, the new-VM flow, remediation and this flow (a VM
  another flow triggered today is skipped with the ledger's reason); at most `max_triggers_per_run`
  triggers per run;
- `enroll` (unprotected, per ENROLL_EXISTING): recorded as `skipped`, proposed only. The new-VM
  flow's protection step is not reusable for an existing VM (it is private to its work item), and
  enrolling needs pre-flight first;
- `escalate`: an `escalated` record with the reason and the recommendation, once per VM and day
  (the ledger's ESCALATE_LEDGER_ACTION key, so a second run the same day records nothing again);
- `none`: nothing per VM.
Each decision goes to `record` as soon as it is made, as the sweep's do, so a run killed part-way
keeps the record of what it did; the run's own record (`reconcile_run`) comes last.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.protection import item_names
from backupwarden.adapters.azure.protection_inventory import ItemRecord, ProtectionInventory
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import AlreadyClaimed, BudgetExhausted, Ledger, LedgerError
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.protection_states import (
    STOPPED_STATES,
    Action,
    Classification,
    StateRules,
)
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import utc_now
from backupwarden.flows.backup_now import BackupTarget, backup_now
from backupwarden.flows.coverage import Coverage, CoverageScan, InventoryReader
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
ENROLL_NOT_PERFORMED = "enrolment of existing VMs is proposed, not yet performed"

RecordDecisions = Callable[[list[Outcome]], None]


@dataclass(frozen=True)
class ReconcileConfig:
    daily_budget: int  # "Backup now" attempts per VM and day, shared with every flow (the ledger's)
    max_triggers_per_run: int
    recovery_point_expiry: timedelta
    dry_run: bool = False  # decide and record what would be done; nothing is claimed or sent


@dataclass(frozen=True)
class ReconcileResult:
    report: RunReport
    scan: CoverageScan | None  # None when not even the subscriptions could be read


class _LastRead:
    """The inventory reader that keeps what it last read: the coverage flow classifies a VM, and the
    reconciler needs the vault of the item it was classified by to act on it."""

    def __init__(self, reader: InventoryReader) -> None:
        self._reader = reader
        self.inventory = ProtectionInventory()

    def read(self, subscriptions: list[str]) -> ProtectionInventory:
        self.inventory = self._reader.read(subscriptions)
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
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._read = _LastRead(reader)
        self._coverage = Coverage(self._read, subscriptions, rules, now=now)
        self._recovery = recovery
        self._ledger = ledger
        self._config = config
        self._now = now

    def run(self, record: RecordDecisions, run_id: str | None = None) -> ReconcileResult:
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
        vaults = _active_vaults(self._read.inventory)
        triggered = 0
        for classification in scan.classifications:
            if classification.action is Action.NONE:
                continue
            report.candidates += 1
            if classification.action is Action.BACKUP_NOW:
                outcome = self._backup_now(report.run_id, classification, vaults, triggered)
                if outcome.result in (Result.TRIGGERED, Result.DRY_RUN):
                    triggered += 1
            elif classification.action is Action.ENROLL:
                outcome = self._outcome(
                    report.run_id,
                    classification,
                    ENROLL_ACTION,
                    Result.SKIPPED,
                    _enroll_reason(classification),
                )
            else:
                self._escalate(report, record, classification)
                continue
            self._decided(report, record, outcome)
        report.finished = self._now()
        record([report.run_record(RUN_ACTION, _summary(scan, report))])
        logger.info("reconcile finished", extra={"run_id": report.run_id, **report.summary()})
        return ReconcileResult(report, scan)

    def _decided(self, report: RunReport, record: RecordDecisions, outcome: Outcome) -> None:
        record([outcome])
        report.outcomes.append(outcome)

    def _backup_now(self, run_id: str, c: Classification, vaults: dict[str, str], triggered: int) -> Outcome:
        vault_id = vaults.get(arm_key(c.vm.id), "")
        why = f"{c.state.value}: {c.reason}"
        if not vault_id:  # classified by an active item, so one is there unless the read changed under it
            return self._outcome(run_id, c, BACKUP_ACTION, Result.FAILED, f"{why}; no active item found")
        if triggered >= self._config.max_triggers_per_run:
            reason = f"{why}; per-run cap reached ({self._config.max_triggers_per_run} triggers)"
            return self._outcome(run_id, c, BACKUP_ACTION, Result.SKIPPED, reason, vault_id)
        if self._config.dry_run:
            return self._outcome(run_id, c, BACKUP_ACTION, Result.DRY_RUN, f"would trigger: {why}", vault_id)
        container, item = item_names(c.vm.resource_group, c.vm.name)
        target = BackupTarget(c.vm.id, VaultRef.parse(vault_id), container, item)
        now = self._now()
        try:
            done = backup_now(
                self._ledger,
                self._recovery,
                target,
                run_id=run_id,
                now=now,
                daily_budget=self._config.daily_budget,
                expiry=now + self._config.recovery_point_expiry,
                triggered_by=TRIGGERED_BY,
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

    def _escalate(self, report: RunReport, record: RecordDecisions, c: Classification) -> None:
        """Claimed under (VM, escalate, today) before it is recorded and settled after: a second run
        the same day finds the claim and records nothing; a record that could not be written releases
        the claim, so the next run escalates again."""
        reason = f"{c.state.value}: {c.reason}" + (
            f"; recommendation: {c.recommendation}" if c.recommendation else ""
        )
        if self._config.dry_run:
            self._decided(
                report,
                record,
                self._outcome(report.run_id, c, ESCALATE_ACTION, Result.DRY_RUN, f"would escalate: {reason}"),
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
            outcome = self._outcome(
                report.run_id, c, ESCALATE_ACTION, Result.FAILED, f"ledger: {exc}", error=error
            )
            self._decided(report, record, outcome)
            return
        outcome = self._outcome(report.run_id, c, ESCALATE_ACTION, Result.ESCALATED, reason)
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


def _active_vaults(inventory: ProtectionInventory) -> dict[str, str]:
    """VM id -> the vault of its active item with the newest recovery point: the item a VM to back up
    was classified by (the coverage flow judges a VM by its best item, an active one first)."""
    best: dict[str, ItemRecord] = {}
    for record in inventory.items:
        if _inactive(record):
            continue
        held = best.get(record.vm_id)
        if held is None or _newest(record) > _newest(held):
            best[record.vm_id] = record
    return {vm_id: record.facts.vault_id for vm_id, record in best.items()}


def _inactive(record: ItemRecord) -> bool:
    facts = record.facts
    return facts.is_scheduled_for_deferred_delete or facts.protection_state.lower() in STOPPED_STATES


def _newest(record: ItemRecord) -> float:
    newest = record.facts.last_recovery_point
    return newest.timestamp() if newest else float("-inf")


def _enroll_reason(c: Classification) -> str:
    return f"{c.state.value}: {c.reason}; {ENROLL_NOT_PERFORMED}"


def _summary(scan: CoverageScan, report: RunReport) -> str:
    percent = scan.report.total.percent
    covered = "-" if percent is None else f"{percent:.1f}%"
    return (
        f"{len(scan.classifications)} VMs, {report.candidates} to act on: {report.counts()}, "
        f"{sum(o.result is Result.ESCALATED for o in report.outcomes)} escalated; coverage {covered}"
    )
