"""Timer trigger: ship job outcomes and automation decisions to Log Analytics, every %OUTCOMES_SCHEDULE%."""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.app import build_outcome_shipping, run_deadline
from functions.context import context, retried_if_storage_is_down

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(schedule="%OUTCOMES_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
@retried_if_storage_is_down("outcomes run")
def ship_outcomes(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("ship_outcomes timer is past due; running now")
    ctx = context()
    deadline = run_deadline(ctx.settings)
    report = build_outcome_shipping(ctx.settings, ctx.clients).run(deadline)
    # the run's health record waits in the outbox for the next run: an outage delays it, and the
    # "flow silent" alert covers the gap (docs/alerts.md)
    ctx.record([report.run_record()], source="Timer", dry_run=False)
    logger.info("ship_outcomes summary", extra={"past_due": timer.past_due, **report.to_json()})
