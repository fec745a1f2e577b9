"""New VMs: Event Grid queues each VM write; vm_event_queued validates and enqueues a work item; the
queue worker protects and backs up.

Event Grid delivers to a Storage queue (infra/subscription/events.bicep), which exists before the
code, so one provision wires it. vm_event_queued does what an Event Grid trigger would: validate
(read_vm_write) and hand a work item to protect_vm, whose ledger collapses duplicates. The worker
raises on transient failures so the queue redelivers; after the host's maxDequeueCount the message
lands in the poison queue, whose handler records it.
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from backupwarden.app import build_protect_vm, enqueue_work_item, requeue_work_item
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.vm_events import Ignored, InvalidEvent, VmWritten, parse_vm_id, read_vm_write
from backupwarden.flows.new_vm.messages import InvalidNewVmWorkItem, NewVmWorkItem
from backupwarden.flows.new_vm.worker import ACTION, TransientFailure, enqueued_record
from backupwarden.flows.recorder import unhandled_message
from functions.context import context, given_up_item, retried_if_storage_is_down, work_item

logger = logging.getLogger(__name__)

bp = func.Blueprint()

MAX_REASON_LENGTH = 500  # the parser quotes at most a little of the event; this bounds the rest
# The queue Event Grid delivers VM writes to; infra/main.bicep's vmEventQueueName names it too.
VM_EVENT_QUEUE = "backupwarden-vm-events"


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
    take_event(event_payload(event))


# Event Grid writes each event as one message, the Event Grid schema's JSON object, base64-encoded,
# which is how the queue trigger decodes every message here (host.json messageEncoding base64):
# https://learn.microsoft.com/azure/event-grid/handler-storage-queues,
# https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json
@bp.queue_trigger(arg_name="message", queue_name=VM_EVENT_QUEUE, connection="AzureWebJobsStorage")
@retried_if_storage_is_down("queue delivery")
def vm_event_queued(message: func.QueueMessage) -> None:
    try:
        payload = json.loads(message.get_body().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also bytes that are not UTF-8
        reject({}, InvalidEvent(f"not a JSON event: {str(exc)[:200]}"))
        return
    take_event(payload)


@bp.queue_trigger(arg_name="message", queue_name=f"{VM_EVENT_QUEUE}-poison", connection="AzureWebJobsStorage")
@retried_if_storage_is_down("poison queue delivery")
def vm_event_queued_poison(message: func.QueueMessage) -> None:
    """The queue gave up on a VM write event (storage stayed down): a `failed` outcome for its VM."""
    written, reason = given_up_item(message, vm_write_of, InvalidEvent)
    outcome = unhandled_message(ACTION, reason, vm_id=written.vm_id if written else "")
    context().record_unhandled(message, [outcome], source="EventGrid", log_message="vm_event_queued outcome")


def vm_write_of(text: str) -> VmWritten:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(f"not a JSON event: {str(exc)[:200]}") from None
    parsed = read_vm_write(payload)
    if isinstance(parsed, Ignored):
        raise InvalidEvent(parsed.reason)
    return parsed


def take_event(payload: object) -> None:
    """Validate one event and enqueue its work item; a malformed one is recorded, not retried."""
    try:
        parsed = read_vm_write(payload)
    except InvalidEvent as exc:
        # acknowledged, not retried: a malformed event will not become well-formed on redelivery
        reject(payload, exc)
        return
    if isinstance(parsed, Ignored):
        logger.info("ignored event", extra={"event_id": parsed.event_id, "reason": parsed.reason})
        return
    ctx = context()
    item = NewVmWorkItem.from_event(parsed)
    enqueue_work_item(ctx.settings, ctx.clients, item)
    ctx.record([enqueued_record(item)], source="EventGrid")
    logger.info("enqueued new VM", extra={"vm_id": parsed.vm_id, "event_id": parsed.event_id})


def reject(payload: object, error: InvalidEvent) -> None:
    event = payload if isinstance(payload, dict) else {}
    logger.error("rejected event", extra={"event_id": event.get("id"), "reason": str(error)})
    context().record([rejected_event_record(event.get("subject"), error)], source="EventGrid")


def rejected_event_record(subject: object, error: InvalidEvent) -> Outcome:
    """The `failed` record of an event that is not a VM write this app can read, naming the VM when
    the event's subject is a VM id (Event Grid sets it to the resource written)."""
    subject = subject if isinstance(subject, str) else ""
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
