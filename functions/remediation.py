"""Queue worker: remediate what an alert reported (the webhook only validates and enqueues)."""

from __future__ import annotations

import logging
import uuid

import azure.functions as func

from backupwarden.adapters.azure.errors import AzureCallError
from backupwarden.app import build_remediation
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.records import Outcome
from backupwarden.flows.recorder import unhandled_message
from backupwarden.flows.remediation.messages import InvalidRemediationWorkItem, RemediationWorkItem
from backupwarden.flows.remediation.worker import ACTION, remediation_run_record
from functions.context import context, given_up_item, retried_if_storage_is_down, work_item

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_REMEDIATION_QUEUE%", connection="AzureWebJobsStorage"
)
@retried_if_storage_is_down("queue delivery")
def remediate(message: func.QueueMessage) -> None:
    item = work_item(
        message,
        RemediationWorkItem.from_json,
        InvalidRemediationWorkItem,
        what="remediation item",
        action=ACTION,
        source="Alert",
    )
    if item is None:
        return
    ctx = context()
    # every delivery of one message is one run: a redelivery states again what a killed one did
    run_id = message.id or str(uuid.uuid4())
    redelivered = (message.dequeue_count or 1) > 1

    def record(decisions: list[Outcome]) -> None:
        ctx.record(decisions, source="Alert")

    try:
        outcomes = build_remediation(ctx.settings, ctx.clients).handle_item(
            item, run_id, record, redelivered=redelivered
        )
    except AzureCallError as exc:
        # the alert's rows could not be read: let the queue redeliver (poison after maxDequeueCount)
        logger.warning(
            "remediation could not read its alert's rows",
            extra={"alert_id": item.alert_id, "error": str(exc)},
        )
        ctx.record([remediation_run_record(run_id, item.alert_id, [], exc)], source="Alert")
        raise
    ctx.record([remediation_run_record(run_id, item.alert_id, outcomes)], source="Alert")
    for outcome in outcomes:
        logger.info("remediation outcome", extra={**outcome.to_dict(), "alert_id": item.alert_id})


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_REMEDIATION_QUEUE%-poison", connection="AzureWebJobsStorage"
)
@retried_if_storage_is_down("poison queue delivery")
def remediate_poison(message: func.QueueMessage) -> None:
    """The queue gave up on an alert: a `failed` outcome (for the alert's VM, when it names one) that a
    person must see."""
    item, reason = given_up_item(message, RemediationWorkItem.from_json, InvalidRemediationWorkItem)
    vm_id = arm_key(item.dimension("VmId") or "") if item else ""
    outcome = unhandled_message(ACTION, reason, vm_id=vm_id)
    alert_id = item.alert_id if item else ""
    context().record_unhandled(
        message, [outcome], source="Alert", log_message="remediation outcome", alert_id=alert_id
    )
