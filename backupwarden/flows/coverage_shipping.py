"""Coverage in Log Analytics: each run's figures into the outbox, and the trend read back.

`CoverageRecorder` writes a scan's BackupCoverage_CL rows (domain/coverage_records.py) to the outbox;
the outcomes run ships them with the other tables, so nothing is lost while Log Analytics is down.
`coverage_trend` reads the total of every run in a window back from the workspace
(kql/coverage_trend.kql), the points of the coverage-over-time chart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.domain.coverage import CoveragePoint
from backupwarden.domain.coverage_records import coverage_rows
from backupwarden.domain.kql import load_kql
from backupwarden.domain.log_schema import COVERAGE
from backupwarden.flows.coverage import CoverageScan
from backupwarden.flows.outcomes.report import QueryRows

logger = logging.getLogger(__name__)


class CoverageRecorder:
    def __init__(self, outbox: Outbox, *, target: float) -> None:
        self._outbox = outbox
        self._target = target  # BACKUPWARDEN_COVERAGE_TARGET, written into every row

    def record(
        self,
        scan: CoverageScan,
        *,
        run_id: str,
        dry_run: bool,
        vault_ids: Mapping[str, str] | None = None,
    ) -> int:
        """The scan's rows into the outbox; how many were added.

        A scan that could not read part of the scope writes nothing: its figures would count the
        VMs it did read only, a dip or a rise nobody caused (the run's own record says what failed).
        """
        if not scan.complete:
            logger.warning(
                "coverage not recorded: part of the scope was not read",
                extra={"run_id": run_id, "failures": len(scan.failures)},
            )
            return 0
        rows = coverage_rows(
            scan.report,
            scan.classifications,
            run_id=run_id,
            at=scan.at,
            target=self._target,
            dry_run=dry_run,
            vault_ids=vault_ids,
        )
        return self._outbox.add(COVERAGE.stream, rows)


def coverage_trend(logs: QueryRows, window: timedelta) -> list[CoveragePoint]:
    """The total coverage of every run in the last `window`, oldest first."""
    rows = logs.rows(load_kql("coverage_trend"), window, "coverage: trend")
    return [
        CoveragePoint(at=row["TimeGenerated"], in_scope=row["InScope"], covered=row["Covered"])
        for row in rows
    ]
