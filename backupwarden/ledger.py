"""The idempotency ledger: one Azure Table entity per (VM, action, UTC day).

Every action on a VM (trigger a backup, enable protection, ...) first claims its entity, then
acts, then records the result; the sweep, the new-VM flow and remediation share it, so no VM
is acted on twice for the same reason on the same day, and never past the daily budget.

Keys: PartitionKey = sha256 of the lower-case VM ARM id (Table keys forbid `/`, which every
ARM id holds; the id itself is kept in the `vm_id` column), RowKey = `{action}|{yyyy-mm-dd}`.
A second entity per VM, RowKey `seen`, records when backupwarden first saw it.

Concurrency: a claim is `create_entity` (only one creator wins) or, for a failed or stale
claim, a REPLACE conditioned on the ETag read (only one replacer wins). Nothing is read and
then written without that condition.

Status lifecycle: IN_PROGRESS (claimed; `expires` = when the claim counts as abandoned) ->
COMPLETED (the action was accepted by Azure; `job_id`) or FAILED (`reason` = error code; may be
claimed again while `attempts` < the budget). `release` undoes a claim whose action never
reached Azure ("save in-progress first, delete on failure").
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

logger = logging.getLogger(__name__)

SEEN_ROW_KEY = "seen"
JOB_INDEX_PARTITION = (
    "job"  # job id -> the claim that started it (a VM partition is a sha256 hex, never this)
)
DEFAULT_IN_PROGRESS_TTL = timedelta(hours=1)  # longer than any function run (Consumption max: 10 min)
_CLAIM_ROUNDS = 3  # create -> read -> replace, retried when the entity vanishes in between
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

    def as_claim(self) -> Claim:
        """The claim this record stands for, to settle it on the ETag it was read with."""
        return Claim(self.vm_id, self.action, self.day, self.run_id, self.attempts, self.etag)


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

    @property
    def partition_key(self) -> str:
        return partition_key_for(self.vm_id)

    @property
    def row_key(self) -> str:
        return row_key_for(self.action, self.day)


def partition_key_for(vm_id: str) -> str:
    return hashlib.sha256(vm_id.strip().lower().encode("utf-8")).hexdigest()


def row_key_for(action: str, day: date) -> str:
    if not action or _FORBIDDEN_IN_KEYS.search(action) or action == SEEN_ROW_KEY:
        raise ValueError(f"action {action!r} cannot be part of a table key")
    return f"{action}|{day.isoformat()}"


def utc_now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    def __init__(
        self,
        table: TableClient,
        *,
        in_progress_ttl: timedelta = DEFAULT_IN_PROGRESS_TTL,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = table
        self._in_progress_ttl = in_progress_ttl
        self._clock = clock

    def ensure_table(self) -> None:
        try:
            self._table.create_table()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot create table {self._table.table_name}") from exc

    # --- claims --------------------------------------------------------------------------------
    def claim(self, vm_id: str, action: str, day: date, run_id: str, max_attempts: int) -> Claim:
        """Claim (vm_id, action, day) for `run_id`, or raise AlreadyClaimed / BudgetExhausted."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        row_key = row_key_for(action, day)
        for _ in range(_CLAIM_ROUNDS):
            now = self._clock()
            entity = self._claim_entity(vm_id, action, day, run_id, attempts=1, first_seen=now, now=now)
            etag = self._create(entity)
            if etag is not None:
                return Claim(vm_id.lower(), action, day, run_id, 1, etag)
            record = self._get(partition_key_for(vm_id), row_key)
            if record is None:
                continue  # released between our create and our read: try creating again
            claim = self._take_over(record, run_id, max_attempts, now)
            if claim is not None:
                return claim
        raise AlreadyClaimed("claimed_concurrently")

    def _take_over(self, record: LedgerRecord, run_id: str, max_attempts: int, now: datetime) -> Claim | None:
        if record.status is LedgerStatus.COMPLETED:
            raise AlreadyClaimed("completed", record)
        if record.status is LedgerStatus.IN_PROGRESS and record.expires > now:
            raise AlreadyClaimed("in_progress", record)
        if record.attempts >= max_attempts:
            raise BudgetExhausted(record.attempts, max_attempts)
        attempts = record.attempts + 1
        entity = self._claim_entity(
            record.vm_id,
            record.action,
            record.day,
            run_id,
            attempts=attempts,
            first_seen=record.first_seen,
            now=now,
        )
        if record.status is LedgerStatus.FAILED:
            entity["reason"] = f"retry after {record.reason}" if record.reason else "retry"
        else:
            entity["reason"] = f"took over a stale claim of run {record.run_id}"
            logger.warning(
                "took over a stale ledger claim",
                extra={"vm_id": record.vm_id, "action": record.action, "stale_run_id": record.run_id},
            )
        try:
            etag = self._replace(entity, record.etag)
        except ResourceNotFoundError:
            return None  # released meanwhile: start over with a create
        except ResourceModifiedError as exc:
            raise AlreadyClaimed("claimed_concurrently", record) from exc
        return Claim(record.vm_id, record.action, record.day, run_id, attempts, etag)

    def complete(self, claim: Claim, job_id: str, op_id: str | None = None, triggered_by: str = "") -> None:
        """The action was accepted by Azure: record its job (and operation) id, and index the job."""
        self._settle(claim, LedgerStatus.COMPLETED, {"job_id": job_id, "op_id": op_id or "", "reason": ""})
        if job_id:
            self._index_job(claim, job_id, triggered_by)

    def job_attribution(self, job_id: str) -> JobAttribution | None:
        """Which of our actions started this job, or None when it was not us."""
        try:
            entity = self._table.get_entity(JOB_INDEX_PARTITION, job_id.lower())
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot read job index {job_id}") from exc
        return JobAttribution(
            job_id=job_id,
            vm_id=str(entity.get("vm_id", "")),
            action=str(entity.get("action", "")),
            run_id=str(entity.get("run_id", "")),
            attempt=int(entity.get("attempt", 1)),
            triggered_by=str(entity.get("triggered_by", "")),
        )

    def _index_job(self, claim: Claim, job_id: str, triggered_by: str) -> None:
        entity = {
            "PartitionKey": JOB_INDEX_PARTITION,
            "RowKey": job_id.lower(),  # job ids are GUIDs; services differ in their case
            "vm_id": claim.vm_id,
            "action": claim.action,
            "run_id": claim.run_id,
            "attempt": claim.attempts,
            "triggered_by": triggered_by,
        }
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot index job {job_id}") from exc

    def fail(self, claim: Claim, error_code: str, job_id: str | None = None) -> None:
        """The action failed with `error_code`; the key may be claimed again while under budget."""
        changes: dict[str, Any] = {"reason": error_code}
        if job_id:
            changes["job_id"] = job_id
        self._settle(claim, LedgerStatus.FAILED, changes)

    def release(self, claim: Claim) -> None:
        """Undo a claim whose action never reached Azure, so it costs no attempt."""
        if claim.attempts == 1:
            try:
                self._table.delete_entity(
                    claim.partition_key,
                    claim.row_key,
                    etag=claim.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError as exc:
                raise ClaimLost(f"claim on {claim.row_key} changed before release") from exc
            except AzureError as exc:
                raise LedgerUnavailable(f"cannot release {claim.row_key}") from exc
            return
        self._settle(claim, LedgerStatus.FAILED, {"attempts": claim.attempts - 1, "reason": "released"})

    def _settle(self, claim: Claim, status: LedgerStatus, changes: dict[str, Any]) -> None:
        now = self._clock()
        entity = {
            "PartitionKey": claim.partition_key,
            "RowKey": claim.row_key,
            "status": status.value,
            "updated": now,
            "expires": _end_of_day(claim.day) if status is LedgerStatus.COMPLETED else now,
            **changes,
        }
        try:
            self._table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=claim.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ClaimLost(f"claim on {claim.row_key} changed before it was marked {status.value}") from exc
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot mark {claim.row_key} {status.value}") from exc

    # --- reads -------------------------------------------------------------------------------
    def record(self, vm_id: str, action: str, day: date) -> LedgerRecord | None:
        return self._get(partition_key_for(vm_id), row_key_for(action, day))

    def attempts_today(self, vm_id: str, action: str, day: date) -> int:
        record = self.record(vm_id, action, day)
        return 0 if record is None else record.attempts

    def first_seen(self, vm_id: str) -> datetime:
        """When backupwarden first saw this VM (recorded now if never before)."""
        now = self._clock()
        partition_key = partition_key_for(vm_id)
        entity: dict[str, Any] = {
            "PartitionKey": partition_key,
            "RowKey": SEEN_ROW_KEY,
            "vm_id": vm_id.lower(),
            "first_seen": now,
        }
        if self._create(entity) is not None:
            return now
        try:
            stored = self._table.get_entity(partition_key, SEEN_ROW_KEY)
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot read first-seen of {vm_id}") from exc
        return _as_utc(stored["first_seen"])

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
            "vm_id": vm_id.lower(),
            "action": action,
            "day": day.isoformat(),
            "status": LedgerStatus.IN_PROGRESS.value,
            "attempts": attempts,
            "run_id": run_id,
            "first_seen": first_seen,
            "updated": now,
            "expires": now + self._in_progress_ttl,
        }

    def _create(self, entity: dict[str, Any]) -> str | None:
        """The new entity's ETag, or None when it already exists."""
        try:
            return str(self._table.create_entity(entity)["etag"])
        except ResourceExistsError:
            return None
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot create {entity['RowKey']}") from exc

    def _replace(self, entity: dict[str, Any], etag: str) -> str:
        try:
            result = self._table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot replace {entity['RowKey']}") from exc
        return str(result["etag"])

    def _get(self, partition_key: str, row_key: str) -> LedgerRecord | None:
        try:
            entity = self._table.get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise LedgerUnavailable(f"cannot read {row_key}") from exc
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
            first_seen=_as_utc(entity["first_seen"]),
            updated=_as_utc(entity["updated"]),
            expires=_as_utc(entity["expires"]),
            etag=str(entity.metadata["etag"]),
        )


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
