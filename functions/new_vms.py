"""New VMs: the Event Grid trigger validates and enqueues; the queue worker protects and backs up.

Event Grid allows 30 s per delivery and enabling protection takes longer, so the trigger only
validates and enqueues. The worker raises on transient failures so the queue redelivers; after
the host's maxDequeueCount the message lands in the poison queue, whose handler records it.
"""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.app import build_protect_vm, enqueue_work_item, requeue_work_item
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.vm_events import Ignored, InvalidEvent, parse_vm_id, read_vm_write
from backupwarden.flows.new_vm.messages import InvalidNewVmWorkItem, NewVmWorkItem
from backupwarden.flows.new_vm.worker import ACTION, TransientFailure, enqueued_record
from backupwarden.flows.recorder import unhandled_message
from functions.context import context, given_up_item, retried_if_storage_is_down, work_item

logger = logging.getLogger(__name__)

bp = func.Blueprint()

MAX_REASON_LENGTH = 500  # the parser quotes at most a little of the event; this bounds the rest


def event_payload(event: func.EventGridEvent) -> dict[str, object]:
    """The Event Grid schema of the event the host handed over (CloudEvents arrive mapped the same way)."""
    try:
        data = event.get_json()
    except ValueError:
        data = None
    return {
        "id": event.id,
        "eventType": event.event_type,
        "subject": event.subject,
        "topic": event.topic,
        "data": data,
        "dataVersion": event.data_version,
    }


@bp.event_grid_trigger(arg_name="event")
@retried_if_storage_is_down("event delivery")
def vm_written(event: func.EventGridEvent) -> None:
    try:
        parsed = read_vm_write(event_payload(event))
    except InvalidEvent as exc:
        # acknowledged, not retried: a malformed event will not become well-formed on redelivery
        logger.error("rejected event", extra={"event_id": event.id, "reason": str(exc)})
        context().record([rejected_event_record(event, exc)], source="EventGrid")
        return
    if isinstance(parsed, Ignored):
        logger.info("ignored event", extra={"event_id": parsed.event_id, "reason": parsed.reason})
        return
    ctx = context()
    item = NewVmWorkItem.from_event(parsed)
    enqueue_work_item(ctx.settings, ctx.clients, item)
    ctx.record([enqueued_record(item)], source="EventGrid")
    logger.info("enqueued new VM", extra={"vm_id": parsed.vm_id, "event_id": parsed.event_id})


def rejected_event_record(event: func.EventGridEvent, error: InvalidEvent) -> Outcome:
    """The `failed` record of an event that is not a VM write this app can read, naming the VM when
    the event's subject is a VM id (Event Grid sets it to the resource written)."""
    subject = event.subject if isinstance(event.subject, str) else ""
    vm_id = arm_key(subject) if parse_vm_id(subject) is not None else ""
    reason = f"rejected event: {str(error)[:MAX_REASON_LENGTH]}"
    return unhandled_message(ACTION, reason, vm_id=vm_id, malformed=True)


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_PROTECT_QUEUE%", connection="AzureWebJobsStorage"
)
@retried_if_storage_is_down("queue delivery")
def protect_vm(message: func.QueueMessage) -> None:
    item = work_item(
        message,
        NewVmWorkItem.from_json,
        InvalidNewVmWorkItem,
        what="work item",
        action=ACTION,
        source="Queue",
    )
    if item is None:
        return
    ctx = context()
    # every delivery of one message is one run: a redelivery states again what a killed one did
    redelivered = (message.dequeue_count or 1) > 1
    try:
        outcome = build_protect_vm(ctx.settings, ctx.clients).handle(
            item, message.id or None, redelivered=redelivered
        )
    except TransientFailure as exc:
        logger.warning("transient failure; the queue will redeliver", extra=exc.outcome.to_dict())
        raise
    if outcome.result is Result.REQUEUED:
        requeue_work_item(ctx.settings, ctx.clients, item.waited_once_more())
    ctx.record([outcome], source="Queue")
    logger.info("protect_vm outcome", extra=outcome.to_dict())


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_PROTECT_QUEUE%-poison", connection="AzureWebJobsStorage"
)
@retried_if_storage_is_down("poison queue delivery")
def protect_vm_poison(message: func.QueueMessage) -> None:
    """The queue gave up on a work item: a `failed` outcome for its VM (an escalation)."""
    item, reason = given_up_item(message, NewVmWorkItem.from_json, InvalidNewVmWorkItem)
    outcome = unhandled_message(ACTION, reason, vm_id=item.vm_id if item else "")
    context().record_unhandled(message, [outcome], source="Queue", log_message="protect_vm outcome")
