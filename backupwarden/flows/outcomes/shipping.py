"""One outcomes run: collect finished jobs, ship both tables, then move the watermark."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS, JOB_OUTCOMES
from backupwarden.flows.outcomes.collector import WATERMARK, JobOutcomeCollector
from backupwarden.flows.outcomes.shipper import Shipper, ShipResult

logger = logging.getLogger(__name__)

# Shipped-job markers only need to outlive every re-read of the overlap; a week is ample.
MARKER_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class ShippingReport:
    jobs_found: int
    jobs_added: int
    results: tuple[ShipResult, ...]
    watermark: datetime | None

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
                }
                for r in self.results
            ],
        }


class OutcomeShipping:
    def __init__(self, collector: JobOutcomeCollector, shipper: Shipper, outbox: Outbox) -> None:
        self._collector = collector
        self._shipper = shipper
        self._outbox = outbox

    def run(self) -> ShippingReport:
        watermark, etag = self._outbox.watermark(WATERMARK)
        collected = self._collector.collect(watermark)
        jobs = self._shipper.ship(JOB_OUTCOMES.stream)
        if jobs.complete:
            actions = self._shipper.ship(AUTOMATION_ACTIONS.stream)
        else:  # the service is throttling or down: a second stream's call is bound to fail too
            actions = ShipResult(AUTOMATION_ACTIONS.stream, stopped=f"not tried: {jobs.stopped}")
        results = (jobs, actions)
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
        report = ShippingReport(collected.found, collected.added, results, moved)
        logger.info("outcomes shipped", extra=report.to_json())
        return report
