"""The sweep at scale: plan in the timer, fan the candidates out through the sweep queue, work them anywhere.

- `SweepPlanner`: discovery (Resource Graph pages) and the refusals discovery already proves
  (`skip_before_verifying`); what is left is the plan.
- `SweepFanout.run`: a plan of at most BACKUPWARDEN_SWEEP_INLINE_MAX candidates is handled right
  here, as `Sweep.run` does; a larger one is cut into work items (`flows/sweep/messages.py`) and enqueued
  on BACKUPWARDEN_SWEEP_QUEUE, then drained by the queue-triggered `sweep_worker` functions, or
  locally with N threads (`cli/drain.py`'s `LocalDrain`, the CLI).
- `SweepWorker`: one work item through the same per-VM path as the in-process run
  (`CandidateHandler`), with the per-run cap counted across workers (`adapters/storage/run_slots.py`)
  when the plan could reach it.

Given a `RecordDecisions` sink, every decision is recorded as it is made: the planner's own before
any candidate is handled or enqueued, each VM's right after its per-VM path decided it, so a run or
worker killed part-way loses none of what it did.

A worker that dies mid-item leaves the message to come back (the queue's visibility timeout);
the redelivery sees its own run's claim in the ledger and `CandidateHandler` resolves it from the
service's state, so the VM is neither lost nor triggered twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.storage.queues import SweepQueue
from backupwarden.domain.records import Candidate, Outcome, Result
from backupwarden.domain.sweep_rules import skip_before_verifying
from backupwarden.flows.run_report import RunReport, action_outcome
from backupwarden.flows.sweep.candidates import (
    ACTION,
    SWEEP_RUN_ACTION,
    RecordDecisions,
    Sweep,
    TriggerSlots,
)
from backupwarden.flows.sweep.messages import (
    DEFAULT_BATCH_SIZE,
    InvalidSweepWorkItem,
    SweepWorkItem,
    work_items,
)

logger = logging.getLogger(__name__)

MAX_DELIVERIES = 5  # host.json extensions.queues.maxDequeueCount (a test holds them equal)


@dataclass
class SweepPlan:
    report: RunReport  # the planner's own outcomes: discovery failures, refusals proven before verifying
    max_triggers: int  # the per-run cap
    to_handle: list[Candidate] = field(default_factory=list)

    @property
    def cap(self) -> int | None:
        """The cap the workers must count, or None when the plan cannot reach it."""
        return self.max_triggers if len(self.to_handle) > self.max_triggers else None


@dataclass
class FanoutResult:
    report: RunReport
    inline: bool  # handled in this process (a small plan, or no queue)
    work_items: int = 0  # enqueued
    enqueued: int = 0  # candidates in them
    cap: int | None = None

    def run_record(self) -> Outcome:
        """The run's health record (completed, partial or failed); a fanned-out run says what it enqueued."""
        if self.inline:
            return self.report.run_record(SWEEP_RUN_ACTION)
        capped = f", cap {self.cap} counted across workers" if self.cap is not None else ""
        summary = (
            f"{self.report.candidates} candidates: {self.enqueued} enqueued in {self.work_items} work items"
            f"{capped}; {self.report.counts()} decided while planning"
        )
        return self.report.run_record(SWEEP_RUN_ACTION, summary)


class SweepPlanner:
    def __init__(self, sweep: Sweep) -> None:
        self._sweep = sweep

    def plan(self, run_id: str | None = None) -> SweepPlan:
        sweep = self._sweep
        report = RunReport(run_id or str(uuid.uuid4()), sweep.config.dry_run, sweep.now())
        plan = SweepPlan(report, sweep.config.policy.max_triggers_per_run)
        found = sweep.discover(report)
        if found is None:
            return plan
        for candidate in found.candidates:
            early = skip_before_verifying(candidate)
            if early is None:
                plan.to_handle.append(candidate)
                continue
            vm_id, vault_id = candidate.vm_id, candidate.vault_id
            report.outcomes.append(
                action_outcome(report.run_id, vm_id, vault_id, ACTION, Result.SKIPPED, early.reason)
            )
        return plan


class SweepFanout:
    def __init__(
        self,
        sweep: Sweep,
        queue: SweepQueue | None,
        *,
        inline_max: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.sweep = sweep
        self.queue = queue
        self._planner = SweepPlanner(sweep)
        self._inline_max = inline_max
        self._batch_size = batch_size

    def run(self, run_id: str | None = None, record: RecordDecisions | None = None) -> FanoutResult:
        """Plan; handle a small plan here, enqueue a large one (the caller may then drain it).

        `record`: where each decision goes as it is made; the report still holds them all, and the
        caller records only the run record (`FanoutResult.run_record`) at the end."""
        plan = self._planner.plan(run_id)
        report = plan.report
        _record(record, report.outcomes)
        if self.queue is None or len(plan.to_handle) <= self._inline_max:
            self.sweep.handle_all(report, plan.to_handle, record)
            return FanoutResult(self.sweep.finish(report), inline=True)
        items = list(
            work_items(
                plan.to_handle,
                report.run_id,
                dry_run=self.sweep.config.dry_run,
                cap=plan.cap,
                batch_size=self._batch_size,
            )
        )
        planned = len(report.outcomes)
        sent = self._enqueue(items, report)
        _record(record, report.outcomes[planned:])
        enqueued = sum(len(item.candidates) for item in sent)
        logger.info(
            "sweep planned",
            extra={
                "run_id": report.run_id,
                "candidates": report.candidates,
                "enqueued": enqueued,
                "work_items": len(sent),
                "cap": plan.cap,
                "queue": self.queue.name,
            },
        )
        finished = self.sweep.finish(report)
        return FanoutResult(finished, False, work_items=len(sent), enqueued=enqueued, cap=plan.cap)

    def _enqueue(self, items: list[SweepWorkItem], report: RunReport) -> list[SweepWorkItem]:
        """The items sent; the candidates of the others become `failed` outcomes naming the error."""
        assert self.queue is not None
        try:
            self.queue.ensure()
            errors = self.queue.send_each(item.to_json() for item in items)
        except AzureCallError as exc:
            errors = [exc] * len(items)
        for item, error in zip(items, errors, strict=True):
            if error is not None:
                reason = f"{error.step} failed"
                report.outcomes.extend(
                    action_outcome(
                        report.run_id, c.vm_id, c.vault_id, ACTION, Result.FAILED, reason, error=error
                    )
                    for c in item.candidates
                )
        return [item for item, error in zip(items, errors, strict=True) if error is None]


class SweepItemFailed(Exception):
    """Some candidates of a work item raised: the queue redelivers it. `outcomes`: the ones that finished."""

    def __init__(self, outcomes: list[Outcome], failures: list[tuple[Candidate, Exception]]) -> None:
        first = failures[0][1]
        super().__init__(f"{len(failures)} candidate(s) failed; first: {type(first).__name__}: {first}")
        self.outcomes = outcomes
        self.failures = failures


class SweepWorker:
    """One work item through `CandidateHandler`, as the queue trigger and the local drain run it."""

    def __init__(
        self,
        sweep_for: Callable[[bool], Sweep],
        slots_for: Callable[[SweepWorkItem], TriggerSlots],
        *,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self._sweep_for = sweep_for
        self._slots_for = slots_for
        self.max_deliveries = max_deliveries

    def handle_candidate(self, item: SweepWorkItem, candidate: Candidate, deliveries: int) -> Outcome:
        """Raises only what the per-VM path does not turn into an outcome (a bug, a dying worker)."""
        sweep = self._sweep_for(item.dry_run)
        policy = sweep.config.policy
        if item.cap is not None:
            policy = replace(policy, max_triggers_per_run=item.cap)
        handler = sweep.handler(item.run_id, self._slots_for(item), policy=policy)
        return handler.handle(candidate, redelivered=deliveries > 1)

    def handle(
        self, item: SweepWorkItem, deliveries: int, record: RecordDecisions | None = None
    ) -> list[Outcome]:
        """Every candidate of the item, `config.workers` at a time (the queue trigger's path); each
        decision goes to `record` as soon as it is made.

        Raises SweepItemFailed for a redelivery while deliveries remain (what finished is recorded
        already); on the last delivery the candidates that still raise become `failed` outcomes
        naming the error.
        """
        workers = max(1, self._sweep_for(item.dry_run).config.workers)
        with ThreadPoolExecutor(max_workers=min(workers, len(item.candidates) or 1)) as pool:
            attempts = list(pool.map(lambda c: self._attempt(item, c, deliveries, record), item.candidates))
        outcomes = [result for _, result in attempts if isinstance(result, Outcome)]
        failures = [(c, result) for c, result in attempts if not isinstance(result, Outcome)]
        if not failures:
            return outcomes
        if deliveries < self.max_deliveries:
            raise SweepItemFailed(outcomes, failures)
        given = [given_up(item.run_id, c, deliveries, error) for c, error in failures]
        _record(record, given)
        return outcomes + given

    def poisoned(self, body: str) -> list[Outcome]:
        """A work item the queue gave up on (the poison queue): a `failed` outcome for each candidate
        its run did not trigger (the ledger says which ones an earlier delivery finished)."""
        try:
            item = SweepWorkItem.from_json(body)
        except InvalidSweepWorkItem as exc:
            logger.error("poison sweep message is not a work item", extra={"reason": str(exc)})
            return []
        sweep = self._sweep_for(item.dry_run)
        reason = (
            f"the queue gave up after {self.max_deliveries} deliveries (poison queue): "
            "no delivery finished it (a worker crash or timeout)"
        )
        return [
            action_outcome(item.run_id, c.vm_id, c.vault_id, ACTION, Result.FAILED, reason)
            for c in item.candidates
            if not sweep.triggered_by(item.run_id, c.vm_id)
        ]

    def _attempt(
        self, item: SweepWorkItem, candidate: Candidate, deliveries: int, record: RecordDecisions | None
    ) -> tuple[Candidate, Outcome | Exception]:
        try:
            outcome = self.handle_candidate(item, candidate, deliveries)
        except Exception as exc:  # this candidate's failure; the others of the item go on
            logger.exception("sweep work item candidate failed", extra={"vm_id": candidate.vm_id})
            return candidate, exc
        _record(record, [outcome])
        return candidate, outcome


def _record(record: RecordDecisions | None, outcomes: list[Outcome]) -> None:
    if record is not None and outcomes:
        record(list(outcomes))


def given_up(run_id: str, candidate: Candidate, deliveries: int, error: BaseException) -> Outcome:
    """A candidate that still raised on the last delivery of its work item."""
    reason = f"gave up after {deliveries} deliveries: {type(error).__name__}: {error}"
    return action_outcome(run_id, candidate.vm_id, candidate.vault_id, ACTION, Result.FAILED, reason)
