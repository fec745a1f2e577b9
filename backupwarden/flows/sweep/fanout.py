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

Given a run's `Deadline`, the inline run and the worker start no candidate once it is near its end
(less than a call's timeout left): the candidates not started are handed on, enqueued as work items
of the same run (`hand_on`), so the host never stops a run mid-candidate and nothing is dropped.

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
from backupwarden.domain.times import Deadline
from backupwarden.flows.run_report import RunReport, action_outcome
from backupwarden.flows.sweep.candidates import (
    ACTION,
    SWEEP_RUN_ACTION,
    RecordDecisions,
    RunSlots,
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
NOT_STARTED = "not started: the run's time budget (BACKUPWARDEN_TIME_BUDGET) was nearly spent"


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
    handed_on: int = 0  # candidates an inline run near its time budget enqueued instead of starting

    def run_record(self) -> Outcome:
        """The run's health record (completed, partial or failed); a fanned-out run says what it
        enqueued, an inline run what it handed on."""
        if self.inline:
            if not self.handed_on:
                return self.report.run_record(SWEEP_RUN_ACTION)
            summary = (
                f"{self.report.candidates} candidates: {self.report.counts()}; {self.handed_on} handed on "
                f"in {self.work_items} work items (time budget nearly spent)"
            )
            return self.report.run_record(SWEEP_RUN_ACTION, summary)
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

    def run(
        self,
        run_id: str | None = None,
        record: RecordDecisions | None = None,
        deadline: Deadline | None = None,
    ) -> FanoutResult:
        """Plan; handle a small plan here, enqueue a large one (the caller may then drain it).

        `record`: where each decision goes as it is made; the report still holds them all, and the
        caller records only the run record (`FanoutResult.run_record`) at the end. `deadline`: the
        run's time budget; the inline run hands on what it did not start when it nears its end."""
        plan = self._planner.plan(run_id)
        report = plan.report
        _record(record, report.outcomes)
        if self.queue is None or len(plan.to_handle) <= self._inline_max:
            return self._run_inline(plan, record, deadline)
        items = list(
            work_items(
                plan.to_handle,
                report.run_id,
                dry_run=self.sweep.config.dry_run,
                cap=plan.cap,
                batch_size=self._batch_size,
            )
        )
        sent, failed = enqueue(self.queue, items)
        report.outcomes.extend(failed)
        _record(record, failed)
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

    def _run_inline(
        self, plan: SweepPlan, record: RecordDecisions | None, deadline: Deadline | None
    ) -> FanoutResult:
        """The plan handled here; what the deadline left unstarted is handed on, under what is
        left of the cap: the handed-on items' workers share one counter starting at 0 (this
        process counted in memory), so together they may trigger the cap less what this run did."""
        report = plan.report
        slots = RunSlots()
        left = self.sweep.handle_all(report, plan.to_handle, record, deadline=deadline, slots=slots)
        if not left:
            return FanoutResult(self.sweep.finish(report), inline=True)
        left_of_cap = plan.max_triggers - slots.triggered
        items = list(
            work_items(
                left,
                report.run_id,
                dry_run=self.sweep.config.dry_run,
                cap=left_of_cap if len(left) > left_of_cap else None,
                batch_size=self._batch_size,
            )
        )
        sent, not_sent = hand_on(self.queue, items)
        report.outcomes.extend(not_sent)
        _record(record, not_sent)
        handed_on = sum(len(item.candidates) for item in sent)
        logger.warning(
            "sweep run near its time budget handed the rest on",
            extra={"run_id": report.run_id, "handed_on": handed_on, "not_handed_on": len(not_sent)},
        )
        finished = self.sweep.finish(report)
        return FanoutResult(finished, inline=True, work_items=len(sent), handed_on=handed_on)


class SweepItemFailed(Exception):
    """Some candidates of a work item raised: the queue redelivers it. `outcomes`: the ones that finished."""

    def __init__(self, outcomes: list[Outcome], failures: list[tuple[Candidate, Exception]]) -> None:
        first = failures[0][1]
        super().__init__(f"{len(failures)} candidate(s) failed; first: {type(first).__name__}: {first}")
        self.outcomes = outcomes
        self.failures = failures


class SweepWorker:
    """One work item through `CandidateHandler`, as the queue trigger and the local drain run it.

    `queue`: where a delivery near its time budget hands on the candidates it did not start."""

    def __init__(
        self,
        sweep_for: Callable[[bool], Sweep],
        slots_for: Callable[[SweepWorkItem], TriggerSlots],
        *,
        queue: SweepQueue | None = None,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        self._sweep_for = sweep_for
        self._slots_for = slots_for
        self._queue = queue
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
        self,
        item: SweepWorkItem,
        deliveries: int,
        record: RecordDecisions | None = None,
        deadline: Deadline | None = None,
    ) -> list[Outcome]:
        """Every candidate of the item, `config.workers` at a time (the queue trigger's path); each
        decision goes to `record` as soon as it is made.

        Raises SweepItemFailed for a redelivery while deliveries remain (what finished is recorded
        already; the redelivery holds the candidates not started too); on the last delivery the
        candidates that still raise become `failed` outcomes naming the error. Once `deadline` is
        near its end no candidate is started: those are handed on as a new work item of the run
        (same cap, counted by the same run counter).
        """
        config = self._sweep_for(item.dry_run).config
        workers = max(1, config.workers)

        def attempt(candidate: Candidate) -> tuple[Candidate, Outcome | Exception | None]:
            if config.out_of_time(deadline):
                return candidate, None
            return self._attempt(item, candidate, deliveries, record)

        with ThreadPoolExecutor(max_workers=min(workers, len(item.candidates) or 1)) as pool:
            attempts = list(pool.map(attempt, item.candidates))
        outcomes = [result for _, result in attempts if isinstance(result, Outcome)]
        failures = [(c, result) for c, result in attempts if isinstance(result, Exception)]
        if failures and deliveries < self.max_deliveries:
            raise SweepItemFailed(outcomes, failures)
        given = [given_up(item.run_id, c, deliveries, error) for c, error in failures]
        _record(record, given)
        not_started = [c for c, result in attempts if result is None]
        if not not_started:
            return outcomes + given
        _, not_sent = hand_on(self._queue, [replace(item, candidates=tuple(not_started))])
        _record(record, not_sent)
        logger.warning(
            "sweep work item near its time budget handed the rest on",
            extra={"run_id": item.run_id, "handed_on": len(not_started) - len(not_sent)},
        )
        return outcomes + given + not_sent

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


def enqueue(
    queue: SweepQueue, items: list[SweepWorkItem], reason: str = ""
) -> tuple[list[SweepWorkItem], list[Outcome]]:
    """The items sent, and a `failed` outcome for each candidate of the others naming the error
    (after `reason`, when given)."""
    try:
        queue.ensure()
        errors = queue.send_each(item.to_json() for item in items)
    except AzureCallError as exc:
        errors = [exc] * len(items)
    sent: list[SweepWorkItem] = []
    failed: list[Outcome] = []
    for item, error in zip(items, errors, strict=True):
        if error is None:
            sent.append(item)
            continue
        why = f"{reason}; {error.step} failed" if reason else f"{error.step} failed"
        failed.extend(
            action_outcome(item.run_id, c.vm_id, c.vault_id, ACTION, Result.FAILED, why, error=error)
            for c in item.candidates
        )
    return sent, failed


def hand_on(
    queue: SweepQueue | None, items: list[SweepWorkItem]
) -> tuple[list[SweepWorkItem], list[Outcome]]:
    """Work items of candidates a run near its time budget did not start, put on the sweep queue:
    the items sent, and an outcome naming the budget for each candidate that was not (no queue:
    `skipped`, the next run finds the VM still stuck; the enqueue failed: `failed`)."""
    if queue is None:
        reason = f"{NOT_STARTED}; no sweep queue to hand it on to: the next run handles it"
        return [], [
            action_outcome(item.run_id, c.vm_id, c.vault_id, ACTION, Result.SKIPPED, reason)
            for item in items
            for c in item.candidates
        ]
    return enqueue(queue, items, reason=f"{NOT_STARTED}; handing it on")


def _record(record: RecordDecisions | None, outcomes: list[Outcome]) -> None:
    if record is not None and outcomes:
        record(list(outcomes))


def given_up(run_id: str, candidate: Candidate, deliveries: int, error: BaseException) -> Outcome:
    """A candidate that still raised on the last delivery of its work item."""
    reason = f"gave up after {deliveries} deliveries: {type(error).__name__}: {error}"
    return action_outcome(run_id, candidate.vm_id, candidate.vault_id, ACTION, Result.FAILED, reason)
