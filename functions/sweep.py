"""Timer trigger: the stuck-initial-backup sweep, every %SWEEP_SCHEDULE% (default every 30 minutes)."""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.clients import AzureClients
from backupwarden.settings import Settings
from backupwarden.sweep import SWEEP_RUN_ACTION
from backupwarden.wiring import build_sweep, record_actions

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(schedule="%SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def sweep(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("sweep timer is past due; running now")
    settings = Settings.from_env()
    with AzureClients(settings) as clients:
        report = build_sweep(settings, clients).run()
        outcomes = [*report.outcomes, report.run_record(SWEEP_RUN_ACTION)]
        record_actions(settings, clients, outcomes, source="Timer", dry_run=report.dry_run)
    logger.info(
        "sweep run summary", extra={"run_id": report.run_id, "past_due": timer.past_due, **report.summary()}
    )
