"""`handle-event`: events from a file run through the new-VM path to completion, with no queue between."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from backupwarden.domain.json_text import json_items
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import utc_now
from backupwarden.domain.vm_events import MAX_EVENT_BYTES, Ignored, InvalidEvent, read_vm_write
from backupwarden.flows.new_vm.messages import NewVmWorkItem
from backupwarden.flows.new_vm.worker import ACTION, ProtectVm, TransientFailure
from backupwarden.flows.run_report import RunReport, action_outcome

TRANSIENT_RETRIES = 3


def read_events(text: str) -> list[Any]:
    """One event or a JSON array of events; raises InvalidEvent for anything else."""
    if len(text.encode("utf-8", errors="replace")) > MAX_EVENT_BYTES * 64:
        raise InvalidEvent("the input is larger than 64 events of 1 MB")
    return json_items(text, InvalidEvent)


def handle_events(
    events: list[Any],
    worker: ProtectVm,
    *,
    dry_run: bool,
    recheck_s: float,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utc_now,
) -> RunReport:
    """Each distinct VM write once (duplicates collapse by VM and correlation id), to its outcome."""
    report = RunReport(str(uuid.uuid4()), dry_run, now(), candidates=len(events))
    seen: set[str] = set()
    for event in events:
        try:
            if len(json.dumps(event)) > MAX_EVENT_BYTES:
                raise InvalidEvent("the event is larger than Event Grid's 1 MB")
            parsed = read_vm_write(event)
        except InvalidEvent as exc:
            report.outcomes.append(_rejected(report.run_id, event, str(exc)))
            continue
        if isinstance(parsed, Ignored) or parsed.dedup_key in seen:
            continue
        seen.add(parsed.dedup_key)
        report.outcomes.append(
            _to_completion(worker, NewVmWorkItem.from_event(parsed), report.run_id, recheck_s, sleep)
        )
    report.finished = now()
    return report


def _to_completion(
    worker: ProtectVm, item: NewVmWorkItem, run_id: str, recheck_s: float, sleep: Callable[[float], None]
) -> Outcome:
    """What the queue would do: recheck a provisioning VM later, retry transient failures a few times."""
    transient_left = TRANSIENT_RETRIES
    while True:
        try:
            outcome = worker.handle(item, run_id)
        except TransientFailure as exc:
            if transient_left == 0:
                return exc.outcome
            transient_left -= 1
            sleep(2 ** (TRANSIENT_RETRIES - transient_left))
            continue
        if outcome.result is not Result.REQUEUED:
            return outcome
        item = item.waited_once_more()
        sleep(recheck_s)


def _rejected(run_id: str, event: Any, reason: str) -> Outcome:
    event_id = event.get("id", "") if isinstance(event, dict) else ""
    rejected = f"rejected event {event_id}: {reason}".replace("  ", " ")
    return action_outcome(run_id, "", "", ACTION, Result.FAILED, rejected, error_code="InvalidEvent")
