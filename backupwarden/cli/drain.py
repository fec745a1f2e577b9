"""Drain the sweep queue in this process with N threads: what the CLI does after planning.

It behaves as the Functions host does with the queue trigger: a received message is invisible for
`visibility_timeout_s`; when its work succeeds it is deleted; when some of it raised it becomes
visible again after `retry_delay_s` (host.json `visibilityTimeout`), and after `max_deliveries`
deliveries it moves to `<queue>-poison` and its candidates become `failed` outcomes naming the
error. Unlike one function invocation per message, the candidates of every received message share
the N threads, so a work item of 20 candidates does not hold one thread for 20 round trips; a
candidate finished here is not handled again when its message comes back.

Messages of other runs (an earlier CLI run that was stopped, the timer's plan) are worked too,
and their outcomes returned apart from the run's own. Given a `RecordDecisions` sink, each decision
(of any run) goes to it as soon as the drain has it, so a drain stopped part-way keeps its records.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from backupwarden.adapters.storage.queues import ReceivedMessage, SweepQueue
from backupwarden.domain.records import Candidate, Outcome
from backupwarden.flows.sweep.candidates import RecordDecisions
from backupwarden.flows.sweep.fanout import (
    MAX_DELIVERIES,
    FanoutResult,
    SweepFanout,
    SweepWorker,
    given_up,
)
from backupwarden.flows.sweep.messages import DEFAULT_BATCH_SIZE, InvalidSweepWorkItem, SweepWorkItem

logger = logging.getLogger(__name__)

RECEIVE_MAX = 32  # Storage queues hand out at most 32 messages per request


@dataclass(frozen=True)
class DrainConfig:
    workers: int = 8
    visibility_timeout_s: int = 600  # longer than a candidate takes (operation poll timeout: 300 s)
    retry_delay_s: int = 60  # host.json visibilityTimeout
    max_deliveries: int = MAX_DELIVERIES
    idle_poll_s: float = 0.2
    timeout_s: float = 3600.0


@dataclass
class DrainResult:
    outcomes: list[Outcome] = field(default_factory=list, repr=False)  # the run's own
    other_runs: list[Outcome] = field(default_factory=list, repr=False)
    settled: int = 0  # the run's work items deleted or poisoned
    poisoned: int = 0
    redelivered: int = 0
    timed_out: bool = False


@dataclass
class _InFlight:
    message: ReceivedMessage
    item: SweepWorkItem
    pending: int
    failures: list[tuple[Candidate, Exception]] = field(default_factory=list)


class LocalDrain:
    def __init__(
        self,
        sweep_queue: SweepQueue,
        worker: SweepWorker,
        config: DrainConfig,
        record: RecordDecisions | None = None,
    ) -> None:
        self._queue = sweep_queue
        self._worker = worker
        self._config = config
        self._record = record
        self._done: queue.Queue[tuple[_InFlight, Candidate, Outcome | Exception]] = queue.Queue()
        self._finished: set[tuple[str, str]] = set()  # (run, VM) handled to an outcome in this drain
        self._running = 0
        # a guess until items arrive: receiving more than the threads can start keeps them from other drainers
        self._candidates_per_item = float(DEFAULT_BATCH_SIZE)

    def drain(self, run_id: str, work_items: int) -> DrainResult:
        """Work the queue until the run's `work_items` are settled here, or the queue holds no message
        at all (other drainers or queue-triggered workers took the rest), or the timeout passes."""
        result = DrainResult()
        deadline = time.monotonic() + self._config.timeout_s
        with ThreadPoolExecutor(max_workers=max(1, self._config.workers)) as pool:
            while result.settled < work_items:
                if time.monotonic() > deadline:
                    result.timed_out = True
                    logger.warning(
                        "sweep drain timed out", extra={"run_id": run_id, "settled": result.settled}
                    )
                    break
                received = self._receive_more(pool, run_id, result)
                if not received and not self._running and self._queue.approximate_count() == 0:
                    break  # the count includes messages in flight elsewhere: 0 means every one was deleted
                self._collect(run_id, result, wait_s=0.0 if received else self._config.idle_poll_s)
            pool.shutdown(wait=True, cancel_futures=True)
        return result

    # --- receiving -----------------------------------------------------------------------------
    def _receive_more(self, pool: ThreadPoolExecutor, run_id: str, result: DrainResult) -> int:
        room = 2 * self._config.workers - self._running
        if room < self._config.workers:
            return 0
        count = max(1, min(RECEIVE_MAX, math.ceil(room / self._candidates_per_item)))
        messages = self._queue.receive(count, self._config.visibility_timeout_s)
        for message in messages:
            self._start(pool, message, run_id, result)
        return len(messages)

    def _start(
        self, pool: ThreadPoolExecutor, message: ReceivedMessage, run_id: str, result: DrainResult
    ) -> None:
        try:
            item = SweepWorkItem.from_json(message.body)
        except InvalidSweepWorkItem as exc:
            logger.error(
                "dropped malformed sweep message", extra={"message_id": message.id, "reason": str(exc)}
            )
            self._queue.delete(message)
            return
        if message.dequeue_count > 1:
            result.redelivered += 1
        if message.dequeue_count > self._config.max_deliveries:  # a drainer died on its last delivery
            self._queue.move_to_poison(message)
            self._settle_poisoned(item, self._worker.poisoned(message.body), run_id, result)
            return
        pending = [c for c in item.candidates if (item.run_id, c.vm_id) not in self._finished]
        self._candidates_per_item = 0.8 * self._candidates_per_item + 0.2 * max(1, len(item.candidates))
        state = _InFlight(message, item, len(pending))
        if not pending:
            self._queue.delete(message)
            self._count_settled(item, run_id, result)
            return
        for candidate in pending:
            self._running += 1
            future = pool.submit(self._worker.handle_candidate, item, candidate, message.dequeue_count)
            future.add_done_callback(self._reporter(state, candidate))

    # --- completing ----------------------------------------------------------------------------
    def _reporter(self, state: _InFlight, candidate: Candidate) -> Callable[[Future[Outcome]], None]:
        """Hands a finished candidate to the draining thread, which alone touches the drain's state."""

        def report(done: Future[Outcome]) -> None:
            self._done.put((state, candidate, _result(done)))

        return report

    def _collect(self, run_id: str, result: DrainResult, wait_s: float) -> None:
        try:
            first = self._done.get(timeout=wait_s) if wait_s > 0 else self._done.get_nowait()
        except queue.Empty:
            return
        self._complete(*first, run_id=run_id, result=result)
        while True:
            try:
                self._complete(*self._done.get_nowait(), run_id=run_id, result=result)
            except queue.Empty:
                return

    def _complete(
        self,
        state: _InFlight,
        candidate: Candidate,
        done: Outcome | Exception,
        *,
        run_id: str,
        result: DrainResult,
    ) -> None:
        self._running -= 1
        state.pending -= 1
        if isinstance(done, Outcome):
            self._finished.add((state.item.run_id, candidate.vm_id))
            (result.outcomes if state.item.run_id == run_id else result.other_runs).append(done)
            self._recorded([done])
        else:
            state.failures.append((candidate, done))
        if state.pending == 0:
            self._settle(state, run_id, result)

    def _settle(self, state: _InFlight, run_id: str, result: DrainResult) -> None:
        message, item = state.message, state.item
        if not state.failures:
            self._queue.delete(message)
            self._count_settled(item, run_id, result)
            return
        if message.dequeue_count < self._config.max_deliveries:
            logger.warning(
                "sweep work item failed; it will be delivered again",
                extra={
                    "run_id": item.run_id,
                    "deliveries": message.dequeue_count,
                    "failed": len(state.failures),
                },
            )
            self._queue.retry_later(message, self._config.retry_delay_s)
            return
        self._queue.move_to_poison(message)
        outcomes = [given_up(item.run_id, c, message.dequeue_count, error) for c, error in state.failures]
        self._settle_poisoned(item, outcomes, run_id, result)

    def _settle_poisoned(
        self, item: SweepWorkItem, outcomes: list[Outcome], run_id: str, result: DrainResult
    ) -> None:
        fresh = [o for o in outcomes if (item.run_id, o.vm_id) not in self._finished]
        self._finished.update((item.run_id, o.vm_id) for o in fresh)
        (result.outcomes if item.run_id == run_id else result.other_runs).extend(fresh)
        self._recorded(fresh)
        if item.run_id == run_id:
            result.poisoned += 1
        self._count_settled(item, run_id, result)

    def _recorded(self, outcomes: list[Outcome]) -> None:
        if self._record is not None and outcomes:
            self._record(outcomes)

    @staticmethod
    def _count_settled(item: SweepWorkItem, run_id: str, result: DrainResult) -> None:
        if item.run_id == run_id:
            result.settled += 1


def _result(done: Future[Outcome]) -> Outcome | Exception:
    error = done.exception()
    if error is None:
        return done.result()
    return error if isinstance(error, Exception) else RuntimeError(f"worker stopped: {error!r}")


def sweep_and_drain(
    fanout: SweepFanout,
    worker: SweepWorker,
    config: DrainConfig,
    run_id: str | None = None,
    record: RecordDecisions | None = None,
) -> tuple[FanoutResult, DrainResult]:
    """Plan; a fanned-out plan is then drained here. The report holds every outcome of the run;
    `record` gets each decision as it is made (the caller records the run record last)."""
    planned = fanout.run(run_id, record)
    drained = DrainResult()
    if planned.inline or fanout.queue is None:
        return planned, drained
    drain = LocalDrain(fanout.queue, worker, config, record)
    drained = drain.drain(planned.report.run_id, planned.work_items)
    planned.report.outcomes.extend(drained.outcomes)
    planned.report.finished = fanout.sweep.now()
    return planned, drained
