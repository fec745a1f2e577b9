"""Queue worker: remediate what an alert reported (the webhook only validates and enqueues)."""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.adapters.azure.clients import shared_clients
from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.app import build_remediation, record_actions
from backupwarden.flows.remediation.messages import InvalidWorkItem, RemediationWorkItem
from backupwarden.settings import Settings

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_REMEDIATION_QUEUE%", connection="AzureWebJobsStorage"
)
def remediate(message: func.QueueMessage) -> None:
    try:
        item = RemediationWorkItem.from_json(message.get_body().decode("utf-8", errors="replace"))
    except InvalidWorkItem as exc:
        logger.error(
            "dropped malformed remediation item", extra={"message_id": message.id, "reason": str(exc)}
        )
        return
    settings = Settings.from_env()
    clients = shared_clients(settings)
    try:
        outcomes = build_remediation(settings, clients).handle_item(item)
    except AzureCallError as exc:
        # the alert's rows could not be read: let the queue redeliver (poison after maxDequeueCount)
        logger.warning(
            "remediation could not read its alert's rows",
            extra={"alert_id": item.alert_id, "error": str(exc)},
        )
        raise
    record_actions(settings, clients, outcomes, source="Alert", dry_run=settings.dry_run)
    for outcome in outcomes:
        logger.info("remediation outcome", extra={**outcome.to_dict(), "alert_id": item.alert_id})


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_REMEDIATION_QUEUE%-poison", connection="AzureWebJobsStorage"
)
def remediate_poison(message: func.QueueMessage) -> None:
    """The queue gave up on an alert: an escalation a person must see."""
    logger.error(
        "remediation outcome",
        extra={
            "action": "remediate",
            "result": "escalated",
            "message_id": message.id,
            "reason": "gave up after the queue's retries (poison queue)",
        },
    )
