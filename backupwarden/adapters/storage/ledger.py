"""The idempotency ledger: one Azure Table entity per (VM, action, UTC day).

Every action on a VM (trigger a backup, enable protection, ...) first claims its entity, then
acts, then records the result; the sweep, the new-VM flow and remediation share it, so no VM
is acted on twice for the same reason on the same day, and never past the daily budget.

Keys: PartitionKey = sha256 of the VM ARM id as `arm_key` keys it (Table keys forbid `/`, which every
ARM id holds; the id itself is kept in the `vm_id` column), RowKey = `{action}|{yyyy-mm-dd}`.
In the same partition, RowKey `seen` records when backupwarden first saw the VM.

Job attribution: a claim holds the job it started (`job_id`, `triggered_by`), and a retry carries
the jobs of the earlier attempts along (`earlier_jobs`), so "which of our actions started job J
of VM V" is one query in V's partition (a job's VM is known from the job itself, since a VM is
protected by a vault of its own subscription). A claim completed without its job id (the trigger's
answer was lost and the job list did not show the job yet) is asked for by action
(`unknown_job_action`): it started the VM's first ad hoc job after it, until the job found in the
list is written into it (`record_found_job`).

Concurrency and lost answers are the claim mechanics of `claims.py`: a claim is an insert (only
one creator wins) or, for a failed or stale claim, a REPLACE conditioned on the ETag read (only
one replacer wins); a write whose answer was lost is read back and recognised by its `token`.

Status lifecycle: IN_PROGRESS (claimed; `expires` = when the claim counts as abandoned) ->
COMPLETED (the action was accepted by Azure; `job_id`) or FAILED (`reason` = error code; may be
claimed again while `attempts` < the budget). `release` undoes a claim whose action never
reached Azure ("save in-progress first, delete on failure").
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables import TableClient

from backupwarden.adapters.storage.claims import ClaimTable, Contended, Held, Stored, new_token
from backupwarden.domain.arm_ids import arm_key
from backupwarden.domain.times import as_utc, utc_now

logger = logging.getLogger(__name__)

SEEN_ROW_KEY = "seen"
ATTRIBUTION_WINDOW = timedelta(days=1)  # a job starts at most this long after the claim that started it
CLOCK_SKEW = timedelta(minutes=5)  # between the service's job start times and our clock
DEFAULT_IN_PROGRESS_TTL = timedelta(hours=1)  # longer than any function run (Consumption max: 10 min)
_FORBIDDEN_IN_KEYS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f|]")


class LedgerStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class LedgerError(Exception):
    """Base of every ledger failure."""


class AlreadyClaimed(LedgerError):
    """Someone already holds or finished this (VM, action, day). `reason` is a short code:
    `completed`, `in_progress` or `claimed_concurrently`."""

    def __init__(self, reason: str, record: LedgerRecord | None = None) -> None:
        self.reason = reason
        self.record = record
        holder = f" by run {record.run_id}" if record is not None and record.run_id else ""
        super().__init__(f"already claimed ({reason}){holder}")


class BudgetExhausted(LedgerError):
    """The (VM, action, day) has used every attempt it is allowed."""

    def __init__(self, attempts: int, max_attempts: int) -> None:
        self.attempts = attempts
        self.max_attempts = max_attempts
        super().__init__(f"daily budget exhausted: {attempts} of {max_attempts} attempts used")


class ClaimLost(LedgerError):
    """The claim changed under its holder (taken over as stale, or deleted) before it was settled."""


class LedgerUnavailable(LedgerError):
    """Table Storage failed; the cause is chained."""


@dataclass(frozen=True)
class LedgerRecord:
    """One (VM, action, day) entity as stored."""

    vm_id: str
    action: str
    day: date
    status: LedgerStatus
    attempts: int
    run_id: str
    job_id: str
    op_id: str
    reason: str
    first_seen: datetime
    updated: datetime
    expires: datetime
    etag: str
    token: str  # which claim wrote it (see "Lost answers")
    jobs: tuple[JobAttribution, ...] = ()  # the jobs its attempts started, oldest first

    def as_claim(self) -> Claim:
        """The claim this record stands for, to settle it on the ETag it was read with."""
        return Claim(self.vm_id, self.action, self.day, self.run_id, self.attempts, self.etag, self.token)


@dataclass(frozen=True)
class JobAttribution:
    """The action that started a backup job: the link from a job outcome back to a decision."""

    job_id: str
    vm_id: str
    action: str
    run_id: str
    attempt: int
    triggered_by: str  # Sweep, NewVm, Remediation


@dataclass(frozen=True)
class Claim:
    """Proof that the holder may act on (vm_id, action, day); settle it with complete/fail/release."""

    vm_id: str
    action: str
    day: date
    run_id: str
    attempts: int
    etag: str
    token: str

    @property
    def partition_key(self) -> str:
        return partition_key_for(self.vm_id)

    @property
    def row_key(self) -> str:
        return row_key_for(self.action, self.day)


def partition_key_for(vm_id: str) -> str:
    return hashlib.sha256(arm_key(vm_id.strip()).encode("utf-8")).hexdigest()


def row_key_for(action: str, day: date) -> str:
    if not action or _FORBIDDEN_IN_KEYS.search(action) or action == SEEN_ROW_KEY:
        raise ValueError(f"action {action!r} cannot be part of a table key")
    return f"{action}|{day.isoformat()}"


class Ledger:
    def __init__(
        self,
        table: TableClient,
        *,
        in_progress_ttl: timedelta = DEFAULT_IN_PROGRESS_TTL,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = table
        self._claims = ClaimTable(table, unavailable=LedgerUnavailable, lost=ClaimLost)
        self._in_progress_ttl = in_progress_ttl
        self._clock = clock

    def ensure_table(self) -> None:
        self._claims.ensure_table()

    # --- claims --------------------------------------------------------------------------------
    def claim(self, vm_id: str, action: str, day: date, run_id: str, max_attempts: int) -> Claim:
        """Claim (vm_id, action, day) for `run_id`, or raise AlreadyClaimed / BudgetExhausted."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        row_key_for(action, day)  # refuse an action that cannot be a key before any round trip

        def fresh() -> dict[str, Any]:
            now = self._clock()
            return self._claim_entity(vm_id, action, day, run_id, attempts=1, first_seen=now, now=now)

        try:
            held = self._claims.claim(fresh, lambda stored: self._take_over(stored, run_id, max_attempts))
        except Contended as exc:
            winner = None if exc.stored is None else _record_from(exc.stored)
            raise AlreadyClaimed("claimed_concurrently", winner) from None
        assert isinstance(held, Held), "a ledger take-over refuses or replaces, never leaves the claim"
        return _claim_from(held)

    def claim_if_new(self, vm_id: str, action: str, day: date, run_id: str) -> Claim | None:
        """The first claim of (vm_id, action, day), or None when the day already has a record.

        One round trip; for a caller that decided with "nothing recorded today" and must decide
        again with the record when there is one.
        """
        now = self._clock()
        entity = self._claim_entity(vm_id, action, day, run_id, attempts=1, first_seen=now, now=now)
        inserted = self._claims.insert(entity)
        return _claim_from(inserted) if isinstance(inserted, Held) else None

    def _take_over(self, stored: Stored, run_id: str, max_attempts: int) -> dict[str, Any]:
        """The entity that takes a failed or stale claim over; raises when the claim may not be taken."""
        record = _record_from(stored)
        now = self._clock()
        if record.status is LedgerStatus.COMPLETED:
            raise AlreadyClaimed("completed", record)
        if stored.in_progress_at(now, LedgerStatus.IN_PROGRESS.value):
            raise AlreadyClaimed("in_progress", record)
        if record.attempts >= max_attempts:
            raise BudgetExhausted(record.attempts, max_attempts)
        entity = self._claim_entity(
            record.vm_id,
            record.action,
            record.day,
            run_id,
            attempts=record.attempts + 1,
            first_seen=record.first_seen,
            now=now,
        )
        entity["earlier_jobs"] = json.dumps([vars(job) for job in record.jobs])
        if record.status is LedgerStatus.FAILED:
            entity["reason"] = f"retry after {record.reason}" if record.reason else "retry"
        else:
            entity["reason"] = f"took over a stale claim of run {record.run_id}"
            logger.warning(
                "took over a stale ledger claim",
                extra={"vm_id": record.vm_id, "action": record.action, "stale_run_id": record.run_id},
            )
        return entity

    def complete(self, claim: Claim, job_id: str, op_id: str | None = None, triggered_by: str = "") -> None:
        """The action was accepted by Azure: record its job (and operation) id and who started it."""
        changes = {"job_id": job_id, "op_id": op_id or "", "triggered_by": triggered_by}
        self._settle(claim, LedgerStatus.COMPLETED, changes)

    def record_found_job(self, claim: Claim, job_id: str) -> None:
        """A completed claim that did not know its job learns it: only while it is the version read."""
        self._claims.settle(claim, {"status": LedgerStatus.COMPLETED.value, "job_id": job_id})

    def job_attribution(
        self, job_id: str, vm_id: str, started: datetime, *, unknown_job_action: str | None = None
    ) -> JobAttribution | None:
        """Which of our actions started this job of this VM (at `started`), or None when it was not us.

        `unknown_job_action`: when no claim names the job, a completed claim of this action that never
        learnt its job id, made before the job started, is taken as its starter (the caller asks only
        for the VM's first ad hoc job after such a claim)."""
        started = started.astimezone(UTC)
        try:
            rows = list(
                self._table.query_entities(
                    "PartitionKey eq @pk and day ge @first and day le @last",
                    parameters={
                        "pk": partition_key_for(vm_id),
                        "first": (started - ATTRIBUTION_WINDOW).date().isoformat(),
                        "last": started.date().isoformat(),
                    },
                )
            )
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot read the jobs of {vm_id}") from exc
        wanted = arm_key(job_id)  # job ids are GUIDs; services differ in their case
        named = next((job for row in rows for job in _jobs_of(row) if arm_key(job.job_id) == wanted), None)
        if named is not None or unknown_job_action is None:
            return named
        unnamed = (_claim_without_job(row, unknown_job_action, job_id, started) for row in rows)
        return next((job for job in unnamed if job is not None), None)

    def fail(self, claim: Claim, error_code: str, job_id: str | None = None) -> None:
        """The action failed with `error_code`; the key may be claimed again while under budget."""
        changes: dict[str, Any] = {"reason": error_code}
        if job_id:
            changes["job_id"] = job_id
        self._settle(claim, LedgerStatus.FAILED, changes)

    def release(self, claim: Claim) -> None:
        """Undo a claim whose action never reached Azure, so it costs no attempt."""
        if claim.attempts == 1:
            self._claims.delete(claim)
            return
        self._settle(claim, LedgerStatus.FAILED, {"attempts": claim.attempts - 1, "reason": "released"})

    def _settle(self, claim: Claim, status: LedgerStatus, changes: dict[str, Any]) -> None:
        now = self._clock()
        settled = {
            "status": status.value,
            "updated": now,
            "expires": _end_of_day(claim.day) if status is LedgerStatus.COMPLETED else now,
            "reason": "",
            **changes,
        }
        self._claims.settle(claim, settled)

    # --- reads -------------------------------------------------------------------------------
    def record(self, vm_id: str, action: str, day: date) -> LedgerRecord | None:
        stored = self._claims.read(partition_key_for(vm_id), row_key_for(action, day))
        return None if stored is None else _record_from(stored)

    def attempts_today(self, vm_id: str, action: str, day: date) -> int:
        record = self.record(vm_id, action, day)
        return 0 if record is None else record.attempts

    def note_first_seen(self, vm_id: str) -> datetime:
        """When backupwarden first saw this VM (recorded now if never before)."""
        now = self._clock()
        entity: dict[str, Any] = {
            "PartitionKey": partition_key_for(vm_id),
            "RowKey": SEEN_ROW_KEY,
            "vm_id": arm_key(vm_id),
            "first_seen": now,
            "token": new_token(),
        }
        inserted = self._claims.insert(entity)
        if isinstance(inserted, Held):
            return now
        if inserted is None:
            raise LedgerUnavailable(f"cannot read first-seen of {vm_id}")
        return as_utc(inserted.entity["first_seen"])

    # --- storage -------------------------------------------------------------------------------
    def _claim_entity(
        self,
        vm_id: str,
        action: str,
        day: date,
        run_id: str,
        *,
        attempts: int,
        first_seen: datetime,
        now: datetime,
    ) -> dict[str, Any]:
        return {
            "PartitionKey": partition_key_for(vm_id),
            "RowKey": row_key_for(action, day),
            "vm_id": arm_key(vm_id),
            "action": action,
            "day": day.isoformat(),
            "status": LedgerStatus.IN_PROGRESS.value,
            "attempts": attempts,
            "run_id": run_id,
            "first_seen": first_seen,
            "updated": now,
            "expires": now + self._in_progress_ttl,
            "token": new_token(),
        }


def _claim_from(held: Held) -> Claim:
    entity = held.entity
    return Claim(
        str(entity["vm_id"]),
        str(entity["action"]),
        date.fromisoformat(str(entity["day"])),
        str(entity["run_id"]),
        int(entity["attempts"]),
        held.etag,
        held.token,
    )


def _record_from(stored: Stored) -> LedgerRecord:
    entity = stored.entity
    return LedgerRecord(
        vm_id=str(entity["vm_id"]),
        action=str(entity["action"]),
        day=date.fromisoformat(str(entity["day"])),
        status=LedgerStatus(str(entity["status"])),
        attempts=int(entity["attempts"]),
        run_id=str(entity.get("run_id", "")),
        job_id=str(entity.get("job_id", "")),
        op_id=str(entity.get("op_id", "")),
        reason=str(entity.get("reason", "")),
        first_seen=as_utc(entity["first_seen"]),
        updated=as_utc(entity["updated"]),
        expires=as_utc(entity["expires"]),
        etag=stored.etag,
        token=stored.token,
        jobs=tuple(_jobs_of(entity)),
    )


def _jobs_of(row: Any) -> list[JobAttribution]:
    """The jobs a claim entity's attempts started: the earlier ones it carries, then its own."""
    jobs = [JobAttribution(**job) for job in json.loads(str(row.get("earlier_jobs") or "[]"))]
    if row.get("job_id"):
        jobs.append(
            JobAttribution(
                job_id=str(row["job_id"]),
                vm_id=str(row.get("vm_id", "")),
                action=str(row.get("action", "")),
                run_id=str(row.get("run_id", "")),
                attempt=int(row.get("attempts", 1)),
                triggered_by=str(row.get("triggered_by", "")),
            )
        )
    return jobs


def _claim_without_job(row: Any, action: str, job_id: str, started: datetime) -> JobAttribution | None:
    """Job `job_id` (started at `started`) as the job of a completed `action` claim that does not know
    its job id, when the claim was made before the job started."""
    if row.get("action") != action or row.get("status") != LedgerStatus.COMPLETED.value or row.get("job_id"):
        return None
    if started < as_utc(row["first_seen"]) - CLOCK_SKEW:
        return None
    return JobAttribution(
        job_id=job_id,
        vm_id=str(row.get("vm_id", "")),
        action=action,
        run_id=str(row.get("run_id", "")),
        attempt=int(row.get("attempts", 1)),
        triggered_by=str(row.get("triggered_by", "")),
    )


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
