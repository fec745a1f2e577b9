"""One outcomes run: collect finished jobs, ship the three tables, then move the watermark."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, COVERAGE, JOB_OUTCOMES
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import Deadline
from backupwarden.flows.outcomes.collector import WATERMARK, Collected, JobOutcomeCollector
from backupwarden.flows.outcomes.shipper import Shipper, ShipResult
from backupwarden.flows.run_report import action_outcome, run_outcome

logger = logging.getLogger(__name__)

# Shipped-job markers only need to outlive every re-read of the overlap; a week is ample.
MARKER_RETENTION = timedelta(days=7)
RUN_ACTION = "ship_outcomes_run"  # one record per run: its health (completed, partial, failed)
# Shipped in this order; a stream is tried only once those before it shipped completely.
STREAMS = (JOB_OUTCOMES.stream, AUTOMATION_ACTIONS.stream, COVERAGE.stream)


@dataclass(frozen=True)
class ShippingReport:
    jobs_found: int
    jobs_added: int
    results: tuple[ShipResult, ...]
    watermark: datetime | None
    run_id: str = ""
    collect_failed: str | None = None  # why no finished job was collected (the outbox shipped anyway)

    def run_record(self) -> Outcome:
        """The run's health record: `failed` when an upload stopped (Log Analytics throttling or down;
        the records wait in the outbox, and this one with them), `partial` when records were refused
        and parked, else `completed`. The trigger records it; the next run ships it."""
        shipped = ", ".join(f"{r.shipped} shipped to {r.stream}" for r in self.results)
        summary = f"{self.jobs_found} finished jobs found, {self.jobs_added} new; {shipped}"
        stopped = next((r for r in self.results if r.stopped), None)
        parked = sum(len(r.parked) for r in self.results)
        if self.collect_failed is not None:
            failure = action_outcome(self.run_id, "", "", RUN_ACTION, Result.FAILED, self.collect_failed)
            return run_outcome(self.run_id, RUN_ACTION, [], summary, failure)
        if stopped is not None:
            reason = f"upload to {stopped.stream} stopped: {stopped.stopped}"
            failure = action_outcome(self.run_id, "", "", RUN_ACTION, Result.FAILED, reason)
            return run_outcome(self.run_id, RUN_ACTION, [], summary, failure)
        if parked:
            reason = f"{parked} records refused and parked; {summary}"
            return action_outcome(self.run_id, "", "", RUN_ACTION, Result.PARTIAL, reason)
        if any(r.out_of_time for r in self.results):
            summary += "; the rest waits for the next run (BACKUPWARDEN_TIME_BUDGET nearly spent)"
        return run_outcome(self.run_id, RUN_ACTION, [], summary)

    def to_json(self) -> dict[str, object]:
        return {
            "jobs_found": self.jobs_found,
            "jobs_added": self.jobs_added,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "streams": [
                {
                    "stream": r.stream,
                    "shipped": r.shipped,
                    "upload_calls": r.upload_calls,
                    "parked": r.parked,
                    "stopped": r.stopped,
                    "out_of_time": r.out_of_time,
                }
                for r in self.results
            ],
        }


class OutcomeShipping:
    def __init__(
        self,
        collector: JobOutcomeCollector,
        shipper: Shipper,
        outbox: Outbox,
        *,
        call_timeout: timedelta = timedelta(0),
    ) -> None:
        self._collector = collector
        self._shipper = shipper
        self._outbox = outbox
        self._call_timeout = call_timeout  # no upload starts with less than this left of a run's budget

    def run(self, deadline: Deadline | None = None) -> ShippingReport:
        watermark, etag = self._outbox.watermark(WATERMARK)
        collect_failed = None
        try:
            collected = self._collector.collect(watermark)
        except AzureCallError as exc:  # what waits in the outbox still ships; the watermark stays
            collect_failed = f"collecting finished jobs failed at {exc.step}"
            collected = Collected(0, 0, None)
            logger.warning("finished jobs not collected", extra={"error": str(exc)})
        results = self._ship(deadline)
        self._outbox.prune_markers(JOB_OUTCOMES.stream, older_than=MARKER_RETENTION)
        moved = watermark
        if (
            results[0].complete
            and collected.newest_end is not None
            and (watermark is None or collected.newest_end > watermark)
        ):
            # only now are the collected jobs either in Log Analytics or parked with their error
            self._outbox.move_watermark(WATERMARK, collected.newest_end, etag)
            moved = collected.newest_end
        report = ShippingReport(
            collected.found, collected.added, results, moved, str(uuid.uuid4()), collect_failed
        )
        logger.info("outcomes shipped", extra=report.to_json())
        return report

    def _ship(self, deadline: Deadline | None) -> tuple[ShipResult, ...]:
        results: list[ShipResult] = []
        for stream in STREAMS:
            blocked = next((r for r in results if not r.complete), None)
            if blocked is None:
                results.append(self._shipper.ship(stream, deadline, self._call_timeout))
            elif blocked.out_of_time:
                results.append(ShipResult(stream, out_of_time=True))
            else:  # the service is throttling or down: another stream's call is bound to fail too
                results.append(ShipResult(stream, stopped=f"not tried: {blocked.stopped}"))
        return tuple(results)
