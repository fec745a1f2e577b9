"""The stuck-initial-backup sweep: a timer that plans, a queue worker that verifies and triggers.

The timer runs every %SWEEP_SCHEDULE% (default every 30 minutes). A plan of at most
BACKUPWARDEN_SWEEP_INLINE_MAX candidates is handled within the timer run; a larger one is
enqueued on %BACKUPWARDEN_SWEEP_QUEUE% in work items of one vault's candidates, which
`sweep_worker` instances take in parallel (host.json: batchSize, newBatchThreshold). A work item
that raised is delivered again (maxDequeueCount deliveries); on its last delivery the candidates
that still raise become `failed` outcomes, and a message no delivery finished (a crash, a
timeout) ends in the poison queue, where `sweep_worker_poison` records it as `failed`.

Every decision goes into the outbox as it is made, so a run killed part-way (a timeout, a crash)
keeps the record of what it did; the timer's last write is the run record.

Each invocation has a time budget (BACKUPWARDEN_TIME_BUDGET, `run_deadline`): near its end the timer's
inline run and the worker start no more candidates and enqueue the rest as work items of the same
run, so the host's functionTimeout never stops one mid-candidate.
"""

from __future__ import annotations

import logging

import azure.functions as func

from backupwarden.app import build_sweep_fanout, build_sweep_worker, run_deadline
from backupwarden.domain.records import Outcome
from backupwarden.flows.recorder import unhandled_message
from backupwarden.flows.sweep.candidates import ACTION
from backupwarden.flows.sweep.fanout import SweepItemFailed
from backupwarden.flows.sweep.messages import InvalidSweepWorkItem, SweepWorkItem
from functions.context import context, given_up_item, message_text, retried_if_storage_is_down, work_item

logger = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(schedule="%SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
@retried_if_storage_is_down("sweep run")
def sweep(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.warning("sweep timer is past due; running now")
    ctx = context()
    deadline = run_deadline(ctx.settings)
    fanout = build_sweep_fanout(ctx.settings, ctx.clients)
    dry_run = fanout.sweep.config.dry_run

    def record(outcomes: list[Outcome]) -> None:
        ctx.record(outcomes, source="Timer", dry_run=dry_run)

    planned = fanout.run(record=record, deadline=deadline)
    report = planned.report
    record([planned.run_record()])
    logger.info(
        "sweep run summary",
        extra={
            "run_id": report.run_id,
            "past_due": timer.past_due,
            "fanned_out": not planned.inline,
            "work_items": planned.work_items,
            "enqueued": planned.enqueued,
            "handed_on": planned.handed_on,
            **report.summary(),
        },
    )


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_SWEEP_QUEUE%", connection="AzureWebJobsStorage"
)
@retried_if_storage_is_down("queue delivery")
def sweep_worker(message: func.QueueMessage) -> None:
    item = work_item(
        message,
        SweepWorkItem.from_json,
        InvalidSweepWorkItem,
        what="sweep work item",
        action=ACTION,
        source="Queue",
    )
    if item is None:
        return
    deliveries = message.dequeue_count or 1
    ctx = context()
    deadline = run_deadline(ctx.settings)

    def record(outcomes: list[Outcome]) -> None:
        ctx.record(outcomes, source="Queue", dry_run=item.dry_run)

    try:
        outcomes = build_sweep_worker(ctx.settings, ctx.clients).handle(item, deliveries, record, deadline)
    except SweepItemFailed as exc:
        # what finished is recorded already; the queue delivers the item again for the rest
        logger.warning(
            "sweep work item failed; the queue will deliver it again",
            extra={"run_id": item.run_id, "deliveries": deliveries, "reason": str(exc)},
        )
        raise
    for outcome in outcomes:
        logger.info("sweep outcome", extra=outcome.to_dict())


@bp.queue_trigger(
    arg_name="message", queue_name="%BACKUPWARDEN_SWEEP_QUEUE%-poison", connection="AzureWebJobsStorage"
)
@retried_if_storage_is_down("poison queue delivery")
def sweep_worker_poison(message: func.QueueMessage) -> None:
    """The queue gave up on a work item: each of its VMs gets a `failed` outcome with the reason."""
    ctx = context()
    item, reason = given_up_item(message, SweepWorkItem.from_json, InvalidSweepWorkItem)
    if item is None:
        outcomes = [unhandled_message(ACTION, reason)]
    else:
        outcomes = build_sweep_worker(ctx.settings, ctx.clients).poisoned(message_text(message))
    ctx.record_unhandled(message, outcomes, source="Queue", log_message="sweep outcome")
