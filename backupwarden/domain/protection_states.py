"""Every VM in exactly one protection state, with the reason, the proposed action and the time
without a recovery point (issue 17; docs/coverage.md lists the states and their precedence).

Property names and values follow the Recovery Services REST API (2024-04-01 `bms.json`):
`protectionState` (IRPending, Protected, ProtectionError, ProtectionStopped, ProtectionPaused,
BackupsSuspended, Invalid), `healthStatus` (Passed, ActionRequired, ActionSuggested, Invalid),
`isScheduledForDeferredDelete`, `lastRecoveryPoint`, and the policy's `schedulePolicy`
(SimpleSchedulePolicy / SimpleSchedulePolicyV2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum

from backupwarden.domain.failure_classes import FailureClass
from backupwarden.domain.failure_classes import classify as classify_failure
from backupwarden.domain.sweep_rules import OPT_OUT_TAG, RUNNING_JOB_STATUSES, opted_out

ENROLL_OPT_IN_TAG = "backupwarden:enroll"  # with ENROLL_EXISTING=tagged: `true` opts a VM in

DAY = timedelta(days=1)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
STOPPED_STATES = frozenset({"protectionstopped", "protectionpaused", "backupssuspended"})
# a newer API version spells a soft-deleted item's state `SoftDeleted`; the 2023 recording of a
# soft-deleted item shows `ProtectionStopped` with `isScheduledForDeferredDelete: true`
SOFT_DELETED_STATE = "softdeleted"
# an item read from the protectable-items list rather than from protectedItems: nothing protects it
NOT_PROTECTED_STATE = "notprotected"
RETRYABLE_FAILURES = frozenset({FailureClass.RETRY, FailureClass.RETRY_CAPPED})


class VmState(StrEnum):
    EXCLUDED = "excluded"
    ORPHANED = "orphaned"
    SOFT_DELETED = "soft_deleted"
    STOPPED = "stopped"
    FAILING = "failing"
    PENDING_FIRST_BACKUP = "pending_first_backup"
    PROTECTED_CURRENT = "protected_current"
    STALE = "stale"
    NEW = "new"
    UNPROTECTED = "unprotected"


class Action(StrEnum):
    BACKUP_NOW = "backup_now"
    ENROLL = "enroll"
    ESCALATE = "escalate"  # a person must act: the classification carries the recommendation
    NONE = "none"


class EnrollExisting(StrEnum):
    """What an unprotected VM that is not new gets: `off` reports it only (the default)."""

    OFF = "off"
    TAGGED = "tagged"  # enrol only VMs tagged ENROLL_OPT_IN_TAG=true
    ALL = "all"


@dataclass(frozen=True)
class VmFacts:
    """A VM as Resource Graph shows it; `exists=False` for the VM of an item whose VM is gone."""

    id: str
    name: str
    subscription_id: str
    region: str
    resource_group: str
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None  # properties.timeCreated
    power_state: str = ""
    exists: bool = True


@dataclass(frozen=True)
class ProtectedItemFacts:
    vault_id: str
    protection_state: str
    health_status: str = "Passed"
    last_backup_status: str = ""
    last_recovery_point: datetime | None = None
    policy_id: str = ""
    protected_since: datetime | None = None  # when protection was configured (item created)
    is_scheduled_for_deferred_delete: bool = False


def is_inactive(item: ProtectedItemFacts) -> bool:
    """Protection stopped, paused or suspended, or the item soft-deleted: no new recovery points."""
    state = item.protection_state.lower()
    return item.is_scheduled_for_deferred_delete or state == SOFT_DELETED_STATE or state in STOPPED_STATES


@dataclass(frozen=True)
class JobFacts:
    operation: str  # Backup, ConfigureBackup, ...
    status: str  # InProgress, Completed, CompletedWithWarnings, Failed, ...
    start_time: datetime | None = None
    error_code: str = ""


@dataclass(frozen=True)
class BackupSchedule:
    """A policy's schedule, enough to know the longest gap between two scheduled backups."""

    frequency: str  # Daily, Weekly or Hourly (scheduleRunFrequency)
    run_times: tuple[time, ...] = ()
    run_days: tuple[str, ...] = ()  # weekly only
    hourly_interval: int = 0  # hours: 4, 6, 8 or 12
    window_start: time | None = None  # hourly only
    window_hours: int = 24  # hourly only: scheduleWindowDuration

    @property
    def rpo(self) -> timedelta:
        """The longest time between two scheduled backups: a recovery point older than this (plus
        the tolerance) means at least one scheduled backup made none."""
        kind = self.frequency.lower()
        if kind == "hourly" and self.hourly_interval > 0:
            # runs at start, start+interval, ... while inside the window, then waits for the next
            # day's window; a run exactly at the window's end is not counted, so the gap is never
            # underestimated
            runs_per_day = max(1, math.ceil(min(self.window_hours, 24) / self.hourly_interval))
            last_offset = (runs_per_day - 1) * self.hourly_interval
            return timedelta(hours=max(self.hourly_interval, 24 - last_offset))
        if kind == "weekly" and self.run_days:
            days = sorted({WEEKDAYS.index(day.capitalize()) for day in self.run_days})
            gaps = [(b - a) % 7 or 7 for a, b in zip(days, days[1:] + days[:1], strict=True)]
            return DAY * max(gaps)
        if kind == "daily" and len(self.run_times) > 1:
            minutes = sorted({t.hour * 60 + t.minute for t in self.run_times})
            gaps = [(b - a) % 1440 or 1440 for a, b in zip(minutes, minutes[1:] + minutes[:1], strict=True)]
            return timedelta(minutes=max(gaps))
        return DAY


def schedule_from_policy(schedule_policy: Mapping[str, object]) -> BackupSchedule:
    """A BackupSchedule from a policy's `schedulePolicy` as the REST API returns it (V1 or V2).

    V1 (SimpleSchedulePolicy): scheduleRunFrequency, scheduleRunTimes, scheduleRunDays, hourlySchedule.
    V2 (SimpleSchedulePolicyV2): scheduleRunFrequency with dailySchedule / weeklySchedule /
    hourlySchedule {interval, scheduleWindowStartTime, scheduleWindowDuration} (bms.json 2024-04-01).
    """
    frequency = str(schedule_policy.get("scheduleRunFrequency") or "Daily")
    daily = _mapping(schedule_policy.get("dailySchedule"))
    weekly = _mapping(schedule_policy.get("weeklySchedule"))
    hourly = _mapping(schedule_policy.get("hourlySchedule"))
    raw_times = (
        schedule_policy.get("scheduleRunTimes")
        or daily.get("scheduleRunTimes")
        or weekly.get("scheduleRunTimes")
        or []
    )
    raw_days = schedule_policy.get("scheduleRunDays") or weekly.get("scheduleRunDays") or []
    window_start = hourly.get("scheduleWindowStartTime")
    return BackupSchedule(
        frequency=frequency,
        run_times=tuple(_time_of_day(raw) for raw in _strings(raw_times)),
        run_days=tuple(_strings(raw_days)),
        hourly_interval=_int(hourly.get("interval")),
        window_start=_time_of_day(str(window_start)) if window_start else None,
        window_hours=_int(hourly.get("scheduleWindowDuration")) or 24,
    )


@dataclass(frozen=True)
class StateRules:
    grace_period: timedelta  # the sweep's grace period (settings' BACKUPWARDEN_GRACE_PERIOD)
    enroll_existing: EnrollExisting = EnrollExisting.OFF
    # a scheduled backup does not start on the minute and takes a while to make its recovery point
    rpo_tolerance: timedelta = timedelta(hours=6)
    default_rpo: timedelta = DAY  # when the item's policy is unknown
    failure_classes: Mapping[str, FailureClass] = field(default_factory=dict)  # beyond the defaults


@dataclass(frozen=True)
class Classification:
    vm: VmFacts
    state: VmState
    reason: str  # a sentence an operator can read
    action: Action
    recommendation: str = ""  # what a person should do, for escalations
    failure_class: FailureClass | None = None
    time_without_recovery_point: timedelta | None = None  # None: not known since when
    within_rpo: bool = False  # the newest recovery point is recent enough: the VM is recoverable
    vault_id: str = ""  # the vault of the item the VM was judged by; "" when no item protects it

    @property
    def hours_without_recovery_point(self) -> float | None:
        """Rounded to 0.01 h; None when nothing shows since when."""
        period = self.time_without_recovery_point
        return None if period is None else round(period.total_seconds() / 3600, 2)


@dataclass(frozen=True)
class _Verdict:
    state: VmState
    reason: str
    action: Action
    recommendation: str = ""
    failure: FailureClass | None = None


def classify(
    vm: VmFacts,
    item: ProtectedItemFacts | None,
    *,
    schedule: BackupSchedule | None,
    jobs: Sequence[JobFacts] = (),
    rules: StateRules,
    now: datetime,
) -> Classification:
    """One VM's state. Precedence, first match wins: excluded, orphaned, soft_deleted, stopped,
    failing, pending_first_backup, protected_current / stale, new, unprotected.

    A VM that no longer exists and has no item is not a VM anyone can classify: ValueError.
    """
    if not vm.exists and item is None:
        raise ValueError(f"{vm.id}: the VM does not exist and no item protects it")
    if item is not None and item.protection_state.lower() == NOT_PROTECTED_STATE:
        item = None
    rpo = schedule.rpo if schedule else rules.default_rpo
    without = _time_without_recovery_point(vm, item, now)
    within = bool(
        item is not None
        and item.last_recovery_point is not None
        and without is not None
        and without <= rpo + rules.rpo_tolerance
    )
    if opted_out(dict(vm.tags)):
        verdict = _Verdict(VmState.EXCLUDED, f"opted out by tag {OPT_OUT_TAG}", Action.NONE)
    elif item is None:
        verdict = _without_item(vm, rules, now)
    else:
        verdict = _with_item(vm, item, schedule, jobs, rules, now, within=within)
    return Classification(
        vm=vm,
        state=verdict.state,
        reason=verdict.reason,
        action=verdict.action,
        recommendation=verdict.recommendation,
        failure_class=verdict.failure,
        time_without_recovery_point=without,
        # soft-deleted data restores nothing until someone undeletes it, and is purged after that
        within_rpo=within and verdict.state != VmState.SOFT_DELETED,
        vault_id=item.vault_id if item is not None else "",
    )


def _with_item(
    vm: VmFacts,
    item: ProtectedItemFacts,
    schedule: BackupSchedule | None,
    jobs: Sequence[JobFacts],
    rules: StateRules,
    now: datetime,
    *,
    within: bool,
) -> _Verdict:
    state = item.protection_state.lower()
    vault = _last_segment(item.vault_id)
    newest = _newest_recovery_point(item)
    if not vm.exists:
        return _Verdict(
            VmState.ORPHANED,
            f"the VM no longer exists but vault {vault} still holds its item"
            f" ({item.protection_state}, {newest})",
            Action.ESCALATE,
            "stop protection of the item and keep or delete its backup data deliberately: the vault"
            " keeps charging for it",
        )
    if state == SOFT_DELETED_STATE or item.is_scheduled_for_deferred_delete:
        return _Verdict(
            VmState.SOFT_DELETED,
            f"protection was stopped and the backup data in vault {vault} is soft-deleted ({newest})",
            Action.ESCALATE,
            f"undelete the item and resume protection, or tag the VM {OPT_OUT_TAG}=true if it needs"
            " no backup",
        )
    if state in STOPPED_STATES:
        return _Verdict(
            VmState.STOPPED,
            f"protection is {item.protection_state} in vault {vault}: no new recovery points ({newest})",
            Action.ESCALATE,
            f"resume protection with a policy, or tag the VM {OPT_OUT_TAG}=true if it needs no backup",
        )
    running = any(job.status in RUNNING_JOB_STATUSES for job in jobs)
    if state in ("protectionerror", "invalid") or item.health_status.lower() == "actionrequired":
        return _failing(item, jobs, rules, running=running)
    if state == "irpending" and item.last_recovery_point is None:
        return _pending(item, rules, now, running=running)
    rpo = schedule.rpo if schedule else rules.default_rpo
    if within:
        advice = " (health: ActionSuggested)" if item.health_status.lower() == "actionsuggested" else ""
        return _Verdict(
            VmState.PROTECTED_CURRENT,
            f"{newest}, within the policy's RPO of {_human(rpo)}{advice}",
            Action.NONE,
        )
    overdue = f"{newest}; the policy allows {_human(rpo)} plus {_human(rules.rpo_tolerance)}"
    if schedule is None:
        overdue += f" (policy schedule unknown: an RPO of {_human(rules.default_rpo)} is assumed)"
    if running:
        return _Verdict(VmState.STALE, f"{overdue}; a backup job is running", Action.NONE)
    return _Verdict(VmState.STALE, overdue, Action.BACKUP_NOW)


def _without_item(vm: VmFacts, rules: StateRules, now: datetime) -> _Verdict:
    if vm.created_at is not None and now - vm.created_at < rules.grace_period:
        return _Verdict(
            VmState.NEW,
            f"created {vm.created_at:%Y-%m-%dT%H:%MZ}, within the grace period of"
            f" {_human(rules.grace_period)}: the new-VM flow enrols it",
            Action.NONE,
        )
    since = f" since {vm.created_at:%Y-%m-%dT%H:%MZ}" if vm.created_at else ""
    mode = rules.enroll_existing
    if mode == EnrollExisting.ALL or (mode == EnrollExisting.TAGGED and _opted_in(vm.tags)):
        return _Verdict(
            VmState.UNPROTECTED, f"no vault protects it{since} (ENROLL_EXISTING={mode})", Action.ENROLL
        )
    why = (
        f"not tagged {ENROLL_OPT_IN_TAG}=true"
        if mode == EnrollExisting.TAGGED
        else "ENROLL_EXISTING=off: reported only"
    )
    return _Verdict(VmState.UNPROTECTED, f"no vault protects it{since} ({why})", Action.NONE)


def _failing(
    item: ProtectedItemFacts, jobs: Sequence[JobFacts], rules: StateRules, *, running: bool
) -> _Verdict:
    failed = [job for job in jobs if job.status == "Failed" and job.error_code]
    newest_failed = max(failed, key=_start_or_earliest, default=None)
    code = newest_failed.error_code if newest_failed else ""
    failure = classify_failure(code, dict(rules.failure_classes)) if code else None
    what = f"protectionState {item.protection_state}, health {item.health_status}"
    if code:
        what += f", last failed job: {code} ({failure or 'unclassified'})"
    if running or failure == FailureClass.IN_PROGRESS:
        return _Verdict(VmState.FAILING, f"{what}; a backup job is running", Action.NONE, failure=failure)
    if failure in RETRYABLE_FAILURES:
        return _Verdict(VmState.FAILING, f"{what}: a retry can fix it", Action.BACKUP_NOW, failure=failure)
    if failure == FailureClass.ESCALATE_CONFIG:
        advice = "fix the configuration the error names (policy, vault limits), then back up"
        return _Verdict(VmState.FAILING, f"{what}: a retry cannot fix it", Action.ESCALATE, advice, failure)
    if failure == FailureClass.ESCALATE_PERMANENT:
        advice = "the error is permanent for this VM: read the job's error details"
        return _Verdict(VmState.FAILING, f"{what}: a retry cannot fix it", Action.ESCALATE, advice, failure)
    return _Verdict(
        VmState.FAILING,
        f"{what}: the cause is not known",
        Action.ESCALATE,
        "read the item's health details and its latest backup job in the vault",
    )


def _pending(item: ProtectedItemFacts, rules: StateRules, now: datetime, *, running: bool) -> _Verdict:
    since = item.protected_since
    if running:
        return _Verdict(
            VmState.PENDING_FIRST_BACKUP, "initial backup pending; a backup job is running", Action.NONE
        )
    if since is not None and now - since < rules.grace_period:
        return _Verdict(
            VmState.PENDING_FIRST_BACKUP,
            f"initial backup pending since {since:%Y-%m-%dT%H:%MZ}, within the grace period of"
            f" {_human(rules.grace_period)}",
            Action.NONE,
        )
    when = f" since {since:%Y-%m-%dT%H:%MZ}" if since else ""
    return _Verdict(VmState.PENDING_FIRST_BACKUP, f"initial backup pending{when}", Action.BACKUP_NOW)


def _time_without_recovery_point(
    vm: VmFacts, item: ProtectedItemFacts | None, now: datetime
) -> timedelta | None:
    """Since the newest recovery point; with none, since protection began or the VM was created."""
    if item is not None and item.last_recovery_point is not None:
        start: datetime | None = item.last_recovery_point
    elif item is not None and item.protected_since is not None:
        start = item.protected_since
    else:
        start = vm.created_at
    return None if start is None else max(timedelta(0), now - start)


def _newest_recovery_point(item: ProtectedItemFacts) -> str:
    if item.last_recovery_point is None:
        return "no recovery point"
    return f"last recovery point {item.last_recovery_point:%Y-%m-%dT%H:%MZ}"


def _start_or_earliest(job: JobFacts) -> datetime:
    return job.start_time or datetime.min.replace(tzinfo=UTC)


def _opted_in(tags: Mapping[str, str]) -> bool:
    return any(
        key.lower() == ENROLL_OPT_IN_TAG and value.strip().lower() in ("true", "1", "yes")
        for key, value in tags.items()
    )


def _last_segment(arm_id: str) -> str:
    return arm_id.rstrip("/").rsplit("/", 1)[-1] or arm_id


def _human(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)}d"
    if hours == int(hours):
        return f"{int(hours)}h"
    return f"{int(period.total_seconds() // 60)}m"


def _mapping(raw: object) -> Mapping[str, object]:
    return raw if isinstance(raw, Mapping) else {}


def _strings(raw: object) -> list[str]:
    return [str(value) for value in raw] if isinstance(raw, list) else []


def _int(raw: object) -> int:
    return raw if isinstance(raw, int) else 0


def _time_of_day(raw: str) -> time:
    """`scheduleRunTimes` are full date-times of which only the time of day counts."""
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return time(moment.hour, moment.minute)
