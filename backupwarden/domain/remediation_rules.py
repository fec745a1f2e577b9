"""What remediation does about one failed backup: retry what a retry can fix, escalate what it cannot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from backupwarden.domain.failure_classes import FailureClass, classify


class Remedy(StrEnum):
    RETRY = "retry"  # trigger a backup through the ledger
    NOOP = "noop"  # nothing to do now (in progress, backing off, already handled)
    ESCALATE = "escalate"  # a person must act: the record carries the recommendation
    RESOLVED = "resolved"  # a later backup succeeded: the failure no longer matters


@dataclass(frozen=True)
class Failure:
    vm_id: str
    vault_id: str
    error_code: str
    failed_at: datetime
    job_id: str = ""
    recommendation: str = ""


@dataclass(frozen=True)
class LiveItem:
    """The protected item now, read from Recovery Services (Log Analytics lags)."""

    exists: bool
    last_backup_status: str = ""
    last_backup_time: datetime | None = None
    job_in_progress: bool = False


@dataclass(frozen=True)
class RetryHistory:
    retries_today: int  # remediation retries of this VM today
    last_retry_at: datetime | None = None


@dataclass(frozen=True)
class RemediationPolicy:
    retry_cap: int  # retries of VM-side failures before escalating
    daily_budget: int  # same on-demand budget as the sweep
    backoff: timedelta  # least time between two retries of one VM
    extra_classes: dict[str, FailureClass] | None = None


@dataclass(frozen=True)
class RemediationDecision:
    remedy: Remedy
    reason: str


# A backup that completed with warnings still made a recovery point (Azure Backup's job statuses).
SUCCEEDED = frozenset({"Completed", "CompletedWithWarnings"})


def decide_remediation(
    failure: Failure, live: LiveItem, history: RetryHistory, policy: RemediationPolicy, now: datetime
) -> RemediationDecision:
    if not live.exists:
        return RemediationDecision(Remedy.ESCALATE, "the VM is no longer protected by its vault")
    if (
        live.last_backup_status in SUCCEEDED
        and live.last_backup_time
        and live.last_backup_time > failure.failed_at
    ):
        warnings = " (with warnings)" if live.last_backup_status == "CompletedWithWarnings" else ""
        return RemediationDecision(
            Remedy.RESOLVED,
            f"a later backup succeeded{warnings} at {live.last_backup_time:%Y-%m-%dT%H:%MZ}",
        )
    if live.job_in_progress:
        return RemediationDecision(Remedy.NOOP, "a backup job is already in progress")
    kind = classify(failure.error_code, policy.extra_classes)
    advice = f": {failure.recommendation}" if failure.recommendation else ""
    if kind is None:
        return RemediationDecision(
            Remedy.ESCALATE, f"{failure.error_code or 'no error code'} is not a known failure{advice}"
        )
    if kind is FailureClass.IN_PROGRESS:
        return RemediationDecision(Remedy.NOOP, "the failure says a backup was already running")
    if kind in (FailureClass.ESCALATE_CONFIG, FailureClass.ESCALATE_PERMANENT):
        what = (
            "configuration blocks the backup"
            if kind is FailureClass.ESCALATE_CONFIG
            else "a retry cannot fix it"
        )
        return RemediationDecision(Remedy.ESCALATE, f"{failure.error_code}: {what}{advice}")
    if kind is FailureClass.RETRY_CAPPED and history.retries_today >= policy.retry_cap:
        return RemediationDecision(
            Remedy.ESCALATE,
            f"{failure.error_code}: still failing after {history.retries_today} retries{advice}",
        )
    if history.retries_today >= policy.daily_budget:
        return RemediationDecision(Remedy.NOOP, f"daily budget spent ({history.retries_today} retries today)")
    if history.last_retry_at is not None and now - history.last_retry_at < policy.backoff:
        until = history.last_retry_at + policy.backoff
        return RemediationDecision(Remedy.NOOP, f"backing off until {until:%Y-%m-%dT%H:%MZ}")
    return RemediationDecision(
        Remedy.RETRY, f"{failure.error_code}: {kind.value}, retry {history.retries_today + 1}"
    )
