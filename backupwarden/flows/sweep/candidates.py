"""The sweep: find items stuck in initial-backup-pending, verify, decide, trigger, report.

One VM's failure is that VM's outcome; nothing aborts the run. Every trigger goes through the
ledger, so overlapping runs, retries and the other flows never trigger the same VM twice.

`CandidateHandler` is the per-VM path (verify, ledger view, decide, trigger). `Sweep.run` runs it
over every candidate in this process; the queue worker (`backupwarden.flows.sweep.fanout`) runs the same
handler over the candidates of one work item, with `TriggerSlots` counting the per-run cap across
workers.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from backupwarden.adapters.azure.discovery import Discovery, DiscoveryResult
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import Claim, Ledger, LedgerError, LedgerStatus
from backupwarden.domain.records import Candidate, ItemState, LedgerView, Outcome, Result
from backupwarden.domain.sweep_rules import (
    SweepPolicy,
    TriggerDecision,
    decide_trigger,
    skip_before_verifying,
)
from backupwarden.flows.backup_now import LEDGER_ACTION, BackupTarget, backup_now, reopen_after_failed_job
from backupwarden.flows.run_report import RunReport, action_outcome

logger = logging.getLogger(__name__)

ACTION = "trigger_backup"
SWEEP_RUN_ACTION = "sweep_run"  # one record per run: the heartbeat of the "automation silent" alert
RUNNING_BACKUPS_FILTER = "status eq 'InProgress' and operation eq 'Backup'"
CONTAINER_PREFIX = "iaasvmcontainer;"  # a candidate's container name; jobs name the container without it


@dataclass(frozen=True)
class SweepConfig:
    policy: SweepPolicy
    recovery_point_expiry: timedelta
    dry_run: bool = False
    workers: int = 8


class TriggerSlots(Protocol):
    """The per-run cap: how many triggers this run has decided, shared by every worker of the run."""

    def take(self, decide: Callable[[int], TriggerDecision]) -> TriggerDecision:
        """`decide(triggered so far)`; a decision to trigger takes a slot, atomically with the decision."""
        ...

    def give_back(self) -> None:
        """A decided trigger did not happen: its slot is free again."""
        ...


class RunSlots:
    """The per-run count of one process: a lock and a number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._triggered = 0

    def take(self, decide: Callable[[int], TriggerDecision]) -> TriggerDecision:
        with self._lock:
            decision = decide(self._triggered)
            if decision.trigger:
                self._triggered += 1
            return decision

    def give_back(self) -> None:
        with self._lock:
            self._triggered -= 1


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

    @property
    def config(self) -> SweepConfig:
        return self._config

    def now(self) -> datetime:
        return self._now()

    def run(self, run_id: str | None = None) -> RunReport:
        report = RunReport(run_id or str(uuid.uuid4()), self._config.dry_run, self._now())
        found = self.discover(report)
        if found is None:
            report.finished = self._now()
            return report
        self.handle_all(report, found.candidates)
        return self.finish(report)

    def discover(self, report: RunReport) -> DiscoveryResult | None:
        """Discovery's candidates; its failures become failed outcomes (None: discovery failed whole)."""
        try:
            found = self._discovery.find_stuck_initial_backups(self._subscriptions())
        except AzureCallError as exc:
            report.outcomes.append(
                _outcome(report.run_id, "", "", Result.FAILED, f"discovery failed at {exc.step}", exc)
            )
            return None
        report.candidates = len(found.candidates)
        for scope, error in found.failures:
            report.outcomes.append(
                _outcome(
                    report.run_id, "", scope, Result.FAILED, f"{error.step} failed for this scope", error
                )
            )
        return found

    def handle_all(self, report: RunReport, candidates: list[Candidate]) -> None:
        """Every candidate through the per-VM path, `config.workers` at a time, in this process."""
        handler = self.handler(report.run_id)
        with ThreadPoolExecutor(max_workers=max(1, self._config.workers)) as pool:
            report.outcomes.extend(pool.map(handler.handle, candidates))

    def finish(self, report: RunReport) -> RunReport:
        report.finished = self._now()
        for outcome in report.outcomes:
            logger.info("sweep outcome", extra={**outcome.to_dict()})
        logger.info("sweep finished", extra={"run_id": report.run_id, **report.summary()})
        return report

    def triggered_by(self, run_id: str, vm_id: str) -> bool:
        """Whether run `run_id` holds today's completed trigger of this VM (the ledger's word)."""
        record = self._ledger.record(vm_id, LEDGER_ACTION, self._now().date())
        return record is not None and record.status is LedgerStatus.COMPLETED and record.run_id == run_id

    def handler(
        self, run_id: str, slots: TriggerSlots | None = None, policy: SweepPolicy | None = None
    ) -> CandidateHandler:
        """The per-VM path for run `run_id`; `slots` default to this process's own count, `policy`
        to the configured one (a work item may carry the planner's cap)."""
        return CandidateHandler(self, run_id, slots or RunSlots(), policy or self._config.policy)


class CandidateHandler:
    """One candidate at a time: verify, read the ledger, decide, trigger. Thread-safe."""

    def __init__(self, sweep: Sweep, run_id: str, slots: TriggerSlots, policy: SweepPolicy) -> None:
        self.sweep = sweep
        self.run_id = run_id
        self._slots = slots
        self._policy = policy

    def handle(self, candidate: Candidate, *, redelivered: bool = False) -> Outcome:
        """`redelivered`: an earlier delivery of the same work item may have died holding a claim."""
        try:
            return self._handle(candidate, redelivered)
        except AzureCallError as exc:
            return self._outcome(candidate, Result.FAILED, f"{exc.step} failed", exc)
        except LedgerError as exc:
            return self._outcome(
                candidate,
                Result.FAILED,
                f"ledger: {exc}",
                AzureCallError("ledger", type(exc).__name__, str(exc)),
            )

    def _handle(self, candidate: Candidate, redelivered: bool) -> Outcome:
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
        if redelivered and not config.dry_run:
            recovered = self._recover_abandoned_claim(candidate, vault, now)
            if recovered is not None:
                return recovered
        first_seen = self._first_seen(candidate, item)
        if not config.dry_run:
            fresh = self._decide_as_first_today(candidate, vault, item, first_seen, now)
            if fresh is not None:
                return fresh
        ledger_view = self._ledger_view(candidate, vault, now, first_seen)
        decision = self._decide(candidate, item, ledger_view, now)
        if not decision.trigger:
            return self._outcome(candidate, Result.SKIPPED, decision.reason)
        if config.dry_run:
            return self._outcome(candidate, Result.DRY_RUN, f"would trigger: {decision.reason}")
        return self._trigger(candidate, vault, decision.reason, now)

    def _decide_as_first_today(
        self,
        candidate: Candidate,
        vault: VaultRef,
        item: ItemState,
        first_seen: datetime | None,
        now: datetime,
    ) -> Outcome | None:
        """Decide as if the ledger held nothing for the VM today, the common case, and claim on that.

        Saves the ledger read for a VM the day has not seen: the claim's create is the read. The
        ledger's records only add refusals, so a refusal here is final; when today's record exists
        the claim is refused and this returns None: the caller decides again with the record.
        """
        decision = self._decide(candidate, item, LedgerView(first_seen=first_seen), now)
        if not decision.trigger:
            return self._outcome(candidate, Result.SKIPPED, decision.reason)
        claim = self.sweep._ledger.claim_if_new(candidate.vm_id, LEDGER_ACTION, now.date(), self.run_id)
        if claim is None:
            self._slots.give_back()
            return None
        return self._trigger(candidate, vault, decision.reason, now, claim)

    def _decide(
        self, candidate: Candidate, item: ItemState, ledger: LedgerView, now: datetime
    ) -> TriggerDecision:
        return self._slots.take(
            lambda triggered: decide_trigger(
                item,
                ledger,
                configured_at=candidate.configured_at,
                triggered_this_run=triggered,
                now=now,
                policy=self._policy,
            )
        )

    def _trigger(
        self, candidate: Candidate, vault: VaultRef, reason: str, now: datetime, claim: Claim | None = None
    ) -> Outcome:
        sweep, config = self.sweep, self.sweep._config
        target = BackupTarget(candidate.vm_id, vault, candidate.container_name, candidate.item_name)
        done = backup_now(
            sweep._ledger,
            sweep._recovery,
            target,
            run_id=self.run_id,
            now=now,
            daily_budget=self._policy.daily_budget,
            expiry=now + config.recovery_point_expiry,
            triggered_by="Sweep",
            claim=claim,
        )
        if done.result is not Result.TRIGGERED:
            self._slots.give_back()
            return self._outcome(candidate, done.result, done.reason, done.error)
        return self._outcome(candidate, Result.TRIGGERED, f"{reason}; {done.reason}", job_id=done.job_id)

    def _recover_abandoned_claim(
        self, candidate: Candidate, vault: VaultRef, now: datetime
    ) -> Outcome | None:
        """A claim of this very run still in progress means an earlier delivery died mid-item.

        Whether its trigger reached Azure is read from the service: a running backup of the item is
        that trigger (the claim is completed with its job; nothing is sent again); otherwise the claim
        is released, costing no attempt, and the item is handled as if new.
        """
        sweep = self.sweep
        record = sweep._ledger.record(candidate.vm_id, LEDGER_ACTION, now.date())
        if record is None or record.status is not LedgerStatus.IN_PROGRESS or record.run_id != self.run_id:
            return None
        claim = record.as_claim()
        job_id = self._running_backup(vault, candidate)
        if job_id is None:
            sweep._ledger.release(claim)
            logger.warning(
                "released a claim an earlier delivery abandoned before its trigger",
                extra={"vm_id": candidate.vm_id, "run_id": self.run_id},
            )
            return None
        sweep._ledger.complete(claim, job_id, triggered_by="Sweep")
        return self._outcome(
            candidate,
            Result.TRIGGERED,
            f"an earlier delivery triggered it before it died; backup job {job_id}",
            job_id=job_id,
        )

    def _running_backup(self, vault: VaultRef, candidate: Candidate) -> str | None:
        container = candidate.container_name.lower().removeprefix(CONTAINER_PREFIX)
        for job in self.sweep._recovery.jobs(vault, RUNNING_BACKUPS_FILTER):
            properties = job.get("properties") or {}
            if str(properties.get("containerName", "")).lower() == container:
                return str(job.get("name") or "") or None
        return None

    def _first_seen(self, candidate: Candidate, item: ItemState) -> datetime | None:
        """When the grace period starts for an item whose configuration time discovery does not know."""
        if candidate.configured_at is not None or item.protection_state != "IRPending":
            return None
        return None if self.sweep._config.dry_run else self.sweep._ledger.first_seen(candidate.vm_id)

    def _ledger_view(
        self, candidate: Candidate, vault: VaultRef, now: datetime, first_seen: datetime | None
    ) -> LedgerView:
        sweep = self.sweep
        today = reopen_after_failed_job(
            sweep._ledger, sweep._recovery, vault, candidate.vm_id, now, dry_run=sweep._config.dry_run
        )
        record = today.record
        if record is None:
            return LedgerView(first_seen=first_seen)
        return LedgerView(
            attempts_today=record.attempts,
            last_job_id=record.job_id or None,
            last_job_status=today.job_status,
            claimed_by_other_run=record.status is LedgerStatus.IN_PROGRESS and record.expires > now,
            first_seen=first_seen,
            last_failure_code=today.failure_code,
        )

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
    return action_outcome(run_id, vm_id, vault_id, ACTION, result, reason, error=error, job_id=job_id)


def sweep_outcome(
    run_id: str,
    candidate: Candidate,
    result: Result,
    reason: str,
    error: AzureCallError | None = None,
) -> Outcome:
    """An outcome of the sweep's action for one candidate (the planner's and the poison queue's)."""
    return _outcome(run_id, candidate.vm_id, candidate.vault_id, result, reason, error)


def _item_state(raw: dict[str, Any], tags: dict[str, str]) -> ItemState:
    properties = raw.get("properties") or {}
    return ItemState(
        protection_state=str(properties.get("protectionState", "")),
        last_backup_status=str(properties.get("lastBackupStatus", "")),
        has_recovery_point=bool(properties.get("lastRecoveryPoint")),
        vm_tags=tags,
    )
