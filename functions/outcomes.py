"""Timer trigger: ship job outcomes and automation decisions to Log Analytics, every %OUTCOMES_SCHEDULE%."""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.adapters.azure.clients import shared_clients
from backupwarden.app import build_outcome_shipping
from backupwarden.settings import Settings

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(schedule="%OUTCOMES_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def ship_outcomes(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("ship_outcomes timer is past due; running now")
    settings = Settings.from_env()
    clients = shared_clients(settings)
    report = build_outcome_shipping(settings, clients).run()
    logger.info("ship_outcomes summary", extra={"past_due": timer.past_due, **report.to_json()})
