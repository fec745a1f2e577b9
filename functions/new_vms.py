"""New VMs: the Event Grid trigger validates and enqueues; the queue worker protects and backs up.

Event Grid allows 30 s per delivery and enabling protection takes longer, so the trigger only
validates and enqueues. The worker raises on transient failures so the queue redelivers; after
the host's maxDequeueCount the message lands in the poison queue, whose handler records it.
"""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.adapters.azure.clients import shared_clients
from backupwarden.app import build_protect_vm, enqueue_work_item, record_actions, requeue_work_item
from backupwarden.domain.records import Result
from backupwarden.domain.vm_events import Ignored, InvalidEvent, read_vm_write
from backupwarden.flows.new_vm.worker import InvalidWorkItem, TransientFailure, WorkItem
from backupwarden.settings import Settings

logger = logging.getLogger(__name__)

bp = func.Blueprint()


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
def vm_written(event: func.EventGridEvent) -> None:
    try:
        parsed = read_vm_write(event_payload(event))
    except InvalidEvent as exc:
        # acknowledged, not retried: a malformed event will not become well-formed on redelivery
        logger.error("rejected event", extra={"event_id": event.id, "reason": str(exc)})
        return
    if isinstance(parsed, Ignored):
        logger.info("ignored event", extra={"event_id": parsed.event_id, "reason": parsed.reason})
        return
    settings = Settings.from_env()
    clients = shared_clients(settings)
    enqueue_work_item(settings, clients, WorkItem.from_event(parsed))
    logger.info("enqueued new VM", extra={"vm_id": parsed.vm_id, "event_id": parsed.event_id})


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_PROTECT_QUEUE%", connection="AzureWebJobsStorage"
)
def protect_vm(message: func.QueueMessage) -> None:
    try:
        item = WorkItem.from_json(message.get_body().decode("utf-8", errors="replace"))
    except InvalidWorkItem as exc:
        logger.error("dropped malformed work item", extra={"message_id": message.id, "reason": str(exc)})
        return
    settings = Settings.from_env()
    clients = shared_clients(settings)
    try:
        outcome = build_protect_vm(settings, clients).handle(item)
    except TransientFailure as exc:
        logger.warning("transient failure; the queue will redeliver", extra=exc.outcome.to_dict())
        raise
    if outcome.result is Result.REQUEUED:
        requeue_work_item(settings, clients, item.waited_once_more())
    record_actions(settings, clients, [outcome], source="Queue", dry_run=settings.dry_run)
    logger.info("protect_vm outcome", extra=outcome.to_dict())


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_PROTECT_QUEUE%-poison", connection="AzureWebJobsStorage"
)
def protect_vm_poison(message: func.QueueMessage) -> None:
    """The queue gave up on a work item: record it as a failed outcome (an escalation)."""
    body = message.get_body().decode("utf-8", errors="replace")
    try:
        vm_id = WorkItem.from_json(body).vm_id
    except InvalidWorkItem:
        vm_id = ""
    logger.error(
        "protect_vm outcome",
        extra={
            "vm_id": vm_id,
            "action": "enable_protection",
            "result": Result.FAILED.value,
            "reason": "gave up after the queue's retries (poison queue)",
            "message_id": message.id,
        },
    )
