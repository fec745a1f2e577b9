"""The sweep: find items stuck in initial-backup-pending, verify, decide, trigger, report.

One VM's failure is that VM's outcome; nothing aborts the run. Every trigger goes through the
ledger, so overlapping runs, retries and the other flows never trigger the same VM twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backupwarden.adapters.discovery import Discovery
from backupwarden.adapters.errors import AzureCallError
from backupwarden.adapters.recovery_services import RecoveryServices, VaultRef
from backupwarden.backup_now import LEDGER_ACTION, BackupTarget, backup_now
from backupwarden.domain.records import Candidate, ItemState, LedgerView, Outcome, Result
from backupwarden.domain.sweep_rules import SweepPolicy, decide_trigger, skip_before_verifying
from backupwarden.ledger import Claim, Ledger, LedgerError, LedgerStatus
from backupwarden.report import RunReport

logger = logging.getLogger(__name__)

ACTION = "trigger_backup"
SWEEP_RUN_ACTION = "sweep_run"  # one record per run: the heartbeat of the "automation silent" alert
FAILED_JOB_STATUSES = frozenset({"Failed", "Cancelled"})


@dataclass(frozen=True)
class SweepConfig:
    policy: SweepPolicy
    recovery_point_expiry: timedelta
    dry_run: bool = False
    workers: int = 8


class Sweep:
    def __init__(
        self,
        discovery: Discovery,
        recovery: RecoveryServices,
        ledger: Ledger,
        subscriptions: Callable[[], list[str]],
        config: SweepConfig,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._discovery = discovery
        self._recovery = recovery
        self._ledger = ledger
        self._subscriptions = subscriptions
        self._config = config
        self._now = now

    def run(self, run_id: str | None = None) -> RunReport:
        report = RunReport(run_id or str(uuid.uuid4()), self._config.dry_run, self._now())
        run = _Run(self, report.run_id)
        try:
            found = self._discovery.find_stuck_initial_backups(self._subscriptions())
        except AzureCallError as exc:
            report.outcomes.append(
                _outcome(report.run_id, "", "", Result.FAILED, f"discovery failed at {exc.step}", exc)
            )
            report.finished = self._now()
            return report
        report.candidates = len(found.candidates)
        for scope, error in found.failures:
            report.outcomes.append(
                _outcome(
                    report.run_id, "", scope, Result.FAILED, f"{error.step} failed for this scope", error
                )
            )
        with ThreadPoolExecutor(max_workers=max(1, self._config.workers)) as pool:
            report.outcomes.extend(pool.map(run.handle, found.candidates))
        report.finished = self._now()
        for outcome in report.outcomes:
            logger.info("sweep outcome", extra={**outcome.to_dict()})
        logger.info("sweep finished", extra={"run_id": report.run_id, **report.summary()})
        return report


class _Run:
    """The state one run shares between its workers: the per-run trigger count."""

    def __init__(self, sweep: Sweep, run_id: str) -> None:
        self.sweep = sweep
        self.run_id = run_id
        self._lock = threading.Lock()
        self._triggered = 0

    def handle(self, candidate: Candidate) -> Outcome:
        try:
            return self._handle(candidate)
        except AzureCallError as exc:
            return self._outcome(candidate, Result.FAILED, f"{exc.step} failed", exc)
        except LedgerError as exc:
            return self._outcome(
                candidate,
                Result.FAILED,
                f"ledger: {exc}",
                AzureCallError("ledger", type(exc).__name__, str(exc)),
            )

    def _handle(self, candidate: Candidate) -> Outcome:
        sweep, config = self.sweep, self.sweep._config
        early = skip_before_verifying(candidate)
        if early is not None:
            return self._outcome(candidate, Result.SKIPPED, early.reason)
        vault = VaultRef.parse(candidate.vault_id)
        try:
            raw = sweep._recovery.protected_item(vault, candidate.container_name, candidate.item_name)
        except AzureCallError as exc:
            if exc.not_found:
                return self._outcome(candidate, Result.SKIPPED, "protected item no longer exists")
            raise
        item = _item_state(raw, candidate.vm_tags)
        now = sweep._now()
        ledger_view = self._ledger_view(candidate, vault, item, now)
        with self._lock:
            decision = decide_trigger(
                item,
                ledger_view,
                configured_at=candidate.configured_at,
                triggered_this_run=self._triggered,
                now=now,
                policy=config.policy,
            )
            if decision.trigger:
                self._triggered += 1
        if not decision.trigger:
            return self._outcome(candidate, Result.SKIPPED, decision.reason)
        if config.dry_run:
            return self._outcome(candidate, Result.DRY_RUN, f"would trigger: {decision.reason}")
        return self._trigger(candidate, vault, decision.reason, now)

    def _trigger(self, candidate: Candidate, vault: VaultRef, reason: str, now: datetime) -> Outcome:
        sweep, config = self.sweep, self.sweep._config
        target = BackupTarget(candidate.vm_id, vault, candidate.container_name, candidate.item_name)
        done = backup_now(
            sweep._ledger,
            sweep._recovery,
            target,
            run_id=self.run_id,
            now=now,
            daily_budget=config.policy.daily_budget,
            expiry=now + config.recovery_point_expiry,
            triggered_by="Sweep",
        )
        if done.result is not Result.TRIGGERED:
            self._give_back()
            return self._outcome(candidate, done.result, done.reason, done.error)
        return self._outcome(candidate, Result.TRIGGERED, f"{reason}; {done.reason}", job_id=done.job_id)

    def _ledger_view(
        self, candidate: Candidate, vault: VaultRef, item: ItemState, now: datetime
    ) -> LedgerView:
        sweep = self.sweep
        record = sweep._ledger.record(candidate.vm_id, LEDGER_ACTION, now.date())
        first_seen = None
        if candidate.configured_at is None and item.protection_state == "IRPending":
            first_seen = None if sweep._config.dry_run else sweep._ledger.first_seen(candidate.vm_id)
        if record is None:
            return LedgerView(first_seen=first_seen)
        job_status = None
        if record.status is LedgerStatus.COMPLETED and record.job_id:
            job_status, error_code = sweep._recovery.job_status(vault, record.job_id)
            if job_status in FAILED_JOB_STATUSES and not sweep._config.dry_run:
                # the job failed after the trigger was accepted: free the key for a retry under the budget
                claim = Claim(
                    record.vm_id, record.action, record.day, record.run_id, record.attempts, record.etag
                )
                sweep._ledger.fail(claim, error_code or f"Job{job_status}", job_id=record.job_id)
        return LedgerView(
            attempts_today=record.attempts,
            last_job_id=record.job_id or None,
            last_job_status=job_status,
            claimed_by_other_run=record.status is LedgerStatus.IN_PROGRESS and record.expires > now,
            first_seen=first_seen,
        )

    def _give_back(self) -> None:
        with self._lock:
            self._triggered -= 1

    def _outcome(
        self,
        candidate: Candidate,
        result: Result,
        reason: str,
        error: AzureCallError | None = None,
        job_id: str | None = None,
    ) -> Outcome:
        return _outcome(self.run_id, candidate.vm_id, candidate.vault_id, result, reason, error, job_id)


def _outcome(
    run_id: str,
    vm_id: str,
    vault_id: str,
    result: Result,
    reason: str,
    error: AzureCallError | None = None,
    job_id: str | None = None,
) -> Outcome:
    return Outcome(
        run_id=run_id,
        vm_id=vm_id,
        vault_id=vault_id,
        action=ACTION,
        result=result,
        reason=reason,
        job_id=job_id,
        error_code=error.code if error else None,
        error_message=error.message if error else None,
    )


def _item_state(raw: dict[str, Any], tags: dict[str, str]) -> ItemState:
    properties = raw.get("properties") or {}
    return ItemState(
        protection_state=str(properties.get("protectionState", "")),
        last_backup_status=str(properties.get("lastBackupStatus", "")),
        has_recovery_point=bool(properties.get("lastRecoveryPoint")),
        vm_tags=tags,
    )
