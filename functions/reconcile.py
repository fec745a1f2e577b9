"""Timer trigger: the reconciler, every %RECONCILE_SCHEDULE% (default hourly at minute 15).

One run reads the whole scope in bulk, puts every VM in one protection state and takes each state's
action through the ledger (Backup now, enrol per BACKUPWARDEN_ENROLL_EXISTING, escalate), recording
every decision as it is made (docs/coverage.md). Then the run's coverage figures go to the outbox,
for Log Analytics. Near the run's time budget no VM is started: the next run reads afresh and takes
them, so nothing is handed on.
"""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.app import build_coverage_recorder, build_reconciler, run_deadline
from backupwarden.domain.records import Outcome
from functions.context import context, retried_if_storage_is_down

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(schedule="%RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
@retried_if_storage_is_down("reconcile run")
def reconcile(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("reconcile timer is past due; running now")
    ctx = context()
    deadline = run_deadline(ctx.settings)
    reconciler = build_reconciler(ctx.settings, ctx.clients)

    def record(outcomes: list[Outcome]) -> None:
        ctx.record(outcomes, source="Timer", dry_run=ctx.settings.dry_run)

    result = reconciler.run(record, deadline=deadline)
    if result.scan is not None:
        build_coverage_recorder(ctx.settings, ctx.clients).record(
            result.scan,
            run_id=result.report.run_id,
            dry_run=ctx.settings.dry_run,
            vault_ids=result.vaults_acted_in(),
        )
    coverage = result.scan.report.total if result.scan else None
    logger.info(
        "reconcile run summary",
        extra={
            "run_id": result.report.run_id,
            "past_due": timer.past_due,
            "vms": len(result.scan.classifications) if result.scan else 0,
            "coverage_percent": coverage.percent if coverage else None,
            **result.report.summary(),
        },
    )
