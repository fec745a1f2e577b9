"""The idempotency ledger: one Azure Table entity per (VM, action, UTC day).

Every action on a VM (trigger a backup, enable protection, ...) first claims its entity, then
acts, then records the result; the sweep, the new-VM flow and remediation share it, so no VM
is acted on twice for the same reason on the same day, and never past the daily budget.

Keys: PartitionKey = sha256 of the lower-case VM ARM id (Table keys forbid `/`, which every
ARM id holds; the id itself is kept in the `vm_id` column), RowKey = `{action}|{yyyy-mm-dd}`.
In the same partition, RowKey `seen` records when backupwarden first saw the VM.

Job attribution: a claim holds the job it started (`job_id`, `triggered_by`), and a retry carries
the jobs of the earlier attempts along (`earlier_jobs`), so "which of our actions started job J
of VM V" is one query in V's partition (a job's VM is known from the job itself, since a VM is
protected by a vault of its own subscription).

Concurrency: a claim is `create_entity` (only one creator wins) or, for a failed or stale
claim, a REPLACE conditioned on the ETag read (only one replacer wins). Nothing is read and
then written without that condition.

Lost answers: a write may be stored though its caller never hears so (the connection drops
after the request went out, as when a server closes an idle keep-alive connection; azure-core
retries a 5xx though the first try was stored, and the retry meets 409 or 412). Every claim
carries a random `token`; when a write's answer is lost or contradicts it, the ledger reads the
entity back and the token (with the status written) says whether the write is there.

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
import uuid
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
ATTRIBUTION_WINDOW = timedelta(days=1)  # a job starts at most this long after the claim that started it
DEFAULT_IN_PROGRESS_TTL = timedelta(hours=1)  # longer than any function run (Consumption max: 10 min)
NO_ECHO = "return-no-content"  # an insert's answer need not repeat the entity: its ETag is a header
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
        row_key_for(action, day)  # refuse an action that cannot be a key before any round trip
        for _ in range(_CLAIM_ROUNDS):
            now = self._clock()
            entity = self._claim_entity(vm_id, action, day, run_id, attempts=1, first_seen=now, now=now)
            stored = self._store_claim(entity, etag=None)
            if isinstance(stored, Claim):
                return stored
            if stored is None:
                continue  # released between our create and our read: try creating again
            claim = self._take_over(stored, run_id, max_attempts, now)
            if claim is not None:
                return claim
        raise AlreadyClaimed("claimed_concurrently")

    def claim_if_new(self, vm_id: str, action: str, day: date, run_id: str) -> Claim | None:
        """The first claim of (vm_id, action, day), or None when the day already has a record.

        One round trip; for a caller that decided with "nothing recorded today" and must decide
        again with the record when there is one.
        """
        now = self._clock()
        entity = self._claim_entity(vm_id, action, day, run_id, attempts=1, first_seen=now, now=now)
        stored = self._store_claim(entity, etag=None)
        return stored if isinstance(stored, Claim) else None

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
        entity["earlier_jobs"] = json.dumps([vars(job) for job in record.jobs])
        if record.status is LedgerStatus.FAILED:
            entity["reason"] = f"retry after {record.reason}" if record.reason else "retry"
        else:
            entity["reason"] = f"took over a stale claim of run {record.run_id}"
            logger.warning(
                "took over a stale ledger claim",
                extra={"vm_id": record.vm_id, "action": record.action, "stale_run_id": record.run_id},
            )
        stored = self._store_claim(entity, etag=record.etag)
        if isinstance(stored, Claim):
            return stored
        if stored is None or stored.etag == record.etag:
            return None  # released meanwhile, or our replace never arrived: start over
        raise AlreadyClaimed("claimed_concurrently", stored)

    def _store_claim(self, entity: dict[str, Any], *, etag: str | None) -> Claim | LedgerRecord | None:
        """Create the claim entity (`etag` None) or replace the version `etag` with it.

        Returns the claim, or else the record holding the key (None: the key is empty). When the
        write raised, the entity is read back: stored with this claim's token, the write is ours.
        """
        try:
            if etag is None:
                written = self._table.create_entity(entity, response_preference=NO_ECHO)
            else:
                written = self._table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            return _claim_from(entity, str(written["etag"]))
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            pass  # another claim's write, or ours stored by a try whose answer was lost
        except AzureError as exc:
            if not _outcome_unknown(exc):
                raise LedgerUnavailable(f"cannot write {entity['RowKey']}") from exc
            logger.warning("ledger write answer lost; reading it back", extra={"row_key": entity["RowKey"]})
        stored = self._get(entity["PartitionKey"], entity["RowKey"])
        if stored is not None and stored.token == entity["token"]:
            return _claim_from(entity, stored.etag)
        return stored

    def complete(self, claim: Claim, job_id: str, op_id: str | None = None, triggered_by: str = "") -> None:
        """The action was accepted by Azure: record its job (and operation) id and who started it."""
        changes = {"job_id": job_id, "op_id": op_id or "", "triggered_by": triggered_by}
        self._settle(claim, LedgerStatus.COMPLETED, changes)

    def job_attribution(self, job_id: str, vm_id: str, started: datetime) -> JobAttribution | None:
        """Which of our actions started this job of this VM (at `started`), or None when it was not us."""
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
        wanted = job_id.lower()  # job ids are GUIDs; services differ in their case
        return next((job for row in rows for job in _jobs_of(row) if job.job_id.lower() == wanted), None)

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
            except ResourceNotFoundError:
                return  # gone already: a retry of our delete whose first try was stored
            except ResourceModifiedError as exc:
                raise ClaimLost(f"claim on {claim.row_key} changed before release") from exc
            except AzureError as exc:
                if not _outcome_unknown(exc):
                    raise LedgerUnavailable(f"cannot release {claim.row_key}") from exc
                stored = self._get(claim.partition_key, claim.row_key)
                if stored is None:
                    return
                if stored.etag != claim.etag:
                    raise ClaimLost(f"claim on {claim.row_key} changed before release") from exc
                raise LedgerUnavailable(f"cannot release {claim.row_key}") from exc
            return
        self._settle(claim, LedgerStatus.FAILED, {"attempts": claim.attempts - 1, "reason": "released"})

    def _settle(self, claim: Claim, status: LedgerStatus, changes: dict[str, Any]) -> None:
        self._merge_on_etag(claim, self._settled_entity(claim, status, changes))

    def _settled_entity(self, claim: Claim, status: LedgerStatus, changes: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        return {
            "PartitionKey": claim.partition_key,
            "RowKey": claim.row_key,
            "status": status.value,
            "updated": now,
            "expires": _end_of_day(claim.day) if status is LedgerStatus.COMPLETED else now,
            "reason": "",
            **changes,
        }

    def _merge_on_etag(self, claim: Claim, entity: dict[str, Any]) -> None:
        try:
            self._table.update_entity(entity, **_on_etag(claim.etag))
        except AzureError as exc:
            self._confirm_settled(claim, entity, exc)

    def _confirm_settled(self, claim: Claim, settled: dict[str, Any], error: AzureError) -> None:
        """A settling write raised: return if it is stored all the same (its answer was lost, or a
        retry of it met the ETag its first try had changed); raise ClaimLost or LedgerUnavailable if not."""
        status = settled["status"]
        conflict = isinstance(error, (ResourceModifiedError, ResourceNotFoundError))
        if not conflict and not _outcome_unknown(error):
            raise LedgerUnavailable(f"cannot mark {claim.row_key} {status}") from error
        stored = self._get(claim.partition_key, claim.row_key)
        if stored is not None and stored.token == claim.token and _holds(stored, settled):
            return
        if conflict or (stored is not None and stored.etag != claim.etag):
            raise ClaimLost(f"claim on {claim.row_key} changed before it was marked {status}") from error
        raise LedgerUnavailable(f"cannot mark {claim.row_key} {status}") from error

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
            "token": uuid.uuid4().hex,
        }

    def _create(self, entity: dict[str, Any]) -> str | None:
        """The new entity's ETag, or None when it already exists."""
        try:
            return str(self._table.create_entity(entity, response_preference=NO_ECHO)["etag"])
        except ResourceExistsError:
            return None
        except AzureError as exc:
            if _outcome_unknown(exc):
                return None  # perhaps stored: the caller reads it back
            raise LedgerUnavailable(f"cannot create {entity['RowKey']}") from exc

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
            token=str(entity.get("token", "")),
            jobs=tuple(_jobs_of(entity)),
        )


def _claim_from(entity: dict[str, Any], etag: str) -> Claim:
    return Claim(
        str(entity["vm_id"]),
        str(entity["action"]),
        date.fromisoformat(str(entity["day"])),
        str(entity["run_id"]),
        int(entity["attempts"]),
        etag,
        str(entity["token"]),
    )


def _outcome_unknown(error: AzureError) -> bool:
    """Whether a write that raised may be stored all the same: no answer came, or a server error."""
    status = getattr(error, "status_code", None)
    return status is None or status >= 500


def _holds(record: LedgerRecord, written: dict[str, Any]) -> bool:
    """Whether `record` shows the status and the values a settling write set."""
    fields = ("status", "job_id", "op_id", "reason", "attempts")
    return all(str(getattr(record, name)) == str(written[name]) for name in fields if name in written)


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


def _on_etag(etag: str) -> dict[str, Any]:
    """A merge that only applies while the entity is still the version read (its ETag)."""
    return {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
