"""The decision recorder: every decision of every flow becomes a BackupAutomationActions_CL record.

The records wait in the outbox until the outcomes run ships them to Log Analytics. What a trigger
could not handle (a malformed message, one the queue gave up on) is recorded here too, as a
`failed` outcome whose reason says why, so it reaches the workspace like any other decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from backupwarden.adapters.storage.outbox import Outbox
from backupwarden.domain.log_records import action_row
from backupwarden.domain.log_schema import AUTOMATION_ACTIONS
from backupwarden.domain.records import Outcome, Result
from backupwarden.domain.times import utc_now
from backupwarden.flows.run_report import action_outcome

INVALID_WORK_ITEM = "InvalidWorkItem"  # the error code of a message that is not a work item


class ActionRecorder:
    """Every decision of every flow becomes a BackupAutomationActions_CL record in the outbox."""

    def __init__(self, outbox: Outbox, now: Callable[[], datetime] = utc_now) -> None:
        self._outbox = outbox
        self._now = now

    def record(self, outcomes: list[Outcome], *, source: str, dry_run: bool) -> int:
        at = self._now()
        rows = [action_row(outcome, source=source, dry_run=dry_run, at=at) for outcome in outcomes]
        return self._outbox.add(AUTOMATION_ACTIONS.stream, rows)


def unhandled_message(action: str, reason: str, *, vm_id: str = "", malformed: bool = False) -> Outcome:
    """The `failed` outcome of a queue message no handler finished, in a run of its own: a malformed
    message (error code INVALID_WORK_ITEM) or one the queue gave up on (the poison queue)."""
    return action_outcome(
        str(uuid.uuid4()),
        vm_id,
        "",
        action,
        Result.FAILED,
        reason,
        error_code=INVALID_WORK_ITEM if malformed else None,
    )
