"""The sweep: find items stuck in initial-backup-pending, verify, decide, trigger, report.

One VM's failure is that VM's outcome; nothing aborts the run. Every trigger goes through the
ledger, so overlapping runs, retries and the other flows never trigger the same VM twice.

`CandidateHandler` is the per-VM path (verify, read the ledger, decide once, trigger). `Sweep.run`
runs it over every candidate in this process (`handle_all`, which starts no candidate once a run's
`Deadline` is near its end and returns the ones it did not start); the queue worker
(`backupwarden.flows.sweep.fanout`) runs the same handler over the candidates of one work item,
with `TriggerSlots` counting the per-run cap across workers. Given a `RecordDecisions` sink, each
decision is handed to it as soon as it is made, so a run killed part-way keeps the record of
everything it did.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from backupwarden.adapters.azure.discovery import Discovery, DiscoveryResult
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.azure.recovery_services import RecoveryServices, VaultRef
from backupwarden.adapters.storage.ledger import (
    CLOCK_SKEW,
    Claim,
    Ledger,
    LedgerError,
    LedgerRecord,
    LedgerStatus,
)
from backupwarden.domain.records import Candidate, ItemState, LedgerView, Outcome, Result
from backupwarden.domain.sweep_rules import (
    SweepPolicy,
    TriggerDecision,
    decide_trigger,
    refuse_for_today,
    skip_before_verifying,
)
from backupwarden.domain.times import Deadline, utc_now
from backupwarden.flows.backup_now import (
    LEDGER_ACTION,
    BackupNowResult,
    BackupTarget,
    backup_now,
    settle_todays_trigger,
    todays_trigger,
)
from backupwarden.flows.run_report import RunReport, action_outcome

logger = logging.getLogger(__name__)

ACTION = "trigger_backup"
SWEEP_RUN_ACTION = "sweep_run"  # one record per run: its health (completed, partial, failed)

# Where decisions go as they are made (the outbox, through the action recorder).
RecordDecisions = Callable[[list[Outcome]], None]


@dataclass(frozen=True)
class SweepConfig:
    policy: SweepPolicy
    recovery_point_expiry: timedelta
    dry_run: bool = False
    workers: int = 8
    # what one call may take with its retries (Settings.call_timeout): with less left of its time
    # budget, a run starts no more candidates, so a started one can finish before the host stops it
    call_timeout: timedelta = timedelta(minutes=1, seconds=45)

    def out_of_time(self, deadline: Deadline | None) -> bool:
        """Whether a run with `deadline` (None: no budget) must stop taking new candidates."""
        return deadline is not None and deadline.near_end(self.call_timeout)


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

    @property
    def triggered(self) -> int:
        with self._lock:
            return self._triggered

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
        now: Callable[[], datetime] = utc_now,
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
            reason = f"discovery failed at {exc.step}"
            report.failure = action_outcome(report.run_id, "", "", ACTION, Result.FAILED, reason, error=exc)
            report.outcomes.append(report.failure)
            return None
        report.candidates = len(found.candidates)
        for scope, error in found.failures:
            reason = f"{error.step} failed for this scope"
            report.outcomes.append(
                action_outcome(report.run_id, "", scope, ACTION, Result.FAILED, reason, error=error)
            )
        return found

    def handle_all(
        self,
        report: RunReport,
        candidates: list[Candidate],
        record: RecordDecisions | None = None,
        *,
        deadline: Deadline | None = None,
        slots: RunSlots | None = None,
    ) -> list[Candidate]:
        """Every candidate through the per-VM path, `config.workers` at a time, in this process;
        each decision goes to `record` as soon as it is made. `slots`: the run's count (a new one
        by default).

        Once `deadline` is near its end no candidate is started: those are returned, in order, for
        the caller to hand on.
        """
        handler = self.handler(report.run_id, slots)

        def decide(candidate: Candidate) -> Outcome | None:
            if self._config.out_of_time(deadline):
                return None
            outcome = handler.handle(candidate)
            if record is not None:
                record([outcome])
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, self._config.workers)) as pool:
            decided = list(pool.map(decide, candidates))
        report.outcomes.extend(outcome for outcome in decided if outcome is not None)
        return [candidate for candidate, outcome in zip(candidates, decided, strict=True) if outcome is None]

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
        config = self._config if policy is None else replace(self._config, policy=policy)
        return CandidateHandler(
            self._recovery, self._ledger, config, run_id=run_id, slots=slots or RunSlots(), now=self._now
        )


class OwnClaimInFlight(Exception):
    """A duplicate delivery of a work item met the claim another delivery of the same run holds
    while it triggers: the queue delivers this one again later (the worker raises for it)."""

    def __init__(self, vm_id: str, run_id: str) -> None:
        super().__init__(f"run {run_id} is triggering {vm_id} in another delivery of its work item")


class CandidateHandler:
    """One candidate at a time: verify, read the ledger, decide once, trigger. Thread-safe."""

    def __init__(
        self,
        recovery: RecoveryServices,
        ledger: Ledger,
        config: SweepConfig,
        *,
        run_id: str,
        slots: TriggerSlots,
        now: Callable[[], datetime],
    ) -> None:
        self.run_id = run_id
        self._recovery = recovery
        self._ledger = ledger
        self._config = config
        self._slots = slots
        self._now = now

    def handle(self, candidate: Candidate, *, redelivered: bool = False) -> Outcome:
        """`redelivered`: an earlier delivery of the same work item may have died holding a claim."""
        try:
            return self._handle(candidate, redelivered)
        except AzureCallError as exc:
            return self._outcome(candidate, Result.FAILED, f"{exc.step} failed", error=exc)
        except LedgerError as exc:
            error = AzureCallError("ledger", type(exc).__name__, str(exc))
            return self._outcome(candidate, Result.FAILED, f"ledger: {exc}", error=error)

    def _handle(self, candidate: Candidate, redelivered: bool) -> Outcome:
        early = skip_before_verifying(candidate)
        if early is not None:
            return self._outcome(candidate, Result.SKIPPED, early.reason)
        vault = VaultRef.parse(candidate.vault_id)
        item = self._verify(candidate, vault)
        if item is None:
            return self._outcome(candidate, Result.SKIPPED, "protected item no longer exists")
        now = self._now()
        if self._config.dry_run:
            return self._dry_run(candidate, vault, item, now)
        if redelivered:
            recovered = self._recover_abandoned_claim(candidate, vault, now)
            if recovered is not None:
                return recovered
        return self._decide_and_trigger(candidate, vault, item, now)

    def _verify(self, candidate: Candidate, vault: VaultRef) -> ItemState | None:
        """The item as the service holds it now; None when it no longer exists."""
        try:
            raw = self._recovery.protected_item(vault, candidate.container_name, candidate.item_name)
        except AzureCallError as exc:
            if exc.not_found:
                return None
            raise
        return _item_state(raw, candidate.vm_tags)

    def _dry_run(self, candidate: Candidate, vault: VaultRef, item: ItemState, now: datetime) -> Outcome:
        """Decided with today's record as read; nothing is claimed, reopened or first seen."""
        today = todays_trigger(self._ledger, self._recovery, vault, candidate.vm_id, now)
        decision = self._decide(candidate, item, today.ledger_view(first_seen=None, now=now), now)
        if not decision.trigger:
            return self._outcome(candidate, Result.SKIPPED, decision.reason)
        return self._outcome(candidate, Result.DRY_RUN, f"would trigger: {decision.reason}")

    def _decide_and_trigger(
        self, candidate: Candidate, vault: VaultRef, item: ItemState, now: datetime
    ) -> Outcome:
        """Decided as the day's first trigger of the VM, the common case; the claim's insert is the
        ledger read, saving a round trip for a VM the day has not seen.

        Today's record can only add refusals (`refuse_for_today`): when the insert finds one, the
        record is read (a failed job reopened) and only those refusals are checked before triggering;
        a trigger it shows this run or a run that died already made is stated, not made again.
        """
        first_seen = self._first_seen(candidate, item)
        decision = self._decide(candidate, item, LedgerView(first_seen=first_seen), now)
        if not decision.trigger:
            return self._outcome(candidate, Result.SKIPPED, decision.reason)
        claim = self._ledger.claim_if_new(candidate.vm_id, LEDGER_ACTION, now.date(), self.run_id)
        if claim is None:
            today = todays_trigger(self._ledger, self._recovery, vault, candidate.vm_id, now)
            earlier = self._own_trigger(candidate, today.record) or self._dead_runs_trigger(
                candidate, vault, today.record, now
            )
            if earlier is not None:
                self._slots.give_back()
                return earlier
            self._raise_if_own_claim_in_flight(candidate, today.record, now)
            settle_todays_trigger(self._ledger, today)
            refusal = refuse_for_today(today.ledger_view(first_seen=first_seen, now=now), self._config.policy)
            if refusal is not None:
                self._slots.give_back()
                return self._outcome(candidate, Result.SKIPPED, refusal.reason)
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
                policy=self._config.policy,
            )
        )

    def _trigger(
        self, candidate: Candidate, vault: VaultRef, reason: str, now: datetime, claim: Claim | None
    ) -> Outcome:
        done = self._backup_now(candidate, vault, now, claim)
        if done.result is not Result.TRIGGERED:
            self._slots.give_back()
            return self._outcome(candidate, done.result, done.reason, error=done.error)
        return self._outcome(candidate, Result.TRIGGERED, f"{reason}; {done.reason}", job_id=done.job_id)

    def _backup_now(
        self,
        candidate: Candidate,
        vault: VaultRef,
        now: datetime,
        claim: Claim | None,
        earlier_attempt_at: datetime | None = None,
    ) -> BackupNowResult:
        target = BackupTarget(candidate.vm_id, vault, candidate.container_name, candidate.item_name)
        return backup_now(
            self._ledger,
            self._recovery,
            target,
            run_id=self.run_id,
            now=now,
            daily_budget=self._config.policy.daily_budget,
            expiry=now + self._config.recovery_point_expiry,
            triggered_by="Sweep",
            claim=claim,
            earlier_attempt_at=earlier_attempt_at,
        )

    def _recover_abandoned_claim(
        self, candidate: Candidate, vault: VaultRef, now: datetime
    ) -> Outcome | None:
        """A claim of this very run still in progress means an earlier delivery died mid-item, after
        deciding to trigger and maybe after sending the trigger.

        The claim is carried on through `backup_now` as that delivery's attempt: a backup the service
        shows since the claim is that trigger (nothing is sent again); otherwise it is sent, and a
        backup in progress that the job list does not show yet is taken as the earlier one's.

        A claim this run already completed is that earlier delivery's trigger (`_own_trigger`).
        """
        record = self._ledger.record(candidate.vm_id, LEDGER_ACTION, now.date())
        own = self._own_trigger(candidate, record)
        if own is not None:
            return own
        if record is None or record.status is not LedgerStatus.IN_PROGRESS or record.run_id != self.run_id:
            return None
        done = self._backup_now(candidate, vault, now, record.as_claim(), earlier_attempt_at=record.updated)
        if done.result is not Result.TRIGGERED:
            self._slots.give_back()  # the earlier delivery's decided trigger did not happen
            return self._outcome(candidate, done.result, done.reason, error=done.error)
        reason = f"resumed the claim of an earlier delivery that died; {done.reason}"
        return self._outcome(candidate, Result.TRIGGERED, reason, job_id=done.job_id)

    def _raise_if_own_claim_in_flight(
        self, candidate: Candidate, record: LedgerRecord | None, now: datetime
    ) -> None:
        """Another delivery of this same work item (a duplicate message) holds the claim and is
        triggering right now. A `skipped` here would share that trigger's record id and could land
        after it, hiding the trigger; so this delivery gives the VM back to the queue, and its
        redelivery states the trigger once it is settled."""
        if (
            record is not None
            and record.run_id == self.run_id
            and record.status is LedgerStatus.IN_PROGRESS
            and record.expires > now
        ):
            self._slots.give_back()
            raise OwnClaimInFlight(candidate.vm_id, self.run_id)

    def _own_trigger(self, candidate: Candidate, record: LedgerRecord | None) -> Outcome | None:
        """Today's trigger completed by this very run (an earlier or duplicate delivery of its work
        item), stated again: this decision's record replaces the earlier one (same run, VM and
        action), and a `skipped` would hide the trigger."""
        if record is None or record.run_id != self.run_id or record.status is not LedgerStatus.COMPLETED:
            return None
        # a trigger without its job id (the POST sent alone) is named by its operation, as when it was made
        job = record.job_id or (f"unknown yet (operation {record.op_id})" if record.op_id else "unknown yet")
        return self._outcome(
            candidate,
            Result.TRIGGERED,
            f"an earlier delivery of this run triggered it; backup job {job}",
            job_id=record.job_id or None,
        )

    def _dead_runs_trigger(
        self, candidate: Candidate, vault: VaultRef, record: LedgerRecord | None, now: datetime
    ) -> Outcome | None:
        """The trigger of another run that died holding today's claim (expired, still in progress),
        when the service shows it: a running ad hoc backup started after that claim.

        The claim is completed with its job and the decision is stated under the dead run's id (the
        record that run would have written); otherwise None, and the claim is taken over as usual.
        """
        if (
            record is None
            or record.status is not LedgerStatus.IN_PROGRESS
            or record.run_id == self.run_id
            or record.expires > now
        ):
            return None
        running = self._recovery.running_backup_job(vault, candidate.container_name)
        if running is None or running.user_triggered is False:
            return None
        if running.started is not None and running.started < record.updated - CLOCK_SKEW:
            return None  # running since before that claim: not its trigger
        self._ledger.complete(record.as_claim(), running.job_id, triggered_by="Sweep")
        logger.warning(
            "completed the claim of a run that died after its trigger",
            extra={"vm_id": candidate.vm_id, "dead_run_id": record.run_id, "run_id": self.run_id},
        )
        reason = (
            f"this run triggered it and died before recording it (found by run {self.run_id}); "
            f"backup job {running.job_id}"
        )
        return action_outcome(
            record.run_id,
            candidate.vm_id,
            candidate.vault_id,
            ACTION,
            Result.TRIGGERED,
            reason,
            job_id=running.job_id,
        )

    def _first_seen(self, candidate: Candidate, item: ItemState) -> datetime | None:
        """When the grace period starts for an item whose configuration time discovery does not know
        (the ledger records the first sighting, so this is not for a dry run)."""
        if candidate.configured_at is not None or item.protection_state != "IRPending":
            return None
        return self._ledger.note_first_seen(candidate.vm_id)

    def _outcome(
        self,
        candidate: Candidate,
        result: Result,
        reason: str,
        *,
        error: AzureCallError | None = None,
        job_id: str | None = None,
    ) -> Outcome:
        vm_id, vault_id = candidate.vm_id, candidate.vault_id
        return action_outcome(
            self.run_id, vm_id, vault_id, ACTION, result, reason, error=error, job_id=job_id
        )


def _item_state(raw: dict[str, Any], tags: dict[str, str]) -> ItemState:
    properties = raw.get("properties") or {}
    return ItemState(
        protection_state=str(properties.get("protectionState", "")),
        last_backup_status=str(properties.get("lastBackupStatus", "")),
        has_recovery_point=bool(properties.get("lastRecoveryPoint")),
        vm_tags=tags,
    )
